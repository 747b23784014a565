//! The model-based property of one resumable upload session, the stable twin
//! of the `upload_session` fuzz target: arbitrary sequences of chunks (any
//! ranges, overlaps, wrong lengths, cut-off bodies, retries, changed totals)
//! and status queries go through the real layer in process over
//! `MemoryStorage`, and every answer must match the reference model in
//! `tests/common/session_model.rs` (statuses and codes, reported ranges,
//! exactly one completion exactly when the model completes, stored bytes).

#[path = "common/session_model.rs"]
mod session_model;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use session_model::{check, Delivery, Model, Op, Total, MAX_FILE_LEN, MAX_SIZE_BOUNDS};

fn total() -> impl Strategy<Value = Total> {
    prop_oneof![
        4 => Just(Total::Right),
        2 => Just(Total::Unknown),
        1 => (0u64..112).prop_map(Total::Other),
        1 => any::<u64>().prop_map(Total::Other),
    ]
}

fn delivery() -> impl Strategy<Value = Delivery> {
    prop_oneof![
        5 => Just(Delivery::Full),
        2 => (1u8..=4).prop_map(|pieces| Delivery::Streamed { pieces }),
        1 => (1u8..=4, any::<bool>()).prop_map(|(by, streamed)| Delivery::Short { by, streamed }),
        1 => (1u8..=4, any::<bool>()).prop_map(|(by, streamed)| Delivery::Long { by, streamed }),
        1 => any::<u8>().prop_map(|after| Delivery::CutOff { after }),
    ]
}

fn op(file_len: u64, max_size: u64) -> impl Strategy<Value = Op> {
    let chunk =
        |(first, len, total, delivery, content_length): (u64, u64, Total, Delivery, bool)| {
            Op::Chunk {
                first,
                last: first + len - 1,
                total,
                delivery,
                content_length,
            }
        };
    prop_oneof![
        // Chunks around the file.
        6 => (0..file_len + 4, 1..=file_len + 4, total(), delivery(), any::<bool>()).prop_map(chunk),
        // The rest of the file from some offset.
        3 => (0..file_len, any::<bool>()).prop_map(move |(first, streamed)| Op::Chunk {
            first,
            last: file_len - 1,
            total: Total::Right,
            delivery: if streamed { Delivery::Streamed { pieces: 3 } } else { Delivery::Full },
            content_length: false,
        }),
        // A prefix of the file.
        2 => (0..file_len, prop_oneof![Just(Total::Right), Just(Total::Unknown)]).prop_map(
            move |(last, total)| Op::Chunk {
                first: 0,
                last,
                total,
                delivery: Delivery::Full,
                content_length: false,
            }
        ),
        // Small chunks, which split the session into many ranges.
        3 => (0..file_len + 4, 1u64..=3, total(), Just(Delivery::Full), Just(false)).prop_map(chunk),
        // Chunks anywhere up to past the size limit.
        1 => (0..max_size + 8, 1..=max_size + 8, total(), delivery(), any::<bool>()).prop_map(chunk),
        2 => (
            total(),
            prop_oneof![6 => Just(0u8), 1 => 1u8..4],
            any::<bool>()
        ).prop_map(|(total, body, streamed)| Op::Status { total, body, streamed }),
    ]
}

/// A file length, a `max_size` and up to 20 operations.
fn scenario() -> impl Strategy<Value = (u64, u64, Vec<Op>)> {
    (1..=MAX_FILE_LEN, MAX_SIZE_BOUNDS.0..=MAX_SIZE_BOUNDS.1).prop_flat_map(
        |(file_len, max_size)| {
            (
                Just(file_len),
                Just(max_size),
                proptest::collection::vec(op(file_len, max_size), 0..=20),
            )
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn session_answers_match_the_model((file_len, max_size, ops) in scenario()) {
        check(file_len, max_size, &ops);
    }
}

#[test]
fn out_of_order_chunks_complete_once_then_replay() {
    let chunk = |first, last, total| Op::Chunk {
        first,
        last,
        total,
        delivery: Delivery::Full,
        content_length: true,
    };
    check(
        20,
        64,
        &[
            chunk(10, 19, Total::Unknown),
            Op::Status {
                total: Total::Unknown,
                body: 0,
                streamed: false,
            },
            chunk(5, 12, Total::Right),
            chunk(0, 3, Total::Other(21)),
            chunk(0, 5, Total::Right),
            chunk(0, 19, Total::Right),
            Op::Status {
                total: Total::Other(3),
                body: 0,
                streamed: true,
            },
        ],
    );
}

/// The generator is worth its cases: a good share of scenarios complete the
/// file, and a good share hit a refusal, according to the model alone.
#[test]
fn scenarios_reach_completion_and_refusals() {
    let mut runner = TestRunner::deterministic();
    let strategy = scenario();
    let (mut completed, mut refused) = (0, 0);
    for _ in 0..500 {
        let (file_len, max_size, ops) = strategy.new_tree(&mut runner).unwrap().current();
        let mut model = Model::new(file_len, max_size);
        let mut any_refusal = false;
        for op in &ops {
            any_refusal |= model.apply(op).status >= 400;
        }
        completed += usize::from(model.completed.is_some());
        refused += usize::from(any_refusal);
    }
    assert!(
        completed >= 100,
        "only {completed} of 500 scenarios complete"
    );
    assert!(
        refused >= 100,
        "only {refused} of 500 scenarios see a refusal"
    );
}

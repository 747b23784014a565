//! The model-based property of one resumable upload session, the stable twin
//! of the `upload_session` fuzz target: arbitrary sequences of chunks (any
//! ranges, overlaps, wrong lengths, cut-off bodies, retries, changed totals)
//! and status queries go through the real layer in process over
//! `MemoryStorage` and over `FsStorage` (a fresh temporary folder per case),
//! and every answer must match the reference model in
//! `tests/common/session_model.rs` (statuses and codes, reported ranges,
//! exactly one completion exactly when the model completes, stored bytes).
//! Requests carry `Content-Digest` and `Repr-Digest` (right, wrong, malformed),
//! retries may change bytes, and the URL may sign a `type` and a `max_size`.

use crate::session_model::{
    check_on, check_setup, file_bytes, sniffed, Backend, Delivery, DigestValue, Digests, Model, Op,
    Setup, Total, Types, MAX_FILE_LEN, MAX_SIZE_BOUNDS,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::FileFailurePersistence;
use proptest::test_runner::TestRunner;

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
        2 => any::<u8>().prop_map(|at| Delivery::Changed { at }),
    ]
}

fn digest_value() -> impl Strategy<Value = DigestValue> {
    prop_oneof![
        8 => Just(DigestValue::None),
        3 => Just(DigestValue::Sha256),
        1 => Just(DigestValue::Sha512),
        1 => Just(DigestValue::Both),
        2 => (0u8..2).prop_map(DigestValue::Wrong),
        1 => Just(DigestValue::Unsupported),
        1 => Just(DigestValue::Malformed),
    ]
}

/// `Repr-Digest`: mostly absent or the true one, so sessions still complete.
fn repr_value() -> impl Strategy<Value = DigestValue> {
    prop_oneof![
        12 => Just(DigestValue::None),
        4 => Just(DigestValue::Sha256),
        1 => Just(DigestValue::Sha512),
        1 => Just(DigestValue::Both),
        1 => (0u8..2).prop_map(DigestValue::Wrong),
        1 => Just(DigestValue::Unsupported),
        1 => Just(DigestValue::Malformed),
    ]
}

fn digests() -> impl Strategy<Value = Digests> {
    prop_oneof![
        3 => Just(Digests::NONE),
        2 => (digest_value(), repr_value()).prop_map(|(content, repr)| Digests { content, repr }),
    ]
}

fn op(file_len: u64, max_size: u64) -> impl Strategy<Value = Op> {
    let chunk = |((first, len, total, delivery, content_length), digests): (
        (u64, u64, Total, Delivery, bool),
        Digests,
    )| Op::Chunk {
        first,
        last: first + len - 1,
        total,
        delivery,
        content_length,
        digests,
    };
    prop_oneof![
        // Chunks around the file.
        6 => ((0..file_len + 4, 1..=file_len + 4, total(), delivery(), any::<bool>()), digests())
            .prop_map(chunk),
        // The rest of the file from some offset.
        3 => (0..file_len, any::<bool>(), digests()).prop_map(move |(first, streamed, digests)| {
            Op::Chunk {
                first,
                last: file_len - 1,
                total: Total::Right,
                delivery: if streamed { Delivery::Streamed { pieces: 3 } } else { Delivery::Full },
                content_length: false,
                digests,
            }
        }),
        // A prefix of the file.
        2 => (0..file_len, prop_oneof![Just(Total::Right), Just(Total::Unknown)], digests())
            .prop_map(move |(last, total, digests)| Op::Chunk {
                first: 0,
                last,
                total,
                delivery: Delivery::Full,
                content_length: false,
                digests,
            }),
        // A range of the file resent with one byte changed.
        1 => (0..file_len, any::<u8>(), any::<u8>()).prop_map(move |(first, len, at)| Op::Chunk {
            first,
            last: first + u64::from(len) % (file_len - first),
            total: Total::Right,
            delivery: Delivery::Changed { at },
            content_length: false,
            digests: Digests::NONE,
        }),
        // Small chunks, which split the session into many ranges.
        3 => ((0..file_len + 4, 1u64..=3, total(), Just(Delivery::Full), Just(false)), Just(Digests::NONE))
            .prop_map(chunk),
        // Chunks anywhere up to past the size limit.
        1 => ((0..max_size + 8, 1..=max_size + 8, total(), delivery(), any::<bool>()), digests())
            .prop_map(chunk),
        2 => (
            total(),
            prop_oneof![6 => Just(0u8), 1 => 1u8..4],
            any::<bool>(),
            digests(),
        ).prop_map(|(total, body, streamed, digests)| Op::Status { total, body, streamed, digests }),
    ]
}

fn types() -> impl Strategy<Value = Option<Types>> {
    prop_oneof![
        8 => Just(None),
        2 => Just(Some(Types::AnyImage)),
        1 => Just(Some(Types::PngOrMp4)),
        1 => Just(Some(Types::Binary)),
        1 => Just(Some(Types::Text)),
    ]
}

/// A setup (file, `max_size`, the URL's policy) and up to 20 operations.
fn scenario() -> impl Strategy<Value = (Setup, Vec<Op>)> {
    (
        1..=MAX_FILE_LEN,
        MAX_SIZE_BOUNDS.0..=MAX_SIZE_BOUNDS.1,
        0u8..4,
        types(),
        prop_oneof![6 => Just(None), 1 => (0u64..112).prop_map(Some)],
    )
        .prop_flat_map(|(file_len, max_size, odds, types, signed_max_size)| {
            // Mostly a file the signed type allows, so such sessions complete too.
            let png = match types {
                Some(Types::AnyImage | Types::PngOrMp4) => odds != 0,
                Some(Types::Binary) => odds == 0,
                _ => odds % 2 == 0,
            };
            let setup = Setup {
                file_len,
                max_size,
                png,
                types,
                signed_max_size,
            };
            (
                Just(setup),
                proptest::collection::vec(op(file_len, max_size), 0..=20),
            )
        })
}

/// `cases` cases; failures are kept beside this file, in
/// `proptest_session.proptest-regressions` (proptest's default would be a
/// `tests/proptest-regressions/` tree, since `tests/it` has a `main.rs`).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::with_cases(cases)
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn session_answers_match_the_model((setup, ops) in scenario()) {
        check_setup(setup, &ops);
    }
}

#[cfg(all(feature = "fs", unix))]
proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn session_answers_match_the_model_on_fs_storage((setup, ops) in scenario()) {
        check_on(Backend::Fs, setup, &ops);
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
        digests: Digests::NONE,
    };
    let ops = [
        chunk(10, 19, Total::Unknown),
        Op::Status {
            total: Total::Unknown,
            body: 0,
            streamed: false,
            digests: Digests::NONE,
        },
        chunk(5, 12, Total::Right),
        chunk(0, 3, Total::Other(21)),
        chunk(0, 5, Total::Right),
        chunk(0, 19, Total::Right),
        Op::Status {
            total: Total::Other(3),
            body: 0,
            streamed: true,
            digests: Digests::NONE,
        },
    ];
    for &backend in Backend::ALL {
        check_on(backend, Setup::plain(20, 64), &ops);
    }
}

/// The generator is worth its cases: a good share of scenarios complete the
/// file, and a good share hit a refusal, according to the model alone.
#[test]
fn scenarios_reach_completion_and_refusals() {
    let mut runner = TestRunner::deterministic();
    let strategy = scenario();
    let (mut completed, mut refused) = (0, 0);
    let mut codes = std::collections::BTreeSet::new();
    for _ in 0..500 {
        let (setup, ops) = strategy.new_tree(&mut runner).unwrap().current();
        let mut model = Model::new(setup);
        let mut any_refusal = false;
        for op in &ops {
            let expected = model.apply(op);
            any_refusal |= expected.status >= 400;
            codes.extend(expected.code);
        }
        completed += usize::from(model.completed.is_some());
        refused += usize::from(any_refusal);
    }
    for code in [
        "range_conflict",
        "digest_conflict",
        "digest_mismatch",
        "digest_invalid",
        "type_not_allowed",
        "total_mismatch",
    ] {
        assert!(
            codes.contains(code),
            "no scenario reaches {code}: {codes:?}"
        );
    }
    // Signed types, signed limits and wrong whole-file digests keep some
    // sessions from ever completing; still one in eight must.
    assert!(
        completed >= 60,
        "only {completed} of 500 scenarios complete"
    );
    assert!(
        refused >= 100,
        "only {refused} of 500 scenarios see a refusal"
    );
}

/// The model's sniffer agrees with the crate's (`infer`) on every head a run
/// can send at offset 0: a prefix of either source file, maybe with one byte
/// changed as `Delivery::Changed` changes it.
#[test]
fn the_model_sniffs_as_the_crate_does() {
    let longest = MAX_SIZE_BOUNDS.1 + 8;
    for png in [false, true] {
        for len in 1..=longest {
            let head = file_bytes(png, 0, len);
            let mut heads = vec![head.clone()];
            for at in 0..len as usize {
                let mut changed = head.clone();
                changed[at] ^= 0x5a;
                heads.push(changed);
            }
            for head in heads {
                let crate_says =
                    infer::get(&head).map_or("application/octet-stream", |k| k.mime_type());
                assert_eq!(sniffed(&head), crate_says, "{head:02x?}");
            }
        }
    }
}

/// The rules of docs/protocol.md#integrity on one session, step by step: an identical
/// resend is accepted, a changed one is `409 range_conflict`; a `Repr-Digest`
/// that differs from the kept one is `409 digest_conflict`, also on a status
/// query; a wrong kept digest refuses the commit and the session starts afresh.
#[test]
fn conflicts_and_a_wrong_whole_file_digest() {
    let chunk = |first, last, delivery, content, repr| Op::Chunk {
        first,
        last,
        total: Total::Right,
        delivery,
        content_length: false,
        digests: Digests { content, repr },
    };
    let status = |repr| Op::Status {
        total: Total::Unknown,
        body: 0,
        streamed: false,
        digests: Digests {
            content: DigestValue::None,
            repr,
        },
    };
    use DigestValue::{None as No, Sha256, Sha512, Wrong};
    let ops = [
        chunk(0, 9, Delivery::Full, Sha256, Wrong(0)),
        chunk(0, 9, Delivery::Full, No, No),
        chunk(5, 12, Delivery::Changed { at: 2 }, No, No),
        chunk(10, 15, Delivery::Full, No, Sha256),
        status(Sha512),
        status(Wrong(0)),
        chunk(10, 19, Delivery::Full, Wrong(1), No),
        chunk(10, 19, Delivery::Full, No, No),
        // Complete with the wrong kept digest: refused, discarded.
        chunk(0, 19, Delivery::Full, No, No),
        chunk(0, 19, Delivery::Full, Sha256, Sha256),
    ];
    let setup = Setup {
        png: true,
        types: Some(Types::AnyImage),
        ..Setup::plain(20, 64)
    };
    let mut model = Model::new(setup);
    let statuses: Vec<_> = ops.iter().map(|op| model.apply(op).status).collect();
    assert_eq!(statuses, [202, 202, 409, 409, 409, 308, 400, 400, 201, 200]);
    for &backend in Backend::ALL {
        check_on(backend, setup, &ops);
    }
}

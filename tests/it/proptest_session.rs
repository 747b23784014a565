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
    check_on, check_setup, file_bytes, sniffed, Backend, Checksum, Delivery, DigestValue, Digests,
    Model, Op, Setup, Total, TusBody, TusOffset, Types, MAX_FILE_LEN, MAX_SIZE_BOUNDS,
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

fn tus_body() -> impl Strategy<Value = TusBody> {
    prop_oneof![
        5 => Just(TusBody::Full),
        2 => (1u8..=4).prop_map(|pieces| TusBody::Streamed { pieces }),
        1 => (0u8..64, any::<bool>())
            .prop_map(|(after, content_length)| TusBody::CutOff { after, content_length }),
    ]
}

fn checksum() -> impl Strategy<Value = Checksum> {
    prop_oneof![
        10 => Just(Checksum::None),
        1 => Just(Checksum::Sha1),
        1 => Just(Checksum::Sha256),
        1 => Just(Checksum::Sha512),
        2 => Just(Checksum::Wrong),
        1 => Just(Checksum::Md5),
    ]
}

/// A tus request: creations (right, other or deferred length, with or
/// without a body), offsets, appends (at the upload's offset or another,
/// the rest of the file or a part, with a deferred length, a checksum) and
/// terminations.
fn tus_op(file_len: u64, max_size: u64) -> impl Strategy<Value = Op> {
    let create_total = prop_oneof![
        6 => Just(Total::Right),
        3 => Just(Total::Unknown),
        1 => (0u64..112).prop_map(Total::Other),
    ];
    let append_total = prop_oneof![
        8 => Just(Total::Unknown),
        2 => Just(Total::Right),
        1 => (0u64..112).prop_map(Total::Other),
    ];
    let body = prop_oneof![
        3 => Just(0),
        3 => 1..=file_len,
        1 => 1..=max_size + 8,
    ];
    let offset = prop_oneof![
        8 => Just(TusOffset::Current),
        1 => (0..file_len + 4).prop_map(TusOffset::At),
    ];
    let len = prop_oneof![
        4 => Just(None),
        3 => (0..=file_len).prop_map(Some),
        1 => (0..max_size + 8).prop_map(Some),
    ];
    let content_type = prop_oneof![12 => Just(true), 1 => Just(false)];
    prop_oneof![
        3 => (create_total, body, tus_body(), content_type.clone()).prop_map(
            |(total, body, delivery, content_type)| Op::TusCreate {
                total,
                body,
                delivery,
                content_type,
            }
        ),
        2 => Just(Op::TusHead),
        6 => (offset, len, tus_body(), append_total, checksum(), content_type).prop_map(
            |(offset, len, delivery, total, checksum, content_type)| Op::TusAppend {
                offset,
                len,
                delivery,
                total,
                checksum,
                content_type,
            }
        ),
        1 => Just(Op::TusDelete),
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
            // Chunks alone, tus mostly, or both mixed on the one session.
            let ops = prop_oneof![
                2 => op(file_len, max_size).boxed(),
                1 => prop_oneof![
                    1 => op(file_len, max_size),
                    4 => tus_op(file_len, max_size),
                ]
                .boxed(),
                2 => prop_oneof![op(file_len, max_size), tus_op(file_len, max_size)].boxed(),
            ];
            (Just(setup), proptest::collection::vec(ops, 0..=20))
        })
}

/// `cases` cases (or `PROPTEST_CASES`); failures are kept beside this file, in
/// `proptest_session.proptest-regressions` (proptest's default would be a
/// `tests/proptest-regressions/` tree, since `tests/it` has a `main.rs`).
fn config(cases: u32) -> ProptestConfig {
    // `PROPTEST_CASES` still sets the number, for a longer run.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
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
    let (mut completed, mut refused, mut by_tus) = (0, 0, 0);
    let mut codes = std::collections::BTreeSet::new();
    for _ in 0..500 {
        let (setup, ops) = strategy.new_tree(&mut runner).unwrap().current();
        let mut model = Model::new(setup);
        let mut any_refusal = false;
        for op in &ops {
            let was_complete = model.completed.is_some();
            let expected = model.apply(op);
            by_tus += usize::from(op.is_tus() && !was_complete && model.completed.is_some());
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
        // tus's own.
        "upload_not_found",
        "offset_mismatch",
        "upload_complete",
        "checksum_mismatch",
        "checksum_invalid",
        "length_required",
        "content_type_invalid",
        "body_incomplete",
        "too_large",
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
        by_tus >= 40,
        "only {by_tus} of 500 scenarios complete by tus"
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

/// tus and chunks on one URL are one upload (docs/protocol.md#tus-100), step
/// by step: a chunk opens the session for `HEAD`; a creation takes the
/// length; wrong offsets, checksums and cut-off bodies store nothing; the
/// streamed append that stores the last byte completes the file once; after
/// that every request replays the final offset or the File.
#[test]
fn tus_and_chunks_make_one_upload() {
    let append = |offset, len, delivery, checksum| Op::TusAppend {
        offset,
        len,
        delivery,
        total: Total::Unknown,
        checksum,
        content_type: true,
    };
    let create = |total, body| Op::TusCreate {
        total,
        body,
        delivery: TusBody::Full,
        content_type: true,
    };
    let streamed = TusBody::Streamed { pieces: 2 };
    let cut_off = TusBody::CutOff {
        after: 3,
        content_length: false,
    };
    use TusOffset::{At, Current};
    let ops = [
        Op::TusHead,
        append(Current, Some(5), TusBody::Full, Checksum::None),
        Op::Chunk {
            first: 10,
            last: 14,
            total: Total::Unknown,
            delivery: Delivery::Full,
            content_length: false,
            digests: Digests::NONE,
        },
        Op::TusHead,
        create(Total::Right, 4),
        create(Total::Other(30), 0),
        append(At(2), Some(3), TusBody::Full, Checksum::None),
        append(Current, Some(6), TusBody::Full, Checksum::Wrong),
        append(Current, Some(6), cut_off, Checksum::None),
        append(Current, Some(6), TusBody::Full, Checksum::Sha1),
        append(Current, Some(2), TusBody::Full, Checksum::Md5),
        append(Current, None, streamed, Checksum::Sha256),
        append(Current, None, streamed, Checksum::None),
        Op::TusHead,
        append(Current, Some(0), TusBody::Full, Checksum::None),
        Op::Chunk {
            first: 0,
            last: 19,
            total: Total::Right,
            delivery: Delivery::Full,
            content_length: false,
            digests: Digests::NONE,
        },
        Op::TusDelete,
        create(Total::Right, 0),
    ];
    let setup = Setup::plain(20, 64);
    let mut model = Model::new(setup);
    let answers: Vec<_> = ops
        .iter()
        .map(|op| {
            let expected = model.apply(op);
            (expected.status, expected.offset)
        })
        .collect();
    assert_eq!(
        answers,
        [
            (404, None),
            (404, None),
            (202, None),
            (200, Some(0)),
            (201, Some(4)),
            (409, None),
            (409, Some(4)),
            (460, None),
            (400, None),
            (204, Some(15)),
            (400, None),
            (411, None),
            (201, Some(20)),
            (200, Some(20)),
            (204, Some(20)),
            (200, None),
            (409, None),
            (201, Some(20)),
        ]
    );
    for &backend in Backend::ALL {
        check_on(backend, setup, &ops);
    }
}

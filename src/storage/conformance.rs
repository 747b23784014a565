//! The storage conformance suite: one `check_*` function per guarantee of the
//! [`Storage`] trait, run against every backend.
//!
//! Every check uses its own paths and session ids, so they can share one store.
//! Sessions outside [`check_purge_removes_expired_keeps_live`] expire a day ahead,
//! so that check can count exactly what cleanup removes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{future, stream, StreamExt};

use super::{
    BodyError, ByteStream, ChunkOptions, ChunkRange, CommitRefused, CompleteOptions, Completion,
    DigestSet, MakeRecord, ReprDigest, Session, SessionStatus, Storage, StorageError, HEAD_LEN,
};
use crate::UploadPath;

const DAY: Duration = Duration::from_secs(24 * 3600);

pub(crate) fn path(path: &str) -> UploadPath {
    UploadPath::new(path).expect("test paths are valid")
}

/// A body made of the given pieces.
pub(crate) fn body(pieces: &[&[u8]]) -> ByteStream {
    let pieces: Vec<_> = pieces
        .iter()
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .collect();
    Box::pin(stream::iter(pieces))
}

/// A body that yields the given pieces, then fails.
pub(crate) fn failing(pieces: &[&[u8]]) -> ByteStream {
    let pieces: Vec<_> = pieces
        .iter()
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .chain([Err(BodyError::aborted())])
        .collect();
    Box::pin(stream::iter(pieces))
}

/// A session id (64 hex digits) for a test number.
pub(crate) fn session(number: u64, file: &str, expires: SystemTime) -> Session {
    Session::new(format!("{number:064x}"), path(file), expires)
}

pub(crate) fn live_session(number: u64, file: &str) -> Session {
    session(number, file, SystemTime::now() + DAY)
}

pub(crate) fn chunk(first: u64, last: u64, total: Option<u64>) -> ChunkRange {
    ChunkRange { first, last, total }
}

/// A record builder that writes `size:etag:head` and counts its calls.
pub(crate) fn make_record(calls: &Arc<AtomicUsize>) -> MakeRecord {
    let calls = Arc::clone(calls);
    Box::new(move |info| {
        calls.fetch_add(1, Ordering::SeqCst);
        let mut record = format!("{}:{}:", info.size, info.etag).into_bytes();
        record.extend_from_slice(&info.head);
        Ok(Bytes::from(record))
    })
}

/// The completion a storage call answered with; panics on anything else.
pub(crate) async fn expect_completed(status: Result<SessionStatus, StorageError>) -> Completion {
    match status.expect("storage call") {
        SessionStatus::Completed(completion) => completion,
        other => panic!("not completed: {other:?}"),
    }
}

/// Completes `session` with default options and a counting record builder
/// whose count nobody looks at; panics unless it completes.
pub(crate) async fn complete_default(storage: &dyn Storage, session: &Session) -> Completion {
    let calls = Arc::new(AtomicUsize::new(0));
    expect_completed(
        storage
            .complete(session, &CompleteOptions::default(), make_record(&calls))
            .await,
    )
    .await
}

pub(crate) async fn read_all(storage: &dyn Storage, file: &str) -> Result<Vec<u8>, StorageError> {
    let read = storage.read(&path(file), None).await?;
    let mut body = read.body;
    let mut out = Vec::new();
    while let Some(piece) = body.next().await {
        out.extend_from_slice(&piece?);
    }
    Ok(out)
}

pub(crate) fn progress(status: &SessionStatus) -> (Option<u64>, Vec<[u64; 2]>) {
    match status {
        SessionStatus::InProgress { total, ranges, .. } => (*total, ranges.as_slice().to_vec()),
        SessionStatus::Completed(_) => panic!("expected a session in progress, got {status:?}"),
    }
}

/// Simple upload, then whole and ranged reads and metadata.
pub(crate) async fn check_put_read_head(storage: &dyn Storage) {
    let file = "conformance/put/nested/a.txt";
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (first, second) = data.split_at(70_000);
    let (meta, head) = storage
        .put(&path(file), body(&[first, second]))
        .await
        .expect("put succeeds");
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(head.as_ref(), &data[..HEAD_LEN]);
    assert_eq!(read_all(storage, file).await.expect("file reads"), data);
    assert_eq!(storage.head(&path(file)).await.expect("head"), meta);

    let read = storage
        .read(&path(file), Some(2..=99_999))
        .await
        .expect("range reads");
    assert_eq!(read.meta, meta);
    let pieces: Vec<_> = read.body.collect().await;
    let ranged: Vec<u8> = pieces
        .into_iter()
        .flat_map(|piece| piece.expect("piece reads").to_vec())
        .collect();
    assert_eq!(ranged, &data[2..100_000]);

    let (small, small_head) = storage
        .put(&path("conformance/put/small"), body(&[b"hi"]))
        .await
        .expect("small put");
    assert_eq!((small.size, small_head.as_ref()), (2, b"hi".as_slice()));

    assert!(matches!(
        storage.head(&path("conformance/put/missing")).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        storage.read(&path("conformance/put/missing"), None).await,
        Err(StorageError::NotFound)
    ));
}

/// A second simple upload replaces the first, with a new entity tag.
pub(crate) async fn check_put_replaces(storage: &dyn Storage) {
    let file = "conformance/replace.txt";
    let (old, _) = storage
        .put(&path(file), body(&[b"old content"]))
        .await
        .expect("first put");
    let (new, _) = storage
        .put(&path(file), body(&[b"new"]))
        .await
        .expect("second put");
    assert_ne!(old.etag, new.etag);
    assert_eq!(read_all(storage, file).await.expect("reads"), b"new");
    assert_eq!(storage.head(&path(file)).await.expect("head"), new);
}

/// A simple upload whose body fails leaves no file, and an older file intact.
pub(crate) async fn check_failed_put_leaves_nothing(storage: &dyn Storage) {
    let fresh = "conformance/failed/new.txt";
    let result = storage.put(&path(fresh), failing(&[b"partial"])).await;
    assert!(matches!(result, Err(StorageError::Body(_))), "{result:?}");
    assert!(matches!(
        storage.head(&path(fresh)).await,
        Err(StorageError::NotFound)
    ));

    let kept = "conformance/failed/kept.txt";
    let (meta, _) = storage
        .put(&path(kept), body(&[b"intact"]))
        .await
        .expect("put");
    let result = storage.put(&path(kept), failing(&[b"broken"])).await;
    assert!(matches!(result, Err(StorageError::Body(_))), "{result:?}");
    assert_eq!(read_all(storage, kept).await.expect("reads"), b"intact");
    assert_eq!(storage.head(&path(kept)).await.expect("head"), meta);
}

/// A session nothing was stored for is in progress with no total and no ranges,
/// and completing it commits nothing.
pub(crate) async fn check_unknown_session(storage: &dyn Storage) {
    let session = live_session(1, "conformance/unknown.bin");
    let status = storage.status(&session).await.expect("status");
    assert_eq!(progress(&status), (None, vec![]));
    let calls = Arc::new(AtomicUsize::new(0));
    let status = storage
        .complete(&session, &CompleteOptions::default(), make_record(&calls))
        .await
        .expect("complete");
    assert_eq!(progress(&status), (None, vec![]));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(matches!(
        storage.head(session.path()).await,
        Err(StorageError::NotFound)
    ));
}

/// Chunks sent out of order assemble, and completion commits the file once.
pub(crate) async fn check_chunks_out_of_order(storage: &dyn Storage) {
    let session = live_session(2, "conformance/chunks/out-of-order.bin");
    let status = storage
        .write_chunk(
            &session,
            chunk(10, 14, Some(15)),
            &ChunkOptions::new(100),
            body(&[b"KLM", b"NO"]),
        )
        .await
        .expect("last chunk");
    assert_eq!(progress(&status), (Some(15), vec![[10, 14]]));
    let status = storage
        .write_chunk(
            &session,
            chunk(0, 4, None),
            &ChunkOptions::new(100),
            body(&[b"ABCDE"]),
        )
        .await
        .expect("first chunk");
    assert_eq!(progress(&status), (Some(15), vec![[0, 4], [10, 14]]));

    let calls = Arc::new(AtomicUsize::new(0));
    let status = storage
        .complete(&session, &CompleteOptions::default(), make_record(&calls))
        .await
        .expect("complete");
    assert_eq!(progress(&status), (Some(15), vec![[0, 4], [10, 14]]));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "incomplete: no record");

    let status = storage
        .write_chunk(
            &session,
            chunk(5, 9, Some(15)),
            &ChunkOptions::new(100),
            body(&[b"F", b"GHIJ"]),
        )
        .await
        .expect("middle chunk");
    assert_eq!(progress(&status), (Some(15), vec![[0, 14]]));
    assert_eq!(
        progress(&storage.status(&session).await.expect("status")),
        (Some(15), vec![[0, 14]])
    );

    let completion = expect_completed(
        storage
            .complete(&session, &CompleteOptions::default(), make_record(&calls))
            .await,
    )
    .await;
    assert!(completion.fresh);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let expected = format!("15:{}:ABCDEFGHIJKLMNO", completion.etag);
    assert_eq!(completion.record, expected.as_bytes());
    assert_eq!(
        read_all(storage, "conformance/chunks/out-of-order.bin")
            .await
            .expect("reads"),
        b"ABCDEFGHIJKLMNO"
    );
    let meta = storage.head(session.path()).await.expect("head");
    assert_eq!((meta.size, meta.etag), (15, completion.etag));
}

/// Chunks that break the session's rules fail and change nothing.
pub(crate) async fn check_chunk_errors(storage: &dyn Storage) {
    let session = live_session(3, "conformance/chunks/errors.bin");
    let result = storage
        .write_chunk(
            &session,
            chunk(0, 10, Some(10)),
            &ChunkOptions::new(100),
            body(&[&[0; 11]]),
        )
        .await;
    assert!(
        matches!(result, Err(StorageError::RangeNotSatisfiable)),
        "{result:?}"
    );

    storage
        .write_chunk(
            &session,
            chunk(0, 4, Some(10)),
            &ChunkOptions::new(100),
            body(&[b"01234"]),
        )
        .await
        .expect("first chunk");
    let result = storage
        .write_chunk(
            &session,
            chunk(5, 9, Some(20)),
            &ChunkOptions::new(100),
            body(&[b"56789"]),
        )
        .await;
    assert!(
        matches!(result, Err(StorageError::TotalMismatch)),
        "{result:?}"
    );
    let result = storage
        .write_chunk(
            &session,
            chunk(8, 10, None),
            &ChunkOptions::new(100),
            body(&[b"89A"]),
        )
        .await;
    assert!(
        matches!(result, Err(StorageError::RangeNotSatisfiable)),
        "{result:?}"
    );
    storage
        .write_chunk(
            &session,
            chunk(6, 6, None),
            &ChunkOptions::new(2),
            body(&[b"6"]),
        )
        .await
        .expect("second range");
    let result = storage
        .write_chunk(
            &session,
            chunk(8, 8, None),
            &ChunkOptions::new(2),
            body(&[b"8"]),
        )
        .await;
    assert!(
        matches!(result, Err(StorageError::TooManyRanges)),
        "{result:?}"
    );
    // A range that bridges the gap is fine under the same limit.
    storage
        .write_chunk(
            &session,
            chunk(5, 5, None),
            &ChunkOptions::new(2),
            body(&[b"5"]),
        )
        .await
        .expect("bridging range");
    assert_eq!(
        progress(&storage.status(&session).await.expect("status")),
        (Some(10), vec![[0, 6]])
    );

    // A total smaller than the bytes already stored is a mismatch too.
    let other = live_session(4, "conformance/chunks/errors-2.bin");
    storage
        .write_chunk(
            &other,
            chunk(10, 19, None),
            &ChunkOptions::new(100),
            body(&[&[1; 10]]),
        )
        .await
        .expect("chunk without total");
    let result = storage
        .write_chunk(
            &other,
            chunk(0, 4, Some(15)),
            &ChunkOptions::new(100),
            body(&[b"01234"]),
        )
        .await;
    assert!(
        matches!(result, Err(StorageError::TotalMismatch)),
        "{result:?}"
    );
    assert_eq!(
        progress(&storage.status(&other).await.expect("status")),
        (None, vec![[10, 19]])
    );
}

/// A chunk whose body fails midway counts for nothing, and does not disturb
/// the bytes the session had already stored.
pub(crate) async fn check_failed_chunk_counts_for_nothing(storage: &dyn Storage) {
    let session = live_session(5, "conformance/chunks/failed.bin");
    storage
        .write_chunk(
            &session,
            chunk(0, 4, Some(10)),
            &ChunkOptions::new(100),
            body(&[b"aaaaa"]),
        )
        .await
        .expect("first chunk");
    let result = storage
        .write_chunk(
            &session,
            chunk(0, 9, None),
            &ChunkOptions::new(100),
            failing(&[b"bbbbbbb"]),
        )
        .await;
    assert!(matches!(result, Err(StorageError::Body(_))), "{result:?}");
    assert_eq!(
        progress(&storage.status(&session).await.expect("status")),
        (Some(10), vec![[0, 4]])
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let status = storage
        .complete(&session, &CompleteOptions::default(), make_record(&calls))
        .await
        .expect("complete");
    assert_eq!(progress(&status), (Some(10), vec![[0, 4]]));

    storage
        .write_chunk(
            &session,
            chunk(5, 9, None),
            &ChunkOptions::new(100),
            body(&[b"ccccc"]),
        )
        .await
        .expect("last chunk");
    let status = storage
        .complete(&session, &CompleteOptions::default(), make_record(&calls))
        .await
        .expect("complete");
    assert!(
        matches!(status, SessionStatus::Completed(ref c) if c.fresh),
        "{status:?}"
    );
    assert_eq!(
        read_all(storage, "conformance/chunks/failed.bin")
            .await
            .expect("reads"),
        b"aaaaaccccc"
    );
}

/// Of many concurrent `complete` calls, exactly one commits; all see one record.
pub(crate) async fn check_complete_exactly_once(storage: &dyn Storage) {
    let session = live_session(6, "conformance/chunks/race.bin");
    let chunks = (0..8u64).map(|i| {
        let piece = vec![b'a' + i as u8; 100];
        storage.write_chunk(
            &session,
            chunk(i * 100, i * 100 + 99, Some(800)),
            &ChunkOptions::new(100),
            body(&[&piece]),
        )
    });
    for result in future::join_all(chunks).await {
        result.expect("parallel chunk");
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let results = future::join_all(
        (0..16)
            .map(|_| storage.complete(&session, &CompleteOptions::default(), make_record(&calls))),
    )
    .await;
    let completions: Vec<_> = results
        .into_iter()
        .map(|result| match result.expect("complete") {
            SessionStatus::Completed(completion) => completion,
            other => panic!("not completed: {other:?}"),
        })
        .collect();
    assert_eq!(completions.iter().filter(|c| c.fresh).count(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    for completion in &completions {
        assert_eq!(completion.record, completions[0].record);
        assert_eq!(completion.etag, completions[0].etag);
    }
    let data = read_all(storage, "conformance/chunks/race.bin")
        .await
        .expect("reads");
    let expected: Vec<u8> = (0..8u8).flat_map(|i| vec![b'a' + i; 100]).collect();
    assert_eq!(data, expected);
    assert_eq!(
        storage.head(session.path()).await.expect("head").etag,
        completions[0].etag
    );
}

/// After completion, a chunk or status query replays the record, and the chunk's
/// body is not read.
pub(crate) async fn check_chunk_after_completion(storage: &dyn Storage) {
    let session = live_session(7, "conformance/chunks/after.bin");
    storage
        .write_chunk(
            &session,
            chunk(0, 3, Some(4)),
            &ChunkOptions::new(100),
            body(&[b"done"]),
        )
        .await
        .expect("chunk");
    let calls = Arc::new(AtomicUsize::new(0));
    let SessionStatus::Completed(first) = storage
        .complete(&session, &CompleteOptions::default(), make_record(&calls))
        .await
        .expect("complete")
    else {
        panic!("not completed");
    };

    let polled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&polled);
    let watched: ByteStream = Box::pin(stream::poll_fn(move |_| {
        flag.store(true, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Bytes::from_static(b"XXXX"))))
    }));
    let status = storage
        .write_chunk(
            &session,
            chunk(0, 3, Some(4)),
            &ChunkOptions::new(100),
            watched,
        )
        .await
        .expect("retried chunk");
    let SessionStatus::Completed(again) = status else {
        panic!("not completed: {status:?}");
    };
    assert!(!again.fresh);
    assert_eq!(
        (again.record, again.etag),
        (first.record.clone(), first.etag.clone())
    );
    assert!(!polled.load(Ordering::SeqCst), "the body was read");

    let status = storage.status(&session).await.expect("status");
    assert!(
        matches!(&status, SessionStatus::Completed(c) if !c.fresh && c.record == first.record),
        "{status:?}"
    );
    let status = storage
        .complete(&session, &CompleteOptions::default(), make_record(&calls))
        .await
        .expect("complete again");
    assert!(
        matches!(&status, SessionStatus::Completed(c) if !c.fresh),
        "{status:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        read_all(storage, "conformance/chunks/after.bin")
            .await
            .expect("reads"),
        b"done"
    );
}

/// Cleanup removes sessions (and records) whose URL expired past the grace
/// period, and keeps live ones and committed files.
pub(crate) async fn check_purge_removes_expired_keeps_live(storage: &dyn Storage) {
    let long_ago = SystemTime::now() - 30 * DAY;
    let expired = session(8, "conformance/purge/expired.bin", long_ago);
    let finished = session(9, "conformance/purge/finished.bin", long_ago);
    let live = live_session(10, "conformance/purge/live.bin");
    for session in [&expired, &finished, &live] {
        storage
            .write_chunk(
                session,
                chunk(0, 1, Some(4)),
                &ChunkOptions::new(100),
                body(&[b"ab"]),
            )
            .await
            .expect("chunk");
    }
    storage
        .write_chunk(
            &finished,
            chunk(2, 3, None),
            &ChunkOptions::new(100),
            body(&[b"cd"]),
        )
        .await
        .expect("chunk");
    let calls = Arc::new(AtomicUsize::new(0));
    let status = storage
        .complete(&finished, &CompleteOptions::default(), make_record(&calls))
        .await
        .expect("complete");
    assert!(matches!(status, SessionStatus::Completed(_)));

    let report = storage
        .purge_expired(SystemTime::now())
        .await
        .expect("purge");
    assert_eq!((report.sessions, report.records), (1, 1), "{report:?}");

    assert_eq!(
        progress(&storage.status(&expired).await.expect("status")),
        (None, vec![])
    );
    assert_eq!(
        progress(&storage.status(&live).await.expect("status")),
        (Some(4), vec![[0, 1]])
    );
    assert_eq!(
        read_all(storage, "conformance/purge/finished.bin")
            .await
            .expect("committed file stays"),
        b"abcd"
    );
    let again = storage
        .purge_expired(SystemTime::now())
        .await
        .expect("purge");
    assert_eq!((again.sessions, again.records), (0, 0), "{again:?}");
}

/// Runs every check against one store.
async fn write(
    storage: &dyn Storage,
    session: &Session,
    range: ChunkRange,
    options: &ChunkOptions,
    bytes: &[u8],
) -> Result<SessionStatus, StorageError> {
    storage
        .write_chunk(session, range, options, body(&[bytes]))
        .await
}

/// A resent range must carry the stored bytes: identical resends are accepted,
/// changed ones (whole or partly overlapping) are `RangeConflict`, count for
/// nothing, and leave the stored bytes as they were.
pub(crate) async fn check_range_conflicts(storage: &dyn Storage) {
    let session = live_session(20, "conformance/conflict/file.bin");
    let options = ChunkOptions::new(100);
    write(storage, &session, chunk(0, 4, Some(15)), &options, b"01234")
        .await
        .expect("first chunk");
    write(storage, &session, chunk(0, 4, Some(15)), &options, b"01234")
        .await
        .expect("identical resend");
    let changed = write(storage, &session, chunk(0, 4, None), &options, b"01x34").await;
    assert!(
        matches!(changed, Err(StorageError::RangeConflict)),
        "{changed:?}"
    );
    // Overlaps the stored [0, 4] with a changed byte at 4, and brings new bytes 5..9.
    let partly = write(storage, &session, chunk(3, 9, None), &options, b"3X56789").await;
    assert!(
        matches!(partly, Err(StorageError::RangeConflict)),
        "{partly:?}"
    );
    assert_eq!(
        progress(&storage.status(&session).await.expect("status")),
        (Some(15), vec![[0, 4]])
    );
    // The same overlap with the right bytes is accepted and stores the new ones.
    write(storage, &session, chunk(3, 9, None), &options, b"3456789")
        .await
        .expect("overlap with equal bytes");
    write(storage, &session, chunk(10, 14, None), &options, b"abcde")
        .await
        .expect("last chunk");
    let calls = Arc::new(AtomicUsize::new(0));
    let status = storage
        .complete(&session, &CompleteOptions::default(), make_record(&calls))
        .await
        .expect("complete");
    assert!(
        matches!(status, SessionStatus::Completed(ref c) if c.fresh),
        "{status:?}"
    );
    assert_eq!(
        read_all(storage, "conformance/conflict/file.bin")
            .await
            .expect("reads"),
        b"0123456789abcde"
    );
}

/// Of overlapping chunks that race with different bytes, the recorded range
/// holds its own bytes, and a loser counts for nothing.
pub(crate) async fn check_racing_conflicts_keep_one_version(storage: &dyn Storage) {
    for round in 0..8u64 {
        let file = format!("conformance/conflict/race-{round}.bin");
        let session = live_session(40 + round, &file);
        let options = ChunkOptions::new(100);
        let versions: Vec<Vec<u8>> = (0..4u8).map(|v| vec![b'a' + v; 64 * 1024]).collect();
        let results = future::join_all(versions.iter().map(|bytes| {
            write(
                storage,
                &session,
                chunk(0, bytes.len() as u64 - 1, Some(bytes.len() as u64)),
                &options,
                bytes,
            )
        }))
        .await;
        let stored: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
        assert!(
            !stored.is_empty(),
            "round {round}: every version failed: {results:?}"
        );
        for result in &results {
            assert!(
                matches!(result, Ok(_) | Err(StorageError::RangeConflict)),
                "round {round}: {result:?}"
            );
        }
        let calls = Arc::new(AtomicUsize::new(0));
        storage
            .complete(&session, &CompleteOptions::default(), make_record(&calls))
            .await
            .expect("complete");
        let bytes = read_all(storage, &file).await.expect("reads");
        let winners: Vec<_> = results
            .iter()
            .zip(&versions)
            .filter(|(result, _)| result.is_ok())
            .map(|(_, version)| version)
            .collect();
        assert!(
            winners.iter().all(|version| **version == bytes),
            "round {round}: the file mixes versions or holds a refused one"
        );
    }
}

/// The first `Repr-Digest` is kept with the session, a different one is
/// `DigestConflict`, and the commit sees the kept one and the digests asked for.
pub(crate) async fn check_repr_digest_and_file_digests(storage: &dyn Storage) {
    use sha2::Digest as _;
    let session = live_session(21, "conformance/digest/file.bin");
    let kept = "sha-256=:LCa0a2j/xo/5m0U8HTBBNBNCLXBkg7+g+YpeiGJm564=:";
    write(
        storage,
        &session,
        chunk(0, 2, Some(5)),
        &ChunkOptions::new(100).repr_digest(ReprDigest::parse(kept).expect("a valid digest")),
        b"hel",
    )
    .await
    .expect("first chunk");
    let status = storage.status(&session).await.expect("status");
    assert!(
        matches!(&status, SessionStatus::InProgress { repr_digest: Some(d), .. } if d.to_string() == kept),
        "status reports the kept Repr-Digest: {status:?}"
    );
    let other = "sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:";
    let conflict = write(
        storage,
        &session,
        chunk(3, 4, None),
        &ChunkOptions::new(100).repr_digest(ReprDigest::parse(other).expect("a valid digest")),
        b"lo",
    )
    .await;
    assert!(
        matches!(conflict, Err(StorageError::DigestConflict)),
        "{conflict:?}"
    );
    write(
        storage,
        &session,
        chunk(3, 4, None),
        &ChunkOptions::new(100),
        b"lo",
    )
    .await
    .expect("chunk without Repr-Digest");
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record: MakeRecord = {
        let seen = Arc::clone(&seen);
        Box::new(move |info| {
            *seen.lock().expect("unpoisoned") = Some(info.clone());
            Ok(Bytes::from_static(b"record"))
        })
    };
    let options = CompleteOptions::new(DigestSet {
        sha256: false,
        sha512: true,
    });
    storage
        .complete(&session, &options, record)
        .await
        .expect("complete");
    let info = seen
        .lock()
        .expect("unpoisoned")
        .take()
        .expect("make_record was called");
    assert_eq!(
        info.repr_digest.map(|d| d.to_string()).as_deref(),
        Some(kept)
    );
    // sha-256 because the kept Repr-Digest names it; sha-512 because it was asked for.
    assert_eq!(
        info.digests.sha256.map(|d| d.to_vec()),
        Some(sha2::Sha256::digest(b"hello").to_vec())
    );
    assert_eq!(
        info.digests.sha512,
        Some(sha2::Sha512::digest(b"hello").to_vec())
    );
}

/// A refused commit commits nothing and discards the session; `discard`
/// removes an incomplete session and leaves a completed one.
pub(crate) async fn check_refused_commit_and_discard(storage: &dyn Storage) {
    let session = live_session(22, "conformance/refused/file.bin");
    let options = ChunkOptions::new(100);
    write(storage, &session, chunk(0, 3, Some(4)), &options, b"zip!")
        .await
        .expect("chunk");
    let refuse: MakeRecord = Box::new(|_| Err(CommitRefused));
    let result = storage
        .complete(&session, &CompleteOptions::default(), refuse)
        .await;
    assert!(
        matches!(result, Err(StorageError::CommitRefused)),
        "{result:?}"
    );
    assert!(matches!(
        read_all(storage, "conformance/refused/file.bin").await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(
        progress(&storage.status(&session).await.expect("status")),
        (None, vec![])
    );
    // The same URL starts afresh.
    write(storage, &session, chunk(0, 3, Some(4)), &options, b"good")
        .await
        .expect("fresh start");
    storage.discard(&session).await.expect("discard");
    assert_eq!(
        progress(&storage.status(&session).await.expect("status")),
        (None, vec![])
    );
    storage
        .discard(&session)
        .await
        .expect("discarding nothing succeeds");
    write(storage, &session, chunk(0, 3, Some(4)), &options, b"good")
        .await
        .expect("fresh start again");
    let calls = Arc::new(AtomicUsize::new(0));
    storage
        .complete(&session, &CompleteOptions::default(), make_record(&calls))
        .await
        .expect("complete");
    storage
        .discard(&session)
        .await
        .expect("discard after completion");
    let status = storage.status(&session).await.expect("status");
    assert!(matches!(status, SessionStatus::Completed(_)), "{status:?}");
    assert_eq!(
        read_all(storage, "conformance/refused/file.bin")
            .await
            .expect("reads"),
        b"good"
    );
}

/// The checks of the trait's policy and integrity guarantees.
pub(crate) async fn run_integrity(storage: &dyn Storage) {
    check_range_conflicts(storage).await;
    check_racing_conflicts_keep_one_version(storage).await;
    check_repr_digest_and_file_digests(storage).await;
    check_refused_commit_and_discard(storage).await;
}

pub(crate) async fn run_all(storage: &dyn Storage) {
    check_put_read_head(storage).await;
    check_put_replaces(storage).await;
    check_failed_put_leaves_nothing(storage).await;
    check_unknown_session(storage).await;
    check_chunks_out_of_order(storage).await;
    check_chunk_errors(storage).await;
    check_failed_chunk_counts_for_nothing(storage).await;
    check_complete_exactly_once(storage).await;
    check_chunk_after_completion(storage).await;
    check_purge_removes_expired_keeps_live(storage).await;
}

//! Simple uploads, sessions, completion and cleanup.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::{future, stream, StreamExt};

use super::*;
use crate::storage::{
    ByteStream, ChunkOptions, CompleteOptions, SessionStatus, Storage, StorageError, HEAD_LEN,
};

/// Simple upload, then whole and ranged reads and metadata.
pub async fn check_put_read_head(storage: &dyn Storage) {
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
pub async fn check_put_replaces(storage: &dyn Storage) {
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
pub async fn check_failed_put_leaves_nothing(storage: &dyn Storage) {
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
pub async fn check_unknown_session(storage: &dyn Storage) {
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

/// A session nothing was stored for completes as a zero-byte file when the
/// completion declares a total of 0 (a status query `bytes */0`), exactly once;
/// another declared total commits nothing.
pub async fn check_empty_session_completes(storage: &dyn Storage) {
    let session = live_session(11, "conformance/empty.bin");
    let calls = Arc::new(AtomicUsize::new(0));
    let declared = |total| CompleteOptions::default().total(Some(total));
    let status = storage
        .complete(&session, &declared(10), make_record(&calls))
        .await
        .expect("complete");
    assert_eq!(progress(&status), (None, vec![]));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let results = future::join_all(
        (0..4).map(|_| storage.complete(&session, &declared(0), make_record(&calls))),
    )
    .await;
    let mut completions = Vec::new();
    for result in results {
        completions.push(expect_completed(result).await);
    }
    assert_eq!(completions.iter().filter(|c| c.fresh).count(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let etag = completions[0].etag.clone();
    assert!(completions.iter().all(|c| c.etag == etag));
    assert_eq!(
        completions[0].record,
        Bytes::from(format!("0:{etag}:").into_bytes())
    );
    let data = read_all(storage, "conformance/empty.bin")
        .await
        .expect("reads");
    assert!(data.is_empty());
    let head = storage.head(session.path()).await.expect("head");
    assert_eq!((head.size, head.etag), (0, etag.clone()));

    // Replays: a status, and a completion that declares nothing.
    let status = storage.status(&session).await.expect("status");
    assert!(
        matches!(&status, SessionStatus::Completed(c) if !c.fresh && c.etag == etag),
        "{status:?}"
    );
    let again = storage
        .complete(&session, &CompleteOptions::default(), make_record(&calls))
        .await;
    assert!(!expect_completed(again).await.fresh);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Chunks sent out of order assemble, and completion commits the file once.
pub async fn check_chunks_out_of_order(storage: &dyn Storage) {
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
pub async fn check_chunk_errors(storage: &dyn Storage) {
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
pub async fn check_failed_chunk_counts_for_nothing(storage: &dyn Storage) {
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
pub async fn check_complete_exactly_once(storage: &dyn Storage) {
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
pub async fn check_chunk_after_completion(storage: &dyn Storage) {
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
pub async fn check_purge_removes_expired_keeps_live(storage: &dyn Storage) {
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

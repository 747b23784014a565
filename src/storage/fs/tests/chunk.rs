//! Chunks: stored bytes never overwritten, resends, conflicts, lengths.

use super::*;
use crate::storage::conformance::{
    chunk, complete_default, expect_completed, failing, live_session, progress, read_all,
};
use crate::storage::fs::chunk::WRITE_BATCH;
use crate::storage::fs::paths::{DATA, JOURNAL, WRITING};
use crate::storage::ReprDigest;
use sha2::{Digest, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_chunk_does_not_overwrite_stored_bytes() {
    let (_folder, storage) = storage();
    let session = live_session(7, "overwrite.bin");
    let size = 3 * WRITE_BATCH as u64;
    storage
        .write_chunk(
            &session,
            chunk(0, WRITE_BATCH as u64 - 1, Some(size)),
            &ChunkOptions::new(10),
            body(&[&vec![b'a'; WRITE_BATCH]]),
        )
        .await
        .expect("first chunk");
    // Equal bytes over the stored range, new ones after it, then a failure.
    let mut wrong = vec![b'a'; WRITE_BATCH];
    wrong.resize(2 * WRITE_BATCH, b'b');
    let result = storage
        .write_chunk(
            &session,
            chunk(0, size - 1, None),
            &ChunkOptions::new(10),
            failing(&[&wrong]),
        )
        .await;
    assert!(matches!(result, Err(StorageError::Body(_))), "{result:?}");
    storage
        .write_chunk(
            &session,
            chunk(WRITE_BATCH as u64, size - 1, None),
            &ChunkOptions::new(10),
            body(&[&vec![b'c'; 2 * WRITE_BATCH]]),
        )
        .await
        .expect("last chunk");
    complete_default(&storage, &session).await;
    let data = read_all(&storage, "overwrite.bin").await.expect("reads");
    assert_eq!(data.len() as u64, size);
    assert!(data[..WRITE_BATCH].iter().all(|b| *b == b'a'));
    assert!(data[WRITE_BATCH..].iter().all(|b| *b == b'c'));
}

#[tokio::test]
async fn body_length_must_match_range() {
    let (_folder, storage) = storage();
    let session = live_session(9, "length.bin");
    for pieces in [&[b"abc".as_slice()][..], &[b"abcdef".as_slice()][..]] {
        let result = storage
            .write_chunk(
                &session,
                chunk(0, 4, Some(5)),
                &ChunkOptions::new(10),
                body(pieces),
            )
            .await;
        assert!(
            matches!(
                result,
                Err(StorageError::Body(BodyError(
                    crate::Error::ContentRangeMismatch
                )))
            ),
            "{result:?}"
        );
    }
    let status = storage.status(&session).await.expect("status");
    assert_eq!(progress(&status), (None, vec![]));
}

fn data_stamp(dir: &Path) -> (u64, i64, i64) {
    let meta = fs::metadata(dir.join(DATA)).expect("data");
    (meta.len(), meta.mtime(), meta.mtime_nsec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_resend_writes_nothing() {
    let (_folder, storage) = storage();
    let session = live_session(20, "resend.bin");
    let dir = session_dir(&storage, &session);
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let range = chunk(1000, 1000 + bytes.len() as u64 - 1, Some(400_000));
    send(&storage, &session, range, &bytes)
        .await
        .expect("first send");
    let stamp = data_stamp(&dir);
    let journal_len = fs::metadata(dir.join(JOURNAL)).expect("journal").len();
    // The data file's mtime moves with any write; give it a chance to show.
    std::thread::sleep(Duration::from_millis(20));
    let pieces: Vec<&[u8]> = bytes.chunks(7777).collect();
    let status = storage
        .write_chunk(&session, range, &ChunkOptions::new(100), body(&pieces))
        .await
        .expect("identical resend");
    assert_eq!(progress(&status), (Some(400_000), vec![[1000, 300_999]]));
    assert_eq!(data_stamp(&dir), stamp, "the resend wrote to the data file");
    assert_eq!(
        fs::metadata(dir.join(JOURNAL)).expect("journal").len(),
        journal_len
    );
    // The same bytes with one changed: refused, still without a write.
    let mut changed = bytes.clone();
    changed[250_000] ^= 1;
    let result = send(&storage, &session, range, &changed).await;
    assert!(
        matches!(result, Err(StorageError::RangeConflict)),
        "{result:?}"
    );
    assert_eq!(data_stamp(&dir), stamp);
    let entries = fs::read_dir(dir.join(WRITING)).map_or(0, |dir| dir.count());
    assert_eq!(entries, 0, "no writer left a marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_repr_digest_survive_a_restart() {
    let folder = tempfile::tempdir().expect("temp dir");
    let session = live_session(21, "restart.bin");
    let kept = "sha-256=:LCa0a2j/xo/5m0U8HTBBNBNCLXBkg7+g+YpeiGJm564=:";
    {
        let first = FsStorage::new(folder.path()).expect("first");
        first
            .write_chunk(
                &session,
                chunk(0, 9, Some(20)),
                &ChunkOptions::new(100)
                    .repr_digest(ReprDigest::parse(kept).expect("a valid digest")),
                body(&[b"0123456789"]),
            )
            .await
            .expect("chunk");
    }
    let second = FsStorage::new(folder.path()).expect("second");
    for (range, bytes) in [
        (chunk(0, 9, None), &b"0123456789"[..]),
        (chunk(5, 14, None), &b"56789abcde"[..]),
    ] {
        let status = send(&second, &session, range, bytes)
            .await
            .expect("equal bytes are accepted");
        assert_eq!(progress(&status).0, Some(20));
    }
    for (range, bytes) in [
        (chunk(0, 9, None), &b"0123456789".map(|b| b ^ 1)[..]),
        (chunk(8, 17, None), &b"89XbcdefgH"[..]),
        (chunk(10, 14, None), &b"abcdE"[..]),
    ] {
        let result = send(&second, &session, range, bytes).await;
        assert!(
            matches!(result, Err(StorageError::RangeConflict)),
            "{range:?}: {result:?}"
        );
    }
    // Another Repr-Digest is refused before the body is read.
    let polled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&polled);
    let watched: ByteStream = Box::pin(stream::poll_fn(move |_| {
        flag.store(true, Ordering::SeqCst);
        std::task::Poll::Ready(Some(Ok(Bytes::from_static(b"fghij"))))
    }));
    let other = "sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:";
    let result = second
        .write_chunk(
            &session,
            chunk(15, 19, None),
            &ChunkOptions::new(100).repr_digest(ReprDigest::parse(other).expect("a valid digest")),
            watched,
        )
        .await;
    assert!(
        matches!(result, Err(StorageError::DigestConflict)),
        "{result:?}"
    );
    assert!(!polled.load(Ordering::SeqCst), "the body was read");
    assert_eq!(
        progress(&second.status(&session).await.expect("status")),
        (Some(20), vec![[0, 14]])
    );
    send(&second, &session, chunk(15, 19, None), b"fghij")
        .await
        .expect("last chunk");
    let seen = Arc::new(Mutex::new(None));
    let record: MakeRecord = {
        let seen = Arc::clone(&seen);
        Box::new(move |info| {
            *seen.lock().expect("unpoisoned") = Some(info.clone());
            Ok(Bytes::from_static(b"record"))
        })
    };
    expect_completed(
        second
            .complete(&session, &CompleteOptions::default(), record)
            .await,
    )
    .await;
    let info = seen.lock().expect("unpoisoned").take().expect("called");
    assert_eq!(
        info.repr_digest.map(|d| d.to_string()).as_deref(),
        Some(kept)
    );
    assert_eq!(
        info.digests.sha256.map(|d| d.to_vec()),
        Some(Sha256::digest(b"0123456789abcdefghij").to_vec())
    );
    assert_eq!(info.digests.sha512, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarded_session_is_not_resurrected_by_a_late_writer() {
    let (_folder, storage) = storage();
    let session = live_session(25, "discarded.bin");
    let (tx, mut polls, late) = spawn_chunk(&storage, &session, chunk(0, 9, Some(10)));
    wait_for_poll(&mut polls, 0).await;
    storage.discard(&session).await.expect("discard");
    // The same URL starts afresh meanwhile.
    send(&storage, &session, chunk(5, 9, Some(10)), b"FGHIJ")
        .await
        .expect("fresh chunk");
    tx.send(Ok(Bytes::from_static(b"abcdefghij")))
        .expect("send");
    drop(tx);
    let result = late.await.expect("task");
    assert!(result.is_err(), "{result:?}");
    assert_eq!(
        progress(&storage.status(&session).await.expect("status")),
        (Some(10), vec![[5, 9]])
    );
    send(&storage, &session, chunk(0, 4, None), b"ABCDE")
        .await
        .expect("first half");
    complete_default(&storage, &session).await;
    assert_eq!(
        read_all(&storage, "discarded.bin").await.expect("reads"),
        b"ABCDEFGHIJ"
    );
    // No half-removed folder is left behind.
    let tmp = storage.root().join(HIDDEN).join(TMP);
    assert_eq!(fs::read_dir(tmp).expect("tmp").count(), 0);
}

/// Throughput of one 1 GiB session sent in 16 MiB chunks (256 KiB body
/// pieces), then completed. Run with
/// `cargo test --release --lib fs::tests::chunk::throughput_1gib -- --ignored --nocapture`;
/// `THROUGHPUT_DIR=/dev/shm` measures on tmpfs, without the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn throughput_1gib_session_in_16mib_chunks() {
    const TOTAL: u64 = 1 << 30;
    const CHUNK: u64 = 16 << 20;
    const PIECE: usize = 256 << 10;
    let _folder = match std::env::var_os("THROUGHPUT_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let storage = FsStorage::new(_folder.path()).expect("storage");
    let pattern: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let pieces: Vec<Bytes> = pattern.chunks(PIECE).map(Bytes::copy_from_slice).collect();
    let session = live_session(77, "throughput.bin");
    let started = std::time::Instant::now();
    for first in (0..TOTAL).step_by(CHUNK as usize) {
        let body: ByteStream = Box::pin(stream::iter(pieces.clone().into_iter().map(Ok)));
        storage
            .write_chunk(
                &session,
                chunk(first, first + CHUNK - 1, Some(TOTAL)),
                &ChunkOptions::new(10),
                body,
            )
            .await
            .expect("chunk");
    }
    let written = started.elapsed();
    complete_default(&storage, &session).await;
    let total = started.elapsed();
    let mib = (TOTAL >> 20) as f64;
    println!(
        "1 GiB in 16 MiB chunks: chunks {:.0} MiB/s ({written:?}), with completion {:.0} MiB/s ({total:?})",
        mib / written.as_secs_f64(),
        mib / total.as_secs_f64()
    );
}

//! Chunk writers in flight whose ranges meet.

use super::*;
use crate::storage::conformance::{chunk, failing, live_session, progress};
use crate::storage::fs::paths::{DATA, WRITING};
use crate::storage::fs::writers::encode_range;
use crate::storage::ByteRanges;
use futures_util::StreamExt;

/// A body of `bytes` in 64 KiB pieces that yields between pieces.
fn slow_body(bytes: Vec<u8>) -> ByteStream {
    let pieces: Vec<Bytes> = bytes
        .chunks(64 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();
    Box::pin(stream::iter(pieces).then(|piece| async move {
        tokio::task::yield_now().await;
        Ok(piece)
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_instances_keep_one_version() {
    let folder = tempfile::tempdir().expect("temp dir");
    let instances = [
        FsStorage::new(folder.path()).expect("first"),
        FsStorage::new(folder.path()).expect("second"),
    ];
    const MIB: u64 = 1 << 20;
    let total = 2 * MIB;
    let mut outcomes = [0usize; 5];
    for round in 0..16u64 {
        let session = live_session(3000 + round, "race/versions.bin");
        // Overlapping ranges, each two batches long, with different bytes.
        let writers: Vec<(ChunkRange, Vec<u8>)> = (0..4u64)
            .map(|w| {
                let first = (w * MIB / 8 + round * 4099) % (MIB / 2);
                let last = (first + MIB + MIB / 8 + w * 12_345).min(total - 1);
                let bytes = (first..=last)
                    .map(|at| (at as u8) ^ (w as u8 + 1).wrapping_mul(37))
                    .collect();
                (chunk(first, last, Some(total)), bytes)
            })
            .collect();
        let tasks: Vec<_> = writers
            .iter()
            .enumerate()
            .map(|(w, (range, bytes))| {
                let storage = instances[w % 2].clone();
                let (session, range, bytes) = (session.clone(), *range, bytes.clone());
                tokio::spawn(async move {
                    storage
                        .write_chunk(&session, range, &ChunkOptions::new(10), slow_body(bytes))
                        .await
                })
            })
            .collect();
        let mut recorded = Vec::new();
        for (task, writer) in tasks.into_iter().zip(&writers) {
            match task.await.expect("task") {
                Ok(_) => recorded.push(writer),
                Err(StorageError::RangeConflict) => {}
                Err(error) => panic!("round {round}: {error:?}"),
            }
        }
        outcomes[recorded.len()] += 1;
        let dir = session_dir(&instances[0], &session);
        let data = fs::read(dir.join(DATA)).expect("data");
        for (range, bytes) in &recorded {
            let stored = &data[range.first as usize..=range.last as usize];
            assert!(
                stored == &bytes[..],
                "round {round}: {range:?} not its own bytes"
            );
        }
        // Different bytes everywhere they overlap: at most one is recorded
        // where they meet.
        for (i, (a, _)) in recorded.iter().enumerate() {
            for (b, _) in &recorded[i + 1..] {
                assert!(a.last < b.first || b.last < a.first, "round {round}");
            }
        }
        let status = instances[1].status(&session).await.expect("status");
        let expected = ByteRanges::from_ranges(recorded.iter().map(|(r, _)| [r.first, r.last]));
        assert_eq!(progress(&status).1, expected.as_slice(), "round {round}");
        assert_eq!(
            fs::read_dir(dir.join(WRITING)).expect("writing").count(),
            0,
            "round {round}: markers left"
        );
    }
    // How many rounds recorded 0, 1, 2… of the four chunks.
    println!("racing instances: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_overlap_with_a_writer_in_flight() {
    const MIB: usize = 1 << 20;
    let (_folder, storage) = storage();
    let options = ChunkOptions::new(10);

    // 1. The in-flight writer loses to a chunk recorded meanwhile: its later
    //    bytes meet the recorded range and are compared.
    let session = live_session(22, "inflight/a.bin");
    let (tx, mut polls, slow) = spawn_chunk(&storage, &session, chunk(0, 3 * MIB as u64 - 1, None));
    for _ in 0..2 {
        tx.send(Ok(Bytes::from(vec![b'a'; MIB]))).expect("send");
    }
    wait_for_poll(&mut polls, 2).await;
    let fast = chunk(MIB as u64, 4 * MIB as u64 - 1, Some(4 * MIB as u64));
    send(&storage, &session, fast, &vec![b'b'; 3 * MIB])
        .await
        .expect("the overlapping chunk is recorded");
    tx.send(Ok(Bytes::from(vec![b'a'; MIB]))).expect("send");
    drop(tx);
    let result = slow.await.expect("task");
    assert!(
        matches!(result, Err(StorageError::RangeConflict)),
        "{result:?}"
    );
    let dir = session_dir(&storage, &session);
    let data = fs::read(dir.join(DATA)).expect("data");
    assert!(data[MIB..].iter().all(|b| *b == b'b'));
    assert_eq!(
        progress(&storage.status(&session).await.expect("status")).1,
        vec![[MIB as u64, 4 * MIB as u64 - 1]]
    );

    // 2. A writer whose bytes are all written but not yet recorded loses
    //    them to a later chunk recorded first; it must not be recorded.
    // 3. Nor when the later writer fails instead of being recorded.
    for later_fails in [false, true] {
        let session = live_session(23 + u64::from(later_fails), "inflight/b.bin");
        let (tx, mut polls, slow) = spawn_chunk(
            &storage,
            &session,
            chunk(MIB as u64, 4 * MIB as u64 - 1, None),
        );
        for _ in 0..3 {
            tx.send(Ok(Bytes::from(vec![b'b'; MIB]))).expect("send");
        }
        wait_for_poll(&mut polls, 3).await;
        let range = chunk(0, 2 * MIB as u64 - 1, Some(4 * MIB as u64));
        if later_fails {
            let result = storage
                .write_chunk(
                    &session,
                    range,
                    &options,
                    failing(&[&vec![b'c'; 3 * MIB / 2]]),
                )
                .await;
            assert!(matches!(result, Err(StorageError::Body(_))), "{result:?}");
        } else {
            send(&storage, &session, range, &vec![b'c'; 2 * MIB])
                .await
                .expect("the later chunk is recorded");
        }
        drop(tx);
        let result = slow.await.expect("task");
        assert!(
            matches!(result, Err(StorageError::RangeConflict)),
            "later fails: {later_fails}: {result:?}"
        );
        let expected = if later_fails {
            vec![]
        } else {
            vec![[0, 2 * MIB as u64 - 1]]
        };
        assert_eq!(
            progress(&storage.status(&session).await.expect("status")).1,
            expected
        );
        // Resent alone, the refused chunk goes through.
        send(
            &storage,
            &session,
            chunk(2 * MIB as u64, 4 * MIB as u64 - 1, Some(4 * MIB as u64)),
            &vec![b'b'; 2 * MIB],
        )
        .await
        .expect("resent alone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_marker_of_a_dead_writer_is_dropped() {
    let (_folder, storage) = storage();
    let session = live_session(27, "stale.bin");
    send(&storage, &session, chunk(0, 4, Some(10)), b"abcde")
        .await
        .expect("chunk");
    let dir = session_dir(&storage, &session);
    // What a writer killed mid-chunk leaves: a marker nobody locks.
    let stale = dir.join(WRITING).join("w-dead");
    fs::write(&stale, encode_range(chunk(0, 9, None))).expect("marker");
    send(&storage, &session, chunk(3, 9, None), b"deFGHIJ")
        .await
        .expect("chunk");
    assert!(!stale.exists());
    assert_eq!(fs::read_dir(dir.join(WRITING)).expect("dir").count(), 0);
}

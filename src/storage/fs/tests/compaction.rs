//! Journal compaction: bounded by distinct ranges, crash-safe, and safe
//! against writers and other instances appending meanwhile.

use super::*;
use crate::storage::conformance::{chunk, complete_default, live_session, progress, read_all};
use crate::storage::fs::journal::ENTRY_LEN;
use crate::storage::fs::paths::{JOURNAL, JOURNAL_TMP};

/// The most a journal may hold for `ranges` distinct ranges (see `SLACK`).
fn bound(ranges: usize) -> u64 {
    ((2 * ranges + 64 + 1) * ENTRY_LEN) as u64
}

fn journal_len(storage: &FsStorage, session: &Session) -> u64 {
    fs::metadata(session_dir(storage, session).join(JOURNAL))
        .expect("journal")
        .len()
}

fn byte_at(offset: u64) -> u8 {
    b'a' + (offset % 26) as u8
}

#[tokio::test]
async fn many_one_byte_chunks_keep_the_journal_bounded_by_ranges() {
    const TOTAL: u64 = 20_000;
    let (folder, storage) = storage();
    let session = live_session(40, "many.bin");
    let mut largest = 0;
    // Byte 100 comes last: until then the session holds two ranges.
    for offset in (0..TOTAL).filter(|offset| *offset != 100) {
        let total = (offset == 0).then_some(TOTAL);
        send(
            &storage,
            &session,
            chunk(offset, offset, total),
            &[byte_at(offset)],
        )
        .await
        .expect("chunk");
        largest = largest.max(journal_len(&storage, &session));
    }
    assert!(largest <= bound(2), "the journal grew to {largest} bytes");

    // Another instance on the folder (a restart) replays the same state.
    let reopened = FsStorage::new(folder.path()).expect("storage");
    let status = reopened.status(&session).await.expect("status");
    assert_eq!(
        progress(&status),
        (Some(TOTAL), vec![[0, 99], [101, TOTAL - 1]])
    );

    // A resend of a chunk recorded before compaction is compared with the
    // data file: the same byte is accepted, another one refused.
    send(&reopened, &session, chunk(7, 7, None), &[byte_at(7)])
        .await
        .expect("the same byte again");
    let conflict = send(&reopened, &session, chunk(7, 7, None), b"!").await;
    assert!(
        matches!(conflict, Err(StorageError::RangeConflict)),
        "{conflict:?}"
    );

    send(&reopened, &session, chunk(100, 100, None), &[byte_at(100)])
        .await
        .expect("the last byte");
    assert!(journal_len(&reopened, &session) <= bound(1));
    let completion = complete_default(&reopened, &session).await;
    assert!(completion.fresh);
    let stored = read_all(&reopened, "many.bin").await.expect("reads");
    let expected: Vec<u8> = (0..TOTAL).map(byte_at).collect();
    assert!(stored == expected, "the file differs");
}

#[tokio::test]
async fn an_interrupted_compaction_leaves_a_readable_journal() {
    let (_folder, storage) = storage();
    let session = live_session(41, "crash.bin");
    let dir = session_dir(&storage, &session);
    send(&storage, &session, chunk(0, 0, Some(300)), b"a")
        .await
        .expect("chunk");
    // A crash while the compacted journal was written aside: a torn file is
    // left beside the journal, which is ignored...
    fs::write(dir.join(JOURNAL_TMP), b"half an entry").expect("leftover");
    let status = storage.status(&session).await.expect("status");
    assert_eq!(progress(&status), (Some(300), vec![[0, 0]]));
    // ... and replaced by the next compaction.
    for offset in 1..200 {
        send(
            &storage,
            &session,
            chunk(offset, offset, None),
            &[byte_at(offset)],
        )
        .await
        .expect("chunk");
    }
    assert!(!dir.join(JOURNAL_TMP).exists(), "the leftover is gone");
    assert!(journal_len(&storage, &session) <= bound(1));
    let status = storage.status(&session).await.expect("status");
    assert_eq!(progress(&status), (Some(300), vec![[0, 199]]));

    // A crash after the compacted journal was written whole, before the
    // rename: the old journal still counts, the copy is ignored.
    let journal = fs::read(dir.join(JOURNAL)).expect("journal");
    fs::write(dir.join(JOURNAL_TMP), &journal[..ENTRY_LEN]).expect("copy");
    send(&storage, &session, chunk(200, 299, None), &[b'z'; 100])
        .await
        .expect("chunk");
    let status = storage.status(&session).await.expect("status");
    assert_eq!(progress(&status), (Some(300), vec![[0, 299]]));
    assert!(complete_default(&storage, &session).await.fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_from_two_instances_racing_compactions_are_all_kept() {
    const PER_TASK: u64 = 400;
    let (folder, first) = storage();
    let second = FsStorage::new(folder.path()).expect("storage");
    let session = live_session(42, "race.bin");
    // Four tasks, two on each instance, each sending one-byte chunks of its
    // own stride: the session holds many ranges, appends interleave with
    // compactions, and every answered chunk must stay recorded.
    let mut tasks = Vec::new();
    for task in 0..4u64 {
        let storage = if task % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for index in 0..PER_TASK {
                let offset = index * 4 + task;
                let options = ChunkOptions::new(10_000);
                let range = chunk(offset, offset, None);
                storage
                    .write_chunk(&session, range, &options, body(&[&[byte_at(offset)]]))
                    .await
                    .expect("chunk");
                sent.push(offset);
                // Each answered chunk is recorded, whatever was compacted.
                let status = storage.status(&session).await.expect("status");
                let SessionStatus::InProgress { ranges, .. } = status else {
                    panic!("not in progress");
                };
                assert!(sent.iter().all(|offset| ranges.contains(*offset, *offset)));
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("in time")
            .expect("task");
    }
    let status = first.status(&session).await.expect("status");
    assert_eq!(progress(&status), (None, vec![[0, 4 * PER_TASK - 1]]));
    assert!(journal_len(&first, &session) <= bound(1));
}

#[tokio::test]
async fn a_writer_admitted_before_a_compaction_reads_the_new_journal() {
    const MIB: usize = 1024 * 1024;
    let (folder, storage) = storage();
    let other = FsStorage::new(folder.path()).expect("storage");
    let session = live_session(43, "writer.bin");
    let total = 2 * MIB as u64;
    // A writer of the whole file is admitted; its body waits.
    let (tx, mut polls, task) = spawn_chunk(&storage, &session, chunk(0, total - 1, Some(total)));
    wait_for_poll(&mut polls, 0).await;
    // Meanwhile another instance records one-byte chunks inside its range:
    // first 100 that agree with the writer's bytes, enough to compact the
    // journal the writer opened; then 200 that do not, in the new journal.
    for offset in 0..100 {
        send(&other, &session, chunk(offset, offset, None), b"#")
            .await
            .expect("chunk");
    }
    let start = total - 300;
    for offset in start..start + 200 {
        send(
            &other,
            &session,
            chunk(offset, offset, None),
            &[byte_at(offset)],
        )
        .await
        .expect("chunk");
    }
    let dir = session_dir(&storage, &session);
    assert!(journal_len(&storage, &session) <= bound(1), "compacted");
    assert!(!dir.join(JOURNAL_TMP).exists());
    // The writer sends other bytes over them: the recorded bytes are
    // compared, never overwritten, and the writer is refused.
    tx.send(Ok(Bytes::from(vec![b'#'; MIB]))).expect("send");
    tx.send(Ok(Bytes::from(vec![b'#'; MIB]))).expect("send");
    drop(tx);
    let result = tokio::time::timeout(WAIT, task)
        .await
        .expect("in time")
        .expect("task");
    assert!(
        matches!(result, Err(StorageError::RangeConflict)),
        "{result:?}"
    );
    let data = fs::read(dir.join(crate::storage::fs::paths::DATA)).expect("data");
    let recorded: Vec<u8> = (start..start + 200).map(byte_at).collect();
    let start = start as usize;
    assert!(
        data[start..start + 200] == recorded[..],
        "recorded bytes were overwritten"
    );
}

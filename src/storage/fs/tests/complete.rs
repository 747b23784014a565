//! Completion: once, across tasks and instances, rolled forward after a crash.

use super::*;
use crate::storage::conformance::{
    chunk, complete_default, expect_completed, live_session, make_record, progress, read_all,
};
use crate::storage::fs::file::etag_of;
use crate::storage::fs::paths::{DATA, JOURNAL, WRITING};
use crate::storage::fs::record::{write_record, StoredRecord};
use std::sync::atomic::{AtomicUsize, Ordering};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_record_and_rename_rolls_forward() {
    let (folder, storage) = storage();
    let session = live_session(4, "rolled/forward.bin");
    storage
        .write_chunk(
            &session,
            chunk(0, 4, Some(5)),
            &ChunkOptions::new(10),
            body(&[b"hello"]),
        )
        .await
        .expect("chunk");
    // What a commit leaves when killed right after writing its record.
    let dir = session_dir(&storage, &session);
    let meta = fs::metadata(dir.join(DATA)).expect("data");
    let record = StoredRecord {
        etag: etag_of(&meta),
        path: session.path().as_str().to_owned(),
        record: Bytes::from_static(b"the record"),
    };
    write_record(&dir, &record).expect("record");
    assert!(!folder.path().join("rolled/forward.bin").exists());

    let completion = expect_completed(storage.status(&session).await).await;
    assert!(!completion.fresh);
    assert_eq!(completion.record, "the record");
    assert_eq!(
        fs::read(folder.path().join("rolled/forward.bin")).expect("file"),
        b"hello"
    );
    assert!(!dir.join(DATA).exists());
    let head = storage.head(session.path()).await.expect("head");
    assert_eq!(head.etag, record.etag);

    // A later completion replays it and does not call make_record.
    let calls = Arc::new(AtomicUsize::new(0));
    let again = expect_completed(
        storage
            .complete(&session, &CompleteOptions::default(), make_record(&calls))
            .await,
    )
    .await;
    assert!(!again.fresh);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_completions_commit_once() {
    let (_folder, storage) = storage();
    for round in 0..100u64 {
        let session = live_session(1000 + round, "race/file.bin");
        let content = format!("round {round:03}");
        storage
            .write_chunk(
                &session,
                chunk(0, content.len() as u64 - 1, Some(content.len() as u64)),
                &ChunkOptions::new(10),
                body(&[content.as_bytes()]),
            )
            .await
            .expect("chunk");
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (storage, session) = (storage.clone(), session.clone());
                let record = make_record(&calls);
                tokio::spawn(async move {
                    storage
                        .complete(&session, &CompleteOptions::default(), record)
                        .await
                })
            })
            .collect();
        let mut fresh = 0;
        let mut records = Vec::new();
        for task in tasks {
            let completion = tokio::time::timeout(WAIT, task)
                .await
                .expect("in time")
                .expect("task");
            let completion = expect_completed(completion).await;
            fresh += usize::from(completion.fresh);
            records.push(completion.record);
        }
        assert_eq!(fresh, 1, "round {round}");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "round {round}");
        assert!(records.iter().all(|record| *record == records[0]));
        assert_eq!(
            read_all(&storage, "race/file.bin").await.expect("reads"),
            content.as_bytes()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_session() {
    let folder = tempfile::tempdir().expect("temp dir");
    let first = FsStorage::new(folder.path()).expect("first");
    let second = FsStorage::new(folder.path()).expect("second");
    let session = live_session(5, "shared/file.bin");
    let data: Vec<u8> = (0..100u8).collect();
    for (i, piece) in data.chunks(10).enumerate() {
        let storage = if i % 2 == 0 { &first } else { &second };
        let at = i as u64 * 10;
        let status = storage
            .write_chunk(
                &session,
                chunk(at, at + 9, Some(100)),
                &ChunkOptions::new(100),
                body(&[piece]),
            )
            .await
            .expect("chunk");
        assert_eq!(progress(&status), (Some(100), vec![[0, at + 9]]));
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, b) = tokio::join!(
        first.complete(&session, &CompleteOptions::default(), make_record(&calls)),
        second.complete(&session, &CompleteOptions::default(), make_record(&calls))
    );
    let (a, b) = (expect_completed(a).await, expect_completed(b).await);
    assert!(a.fresh != b.fresh, "exactly one commits");
    assert_eq!(a.record, b.record);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        read_all(&second, "shared/file.bin").await.expect("reads"),
        data
    );
    assert_eq!(
        second.head(session.path()).await.expect("head").etag,
        a.etag
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_streaming_during_commit_does_not_touch_the_file() {
    let (_folder, storage) = storage();
    let session = live_session(8, "sealed.bin");
    let (tx, mut polls, late) = spawn_chunk(&storage, &session, chunk(0, 9, Some(10)));
    // The late chunk is admitted and waits for its body.
    wait_for_poll(&mut polls, 0).await;
    storage
        .write_chunk(
            &session,
            chunk(0, 9, Some(10)),
            &ChunkOptions::new(10),
            body(&[b"0123456789"]),
        )
        .await
        .expect("chunk");
    let completion = complete_default(&storage, &session).await;
    assert!(completion.fresh);

    tx.send(Ok(Bytes::from_static(b"XXXXXXXXXX")))
        .expect("send");
    drop(tx);
    let late = tokio::time::timeout(WAIT, late)
        .await
        .expect("in time")
        .expect("task");
    let late = expect_completed(late).await;
    assert!(!late.fresh);
    assert_eq!(
        read_all(&storage, "sealed.bin").await.expect("reads"),
        b"0123456789"
    );
    assert_eq!(
        storage.head(session.path()).await.expect("head").etag,
        completion.etag
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commit_removes_the_session_whole() {
    let (_folder, storage) = storage();
    let session = live_session(26, "refused.bin");
    send(&storage, &session, chunk(0, 3, Some(4)), b"zip!")
        .await
        .expect("chunk");
    let refuse: MakeRecord = Box::new(|_| Err(crate::storage::CommitRefused));
    let result = storage
        .complete(&session, &CompleteOptions::default(), refuse)
        .await;
    assert!(
        matches!(result, Err(StorageError::CommitRefused)),
        "{result:?}"
    );
    assert!(!session_dir(&storage, &session).exists());
    // A removal interrupted by a crash leaves a renamed folder, which no
    // session call reads and cleanup removes.
    let gone = storage.root().join(HIDDEN).join(TMP).join("gone-0123");
    fs::create_dir_all(gone.join(WRITING)).expect("leftover");
    fs::write(gone.join(JOURNAL), b"x").expect("leftover");
    let report = storage
        .purge_expired(SystemTime::now())
        .await
        .expect("purge");
    assert_eq!(report.temporaries, 1);
    assert!(!gone.exists());
}

//! Cleanup of temporaries and expired sessions.

use super::*;
use crate::storage::conformance::chunk;
use crate::storage::fs::file::etag_of;
use crate::storage::fs::paths::DATA;
use crate::storage::fs::record::{write_record, StoredRecord};
use std::fs::File;

#[tokio::test]
async fn purge_removes_old_temporaries_only() {
    let (_folder, storage) = storage();
    let tmp = storage.root().join(HIDDEN).join(TMP);
    let old = File::create(tmp.join("put-old.part")).expect("old");
    old.set_modified(SystemTime::now() - Duration::from_secs(2 * 3600))
        .expect("mtime");
    fs::write(tmp.join("put-new.part"), b"x").expect("new");
    let report = storage
        .purge_expired(SystemTime::now())
        .await
        .expect("purge");
    assert_eq!(report.temporaries, 1);
    assert!(!tmp.join("put-old.part").exists());
    assert!(tmp.join("put-new.part").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_finishes_an_interrupted_commit_before_removing() {
    let (folder, storage) = storage();
    let session = conformance::session(
        10,
        "late/commit.bin",
        SystemTime::now() - 30 * Duration::from_secs(86_400),
    );
    storage
        .write_chunk(
            &session,
            chunk(0, 1, Some(2)),
            &ChunkOptions::new(10),
            body(&[b"ok"]),
        )
        .await
        .expect("chunk");
    let dir = session_dir(&storage, &session);
    let meta = fs::metadata(dir.join(DATA)).expect("data");
    let record = StoredRecord {
        etag: etag_of(&meta),
        path: session.path().as_str().to_owned(),
        record: Bytes::from_static(b"r"),
    };
    write_record(&dir, &record).expect("record");
    let report = storage
        .purge_expired(SystemTime::now())
        .await
        .expect("purge");
    assert_eq!((report.sessions, report.records), (0, 1));
    assert!(!dir.exists());
    assert_eq!(
        fs::read(folder.path().join("late/commit.bin")).expect("file"),
        b"ok"
    );
}

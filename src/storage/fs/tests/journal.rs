//! The journal after a crash.

use super::*;
use crate::storage::conformance::{chunk, complete_default, live_session, progress, read_all};
use crate::storage::fs::journal::{encode_entry, Entry, ENTRY_LEN};
use crate::storage::fs::paths::JOURNAL;
use std::fs::OpenOptions;
use std::io::Write;

#[tokio::test]
async fn torn_journal_tail_is_ignored() {
    let (_folder, storage) = storage();
    let session = live_session(6, "torn.bin");
    storage
        .write_chunk(
            &session,
            chunk(0, 3, Some(12)),
            &ChunkOptions::new(10),
            body(&[b"abcd"]),
        )
        .await
        .expect("chunk");
    let journal = session_dir(&storage, &session).join(JOURNAL);
    // A torn entry: a crash midway through an append.
    let torn = &encode_entry(Entry {
        range: chunk(4, 11, None),
        digest: Some(7),
    })[..17];
    let mut file = OpenOptions::new()
        .append(true)
        .open(&journal)
        .expect("journal");
    file.write_all(torn).expect("torn entry");
    drop(file);
    let status = storage.status(&session).await.expect("status");
    assert_eq!(progress(&status), (Some(12), vec![[0, 3]]));

    // The next append replaces the torn tail.
    storage
        .write_chunk(
            &session,
            chunk(8, 11, None),
            &ChunkOptions::new(10),
            body(&[b"ijkl"]),
        )
        .await
        .expect("chunk");
    assert_eq!(
        fs::metadata(&journal).expect("journal").len(),
        2 * ENTRY_LEN as u64
    );
    // A whole entry that fails its checksum is skipped, later ones still count.
    let mut garbage = encode_entry(Entry {
        range: chunk(0, 11, None),
        digest: None,
    });
    garbage[0] ^= 1;
    let mut file = OpenOptions::new()
        .append(true)
        .open(&journal)
        .expect("journal");
    file.write_all(&garbage).expect("garbage");
    drop(file);
    storage
        .write_chunk(
            &session,
            chunk(4, 7, None),
            &ChunkOptions::new(10),
            body(&[b"efgh"]),
        )
        .await
        .expect("chunk");
    let status = storage.status(&session).await.expect("status");
    assert_eq!(progress(&status), (Some(12), vec![[0, 11]]));
    let completion = complete_default(&storage, &session).await;
    assert!(completion.fresh);
    assert_eq!(
        read_all(&storage, "torn.bin").await.expect("reads"),
        b"abcdefghijkl"
    );
}

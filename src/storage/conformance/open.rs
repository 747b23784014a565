//! Sessions opened by a creation (tus, the IETF draft) before their bytes.

use super::*;
use crate::storage::{ChunkOptions, OpenOptions, SessionStatus, Storage, StorageError};

fn opened(status: &SessionStatus) -> (bool, Option<u64>, Option<String>) {
    match status {
        SessionStatus::InProgress {
            opened,
            total,
            metadata,
            ..
        } => (*opened, *total, metadata.clone()),
        SessionStatus::Completed(_) => panic!("the session completed: {status:?}"),
    }
}

/// A creation opens a session with its total and metadata, again with the
/// same total changes nothing, another total is refused; chunks then follow
/// the total, and the session completes as any other.
pub async fn check_open_with_total(storage: &dyn Storage) {
    let session = live_session(60, "conformance/open/sized.bin");
    let never = storage.status(&session).await.expect("status");
    assert_eq!(opened(&never), (false, None, None), "never opened");

    let first = OpenOptions::new().total(6).metadata("filename YS5iaW4=");
    let status = storage.open(&session, &first).await.expect("opens");
    let kept = (true, Some(6), Some("filename YS5iaW4=".to_owned()));
    assert_eq!(opened(&status), kept);
    let status = storage.status(&session).await.expect("status");
    assert_eq!(opened(&status), kept, "status after open");
    assert!(progress(&status).1.is_empty(), "no bytes yet");

    // Again, with the same total, other metadata or none: unchanged.
    let again = OpenOptions::new().total(6).metadata("other");
    let status = storage.open(&session, &again).await.expect("opens again");
    assert_eq!(opened(&status), kept);
    let status = storage
        .open(&session, &OpenOptions::new())
        .await
        .expect("opens again");
    assert_eq!(opened(&status), kept);
    assert!(matches!(
        storage.open(&session, &OpenOptions::new().total(7)).await,
        Err(StorageError::TotalMismatch)
    ));

    // Chunks follow the opened total.
    let options = ChunkOptions::new(16);
    assert!(matches!(
        storage
            .write_chunk(&session, chunk(0, 2, Some(9)), &options, body(&[b"abc"]))
            .await,
        Err(StorageError::TotalMismatch)
    ));
    assert!(matches!(
        storage
            .write_chunk(&session, chunk(4, 6, None), &options, body(&[b"efg"]))
            .await,
        Err(StorageError::RangeNotSatisfiable)
    ));
    storage
        .write_chunk(&session, chunk(0, 2, None), &options, body(&[b"abc"]))
        .await
        .expect("first half");
    let status = storage
        .write_chunk(&session, chunk(3, 5, None), &options, body(&[b"def"]))
        .await
        .expect("second half");
    assert_eq!(progress(&status), (Some(6), vec![[0, 5]]));
    complete_default(storage, &session).await;
    assert_eq!(
        read_all(storage, "conformance/open/sized.bin")
            .await
            .expect("reads"),
        b"abcdef"
    );
    let after = storage.open(&session, &OpenOptions::new().total(6)).await;
    assert!(
        matches!(&after, Ok(SessionStatus::Completed(done)) if !done.fresh),
        "open after completion: {after:?}"
    );
}

/// A creation that defers the length: opened with no total; the chunk that
/// names it sets it.
pub async fn check_open_deferred(storage: &dyn Storage) {
    let session = live_session(61, "conformance/open/deferred.bin");
    let status = storage
        .open(&session, &OpenOptions::new())
        .await
        .expect("opens");
    assert_eq!(opened(&status), (true, None, None));
    let options = ChunkOptions::new(16);
    let status = storage
        .write_chunk(&session, chunk(0, 3, None), &options, body(&[b"wxyz"]))
        .await
        .expect("a chunk of unknown total");
    assert_eq!(opened(&status), (true, None, None));
    // The total can now be declared, and not below what is stored.
    assert!(matches!(
        storage.open(&session, &OpenOptions::new().total(3)).await,
        Err(StorageError::TotalMismatch)
    ));
    let status = storage
        .write_chunk(&session, chunk(4, 4, Some(5)), &options, body(&[b"!"]))
        .await
        .expect("the last chunk names the total");
    assert_eq!(progress(&status), (Some(5), vec![[0, 4]]));
    complete_default(storage, &session).await;
    assert_eq!(
        read_all(storage, "conformance/open/deferred.bin")
            .await
            .expect("reads"),
        b"wxyz!"
    );
}

/// A session opened with a total of 0 completes as the empty file; a
/// discarded one is no longer opened.
pub async fn check_open_empty_and_discard(storage: &dyn Storage) {
    let empty = live_session(62, "conformance/open/empty.bin");
    storage
        .open(&empty, &OpenOptions::new().total(0))
        .await
        .expect("opens");
    complete_default(storage, &empty).await;
    assert_eq!(
        read_all(storage, "conformance/open/empty.bin")
            .await
            .expect("reads"),
        b""
    );

    let gone = live_session(63, "conformance/open/discarded.bin");
    storage
        .open(&gone, &OpenOptions::new().total(10).metadata("k"))
        .await
        .expect("opens");
    storage.discard(&gone).await.expect("discards");
    let status = storage.status(&gone).await.expect("status");
    assert_eq!(opened(&status), (false, None, None), "discarded");
}

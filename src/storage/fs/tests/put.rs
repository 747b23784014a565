//! Simple uploads leave no temporary file behind.

use super::*;
use crate::storage::conformance::{failing, path};
use crate::storage::fs::chunk::WRITE_BATCH;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_put_leaves_no_temporary() {
    let (folder, storage) = storage();
    let (tx, mut polls, stream) = channel_body();
    tx.send(Ok(Bytes::from(vec![7u8; 2 * WRITE_BATCH])))
        .expect("send");
    let target = path("dropped.bin");
    let mut put = storage.put(&target, stream);
    // Drive the upload until it asks for a second piece: the first was written.
    tokio::select! {
        result = &mut put => panic!("the upload ended: {result:?}"),
        () = wait_for_poll(&mut polls, 1) => {}
    }
    assert_eq!(temporaries(&storage), 1, "the upload is staged");
    drop(put);
    assert_eq!(temporaries(&storage), 0);
    assert!(!folder.path().join("dropped.bin").exists());
    drop(tx);
}

#[tokio::test]
async fn failed_put_leaves_no_temporary() {
    let (_folder, storage) = storage();
    let big = vec![1u8; WRITE_BATCH + 1];
    let result = storage
        .put(&path("failed.bin"), failing(&[&big, &big]))
        .await;
    assert!(matches!(result, Err(StorageError::Body(_))));
    assert_eq!(temporaries(&storage), 0);
}

//! The write pipeline under its buffer budget.

use super::*;
use crate::storage::conformance::{chunk, live_session, make_record, path};
use crate::storage::HEAD_LEN;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Pieces of uneven sizes that add up to `len` bytes of a known pattern.
fn uneven_pieces(len: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let mut pieces = Vec::new();
    let mut at = 0;
    for size in [1usize, 5_000, 65_536, 70_000, 333, 20_480].iter().cycle() {
        if at == len {
            break;
        }
        let end = (at + size).min(len);
        pieces.push(data[at..end].to_vec());
        at = end;
    }
    (data, pieces)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_buffer_budget_still_stores_every_byte_in_order() {
    let folder = tempfile::tempdir().expect("temp dir");
    // No budget at all: every upload writes as it reads, one batch at a time.
    let storage = FsStorage::new(folder.path())
        .expect("storage")
        .buffer_budget(0);
    let (data, pieces) = uneven_pieces(3 * 1024 * 1024 + 17);
    let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
    let (meta, head) = storage
        .put(&path("spent/simple.bin"), body(&refs))
        .await
        .expect("put");
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(head.as_ref(), &data[..HEAD_LEN]);
    assert!(fs::read(folder.path().join("spent/simple.bin")).expect("file") == data);

    let session = live_session(21, "spent/chunked.bin");
    let half = data.len() / 2;
    let total = Some(data.len() as u64);
    for (first, part) in [(half, &data[half..]), (0, &data[..half])] {
        let (_, pieces) = uneven_pieces(part.len());
        let mut at = 0;
        let pieces: Vec<Vec<u8>> = pieces
            .iter()
            .map(|p| {
                at += p.len();
                part[at - p.len()..at].to_vec()
            })
            .collect();
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let last = (first + part.len() - 1) as u64;
        storage
            .write_chunk(
                &session,
                chunk(first as u64, last, total),
                &ChunkOptions::new(10),
                body(&refs),
            )
            .await
            .expect("chunk");
    }
    let calls = Arc::new(AtomicUsize::new(0));
    storage
        .complete(&session, &CompleteOptions::default(), make_record(&calls))
        .await
        .expect("complete");
    assert!(fs::read(folder.path().join("spent/chunked.bin")).expect("file") == data);
    assert_eq!(storage.buffers.held.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gathered_bytes_count_against_the_budget_until_written_or_dropped() {
    let (_folder, storage) = storage();
    let (tx, mut polls, stream) = channel_body();
    let mut put = storage.put(&path("held.bin"), stream);
    tx.send(Ok(Bytes::from(vec![3u8; 1000]))).expect("send");
    // The piece is gathered (a batch is not full yet) while the next is awaited.
    tokio::select! {
        result = &mut put => panic!("the upload ended: {result:?}"),
        () = wait_for_poll(&mut polls, 1) => {}
    }
    // The batch's buffer counts whole (its capacity), at least the piece.
    assert!(storage.buffers.held.load(Ordering::SeqCst) >= 1000);
    drop(put);
    assert_eq!(storage.buffers.held.load(Ordering::SeqCst), 0);
    drop(tx);
}

/// Fails its first call, as `fdatasync` reports a writeback error once per
/// open file description; later calls on the same file succeed.
fn sync_failing_once(file: &fs::File) -> std::io::Result<()> {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(std::io::Error::other("writeback failed"));
    }
    file.sync_data()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_early_sync_fails_the_upload() {
    use crate::storage::fs::pipeline::{Batch, BufferBudget, Pipeline, WRITEBACK_EVERY};
    use std::os::unix::fs::FileExt;

    let file = Arc::new(tempfile::tempfile().expect("file"));
    let budget = Arc::new(BufferBudget::new(usize::MAX));
    let mut pipeline = Pipeline::with_sync(
        Arc::clone(&file),
        Arc::new(crate::storage::fs::threads::WriteThreads::new()),
        sync_failing_once,
    );
    let piece = Bytes::from(vec![7u8; WRITEBACK_EVERY as usize]);
    let mut result = Ok(true);
    // Enough for an early sync after each batch: the first one fails, later
    // ones (and the caller's final sync) would succeed.
    for index in 0..3u64 {
        let mut batch = Batch::new(Arc::clone(&budget), WRITEBACK_EVERY as usize);
        batch.push(piece.clone());
        let at = index * WRITEBACK_EVERY;
        let file = Arc::clone(&file);
        result = pipeline
            .write(&mut batch, move |batch| {
                let bytes: Vec<u8> = batch.slices().flatten().copied().collect();
                file.write_all_at(&bytes, at).expect("write");
                Ok(true)
            })
            .await;
        if result.is_err() {
            break;
        }
    }
    let result = match result {
        Ok(_) => pipeline.finish().await,
        failed => {
            // The pipeline's spare buffer counts until it goes.
            drop(pipeline);
            failed
        }
    };
    assert!(
        matches!(result, Err(StorageError::Other { backend: "fs", .. })),
        "{result:?}"
    );
    assert_eq!(budget.held.load(Ordering::SeqCst), 0);
}

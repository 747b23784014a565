//! The fs backend's tests that run whole calls, one file per concern, and the
//! helpers they share.

mod chunk;
mod compaction;
mod complete;
mod concat;
mod journal;
mod paths;
mod pipeline;
mod purge;
mod put;
mod writers;

use super::*;
use crate::storage::conformance::{self, body};
use crate::storage::BodyError;
use futures_util::stream;
use std::fmt;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn storage() -> (tempfile::TempDir, FsStorage) {
    let folder = tempfile::tempdir().expect("temp dir");
    let storage = FsStorage::new(folder.path()).expect("storage");
    (folder, storage)
}

fn session_dir(storage: &FsStorage, session: &Session) -> PathBuf {
    storage.session_dir(session).expect("valid id")
}

fn temporaries(storage: &FsStorage) -> usize {
    fs::read_dir(storage.root().join(HIDDEN).join(TMP))
        .expect("tmp dir")
        .count()
}

/// A body fed through a channel; `polls` receives the index of each poll.
fn channel_body() -> (BodySender, mpsc::UnboundedReceiver<usize>, ByteStream) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (polled_tx, polls) = mpsc::unbounded_channel();
    let body = stream::unfold((0usize, rx, polled_tx), |(n, mut rx, polled)| async move {
        let _ = polled.send(n);
        rx.recv().await.map(|item| (item, (n + 1, rx, polled)))
    });
    (tx, polls, Box::pin(body))
}

type BodySender = mpsc::UnboundedSender<Result<Bytes, BodyError>>;

type ChunkTask = tokio::task::JoinHandle<Result<SessionStatus, StorageError>>;

/// A chunk of `range` (options `ChunkOptions::new(10)`) written in its own
/// task, its body fed through the returned sender; `polls` as for
/// [`channel_body`].
fn spawn_chunk(
    storage: &FsStorage,
    session: &Session,
    range: ChunkRange,
) -> (BodySender, mpsc::UnboundedReceiver<usize>, ChunkTask) {
    let (tx, polls, stream) = channel_body();
    let (storage, session) = (storage.clone(), session.clone());
    let task = tokio::spawn(async move {
        storage
            .write_chunk(&session, range, &ChunkOptions::new(10), stream)
            .await
    });
    (tx, polls, task)
}

async fn wait_for_poll(polls: &mut mpsc::UnboundedReceiver<usize>, index: usize) {
    tokio::time::timeout(WAIT, async {
        while let Some(n) = polls.recv().await {
            if n >= index {
                return;
            }
        }
    })
    .await
    .expect("the body was polled in time");
}

async fn send(
    storage: &FsStorage,
    session: &Session,
    range: ChunkRange,
    bytes: &[u8],
) -> Result<SessionStatus, StorageError> {
    storage
        .write_chunk(session, range, &ChunkOptions::new(100), body(&[bytes]))
        .await
}

#[test]
fn fs_storage_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + fmt::Debug + 'static>() {}
    check::<FsStorage>();
}

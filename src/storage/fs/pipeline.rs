//! The write pipeline: a body's batches written on blocking threads while the
//! next one gathers, with early writeback, under the backend's buffer budget.

use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::error::{other, write_error, FsError};
use super::threads::{JobLost, WriteThreads};
use crate::storage::StorageError;

/// Bytes gathered before one write while the [`BufferBudget`] is spent: small,
/// since each piece waiting to be written keeps its connection's whole read
/// buffer alive (at 200 uploads at once, 32 KiB rather than 64 KiB holds
/// about 10 MiB less), yet a couple of reads' worth per write job.
const SPENT_BATCH: usize = 32 * 1024;

/// Bytes written between two early `fdatasync` calls, each started on a blocking
/// thread while the body streams on, so that the last one, which the answer
/// waits for, finds little left to write.
pub(super) const WRITEBACK_EVERY: u64 = 4 * 1024 * 1024;

/// Body bytes held in memory by all uploads of one backend, gathered into
/// batches or being written, against a limit.
#[derive(Debug)]
pub(super) struct BufferBudget {
    pub(super) held: AtomicUsize,
    limit: usize,
}

impl BufferBudget {
    pub(super) fn new(limit: usize) -> Self {
        BufferBudget {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    fn exceeded(&self) -> bool {
        self.held.load(Ordering::Relaxed) > self.limit
    }
}

/// Whether a written file was synced already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Synced {
    Yes,
    No,
}

/// Pieces of a body gathered for one positional write; their bytes count
/// against the backend's [`BufferBudget`] until the batch is dropped.
pub(super) struct Batch {
    pieces: Vec<Bytes>,
    pub(super) len: usize,
    budget: Arc<BufferBudget>,
}

impl Batch {
    pub(super) fn new(budget: Arc<BufferBudget>) -> Self {
        Batch {
            pieces: Vec::new(),
            len: 0,
            budget,
        }
    }

    pub(super) fn push(&mut self, piece: Bytes) {
        self.budget.held.fetch_add(piece.len(), Ordering::Relaxed);
        self.len += piece.len();
        self.pieces.push(piece);
    }

    pub(super) fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Whether to write the batch now: it is `size` bytes large, or
    /// [`SPENT_BATCH`] bytes large while the budget is spent.
    pub(super) fn is_full(&self, size: usize) -> bool {
        self.len >= size || (self.len >= SPENT_BATCH && self.budget.exceeded())
    }

    /// The gathered batch; an empty one takes its place.
    pub(super) fn take(&mut self) -> Batch {
        let budget = Arc::clone(&self.budget);
        std::mem::replace(self, Batch::new(budget))
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.len, Ordering::Relaxed);
    }
}

/// Writes a body's batches on the backend's [`WriteThreads`], one batch at a
/// time, while the async side reads the next one, and starts writeback early:
/// every [`WRITEBACK_EVERY`] bytes an `fdatasync` runs on a blocking thread
/// unless one still runs. At most two batches are held: one being written and
/// one being gathered; while the backend's [`BufferBudget`] is spent, only the
/// one being written.
///
/// Every early sync's result is read, and a failed one fails the upload: on
/// Linux a writeback error is reported once per open file description, so the
/// final sync on the same file would succeed after it, over bytes that never
/// reached the disk.
pub(super) struct Pipeline {
    file: Arc<File>,
    threads: Arc<WriteThreads>,
    /// How the file is synced: `File::sync_data`, or a failing one in tests.
    sync: fn(&File) -> io::Result<()>,
    writing: Option<Writing>,
    syncing: Option<tokio::task::JoinHandle<io::Result<()>>>,
    unsynced: u64,
}

/// The batch being written.
type Writing = Pin<Box<dyn Future<Output = Result<Result<bool, StorageError>, JobLost>> + Send>>;

impl Pipeline {
    pub(super) fn new(file: Arc<File>, threads: Arc<WriteThreads>) -> Self {
        Pipeline {
            file,
            threads,
            sync: File::sync_data,
            writing: None,
            syncing: None,
            unsynced: 0,
        }
    }

    /// A pipeline whose early syncs call `sync` instead of `File::sync_data`.
    #[cfg(test)]
    pub(super) fn with_sync(
        file: Arc<File>,
        threads: Arc<WriteThreads>,
        sync: fn(&File) -> io::Result<()>,
    ) -> Self {
        Pipeline {
            sync,
            ..Pipeline::new(file, threads)
        }
    }

    /// Waits for the batch being written, then starts `write` of `batch` on a
    /// write thread (and, while the budget is spent, waits for it too).
    /// Returns false when a write found the session closed.
    pub(super) async fn write<F>(&mut self, batch: Batch, write: F) -> Result<bool, StorageError>
    where
        F: FnOnce(&[Bytes]) -> Result<bool, StorageError> + Send + 'static,
    {
        let previous = self.wait().await?;
        if !previous {
            return Ok(false);
        }
        if self.syncing.as_ref().is_some_and(|s| s.is_finished()) {
            // Finished: this returns at once, with its result, before another
            // write starts (none outlives a failed answer).
            self.wait_sync().await?;
        }
        let len = batch.len as u64;
        let budget = Arc::clone(&batch.budget);
        self.writing = Some(Box::pin(self.threads.run(move || {
            let written = write(&batch.pieces);
            drop(batch);
            written
        })));
        self.unsynced += len;
        if self.unsynced >= WRITEBACK_EVERY && self.syncing.is_none() {
            let (file, sync) = (Arc::clone(&self.file), self.sync);
            self.syncing = Some(tokio::task::spawn_blocking(move || sync(&file)));
            self.unsynced = 0;
        }
        if budget.exceeded() {
            return self.wait().await;
        }
        Ok(true)
    }

    /// Waits for the batch being written; returns what its write returned.
    async fn wait(&mut self) -> Result<bool, StorageError> {
        match self.writing.take() {
            Some(task) => task.await.map_err(|JobLost| other(FsError::WriteLost))?,
            None => Ok(true),
        }
    }

    /// Waits for the early writeback; a failed one fails the upload (it is
    /// not reported again to a later sync of the same file).
    async fn wait_sync(&mut self) -> Result<(), StorageError> {
        match self.syncing.take() {
            Some(task) => task
                .await
                .map_err(|error| other(FsError::Blocking(error)))?
                .map_err(write_error),
            None => Ok(()),
        }
    }

    /// Waits for the last batch; if an early writeback still runs, starts the
    /// final sync (`File::sync_data` or `File::sync_all`) at once beside it,
    /// so the two overlap instead of queueing, and waits for both, even when
    /// one fails. Returns the first failure, else what the last write
    /// returned and whether the file was synced here: when no early
    /// writeback ran, the caller syncs it in its next blocking call (one hop
    /// fewer). A write that found the session closed syncs nothing.
    pub(super) async fn finish_overlapped(
        mut self,
        sync: fn(&File) -> io::Result<()>,
    ) -> Result<(bool, Synced), StorageError> {
        let open = self.wait().await;
        let last = match open {
            Ok(true) if self.syncing.is_some() => {
                let file = Arc::clone(&self.file);
                Some(tokio::task::spawn_blocking(move || sync(&file)))
            }
            _ => None,
        };
        let synced = if last.is_some() {
            Synced::Yes
        } else {
            Synced::No
        };
        let early = self.wait_sync().await;
        let last = match last {
            Some(task) => task
                .await
                .map_err(|error| other(FsError::Blocking(error)))?
                .map_err(write_error),
            None => Ok(()),
        };
        let open = open?;
        early?;
        last?;
        Ok((open, synced))
    }

    /// Waits for the last batch and the early writeback, both even when one
    /// fails; returns the first failure, else what the last write returned.
    pub(super) async fn finish(mut self) -> Result<bool, StorageError> {
        let open = self.wait().await;
        let synced = self.wait_sync().await;
        let open = open?;
        synced?;
        Ok(open)
    }
}

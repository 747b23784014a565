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
/// buffer alive, yet a few reads' worth per write job (at 200 uploads at
/// once, 32 KiB held 10 MiB less heap but cost 12 % more server CPU, and the
/// process's peak RSS over six runs stayed the same).
const SPENT_BATCH: usize = 64 * 1024;

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

/// A body's bytes gathered for one positional write; what it holds counts
/// against the backend's [`BufferBudget`] while it exists.
///
/// While the budget allows, the pieces a body arrives in are copied into the
/// batch's own buffer and let go at once: a piece shares the allocation of
/// the connection's read buffer, and one kept until its batch is written
/// would keep that whole buffer alive and make the connection read its next
/// bytes into freshly allocated memory (a page fault per 4 KiB). The buffer
/// (sized for `size` bytes, its whole capacity counted) is reused from batch
/// to batch (see [`Pipeline::write`]), so such an upload writes through two
/// buffers. Once the budget is spent (many uploads at once, each reading
/// small pieces), a new batch keeps its pieces as they are instead, counted
/// by their length, and is written every [`SPENT_BATCH`] bytes: no buffer
/// of its own, and the small read buffers it holds go with it.
pub(super) struct Batch {
    /// Whether pieces may be copied at all.
    copies: bool,
    /// The copied bytes (capacity counted).
    copied: Vec<u8>,
    /// The pieces kept as they are (lengths counted), after `copied`.
    pieces: Vec<Bytes>,
    pieces_len: usize,
    size: usize,
    budget: Arc<BufferBudget>,
}

impl Batch {
    /// An empty batch, written once it holds `size` bytes (fewer while the
    /// budget is spent).
    pub(super) fn new(budget: Arc<BufferBudget>, size: usize) -> Self {
        Batch {
            copies: true,
            copied: Vec::new(),
            pieces: Vec::new(),
            pieces_len: 0,
            size,
            budget,
        }
    }

    /// An empty batch that keeps its pieces as read, never copying them:
    /// for bodies that are many and short (simple uploads), where two
    /// buffers per upload would cost more memory than the pieces they free.
    pub(super) fn pieces_only(budget: Arc<BufferBudget>, size: usize) -> Self {
        let mut batch = Batch::new(budget, size);
        batch.copies = false;
        batch
    }

    pub(super) fn push(&mut self, piece: Bytes) {
        if self.copies && self.pieces.is_empty() && self.copy(&piece) {
            return;
        }
        self.budget.held.fetch_add(piece.len(), Ordering::Relaxed);
        self.pieces_len += piece.len();
        self.pieces.push(piece);
    }

    /// Copies `piece` into the buffer if it has room; an empty buffer is
    /// sized for the batch (or the piece) while the budget allows. Whether
    /// it did: a piece past a sized buffer's end is kept as it is (it fills
    /// the batch, which is then written), so the buffer never moves.
    fn copy(&mut self, piece: &[u8]) -> bool {
        let needed = self.copied.len() + piece.len();
        if needed > self.copied.capacity() {
            if !self.copied.is_empty() || self.budget.exceeded() {
                return false;
            }
            let before = self.copied.capacity();
            self.copied
                .reserve_exact(needed.max(self.size) - self.copied.len());
            self.budget
                .held
                .fetch_add(self.copied.capacity() - before, Ordering::Relaxed);
        }
        self.copied.extend_from_slice(piece);
        true
    }

    /// The gathered bytes, in order.
    pub(super) fn slices(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&self.copied[..])
            .filter(|copied| !copied.is_empty())
            .chain(self.pieces.iter().map(|piece| &piece[..]))
    }

    /// How many bytes are gathered.
    pub(super) fn len(&self) -> usize {
        self.copied.len() + self.pieces_len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether to write the batch now: it is `size` bytes large, or
    /// [`SPENT_BATCH`] bytes large while the budget is spent.
    pub(super) fn is_full(&self) -> bool {
        let len = self.len();
        len >= self.size || (len >= SPENT_BATCH && self.budget.exceeded())
    }

    /// The gathered batch, to be written; `spare` (a batch written before,
    /// emptied) takes its place, unless the budget is spent: then a new one
    /// without a buffer does.
    fn swap(&mut self, spare: Option<Batch>) -> Batch {
        let next = match spare {
            Some(spare) if !self.budget.exceeded() => spare,
            _ => {
                let mut batch = Batch::new(Arc::clone(&self.budget), self.size);
                batch.copies = self.copies;
                batch
            }
        };
        std::mem::replace(self, next)
    }

    /// The batch emptied, its buffer kept for the next one.
    fn emptied(mut self) -> Batch {
        self.copied.clear();
        self.budget
            .held
            .fetch_sub(self.pieces_len, Ordering::Relaxed);
        self.pieces.clear();
        self.pieces_len = 0;
        self
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.budget
            .held
            .fetch_sub(self.copied.capacity() + self.pieces_len, Ordering::Relaxed);
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
    /// The last batch written, emptied: the next batch's buffer.
    spare: Option<Batch>,
    syncing: Option<tokio::task::JoinHandle<io::Result<()>>>,
    unsynced: u64,
}

/// The batch being written: what its write returned, and the batch back.
type Writing =
    Pin<Box<dyn Future<Output = Result<(Result<bool, StorageError>, Batch), JobLost>> + Send>>;

impl Pipeline {
    pub(super) fn new(file: Arc<File>, threads: Arc<WriteThreads>) -> Self {
        Pipeline {
            file,
            threads,
            sync: File::sync_data,
            writing: None,
            spare: None,
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

    /// Waits for the batch being written, then starts `write` of what
    /// `batch` gathered on a write thread (and, while the budget is spent,
    /// waits for it too); `batch` is left empty, with the buffer of the
    /// batch written before. Returns false when a write found the session
    /// closed.
    pub(super) async fn write<F>(
        &mut self,
        batch: &mut Batch,
        write: F,
    ) -> Result<bool, StorageError>
    where
        F: FnOnce(&Batch) -> Result<bool, StorageError> + Send + 'static,
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
        let full = batch.swap(self.spare.take());
        let len = full.len() as u64;
        let budget = Arc::clone(&full.budget);
        self.writing = Some(Box::pin(self.threads.run(move || {
            let written = write(&full);
            (written, full.emptied())
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

    /// Waits for the batch being written; returns what its write returned,
    /// and keeps its buffer for the next batch.
    async fn wait(&mut self) -> Result<bool, StorageError> {
        match self.writing.take() {
            Some(task) => {
                let (written, spare) = task.await.map_err(|JobLost| other(FsError::WriteLost))?;
                self.spare = Some(spare);
                written
            }
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

#[cfg(test)]
mod batch_tests {
    use super::*;

    fn gathered(batch: &Batch) -> Vec<u8> {
        batch.slices().flatten().copied().collect()
    }

    #[test]
    fn pieces_are_copied_while_the_budget_allows_and_kept_once_it_is_spent() {
        let budget = Arc::new(BufferBudget::new(100));
        let mut batch = Batch::new(Arc::clone(&budget), 64);
        let read_buffer = Bytes::from(vec![b'a'; 32]);
        batch.push(read_buffer.slice(0..16));
        // Copied: the buffer is the batch's own, its capacity counted.
        assert_eq!(batch.pieces.len(), 0);
        assert_eq!(budget.held.load(Ordering::Relaxed), 64);
        batch.push(read_buffer.slice(16..32));
        assert_eq!(batch.len(), 32);

        // Another upload spends the budget: this batch's buffer is full, so
        // the next piece is kept as it is, after the copied bytes.
        let mut other = Batch::new(Arc::clone(&budget), 64);
        other.push(Bytes::from(vec![b'x'; 40]));
        batch.push(Bytes::from(vec![b'b'; 40]));
        assert_eq!(batch.pieces.len(), 1);
        assert_eq!(batch.len(), 72);
        assert!(batch.is_full());
        let mut expected = vec![b'a'; 32];
        expected.extend_from_slice(&[b'b'; 40]);
        assert_eq!(gathered(&batch), expected);

        drop(other);
        let emptied = batch.emptied();
        assert!(emptied.is_empty());
        // The emptied batch keeps its buffer for the next one.
        assert_eq!(budget.held.load(Ordering::Relaxed), 64);
        drop(emptied);
        assert_eq!(budget.held.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_spent_budget_gives_new_batches_no_buffer() {
        let budget = Arc::new(BufferBudget::new(10));
        let mut batch = Batch::new(Arc::clone(&budget), 64);
        batch.push(Bytes::from_static(b"0123456789ab"));
        assert_eq!(budget.held.load(Ordering::Relaxed), 64);
        // Spent now: a written batch's buffer is not reused, and the new
        // batch keeps its pieces.
        let spare = Batch::new(Arc::clone(&budget), 64);
        let full = batch.swap(Some(spare));
        assert_eq!(gathered(&full), b"0123456789ab");
        batch.push(Bytes::from_static(b"cd"));
        assert_eq!(batch.pieces.len(), 1);
        assert_eq!(batch.copied.capacity(), 0);
        drop(full);
        drop(batch);
        assert_eq!(budget.held.load(Ordering::Relaxed), 0);
    }
}

//! [`FsStorage`]: durable storage in a local folder, shared by every process
//! that opens the same folder.
//!
//! One concept per file: `paths` (the on-disk layout), `journal`, `record`
//! (the completion record), `repr` (the kept `Repr-Digest`), `lock`, `writers`
//! (in-flight writers' markers), `blocks` (chunk digests), `chunk`, `complete`,
//! `put`, `pipeline` (the write pipeline and its buffer budget), `threads` (the
//! threads bodies are written on), `dirsync` (folder syncs shared by the renames
//! they cover), `concat` (tus concatenation by kernel copy), `open` (sessions
//! opened before their bytes), `quota` (the unfinished-upload quota), `file`
//! (stored files read back), `session` (the session folder and its statuses),
//! `purge` (cleanup) and `error`. This file holds the type, its guarantees, and the
//! [`Storage`] impl that hands each call to those parts.

mod blocks;
mod chunk;
mod complete;
mod concat;
mod dirsync;
mod error;
mod file;
mod journal;
mod lock;
mod open;
mod paths;
mod pipeline;
mod purge;
mod put;
mod quota;
mod record;
mod repr;
mod session;
#[cfg(test)]
mod tests;
mod threads;
mod writers;

use std::fs;
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::TryStreamExt;

use self::error::{other, FsError};
use self::paths::{open_existing, sync_dir, HIDDEN, TMP};
use self::pipeline::BufferBudget;
use self::quota::{Quota, Reservation};
use self::record::record_exists;
use self::threads::WriteThreads;
use super::concat::{concat_by_copy, read_failed};
use super::{
    check_session_id, storage_segments, BoxFuture, ByteStream, ChunkOptions, ChunkRange,
    CompleteOptions, ConcatOptions, FileMeta, FileRead, MakeRecord, OpenOptions, PurgeReport,
    Session, SessionStatus, Storage, StorageError,
};
use crate::UploadPath;

/// A backend that keeps files in a local folder, durably.
///
/// Committed files live at `{root}/{path}`, so any static file server can serve
/// the folder as it is. Everything else lives in a hidden folder, `{root}/.uploads`,
/// which no upload path can name (a path whose first segment is `.uploads`, in
/// any ASCII case, is refused with [`StorageError::InvalidPath`]):
///
/// ```text
/// {root}/nested/folders/image.png         committed files
/// {root}/.uploads/tmp/put-{random}.part   simple uploads while they stream
/// {root}/.uploads/tmp/gone-{random}/      a removed session folder, while it is deleted
/// {root}/.uploads/tmp/concat-{random}.part  a concatenation's copy, until renamed in
/// {root}/.uploads/{session id}/meta       the session URL's expiry, `{secs}.{nanos}`
/// {root}/.uploads/{session id}/open       the total and metadata of a session opened
///                                         before its bytes (tus, IETF draft creations)
/// {root}/.uploads/{session id}/data       the file being assembled (sparse)
/// {root}/.uploads/{session id}/journal   the ranges stored, one checksummed entry per chunk
/// {root}/.uploads/{session id}/journal.tmp  the journal compacted, while it is written
/// {root}/.uploads/{session id}/repr       the kept `Repr-Digest`, once a chunk announced one
/// {root}/.uploads/{session id}/writing/   one marker per chunk writer in flight
/// {root}/.uploads/{session id}/lock       locked (flock) while the journal changes
/// {root}/.uploads/{session id}/data.lock  shared by writers per batch, exclusive while
///                                         a chunk is recorded or the session commits
/// {root}/.uploads/{session id}/record     the completion record, once complete
/// ```
///
/// A journal entry is 56 bytes: `first`, `last`, `total` and flags (bit 0: the
/// chunk named a total; bit 1: the digest is known), each a little-endian `u64`;
/// the chunk's digest, a little-endian `u128`; then the first 8 bytes of the
/// SHA-256 of those 48 bytes. The chunk digest is the xxh3-128 of the
/// concatenated xxh3-128 digests of the chunk's blocks, cut at 64 KiB offsets
/// of the file (and at the chunk's ends); it is computed while the body streams.
/// The completion record file is `tsu-rec1`, then the entity tag, the
/// file's path and the record, each preceded by its length as a little-endian
/// `u64`, then the SHA-256 of everything before it. Entity tags are
/// `{size:x}-{mtime in nanoseconds:x}-{inode:x}`. `repr` holds the normalized
/// `Repr-Digest` as text, written atomically (temporary file, `fsync`, rename).
/// A writer's marker holds its range (`first`, `last`), then the range of every
/// later writer whose range met it; its owner holds an exclusive `flock` on it.
///
/// # Guarantees
///
/// - **Chunks are durable before they count.** A chunk's bytes are written at their
///   offset in the session's data file as they arrive (never buffered whole), then
///   `fsync`ed; only then is its range appended to the journal, which is `fsync`ed
///   before [`Storage::write_chunk`] returns. A chunk answered `202` survives the
///   process being killed. A chunk whose body fails counts for nothing.
/// - **Journal entries are checksummed**, so a torn entry left by a crash is ignored.
/// - **A session costs what its distinct ranges cost**, not what its chunks
///   did: once the journal holds more than `2 × ranges + 64` entries, the chunk
///   that appended the last one rewrites it as one entry per distinct range
///   (so at most [`ChunkOptions::max_ranges`] of them). Each request replays
///   the journal, so its memory is bounded the same way: 100,000 one-byte
///   chunks sent in order leave a journal of at most 66 entries. The rewrite
///   is crash-safe (written aside to `journal.tmp`, `fsync`ed, renamed over
///   the journal, folder `fsync`ed: either file replays to the same ranges,
///   and a leftover `journal.tmp` is ignored, then overwritten) and happens
///   under the session lock, which every append takes, always appending to
///   the file then at `journal`; writers streaming batches notice the new
///   file by its inode and read it whole. Compaction drops the digests of
///   chunks whose range merged with others: an exact resend of such a chunk
///   is compared byte by byte with the data file instead of by its digest.
/// - **Stored bytes are never overwritten; a conflicting chunk is refused**
///   ([`StorageError::RangeConflict`]), across tasks and processes:
///   - *An identical resend* (the `first`/`last` of a recorded entry) is only
///     hashed: nothing is written or read, and the digest is compared with the
///     entry's. Cost: one xxh3 pass over the body.
///   - *Other chunks* write their bytes batch by batch (about 1 MiB), each batch
///     under the shared `data.lock` after reading the journal entries appended
///     since the last batch (a length check when there are none). Bytes inside
///     recorded ranges are read back and compared, never written; the others
///     are written. Cost: a read and compare of the overlap only.
///   - A chunk is recorded under the session lock and the exclusive `data.lock`,
///     so no batch is ever written into a range recorded before it started.
///   - Writers whose ranges meet find each other through their markers (the
///     writer admitted later notes its range in the earlier one's marker). Such a
///     chunk, before being recorded, re-reads the blocks of its range that the
///     others could have written and compares their digests with its own (then
///     `fsync`s again): of overlapping chunks racing with different bytes, at most
///     one is recorded, holding exactly its own bytes; the others, or all of them
///     when their batches interleaved, are refused and count for nothing (a retry
///     alone succeeds). Markers of writers that died (nobody holds their lock)
///     are removed and ignored.
/// - **`Repr-Digest`**: the first one a recorded chunk announced is kept in `repr`
///   (written before the chunk's journal entry); a chunk announcing another fails
///   with [`StorageError::DigestConflict`] before its body is read, and again when
///   it would be recorded. Completion computes the digest it names.
/// - **Concatenation copies in the kernel** ([`Storage::concat`]): for a
///   session that holds no byte yet, the parts' data files are copied into a
///   temporary file with `copy_file_range` (no byte passes through the
///   process; file systems that share extents share them; written back
///   early while the copy goes on, as a body is), which is `fsync`ed, renamed into the session folder as its data file (folder
///   `fsync`ed) and recorded as one journal entry (`fsync`ed) under the
///   session lock, only if the session still holds no byte and no chunk
///   writer is in flight; otherwise the parts' bytes go through
///   [`Storage::write_chunk`] as one chunk, compared with what is stored. A
///   crash at any point leaves the parts as they were and the session either
///   without a counted byte or with all of them; an interrupted copy is a
///   temporary file that cleanup removes. Its bytes count against
///   [`FsStorage::max_pending`] from before the copy starts.
/// - **Discarded sessions go whole**: [`Storage::discard`], a refused commit and
///   cleanup rename the session folder into `tmp` (atomically, under the session
///   lock) and then delete it, so a crash never leaves half a session. A writer
///   of a discarded session finds the journal it was admitted with gone and
///   fails; it never touches a fresh session at the same URL.
/// - **Completion happens once**, across tasks and processes, under the session's
///   file lock: the completion record is written durably first (temporary file,
///   `fsync`, rename), then the data file is renamed into place, without a copy.
///   If a crash falls between the two, the next call about the session finishes
///   the rename before it answers.
/// - **Simple uploads** stream into a temporary file that is `fsync`ed and renamed
///   into place; a body that fails, or a future dropped midway, leaves nothing behind.
/// - **Commits are atomic**: a reader sees the old file or the new one, never part of
///   one; the destination folder is `fsync`ed after the rename.
/// - **Nothing is written outside the root**: a path that crosses a symbolic link
///   inside the root is refused with [`StorageError::InvalidPath`], and reads do not
///   follow symbolic links either.
/// - **A path the root cannot hold is refused at once**: one through a symbolic
///   link, through a file where a folder is needed, or ending at a folder or a link
///   is [`StorageError::InvalidPath`] on a simple upload and on a session's first
///   chunk, before any session folder exists (and on any later chunk); completion
///   checks again, since the disk may change in between.
/// - **Entity tags** derive from the file's size, modification time and inode, so
///   the tag given at completion is the one [`Storage::head`] reports later.
/// - A full disk (or quota) is [`StorageError::Full`], with nothing half committed.
/// - **Unfinished uploads can be given a quota** ([`FsStorage::max_pending`]):
///   past it, uploads are [`StorageError::Full`] (refused before their body is
///   read when its length is known), and nothing acknowledged is lost.
/// - **Memory stays bounded**: bodies are written in batches of up to 256 KiB
///   (simple uploads) or 1 MiB (chunks), the next gathered while the last is
///   written; new batch buffers are taken only while all uploads together hold
///   less than [`FsStorage::buffer_budget`], and past it each upload writes
///   every 64 KiB and reads on once that write is done. A simple upload
///   declared at most 64 KiB is gathered whole and stored in one blocking call.
/// - **Threads**: batches are written on a few threads of the backend's own
///   (as many as the machine runs at once, 2 to 8) fed by one queue, so many
///   uploads at once cost few thread wake-ups; syncs and the other file work
///   run on tokio's blocking pool (a concatenation's copy starts its early
///   syncs on threads of its own). A folder `fsync` after a rename is shared
///   by the uploads of this process renaming into that folder at that moment
///   (each waits for a sync that started after its rename).
///
/// Several processes may share one root: each session's journal and completion are
/// guarded by `flock` locks on files in the session folder, and chunks of one session
/// stream in parallel; recording a chunk waits only for the batches being written
/// at that moment. The folder must be on a local file system with working `flock`
/// (not every network file system has it).
///
/// [`Storage::purge_expired`] removes sessions (complete or not) whose URL expired
/// more than the grace period ago, temporary files older than the grace period,
/// and removed session folders whose deletion was interrupted.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use tower_signed_upload::storage::{FsStorage, Storage};
/// use tower_signed_upload::UploadPath;
///
/// let folder = tempfile::tempdir()?;
/// let storage = FsStorage::new(folder.path())?;
///
/// let path = UploadPath::new("nested/hello.txt").expect("a valid path");
/// let body = Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(b"hello"))]));
/// let (meta, head) = storage.put(&path, body).await?;
///
/// assert_eq!(meta.size, 5);
/// assert_eq!(head, "hello");
/// assert_eq!(std::fs::read(folder.path().join("nested/hello.txt"))?, b"hello");
/// assert_eq!(storage.head(&path).await?.etag, meta.etag);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: Arc<Path>,
    grace: Duration,
    buffers: Arc<BufferBudget>,
    threads: Arc<WriteThreads>,
    quota: Option<Arc<Quota>>,
}

impl FsStorage {
    /// Default of [`FsStorage::buffer_budget`]: 8 MiB.
    pub const DEFAULT_BUFFER_BUDGET: usize = 8 * 1024 * 1024;

    /// A backend that stores files under `root`, creating it and its hidden
    /// `.uploads` folder if needed. [`Storage::purge_expired`] removes sessions
    /// one hour after their URL expired (see [`FsStorage::grace_period`]).
    ///
    /// # Errors
    ///
    /// If the folders cannot be created.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root: PathBuf = root.into();
        fs::create_dir_all(root.join(HIDDEN).join(TMP))?;
        sync_dir(&root)?;
        sync_dir(&root.join(HIDDEN))?;
        Ok(FsStorage {
            root: Arc::from(root),
            grace: Duration::from_secs(3600),
            buffers: Arc::new(BufferBudget::new(Self::DEFAULT_BUFFER_BUDGET)),
            threads: Arc::new(WriteThreads::new()),
            quota: None,
        })
    }

    /// The most bytes unfinished uploads may hold on disk together (no limit
    /// by default): simple uploads' temporary files while they stream, and
    /// the bytes sessions stored, until they complete or are discarded or
    /// cleaned up. An upload that would pass it fails with
    /// [`StorageError::Full`] (the layer answers `507 storage_full`), and
    /// nothing already stored is lost:
    ///
    /// - a chunk is refused before its body is read when the bytes it would
    ///   add to its session do not fit (bytes the session stored already
    ///   cost nothing again); the session keeps its ranges, and the chunk
    ///   can be sent again once others made room;
    /// - a simple upload is refused before its body is read when its
    ///   declared length (`Content-Length`, see [`Storage::put_with_length`])
    ///   does not fit, and midway, its temporary file removed, when a body of
    ///   unknown length passes the quota.
    ///
    /// What a request reserved is released when it ends, however it ends.
    /// The sessions already in the folder are counted when this is called
    /// (their journals are read), so a restart does not forget them.
    ///
    /// The count is per process (and shared by this value's clones): several
    /// processes on one folder each count their own uploads in flight, the
    /// sessions they saw when this was called and those they wrote to since;
    /// give each a share of the disk.
    pub fn max_pending(mut self, bytes: u64) -> Self {
        self.quota = Some(Arc::new(Quota::new(&self.root, bytes)));
        self
    }

    /// Bytes held by unfinished uploads as counted for
    /// [`FsStorage::max_pending`]; 0 without a quota.
    pub fn pending(&self) -> u64 {
        self.quota.as_ref().map_or(0, |quota| quota.used())
    }

    /// Notes what a session's status says of its stored bytes.
    fn count(&self, session: &Session, status: &SessionStatus) {
        let Some(quota) = &self.quota else { return };
        match status {
            SessionStatus::InProgress { ranges, .. } if !ranges.is_empty() => {
                quota.set_session(session.id(), ranges.received());
            }
            SessionStatus::InProgress { .. } => {}
            _ => quota.forget_session(session.id()),
        }
    }

    /// How much memory all uploads of this backend together may hold in the
    /// buffers their bodies are gathered in to be written in large batches
    /// (8 MiB by default; each buffer counts whole; a chunk or an append
    /// writes through two, reused, and a simple upload keeps its pieces as
    /// read). Past it, a new batch keeps the pieces as they were read, and
    /// each upload writes every 64 KiB of its body and reads on only once
    /// the write is done, so memory stays bounded however many uploads
    /// stream at once, at some cost in CPU per byte.
    pub fn buffer_budget(mut self, bytes: usize) -> Self {
        self.buffers = Arc::new(BufferBudget::new(bytes));
        self
    }

    /// How long after its URL expired a session (and its completion record) is
    /// kept before cleanup removes it; also the age after which leftover
    /// temporary files are removed.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The folder files are stored in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn session_dir(&self, session: &Session) -> Result<PathBuf, StorageError> {
        let id = check_session_id(session.id())?;
        // The temporary folder shares the hidden folder with the sessions.
        if id == TMP {
            return Err(StorageError::InvalidPath);
        }
        Ok(self.root.join(HIDDEN).join(id))
    }
}

impl Storage for FsStorage {
    fn write_chunk(
        &self,
        session: &Session,
        range: ChunkRange,
        options: &ChunkOptions,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let options = Arc::new(options.clone());
        let session = session.clone();
        let root = Arc::clone(&self.root);
        let buffers = Arc::clone(&self.buffers);
        let threads = Arc::clone(&self.threads);
        let quota = self.quota.clone();
        let dir = self.session_dir(&session);
        Box::pin(async move {
            let dir = dir?;
            chunk::write_chunk(
                root, buffers, threads, quota, dir, session, range, options, body,
            )
            .await
        })
    }

    fn open(
        &self,
        session: &Session,
        options: &OpenOptions,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let root = Arc::clone(&self.root);
        let dir = self.session_dir(session);
        let session = session.clone();
        let options = options.clone();
        Box::pin(async move {
            let dir = dir?;
            blocking(move || open::open_session(&root, &dir, &session, &options)).await
        })
    }

    fn concat(
        &self,
        session: &Session,
        parts: &[Session],
        options: &ConcatOptions,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let session = session.clone();
        let parts = parts.to_vec();
        let options = options.clone();
        Box::pin(async move {
            if let concat::Concat::Done(status) =
                concat::concat_files(self, &session, &parts, &options).await?
            {
                return Ok(status);
            }
            // A session that holds bytes already: a complete part's bytes
            // are its data file's first `len` bytes; they are read back and
            // stored as the session's chunk, compared with what is stored.
            let read = |part: &Session, len: u64| -> BoxFuture<'static, _> {
                let dir = self.session_dir(part);
                Box::pin(async move {
                    let data = dir?.join(paths::DATA);
                    let file =
                        blocking(move || fs::File::open(&data).map_err(error::read_error)).await?;
                    let body: ByteStream =
                        Box::pin(file::read_pieces(Arc::new(file), 0, len).map_err(read_failed));
                    Ok(body)
                })
            };
            concat_by_copy(self, &session, &parts, &options, &read).await
        })
    }

    fn status(&self, session: &Session) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let root = Arc::clone(&self.root);
        let dir = self.session_dir(session);
        let session = session.clone();
        Box::pin(async move {
            let dir = dir?;
            let status = blocking(move || session::session_status(&root, &dir)).await?;
            self.count(&session, &status);
            Ok(status)
        })
    }

    fn complete(
        &self,
        session: &Session,
        options: &CompleteOptions,
        make_record: MakeRecord,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let root = Arc::clone(&self.root);
        let dir = self.session_dir(session);
        let session = session.clone();
        let options = *options;
        Box::pin(async move {
            let dir = dir?;
            storage_segments(session.path())?;
            let counted = session.clone();
            let result = blocking(move || {
                complete::complete_session(&root, &dir, &session, &options, make_record)
            })
            .await;
            match &result {
                Ok(status) => self.count(&counted, status),
                // A refused commit removes the session.
                Err(StorageError::CommitRefused) => {
                    if let Some(quota) = &self.quota {
                        quota.forget_session(counted.id());
                    }
                }
                Err(_) => {}
            }
            result
        })
    }

    fn discard(&self, session: &Session) -> BoxFuture<'_, Result<(), StorageError>> {
        let dir = self.session_dir(session);
        let id = session.id().to_owned();
        Box::pin(async move {
            let dir = dir?;
            blocking(move || session::discard_session(&dir)).await?;
            if let Some(quota) = &self.quota {
                quota.forget_session(&id);
            }
            Ok(())
        })
    }

    fn put(
        &self,
        path: &UploadPath,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<(FileMeta, Bytes), StorageError>> {
        self.put_with_length(path, None, body)
    }

    fn put_with_length(
        &self,
        path: &UploadPath,
        length: Option<u64>,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<(FileMeta, Bytes), StorageError>> {
        let root = Arc::clone(&self.root);
        let buffers = Arc::clone(&self.buffers);
        let threads = Arc::clone(&self.threads);
        let reservation = Reservation::new(self.quota.clone());
        let path = path.clone();
        Box::pin(put::put_file(
            root,
            buffers,
            threads,
            reservation,
            path,
            length,
            body,
        ))
    }

    fn read(
        &self,
        path: &UploadPath,
        range: Option<RangeInclusive<u64>>,
    ) -> BoxFuture<'_, Result<FileRead, StorageError>> {
        let root = Arc::clone(&self.root);
        let path = path.clone();
        Box::pin(file::read_file(root, path, range))
    }

    fn head(&self, path: &UploadPath) -> BoxFuture<'_, Result<FileMeta, StorageError>> {
        let root = Arc::clone(&self.root);
        let path = path.clone();
        Box::pin(async move {
            let (_, meta) = blocking(move || open_existing(&root, &path)).await?;
            file::file_meta(&meta)
        })
    }

    fn purge_expired(&self, now: SystemTime) -> BoxFuture<'_, Result<PurgeReport, StorageError>> {
        let root = Arc::clone(&self.root);
        let cutoff = now.checked_sub(self.grace).unwrap_or(UNIX_EPOCH);
        let quota = self.quota.clone();
        Box::pin(async move {
            blocking(move || {
                let report = purge::purge(&root, cutoff)?;
                if let Some(quota) = quota {
                    // Sessions removed, or completed by another process.
                    let hidden = root.join(HIDDEN);
                    quota.retain_sessions(|id| {
                        let dir = hidden.join(id);
                        dir.is_dir() && !record_exists(&dir).unwrap_or(false)
                    });
                }
                Ok(report)
            })
            .await
        })
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T, F>(work: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| other(FsError::Blocking(error)))?
}

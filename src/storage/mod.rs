//! Where uploads are kept: the [`Storage`] trait and its backends.
//!
//! The layer speaks HTTP; a storage backend knows nothing of it. The layer hands
//! a backend streams of bytes for ranges of a [`Session`] (resumable uploads) or
//! for a whole file (simple uploads), asks it to complete sessions, and reads
//! stored files back for downloads.
//!
//! **All upload bookkeeping lives in the backend**: the received ranges, the
//! declared total and the completion record. Nothing about a session is kept in
//! the layer's memory, so several server processes that share one backend (one
//! folder, one bucket) behave as one server.
//!
//! | backend | feature | durable | shared across processes |
//! |---|---|---|---|
//! | [`MemoryStorage`] | always | no | no |
//! | [`FsStorage`] | `fs` (default) | yes, fsynced before `202` | yes, same folder |

use std::fmt;
use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::Stream;

use crate::{BoxError, ByteRanges, UploadPath};

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(feature = "fs")]
mod fs;
mod memory;
#[cfg(feature = "fs")]
#[cfg_attr(docsrs, doc(cfg(feature = "fs")))]
pub use fs::FsStorage;
pub use memory::MemoryStorage;

/// A boxed, `Send` future, as the storage methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A boxed, `Send` stream.
pub type BoxStream<'a, T> = Pin<Box<dyn Stream<Item = T> + Send + 'a>>;

/// The bytes of one request body, as they arrive.
///
/// The layer checks the body while it streams: a stream that ends without an
/// error carried exactly the bytes announced (the chunk's range, or a simple
/// upload within the size limit). A stream that yields an error was cut off,
/// stalled, or broke a limit; the backend must then discard what it received
/// and return [`StorageError::Body`] with that error.
pub type ByteStream = BoxStream<'static, Result<Bytes, BodyError>>;

/// How many bytes of a file's start the layer asks for to sniff its type and
/// image size.
pub const HEAD_LEN: usize = 64 * 1024;

/// The request body failed while streaming; the layer knows why.
///
/// Backends pass it back unchanged inside [`StorageError::Body`].
#[derive(Debug)]
pub struct BodyError(pub(crate) crate::Error);

impl BodyError {
    /// A body error that the layer reports as a storage failure; for tests of backends.
    pub fn aborted() -> Self {
        BodyError(crate::Error::StorageError)
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body failed: {}", self.0)
    }
}

impl std::error::Error for BodyError {}

/// One resumable upload session: all the chunks sent with one signed URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    id: String,
    path: UploadPath,
    expires: SystemTime,
}

impl Session {
    /// A session with the given id (64 lowercase hex digits, derived by the layer
    /// from the signed URL), file path and URL expiry.
    pub fn new(id: String, path: UploadPath, expires: SystemTime) -> Self {
        Session { id, path, expires }
    }

    /// The session id: lowercase hex, safe as a file or object name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the file is committed.
    pub fn path(&self) -> &UploadPath {
        &self.path
    }

    /// When the signed URL expires; cleanup may remove the session after it.
    pub fn expires(&self) -> SystemTime {
        self.expires
    }
}

/// The range a chunk carries: `first..=last`, and the total it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    /// The first byte's offset.
    pub first: u64,
    /// The last byte's offset (inclusive).
    pub last: u64,
    /// The file's total size, if the chunk names it.
    pub total: Option<u64>,
}

impl ChunkRange {
    /// The number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Always false: a range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What a session has received so far, or its completion.
#[derive(Debug, Clone)]
pub enum SessionStatus {
    /// Not complete yet. A session nothing was stored for has no total and no ranges.
    InProgress {
        /// The total size, once a chunk named it.
        total: Option<u64>,
        /// The ranges stored durably.
        ranges: ByteRanges,
    },
    /// The file was committed.
    Completed(Completion),
}

/// A committed session.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The committed file's entity tag, unquoted.
    pub etag: String,
    /// The completion record that the layer built when the session completed
    /// (the File object, as JSON); replayed for every later request.
    pub record: Bytes,
    /// True for the one call that committed the file; false for every later one.
    pub fresh: bool,
}

/// What the backend knows of a file it is about to commit; the layer turns it
/// into the completion record.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    /// The file's size in bytes.
    pub size: u64,
    /// The file's first bytes, at most [`HEAD_LEN`].
    pub head: Bytes,
    /// The file's entity tag, unquoted.
    pub etag: String,
}

/// Builds the completion record from what the backend knows of the file; called
/// at most once per session, by the call that commits it.
pub type MakeRecord = Box<dyn FnOnce(&CommitInfo) -> Bytes + Send>;

/// A stored file's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Size in bytes.
    pub size: u64,
    /// Entity tag, unquoted; changes whenever the file is replaced.
    pub etag: String,
    /// When the file was last written.
    pub modified: SystemTime,
}

/// A stored file, streaming.
pub struct FileRead {
    /// The whole file's metadata.
    pub meta: FileMeta,
    /// The bytes asked for: the whole file, or the requested range.
    pub body: BoxStream<'static, Result<Bytes, StorageError>>,
}

impl fmt::Debug for FileRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileRead")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// What cleanup removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Incomplete sessions removed.
    pub sessions: usize,
    /// Completion records removed.
    pub records: usize,
    /// Leftover temporary files removed.
    pub temporaries: usize,
}

/// Why a storage operation failed.
///
/// The layer maps each variant to a status of the wire contract; the source
/// errors are logged, never sent to clients.
#[derive(Debug)]
#[non_exhaustive]
pub enum StorageError {
    /// No file is stored at the path.
    NotFound,
    /// The chunk names another total than the session has (409).
    TotalMismatch,
    /// The chunk reaches past the session's total (416).
    RangeNotSatisfiable,
    /// Storing the chunk would split the session into more ranges than allowed (400).
    TooManyRanges,
    /// The backend refuses this path, for instance a name it reserves (400).
    InvalidPath,
    /// No space left (507).
    Full,
    /// The request body failed; nothing of it was kept.
    Body(BodyError),
    /// The backend is unreachable for now (503).
    Unavailable {
        /// The backend's name.
        backend: &'static str,
        /// The underlying error.
        source: BoxError,
    },
    /// Any other failure (500).
    Other {
        /// The backend's name.
        backend: &'static str,
        /// The underlying error.
        source: BoxError,
    },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::NotFound => f.write_str("not found"),
            StorageError::TotalMismatch => f.write_str("total differs from the session's"),
            StorageError::RangeNotSatisfiable => f.write_str("range past the session's total"),
            StorageError::TooManyRanges => f.write_str("too many ranges in the session"),
            StorageError::InvalidPath => f.write_str("path refused by the backend"),
            StorageError::Full => f.write_str("no space left"),
            StorageError::Body(error) => fmt::Display::fmt(error, f),
            StorageError::Unavailable { backend, source } => {
                write!(f, "{backend} storage unavailable: {source}")
            }
            StorageError::Other { backend, source } => write!(f, "{backend} storage: {source}"),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Body(error) => Some(error),
            StorageError::Unavailable { source, .. } | StorageError::Other { source, .. } => {
                Some(source.as_ref())
            }
            _ => None,
        }
    }
}

/// A place to keep uploads.
///
/// Object-safe: the layer holds an `Arc<dyn Storage>`. Every method documents what
/// it guarantees; a backend must keep those guarantees when several tasks, or
/// several processes sharing the backend, call it at once.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Streams one chunk of a session into place.
    ///
    /// Before reading the body the backend checks the chunk against the session
    /// (with [`SessionState::admit`](crate::SessionState::admit)): if the session is
    /// complete it returns [`SessionStatus::Completed`] (with `fresh: false`) without
    /// reading the body; a total that differs fails with
    /// [`StorageError::TotalMismatch`], a range past the total with
    /// [`StorageError::RangeNotSatisfiable`], and a range that would make more
    /// than `max_ranges` disjoint ranges with [`StorageError::TooManyRanges`].
    /// It then streams the bytes to their offset, and only when the body ended
    /// without error, the bytes are durable (for a durable backend) and the same
    /// checks pass again, records the range. A range that failed counts for
    /// nothing. Returns the session's status after the chunk.
    fn write_chunk(
        &self,
        session: &Session,
        range: ChunkRange,
        max_ranges: usize,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>>;

    /// The session's status. A session nothing was stored for is
    /// [`SessionStatus::InProgress`] with no total and no ranges.
    fn status(&self, session: &Session) -> BoxFuture<'_, Result<SessionStatus, StorageError>>;

    /// Commits a session whose bytes have all arrived, exactly once.
    ///
    /// Of all the calls for one session, across tasks and processes, exactly one
    /// commits: it calls `make_record` with the file's size, first bytes and
    /// entity tag, atomically places the file at the session's path (replacing
    /// an older file), keeps the record, and returns it with `fresh: true`. Every
    /// other call returns the kept record with `fresh: false`. Returns
    /// [`SessionStatus::InProgress`] if the session is not complete.
    fn complete(
        &self,
        session: &Session,
        make_record: MakeRecord,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>>;

    /// Stores a whole file from one stream (a simple upload).
    ///
    /// The file appears at `path` atomically once the stream ended without
    /// error, replacing an older file; a stream that fails leaves no trace.
    /// Returns the stored file's metadata and its first bytes (at most
    /// [`HEAD_LEN`]).
    fn put(
        &self,
        path: &UploadPath,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<(FileMeta, Bytes), StorageError>>;

    /// Reads a stored file, whole or one inclusive byte range of it.
    ///
    /// The range must lie within the file (the caller checks it against
    /// [`Storage::head`]); fails with [`StorageError::NotFound`] if no file is stored.
    fn read(
        &self,
        path: &UploadPath,
        range: Option<RangeInclusive<u64>>,
    ) -> BoxFuture<'_, Result<FileRead, StorageError>>;

    /// A stored file's metadata, or [`StorageError::NotFound`].
    fn head(&self, path: &UploadPath) -> BoxFuture<'_, Result<FileMeta, StorageError>>;

    /// Removes incomplete sessions whose URL expired before `now` (less the
    /// backend's grace period), and completion records old enough that no
    /// client can still retry with their URL.
    fn purge_expired(&self, now: SystemTime) -> BoxFuture<'_, Result<PurgeReport, StorageError>>;
}

impl<T: Storage + ?Sized> Storage for Arc<T> {
    fn write_chunk(
        &self,
        session: &Session,
        range: ChunkRange,
        max_ranges: usize,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        (**self).write_chunk(session, range, max_ranges, body)
    }

    fn status(&self, session: &Session) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        (**self).status(session)
    }

    fn complete(
        &self,
        session: &Session,
        make_record: MakeRecord,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        (**self).complete(session, make_record)
    }

    fn put(
        &self,
        path: &UploadPath,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<(FileMeta, Bytes), StorageError>> {
        (**self).put(path, body)
    }

    fn read(
        &self,
        path: &UploadPath,
        range: Option<RangeInclusive<u64>>,
    ) -> BoxFuture<'_, Result<FileRead, StorageError>> {
        (**self).read(path, range)
    }

    fn head(&self, path: &UploadPath) -> BoxFuture<'_, Result<FileMeta, StorageError>> {
        (**self).head(path)
    }

    fn purge_expired(&self, now: SystemTime) -> BoxFuture<'_, Result<PurgeReport, StorageError>> {
        (**self).purge_expired(now)
    }
}

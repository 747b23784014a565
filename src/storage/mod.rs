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
//! | [`ObjectStoreStorage`] | `object-store` | yes, one object per chunk before `202` | yes, same bucket and prefix |

use std::fmt;
use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::Stream;

pub use crate::digest::{DigestSet, FileDigests, FileHasher};
use crate::{BoxError, ByteRanges, UploadPath};

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(all(feature = "fs", unix))]
mod fs;
mod memory;
#[cfg(feature = "object-store")]
mod object_store;
#[cfg(feature = "object-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "object-store")))]
pub use self::object_store::ObjectStoreStorage;
#[cfg(all(feature = "fs", unix))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "fs", unix))))]
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

/// What the layer asks of a chunk beyond its range.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChunkOptions {
    /// The most disjoint ranges the session may hold after this chunk.
    pub max_ranges: usize,
    /// The whole file's digest this request announced (`Repr-Digest`), in a
    /// normalized form: equal digests are equal strings. The first one is kept
    /// with the session; a different one later is [`StorageError::DigestConflict`].
    pub repr_digest: Option<String>,
}

impl ChunkOptions {
    /// Options with `max_ranges` and no `Repr-Digest`.
    pub fn new(max_ranges: usize) -> Self {
        ChunkOptions {
            max_ranges,
            repr_digest: None,
        }
    }

    /// The announced whole-file digest.
    pub fn repr_digest(mut self, digest: impl Into<String>) -> Self {
        self.repr_digest = Some(digest.into());
        self
    }
}

/// What the layer asks of a completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompleteOptions {
    /// The whole-file digests to compute before committing, in
    /// [`CommitInfo::digests`].
    pub digests: DigestSet,
}

impl CompleteOptions {
    /// Options that ask for the digests in `digests`.
    pub fn new(digests: DigestSet) -> Self {
        CompleteOptions { digests }
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
        /// The `Repr-Digest` kept with the session, if a chunk announced one.
        repr_digest: Option<String>,
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
    /// The `Repr-Digest` kept with the session, if a chunk announced one.
    pub repr_digest: Option<String>,
    /// The whole-file digests [`CompleteOptions::digests`] asked for.
    pub digests: FileDigests,
}

/// The layer refused to commit a session (its type or digest broke the signed
/// policy): the backend discards the session instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitRefused;

/// Builds the completion record from what the backend knows of the file, or
/// refuses the commit; called at most once per session, by the call that would
/// commit it.
pub type MakeRecord = Box<dyn FnOnce(&CommitInfo) -> Result<Bytes, CommitRefused> + Send>;

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
    /// The chunk overlaps stored bytes that differ from its own (409); the
    /// stored bytes stay and the chunk counts for nothing.
    RangeConflict,
    /// The chunk announces another `Repr-Digest` than the session kept (409).
    DigestConflict,
    /// The layer's record builder refused the commit; the session was discarded.
    CommitRefused,
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
            StorageError::RangeConflict => f.write_str("range stored with other bytes"),
            StorageError::DigestConflict => f.write_str("another Repr-Digest than the session's"),
            StorageError::CommitRefused => f.write_str("commit refused; session discarded"),
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
    /// [`StorageError::RangeNotSatisfiable`], a range that would make more
    /// than `options.max_ranges` disjoint ranges with
    /// [`StorageError::TooManyRanges`], and a `Repr-Digest` other than the one
    /// the session kept with [`StorageError::DigestConflict`] (the first one
    /// announced is kept with the session).
    ///
    /// It then streams the bytes to their offset, and only when the body ended
    /// without error, the bytes are durable (for a durable backend) and the same
    /// checks pass again, records the range. A range that failed counts for
    /// nothing.
    ///
    /// Stored bytes are never overwritten: where the chunk overlaps bytes
    /// already stored, its bytes must equal them, else the chunk fails with
    /// [`StorageError::RangeConflict`], counts for nothing, and the stored bytes
    /// stay. An identical resend is accepted. This holds for chunks racing each
    /// other too: of two overlapping chunks with different bytes, at most one
    /// is recorded, and the recorded bytes are its own.
    ///
    /// Returns the session's status after the chunk.
    fn write_chunk(
        &self,
        session: &Session,
        range: ChunkRange,
        options: &ChunkOptions,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>>;

    /// The session's status. A session nothing was stored for is
    /// [`SessionStatus::InProgress`] with no total and no ranges.
    fn status(&self, session: &Session) -> BoxFuture<'_, Result<SessionStatus, StorageError>>;

    /// Commits a session whose bytes have all arrived, exactly once.
    ///
    /// Of all the calls for one session, across tasks and processes, exactly one
    /// commits: it computes the whole-file digests `options` asks for (and the
    /// one the kept `Repr-Digest` names, see [`DigestSet::with_repr_digest`]), calls
    /// `make_record` with the file's size, first bytes, entity tag, kept
    /// `Repr-Digest` and digests, atomically places the file at the session's
    /// path (replacing an older file), keeps the record, and returns it with
    /// `fresh: true`. Every other call returns the kept record with
    /// `fresh: false`. Returns [`SessionStatus::InProgress`] if the session is
    /// not complete.
    ///
    /// If `make_record` refuses, nothing is committed, the session is discarded
    /// (as by [`Storage::discard`]; the same URL starts afresh), and the call
    /// fails with [`StorageError::CommitRefused`].
    fn complete(
        &self,
        session: &Session,
        options: &CompleteOptions,
        make_record: MakeRecord,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>>;

    /// Removes an incomplete session's stored bytes and bookkeeping, so the same
    /// URL starts afresh. A completed session is left as it is. Discarding a
    /// session nothing was stored for succeeds.
    fn discard(&self, session: &Session) -> BoxFuture<'_, Result<(), StorageError>>;

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
        options: &ChunkOptions,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        (**self).write_chunk(session, range, options, body)
    }

    fn status(&self, session: &Session) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        (**self).status(session)
    }

    fn complete(
        &self,
        session: &Session,
        options: &CompleteOptions,
        make_record: MakeRecord,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        (**self).complete(session, options, make_record)
    }

    fn discard(&self, session: &Session) -> BoxFuture<'_, Result<(), StorageError>> {
        (**self).discard(session)
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

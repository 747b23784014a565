//! The values the [`Storage`](super::Storage) trait takes and returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::Stream;

use super::{
    BodyError, ByteRanges, DigestSet, FileDigests, ReprDigest, SessionState, StorageError,
};
use crate::UploadPath;

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
    /// The whole file's digest this request announced (`Repr-Digest`). The
    /// first one is kept with the session; a different one later is
    /// [`StorageError::DigestConflict`] ([`SessionState::admit`] judges it).
    pub repr_digest: Option<ReprDigest>,
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
    pub fn repr_digest(mut self, digest: ReprDigest) -> Self {
        self.repr_digest = Some(digest);
        self
    }
}

/// What a creation (tus `POST`, the IETF draft's creation) asks of
/// [`Storage::open`](crate::storage::Storage::open).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenOptions {
    /// The file's total size, if the client knows it (else it is deferred: a
    /// later chunk names it).
    pub total: Option<u64>,
    /// The creation's metadata (tus `Upload-Metadata`), kept as sent and
    /// given back by [`Storage::status`](crate::storage::Storage::status).
    pub metadata: Option<String>,
}

impl OpenOptions {
    /// A creation with no total and no metadata.
    pub fn new() -> Self {
        OpenOptions::default()
    }

    /// The file's total size.
    pub fn total(mut self, total: u64) -> Self {
        self.total = Some(total);
        self
    }

    /// The creation's metadata.
    pub fn metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = Some(metadata.into());
        self
    }
}

/// What a final upload (tus `Upload-Concat: final`) asks of
/// [`Storage::concat`](crate::storage::Storage::concat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConcatOptions {
    /// The most disjoint ranges the session may hold (as for a chunk).
    pub max_ranges: usize,
    /// The final upload's metadata (tus `Upload-Metadata`), kept as a
    /// creation's.
    pub metadata: Option<String>,
}

impl ConcatOptions {
    /// Options with `max_ranges` and no metadata.
    pub fn new(max_ranges: usize) -> Self {
        ConcatOptions {
            max_ranges,
            metadata: None,
        }
    }

    /// The final upload's metadata.
    pub fn metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = Some(metadata.into());
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
    /// The total a status query named (`bytes */TOTAL`). `Some(0)` completes a
    /// session that stored nothing and named no total as an empty file; other
    /// values change nothing. Backends apply it with
    /// [`SessionState::with_declared_total`](crate::storage::SessionState::with_declared_total).
    pub total: Option<u64>,
}

impl CompleteOptions {
    /// Options that ask for the digests in `digests`.
    pub fn new(digests: DigestSet) -> Self {
        CompleteOptions {
            digests,
            total: None,
        }
    }

    /// Declares the total a status query named; see [`CompleteOptions::total`].
    pub fn total(mut self, total: Option<u64>) -> Self {
        self.total = total;
        self
    }
}

/// What a session has received so far, or its completion.
#[derive(Debug, Clone)]
pub enum SessionStatus {
    /// Not complete yet. A session nothing was stored for, and never opened,
    /// has no total, no ranges and `opened: false`.
    InProgress {
        /// The total size, once a chunk or the creation named it.
        total: Option<u64>,
        /// The ranges stored durably.
        ranges: ByteRanges,
        /// The `Repr-Digest` kept with the session, if a chunk announced one.
        repr_digest: Option<ReprDigest>,
        /// Whether the session exists: a creation opened it or a chunk was
        /// recorded.
        opened: bool,
        /// The metadata its creation sent, if any.
        metadata: Option<String>,
    },
    /// The file was committed.
    Completed(Completion),
}

impl SessionStatus {
    /// The status of a session that is not complete yet.
    pub fn in_progress(state: SessionState) -> Self {
        SessionStatus::InProgress {
            total: state.total,
            ranges: state.ranges,
            repr_digest: state.repr_digest,
            opened: state.opened,
            metadata: state.metadata,
        }
    }

    /// The status of a committed session; `fresh` for the one call that
    /// committed it.
    pub fn completed(etag: String, record: Bytes, fresh: bool) -> Self {
        SessionStatus::Completed(Completion {
            etag,
            record,
            fresh,
        })
    }
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
    pub repr_digest: Option<ReprDigest>,
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

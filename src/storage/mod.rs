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
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::UploadPath;

mod concat;
#[cfg(any(test, feature = "conformance"))]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod error;
#[cfg(all(feature = "fs", unix))]
mod fs;
mod memory;
#[cfg(feature = "object-store")]
mod object_store;
pub(crate) mod state;
mod types;

pub use self::error::{BodyError, StorageError};
#[cfg(feature = "object-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "object-store")))]
pub use self::object_store::ObjectStoreStorage;
pub use self::state::{
    check_session_id, storage_segments, ByteRanges, SessionState, MAX_SESSION_ID_LEN,
    RESERVED_FOLDER,
};
pub use self::types::{
    BoxFuture, BoxStream, ByteStream, ChunkOptions, ChunkRange, CommitInfo, CommitRefused,
    CompleteOptions, Completion, ConcatOptions, FileMeta, FileRead, MakeRecord, OpenOptions,
    PurgeReport, Session, SessionStatus, HEAD_LEN,
};
pub use crate::headers::digest::{DigestSet, FileDigests, FileHasher, ReprDigest};
#[cfg(all(feature = "fs", unix))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "fs", unix))))]
pub use fs::FsStorage;
pub use memory::MemoryStorage;

/// A boxed error, as the storage backends carry their sources.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A place to keep uploads.
///
/// Object-safe: the layer holds an `Arc<dyn Storage>`. Every method documents what
/// it guarantees; a backend must keep those guarantees when several tasks, or
/// several processes sharing the backend, call it at once.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Streams one chunk of a session into place.
    ///
    /// Before reading the body the backend checks the chunk against the session
    /// (with [`SessionState::admit`](crate::storage::SessionState::admit)): if the session is
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

    /// Opens a session before its bytes arrive: the creation of a resumable
    /// protocol (tus `POST`, the IETF draft's creation).
    ///
    /// Judged with [`SessionState::open`](crate::storage::SessionState::open):
    /// the session then exists (`opened: true` in its status), with
    /// `options.total` as its total if it names one, and the first creation's
    /// metadata. Opening again with the same total (or none) changes nothing;
    /// another total fails with [`StorageError::TotalMismatch`]. A completed
    /// session returns [`SessionStatus::Completed`] with `fresh: false`. What it
    /// wrote is durable (for a durable backend) before it returns.
    fn open(
        &self,
        session: &Session,
        options: &OpenOptions,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>>;

    /// Makes the bytes of the complete `parts`, in order, the bytes of
    /// `session`: a tus final upload (`Upload-Concat: final`) made of partial
    /// uploads, each a session of its own that is never committed.
    ///
    /// A completed `session` returns [`SessionStatus::Completed`] with
    /// `fresh: false` and reads nothing. A part whose bytes have not all
    /// arrived (no total yet, or bytes missing) fails with
    /// [`StorageError::PartIncomplete`] and nothing changes. Otherwise the
    /// session is opened (as by [`Storage::open`]) with the sum of the parts'
    /// lengths as its total and `options.metadata`, and the parts' bytes are
    /// stored as its range `0..total`, with the guarantees of
    /// [`Storage::write_chunk`]: durable before it returns, an identical
    /// resend (a racing or repeated concatenation of the same parts) accepted,
    /// other bytes already stored in the session refused with
    /// [`StorageError::RangeConflict`], another total with
    /// [`StorageError::TotalMismatch`]. It does not commit: the caller then
    /// completes the session with [`Storage::complete`], exactly once as ever.
    /// The parts are left as they are (a client may list them again); they
    /// go when their URL expires, as every incomplete session does.
    ///
    /// Returns the session's status after the concatenation.
    fn concat(
        &self,
        session: &Session,
        parts: &[Session],
        options: &ConcatOptions,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>>;

    /// The session's status. A session nothing was stored for and never
    /// opened is [`SessionStatus::InProgress`] with no total, no ranges and
    /// `opened: false`.
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

    /// [`Storage::put`], told the body's length when the request declared it
    /// (`Content-Length`), so that a backend with a quota of bytes in flight
    /// may refuse the upload ([`StorageError::Full`]) before reading its body.
    /// The layer calls this one; by default it ignores the length.
    fn put_with_length(
        &self,
        path: &UploadPath,
        length: Option<u64>,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<(FileMeta, Bytes), StorageError>> {
        let _ = length;
        self.put(path, body)
    }

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

    fn open(
        &self,
        session: &Session,
        options: &OpenOptions,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        (**self).open(session, options)
    }

    fn concat(
        &self,
        session: &Session,
        parts: &[Session],
        options: &ConcatOptions,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        (**self).concat(session, parts, options)
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

    fn put_with_length(
        &self,
        path: &UploadPath,
        length: Option<u64>,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<(FileMeta, Bytes), StorageError>> {
        (**self).put_with_length(path, length, body)
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

//! [`ObjectStoreStorage`]: sessions and files in an object store (S3 and
//! S3-compatibles, GCS, Azure…), shared by every instance that uses the same
//! bucket and prefix.
//!
//! This file holds the backend, its layout and guarantees, and the [`Storage`]
//! impl, which hands each call to the part that does it:
//!
//! - `chunk.rs`: writing a chunk; `manifest.rs`: the manifest that records
//!   chunks, changed only with conditional updates;
//! - `complete.rs`: completion and the completion record; `claim.rs`: the
//!   claim that makes one call commit, and its lease;
//! - `multipart.rs`: streaming a body into an object with bounded memory;
//!   `pieces.rs`: reading and comparing the bytes of recorded chunks;
//! - `file.rs`: simple uploads, reads and entity tags of committed files;
//! - `purge.rs`: discarding and purging sessions;
//! - `store.rs`: small JSON objects, listing and deleting; `error.rs`: how
//!   failures become [`StorageError`]s.

mod chunk;
mod claim;
mod coalesce;
mod complete;
mod error;
mod file;
mod manifest;
mod multipart;
mod open;
mod pieces;
mod purge;
mod store;
#[cfg(test)]
mod tests;

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::object_store::path::{Path, PathPart};
use ::object_store::ObjectStore;
use bytes::Bytes;

use self::complete::completed;
use self::manifest::Recorded;
use self::store::unix_millis;
use super::concat::{concat_by_copy, read_failed};
use super::{
    check_session_id, storage_segments, BoxFuture, ByteStream, ChunkOptions, ChunkRange,
    CompleteOptions, ConcatOptions, FileMeta, FileRead, MakeRecord, OpenOptions, PurgeReport,
    Session, SessionStatus, Storage, StorageError, RESERVED_FOLDER,
};
use crate::random::random_hex;
use crate::{Clock, SystemClock, UploadPath};
use futures_util::TryStreamExt;

/// The hidden folder under the prefix that holds the sessions.
const HIDDEN: &str = RESERVED_FOLDER;
/// Names inside a session folder.
const CHUNKS: &str = "chunks";
const MANIFEST: &str = "manifest";
const CLAIM: &str = "claim";
const RECORD: &str = "record";

/// S3's smallest part (all but the last part of a multipart upload).
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// S3's largest part.
const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// A backend over any [`ObjectStore`]: many stateless server instances behind a
/// load balancer share uploads through one bucket.
///
/// Every byte and every piece of bookkeeping lives in the store; an instance
/// keeps nothing about a session in memory, so any instance may serve any chunk,
/// and one that dies loses only the requests it was serving. Committed files live
/// at `{prefix}/{path}`, so the bucket (or a CDN in front of it) can serve them
/// directly. The rest lives under a hidden folder, `{prefix}/.uploads`, which no
/// upload path can name (a path whose first segment is `.uploads`, in any ASCII
/// case, is refused with [`StorageError::InvalidPath`]):
///
/// ```text
/// {prefix}/nested/folders/image.png                        committed files
/// {prefix}/.uploads/{session}/manifest                     expiry, total, Repr-Digest, recorded chunks (JSON)
/// {prefix}/.uploads/{session}/chunks/{first}-{last}-{tag}  one object per recorded piece
/// {prefix}/.uploads/{session}/claim                        who is committing it, renewals (JSON)
/// {prefix}/.uploads/{session}/record                       the completion record, published or not (JSON)
/// ```
///
/// `{first}` and `{last}` are the piece's inclusive byte offsets, 20 decimal
/// digits each, and `{tag}` is random, so that a retried chunk (or a merge)
/// never overwrites the object of another request. A piece is a chunk, or a
/// run of small chunks merged into one object.
///
/// # Guarantees
///
/// - **A chunk is durable before its `202`.** It streams into its own object with
///   one put (a multipart upload when it is larger than the part size), so the
///   object appears whole or not at all; then it is recorded in the manifest. A
///   chunk cut off midway (its request dropped, its instance killed) leaves no
///   object, or an unrecorded one, and counts for nothing; cleanup removes it.
/// - **The manifest changes only with conditional writes.** It is created with
///   [`PutMode::Create`] and updated with [`PutMode::Update`] on the version it
///   was read at, so every chunk is recorded against the exact state it was
///   checked with: the rules of [`SessionState::admit`] (total, range, number of
///   ranges), the kept `Repr-Digest`, and the bytes it shares with recorded
///   chunks (compared object against object; different bytes are
///   [`StorageError::RangeConflict`]). A writer that loses the update checks the
///   chunks recorded meanwhile and tries again; of racing chunks, at least one
///   is recorded, and a recorded range always holds its own bytes.
/// - **A session's bookkeeping is bounded.** Once the manifest records more
///   pieces than the session holds distinct ranges plus 32, the request that
///   recorded the last one merges runs of adjacent pieces of at most 1 MiB
///   into one object each, reading and writing at most 4 MiB in all: the
///   merged object is written first, the manifest swaps the pieces for it
///   with a conditional update (only if every piece is still recorded), and
///   the old objects are deleted only after that update succeeded. So what
///   a manifest holds grows with the session's ranges and with its size in
///   MiB, never with the number of chunks sent: tiny chunks keep it within
///   its distinct ranges + 33 pieces (plus one per chunk recorded
///   concurrently). A
///   chunk or commit
///   whose read of a piece fails because a merge just replaced it compares
///   again or answers `503`, and a retry reads the merged piece.
/// - **Completion happens once across instances.** The call that commits first
///   creates the `claim` object with [`PutMode::Create`]; the others wait (at
///   most two completion leases) for its completion record, then answer from
///   it. The claimant streams the recorded chunks in order, each byte once,
///   into an upload of the final key, computing the head and digests on the
///   way, and asks the layer for the record (a refusal aborts the upload and
///   discards the session). Then comes the commit point: it creates the
///   `record` with [`PutMode::Create`], naming the upload's entity tag; only
///   then does it complete the upload, mark the record published, and delete
///   the chunk objects. A claimant that stalled past the lease while another
///   took the claim over and committed loses the commit point: its upload is
///   aborted, never completed, and it answers from the record that stands. So
///   one record is ever written, and the final object it names is the only one
///   a commit makes appear.
/// - **A claim is judged without comparing clocks.** Its holder renews it
///   every third of the lease, and each renewal changes it. Another instance
///   takes it over (with a conditional update, so one instance holds it at a
///   time) only once it has seen it unchanged for a whole lease, timed on its
///   own monotonic clock, or at once if its holder released it (its commit
///   failed). Instances whose wall clocks differ by any amount neither take
///   over a live claim nor wait on a dead one for longer than a lease.
/// - **A record is answered only once its file is in place.** A record still
///   marked unpublished (its writer may have died between the commit point
///   and completing the upload) is waited for under the claim rules above;
///   the call that takes the claim over writes the final object again from
///   the recorded chunks, with the same bytes and the record's entity tag, so
///   it agrees with the record however often it is written. It leaves alone a
///   file that the store dates after the record (a later upload to the same
///   path). What no conditional request can close: a claimant that stalls
///   after its commit point and completes its upload later still writes the
///   record's file, and would replace a file uploaded to the same path in
///   between; a file written in the same second as the record (S3 dates
///   objects to the second) may be replaced by the republished one.
/// - **Entity tags** are chosen by the backend and kept in the object's user
///   metadata (`upload-etag`), so the tag given at completion is known before
///   the file appears and is the one [`Storage::head`] reports; a file written by
///   something else reports the store's own tag.
/// - **Memory is bounded by the part size**, never by the file or chunk size:
///   at most three parts are held per upload.
/// - **Simple uploads** stream into a multipart upload of the final key (or one
///   put when they fit in a part); a body that fails, or a future dropped midway,
///   aborts the upload and leaves nothing behind.
/// - **Errors**: what the store's client gave up retrying (network, `5xx`,
///   throttling, timeouts) is [`StorageError::Unavailable`] (`503`), a missing
///   object on a read is [`StorageError::NotFound`], anything else is
///   [`StorageError::Other`]; the details go to the logs, never to clients.
///
/// The store must support conditional puts ([`PutMode::Create`] and
/// [`PutMode::Update`]): S3 (since 2024), R2, MinIO, GCS, Azure and
/// `object_store`'s `InMemory` do; on S3 this is `object_store`'s default.
///
/// [`Storage::purge_expired`] removes the objects of sessions whose URL expired
/// more than the grace period ago, complete or not, except a session whose
/// claim the store dates within a lease of the `now` it is given (a commit
/// still running); that one check compares the store's clock with the caller's. `object_store` cannot list a
/// bucket's unfinished multipart uploads, so the ones left by an instance that
/// died mid-upload are not aborted here: give the bucket a lifecycle rule that
/// aborts incomplete multipart uploads after a day (S3's
/// `AbortIncompleteMultipartUpload`). Uploads dropped or failed in a running
/// instance are aborted at once.
///
/// Each chunk costs a handful of requests (record and manifest reads, the put,
/// a conditional update of the manifest), and every few dozen chunks one of
/// them also merges small pieces, so prefer chunks of megabytes.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use object_store::memory::InMemory;
/// use tower_signed_upload::storage::{ObjectStoreStorage, Storage};
/// use tower_signed_upload::{SignedUploadLayer, SigningKey, UploadPath};
///
/// // In production: object_store::aws::AmazonS3Builder::from_env().with_bucket_name("uploads").build()?
/// let storage = ObjectStoreStorage::new(Arc::new(InMemory::new()), "site");
///
/// let path = UploadPath::new("nested/hello.txt").expect("a valid path");
/// let body = Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(b"hello"))]));
/// let (meta, head) = storage.put(&path, body).await?;
/// assert_eq!((meta.size, head.as_ref()), (5, b"hello".as_slice()));
/// assert_eq!(storage.head(&path).await?.etag, meta.etag);
///
/// let layer = SignedUploadLayer::new(SigningKey::new("project key")?, storage);
/// # drop(layer);
/// # Ok(())
/// # }
/// ```
///
/// [`PutMode::Create`]: ::object_store::PutMode::Create
/// [`PutMode::Update`]: ::object_store::PutMode::Update
/// [`SessionState::admit`]: crate::storage::SessionState::admit
#[derive(Debug, Clone)]
pub struct ObjectStoreStorage {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    grace: Duration,
    part_size: usize,
    lease: Duration,
    clock: Arc<dyn Clock>,
}

impl ObjectStoreStorage {
    /// A backend that keeps files and sessions in `store` under `prefix` (`""`
    /// for the bucket's root; empty segments are ignored). Expired sessions are
    /// purged one hour after their URL expired; parts are 8 MiB; a completion
    /// lease is 30 seconds.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        let prefix = Path::from_iter(prefix.split('/').filter(|part| !part.is_empty()));
        ObjectStoreStorage {
            store,
            prefix,
            grace: Duration::from_secs(3600),
            part_size: DEFAULT_PART_SIZE,
            lease: DEFAULT_LEASE,
            clock: Arc::new(SystemClock),
        }
    }

    /// How long after its URL expired a session (and its completion record) is
    /// kept before cleanup removes it.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The size of the parts of multipart uploads, and the largest chunk or file
    /// stored with a single put. Clamped to S3's limits, 5 MiB to 5 GiB; memory per
    /// upload is at most three parts.
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        self
    }

    /// How long a committing instance's claim on a session holds without being
    /// renewed (it renews it every third of the lease while it commits).
    /// Another instance takes over a claim that it has seen unchanged for a
    /// whole lease, timed on its own monotonic clock, so the instances' wall
    /// clocks need not agree; it waits at most two leases for a commit in
    /// progress before answering `503`. Keep it well above a request's round
    /// trip to the store. At least one second.
    pub fn completion_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_secs(1));
        self
    }

    /// The wall clock this instance stamps its claims with (for people reading
    /// the bucket) and dates a file with when the store cannot say. No decision
    /// compares it with another instance's clock. [`SystemClock`] by default.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The store files are kept in.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The key of the file at `path`: `{prefix}/{path}`.
    ///
    /// # Errors
    ///
    /// [`StorageError::InvalidPath`] for a path in the hidden `.uploads` folder.
    pub fn location(&self, path: &UploadPath) -> Result<Path, StorageError> {
        let mut key = self.prefix.clone();
        for segment in storage_segments(path)? {
            key = key.join(PathPart::from(segment));
        }
        Ok(key)
    }

    fn hidden(&self) -> Path {
        self.prefix.clone().join(HIDDEN)
    }

    fn session_dir(&self, session: &Session) -> Result<SessionDir, StorageError> {
        let id = check_session_id(session.id())?;
        Ok(SessionDir(self.hidden().join(id)))
    }
}

/// A session's folder, `{prefix}/.uploads/{session}`.
#[derive(Debug, Clone)]
struct SessionDir(Path);

impl SessionDir {
    fn manifest(&self) -> Path {
        self.0.clone().join(MANIFEST)
    }

    fn claim(&self) -> Path {
        self.0.clone().join(CLAIM)
    }

    fn record(&self) -> Path {
        self.0.clone().join(RECORD)
    }

    fn chunks(&self) -> Path {
        self.0.clone().join(CHUNKS)
    }

    fn object(&self, chunk: &Recorded) -> Path {
        let name = format!("{:020}-{:020}-{}", chunk.first, chunk.last, chunk.tag);
        self.chunks().join(name)
    }
}

/// Sixteen random hex digits: the `{tag}` of chunk objects, claim owners and
/// entity tags, unique rather than secret.
fn random_tag() -> String {
    random_hex::<8>()
}

impl Storage for ObjectStoreStorage {
    fn write_chunk(
        &self,
        session: &Session,
        range: ChunkRange,
        options: &ChunkOptions,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        Box::pin(self.store_chunk(session.clone(), range, options.clone(), body))
    }

    fn open(
        &self,
        session: &Session,
        options: &OpenOptions,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let dir = self.session_dir(session);
        let (session, options) = (session.clone(), options.clone());
        Box::pin(async move { self.open_session(dir?, session, options).await })
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
            // A complete part's bytes are in its recorded chunk objects; they
            // are read back in order and stored as the session's chunk.
            let read = |part: &Session, len: u64| -> BoxFuture<'static, _> {
                let dir = self.session_dir(part);
                let this = self.clone();
                Box::pin(async move {
                    let dir = dir?;
                    let manifest = this
                        .get_json::<manifest::Manifest>(&dir.manifest())
                        .await?
                        .map(|(manifest, _)| manifest)
                        .ok_or(StorageError::PartIncomplete)?;
                    let last = len.checked_sub(1).ok_or(StorageError::PartIncomplete)?;
                    let pieces = pieces::plan(&dir, &manifest.chunks, 0, last)
                        .ok_or(StorageError::PartIncomplete)?;
                    let body: ByteStream = Box::pin(
                        pieces::read_pieces(Arc::clone(&this.store), pieces).map_err(read_failed),
                    );
                    Ok(body)
                })
            };
            concat_by_copy(self, &session, &parts, &options, &read).await
        })
    }

    fn status(&self, session: &Session) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let dir = self.session_dir(session);
        Box::pin(async move {
            match self.load(&dir?).await? {
                Ok(record) => completed(record, false),
                Err(found) => Ok(SessionStatus::in_progress(
                    found
                        .map(|(manifest, _)| manifest.state())
                        .unwrap_or_default(),
                )),
            }
        })
    }

    fn complete(
        &self,
        session: &Session,
        options: &CompleteOptions,
        make_record: MakeRecord,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        Box::pin(self.complete_session(session.clone(), *options, make_record))
    }

    fn discard(&self, session: &Session) -> BoxFuture<'_, Result<(), StorageError>> {
        let dir = self.session_dir(session);
        Box::pin(async move { self.discard_session(dir?).await })
    }

    fn put(
        &self,
        path: &UploadPath,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<(FileMeta, Bytes), StorageError>> {
        let target = self.location(path);
        Box::pin(async move { self.put_file(target?, body).await })
    }

    fn read(
        &self,
        path: &UploadPath,
        range: Option<RangeInclusive<u64>>,
    ) -> BoxFuture<'_, Result<FileRead, StorageError>> {
        let target = self.location(path);
        Box::pin(async move { self.read_file(target?, range).await })
    }

    fn head(&self, path: &UploadPath) -> BoxFuture<'_, Result<FileMeta, StorageError>> {
        let target = self.location(path);
        Box::pin(async move { self.head_meta(&target?).await })
    }

    fn purge_expired(&self, now: SystemTime) -> BoxFuture<'_, Result<PurgeReport, StorageError>> {
        let cutoff = unix_millis(now.checked_sub(self.grace).unwrap_or(UNIX_EPOCH));
        Box::pin(self.purge_before(cutoff, unix_millis(now)))
    }
}

//! [`ObjectStoreStorage`]: sessions and files in an object store (S3 and
//! S3-compatibles, GCS, Azure…), shared by every instance that uses the same
//! bucket and prefix.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::object_store::path::{Path, PathPart};
use ::object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, GetRange, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    UpdateVersion,
};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::{stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{
    BodyError, BoxFuture, BoxStream, ByteStream, ChunkOptions, ChunkRange, CommitInfo,
    CommitRefused, CompleteOptions, Completion, FileHasher, FileMeta, FileRead, MakeRecord,
    PurgeReport, Session, SessionStatus, Storage, StorageError, HEAD_LEN,
};
use crate::{ByteRanges, SessionState, UploadPath};

/// The hidden folder under the prefix that holds the sessions.
const HIDDEN: &str = ".uploads";
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
/// Parts uploading at once, per upload; memory is at most one more part than this.
const PARTS_IN_FLIGHT: usize = 2;
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Conditional updates of a manifest tried before giving up with `Unavailable`.
const CAS_ATTEMPTS: u32 = 32;
/// Longest accepted session id.
const MAX_ID_LEN: usize = 128;
const BACKEND: &str = "object-store";

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
/// {prefix}/.uploads/{session}/chunks/{first}-{last}-{tag}  one object per chunk
/// {prefix}/.uploads/{session}/claim                        who is committing it (JSON)
/// {prefix}/.uploads/{session}/record                       the completion record (JSON)
/// ```
///
/// `{first}` and `{last}` are the chunk's inclusive byte offsets, 20 decimal
/// digits each, and `{tag}` is random, so that a retried chunk never overwrites
/// the object of another request.
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
/// - **Completion happens once across instances.** The call that commits first
///   creates the `claim` object with [`PutMode::Create`]; the others wait (at
///   most the completion lease) for its completion record, then answer from it.
///   The claimant streams the recorded chunks in order, each byte once, into a
///   multipart upload of the final key, computing the head and digests on the
///   way; asks the layer for the record (a refusal aborts the upload and discards
///   the session); renews its claim with a conditional update; completes the
///   upload; writes the record with [`PutMode::Create`]; and deletes the chunk
///   objects. A claim that is not renewed within the lease (its instance died)
///   is taken over with a conditional update, so one instance holds it at a time.
/// - **The final object appears atomically**: a multipart upload is invisible
///   until it completes, and a failed commit aborts it; the session stays
///   complete, and the next chunk or status query commits it again.
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
/// more than the grace period ago, complete or not. `object_store` cannot list a
/// bucket's unfinished multipart uploads, so the ones left by an instance that
/// died mid-upload are not aborted here: give the bucket a lifecycle rule that
/// aborts incomplete multipart uploads after a day (S3's
/// `AbortIncompleteMultipartUpload`). Uploads dropped or failed in a running
/// instance are aborted at once.
///
/// Each chunk costs a handful of requests (record and manifest reads, the put,
/// a conditional update of the manifest, which lists every recorded chunk), so
/// prefer chunks of megabytes: a session of many thousand chunks rewrites a
/// manifest of many thousand entries per chunk.
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
#[derive(Debug, Clone)]
pub struct ObjectStoreStorage {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    grace: Duration,
    part_size: usize,
    lease: Duration,
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
    /// renewed (it renews it every third of the lease while it streams). Another
    /// instance takes over a claim older than this, and waits at most this long
    /// for a commit in progress before answering `503`. Keep it well above a
    /// request's round trip to the store; instances' clocks must agree within a
    /// fraction of it.
    pub fn completion_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_secs(1));
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
        let mut segments = path.segments().peekable();
        if segments
            .peek()
            .is_none_or(|first| first.eq_ignore_ascii_case(HIDDEN))
        {
            return Err(StorageError::InvalidPath);
        }
        let mut key = self.prefix.clone();
        for segment in segments {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(StorageError::InvalidPath);
            }
            key = key.join(PathPart::from(segment));
        }
        Ok(key)
    }

    fn hidden(&self) -> Path {
        self.prefix.clone().join(HIDDEN)
    }

    fn session_dir(&self, session: &Session) -> Result<SessionDir, StorageError> {
        let id = session.id();
        let safe = !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !safe {
            return Err(StorageError::InvalidPath);
        }
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

// ---------------------------------------------------------------------------
// Errors

/// Why the backend failed, kept as the source of a [`StorageError`].
#[derive(Debug)]
enum BackendError {
    Store(object_store::Error),
    Corrupt(&'static str),
    Contended(&'static str),
    Spawn(tokio::task::JoinError),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Store(error) => write!(f, "object store: {error}"),
            BackendError::Corrupt(what) => write!(f, "corrupt session: {what}"),
            BackendError::Contended(what) => write!(f, "contended: {what}"),
            BackendError::Spawn(error) => write!(f, "upload task failed: {error}"),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BackendError::Store(error) => Some(error),
            BackendError::Spawn(error) => Some(error),
            _ => None,
        }
    }
}

fn other(error: BackendError) -> StorageError {
    StorageError::Other {
        backend: BACKEND,
        source: Box::new(error),
    }
}

fn unavailable(error: BackendError) -> StorageError {
    StorageError::Unavailable {
        backend: BACKEND,
        source: Box::new(error),
    }
}

/// Maps a store error where a missing object is a failure.
fn store_error(error: object_store::Error) -> StorageError {
    match error {
        // What the client gave up retrying: network errors, 5xx, throttling,
        // timeouts. Misconfiguration (denied, unauthenticated, unsupported)
        // has its own variants and is not worth retrying.
        object_store::Error::Generic { .. } => unavailable(BackendError::Store(error)),
        error => other(BackendError::Store(error)),
    }
}

/// Maps a store error of a read, where a missing object is [`StorageError::NotFound`].
fn read_error(error: object_store::Error) -> StorageError {
    match error {
        object_store::Error::NotFound { .. } => StorageError::NotFound,
        error => store_error(error),
    }
}

fn content_mismatch() -> StorageError {
    StorageError::Body(BodyError(crate::Error::ContentRangeMismatch))
}

// ---------------------------------------------------------------------------
// Small helpers

fn random_tag() -> String {
    let mut random = [0u8; 8];
    if getrandom::fill(&mut random).is_err() {
        // Uniqueness matters, not secrecy: fall back on the clock and the pid.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        random = (nanos ^ (u64::from(std::process::id()) << 40)).to_le_bytes();
    }
    random.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

fn unquote(etag: &str) -> String {
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.trim_matches('"').to_owned()
}

fn version_of(result: &PutResult) -> UpdateVersion {
    UpdateVersion {
        e_tag: result.e_tag.clone(),
        version: result.version.clone(),
    }
}

fn version_of_meta(meta: &ObjectMeta) -> UpdateVersion {
    UpdateVersion {
        e_tag: meta.e_tag.clone(),
        version: meta.version.clone(),
    }
}

fn put_options(mode: PutMode) -> PutOptions {
    PutOptions {
        mode,
        ..PutOptions::default()
    }
}

fn in_progress(state: SessionState) -> SessionStatus {
    SessionStatus::InProgress {
        total: state.total,
        ranges: state.ranges,
        repr_digest: state.repr_digest,
    }
}

fn completed(record: StoredRecord, fresh: bool) -> Result<SessionStatus, StorageError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(record.record.as_bytes())
        .map_err(|_| other(BackendError::Corrupt("completion record is not base64")))?;
    Ok(SessionStatus::Completed(Completion {
        etag: record.etag,
        record: Bytes::from(bytes),
        fresh,
    }))
}

/// Exponential back-off from 25 ms to 400 ms between polls.
async fn pause(round: u32) {
    let millis = 25u64 << round.min(4);
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

// ---------------------------------------------------------------------------
// Small JSON objects: manifest, claim, record

/// A chunk the session recorded; its object is `chunks/{first}-{last}-{tag}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Recorded {
    first: u64,
    last: u64,
    tag: String,
}

/// The session's bookkeeping. Created with [`PutMode::Create`] and changed only
/// with [`PutMode::Update`] on the version it was read at, so every change is
/// judged against the state it replaces.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    /// The file's path, for people reading the bucket.
    path: String,
    /// The URL's expiry, unix milliseconds.
    expires: u64,
    /// The total, once a recorded chunk named it.
    total: Option<u64>,
    /// The first `Repr-Digest` a recorded chunk announced.
    repr_digest: Option<String>,
    /// The recorded chunks, in the order they were recorded.
    chunks: Vec<Recorded>,
}

impl Manifest {
    fn state(&self) -> SessionState {
        SessionState {
            total: self.total,
            ranges: ByteRanges::from_ranges(self.chunks.iter().map(|c| [c.first, c.last])),
            repr_digest: self.repr_digest.clone(),
        }
    }
}

/// Who is committing a session, renewed while they do.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClaimBody {
    owner: String,
    /// When it was last renewed, unix milliseconds; 0 once released.
    at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRecord {
    etag: String,
    path: String,
    /// The URL's expiry, unix milliseconds, for cleanup.
    expires: u64,
    /// The record the layer built, base64.
    record: String,
}

fn to_json<T: Serialize>(value: &T) -> PutPayload {
    PutPayload::from(serde_json::to_vec(value).expect("plain structs serialize"))
}

/// [`SessionState::admit`], plus the `Repr-Digest` the session kept.
fn admit(
    manifest: &Manifest,
    range: ChunkRange,
    options: &ChunkOptions,
) -> Result<(), StorageError> {
    manifest.state().admit(range, options.max_ranges)?;
    if let (Some(kept), Some(sent)) = (&manifest.repr_digest, &options.repr_digest) {
        if kept != sent {
            return Err(StorageError::DigestConflict);
        }
    }
    Ok(())
}

/// Where bytes `from..=to` of the file are: pieces of recorded chunk objects,
/// each byte once, as `(object, start, end)` with offsets in the object (`end`
/// exclusive); `None` if a byte is missing. Overlapping recorded chunks hold
/// equal bytes, so which one serves a byte does not matter.
fn plan(
    dir: &SessionDir,
    chunks: &[Recorded],
    from: u64,
    to: u64,
) -> Option<Vec<(Path, u64, u64)>> {
    let mut ordered: Vec<&Recorded> = chunks
        .iter()
        .filter(|chunk| chunk.last >= from && chunk.first <= to)
        .collect();
    ordered.sort_by(|a, b| a.first.cmp(&b.first).then(b.last.cmp(&a.last)));
    let mut pieces = Vec::new();
    let mut cursor = from;
    for chunk in ordered {
        if cursor > to {
            break;
        }
        if chunk.last < cursor {
            continue;
        }
        if chunk.first > cursor {
            return None;
        }
        let end = chunk.last.min(to);
        pieces.push((
            dir.object(chunk),
            cursor - chunk.first,
            end - chunk.first + 1,
        ));
        cursor = end + 1;
    }
    (cursor > to).then_some(pieces)
}

/// The bytes of `pieces`, in order.
fn read_pieces(
    store: Arc<dyn ObjectStore>,
    pieces: Vec<(Path, u64, u64)>,
) -> BoxStream<'static, Result<Bytes, StorageError>> {
    stream::iter(pieces)
        .then(move |(location, from, to)| {
            let store = Arc::clone(&store);
            async move {
                let options = GetOptions {
                    range: Some(GetRange::Bounded(from..to)),
                    ..GetOptions::default()
                };
                let result = store.get_opts(&location, options).await?;
                Ok::<_, ::object_store::Error>(result.into_stream())
            }
        })
        .try_flatten()
        .map_err(store_error)
        .boxed()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Same,
    Differ,
    /// The first stream ended before the second.
    Shorter,
    /// The first stream went on after the second ended.
    Longer,
}

/// Compares two streams of bytes piece by piece, holding one piece of each.
async fn compare(
    mut a: BoxStream<'static, Result<Bytes, StorageError>>,
    mut b: BoxStream<'static, Result<Bytes, StorageError>>,
) -> Result<Comparison, StorageError> {
    let (mut left, mut right) = (Bytes::new(), Bytes::new());
    loop {
        if left.is_empty() {
            match a.next().await {
                Some(piece) => {
                    left = piece?;
                    continue;
                }
                None => loop {
                    if !right.is_empty() {
                        return Ok(Comparison::Shorter);
                    }
                    match b.next().await {
                        Some(piece) => right = piece?,
                        None => return Ok(Comparison::Same),
                    }
                },
            }
        }
        if right.is_empty() {
            match b.next().await {
                Some(piece) => {
                    right = piece?;
                    continue;
                }
                None => return Ok(Comparison::Longer),
            }
        }
        let len = left.len().min(right.len());
        if left.split_to(len) != right.split_to(len) {
            return Ok(Comparison::Differ);
        }
    }
}

/// The user metadata key of the entity tag this backend gives the files it writes.
const ETAG_KEY: &str = "upload-etag";

fn tagged(etag: &str) -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::Metadata(ETAG_KEY.into()),
        AttributeValue::from(etag.to_owned()),
    );
    attributes
}

/// A file's metadata: its entity tag is the one this backend gave it, or the
/// store's for a file written by something else.
fn file_meta(meta: &ObjectMeta, attributes: &Attributes) -> FileMeta {
    let etag = match attributes.get(&Attribute::Metadata(ETAG_KEY.into())) {
        Some(etag) => etag.as_ref().to_owned(),
        None => meta.e_tag.as_deref().map(unquote).unwrap_or_default(),
    };
    FileMeta {
        size: meta.size,
        etag,
        modified: SystemTime::from(meta.last_modified),
    }
}

// ---------------------------------------------------------------------------
// Streaming uploads with bounded memory

/// A multipart upload whose parts upload in spawned tasks, at most
/// [`PARTS_IN_FLIGHT`] at once. Dropped before it completes, it aborts.
struct Parts {
    upload: Option<Box<dyn MultipartUpload>>,
    tasks: std::collections::VecDeque<tokio::task::JoinHandle<object_store::Result<()>>>,
}

impl Parts {
    async fn start(
        store: &dyn ObjectStore,
        location: &Path,
        attributes: Attributes,
    ) -> Result<Self, StorageError> {
        let options = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let upload = store
            .put_multipart_opts(location, options)
            .await
            .map_err(store_error)?;
        Ok(Parts {
            upload: Some(upload),
            tasks: Default::default(),
        })
    }

    async fn wait_for(&mut self, in_flight: usize) -> Result<(), StorageError> {
        while self.tasks.len() > in_flight {
            let task = self.tasks.pop_front().expect("more tasks than allowed");
            task.await
                .map_err(|error| other(BackendError::Spawn(error)))?
                .map_err(store_error)?;
        }
        Ok(())
    }

    async fn put(&mut self, part: PutPayload) -> Result<(), StorageError> {
        self.wait_for(PARTS_IN_FLIGHT - 1).await?;
        let upload = self
            .upload
            .as_mut()
            .expect("parts are put before completion");
        self.tasks.push_back(tokio::spawn(upload.put_part(part)));
        Ok(())
    }

    async fn complete(mut self) -> Result<PutResult, StorageError> {
        self.wait_for(0).await?;
        let mut upload = self.upload.take().expect("completed once");
        match upload.complete().await {
            Ok(result) => Ok(result),
            Err(error) => {
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(error = %abort, "aborting a failed multipart upload failed");
                }
                Err(store_error(error))
            }
        }
    }
}

impl Drop for Parts {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(mut upload) = self.upload.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move {
                        if let Err(error) = upload.abort().await {
                            tracing::warn!(%error, "aborting an abandoned multipart upload failed");
                        }
                    });
                }
                Err(_) => tracing::warn!("no runtime to abort an abandoned multipart upload"),
            }
        }
    }
}

/// Pieces gathered for the next part.
#[derive(Default)]
struct Buffer {
    pieces: Vec<Bytes>,
    len: usize,
}

impl Buffer {
    fn push(&mut self, piece: Bytes) {
        self.len += piece.len();
        self.pieces.push(piece);
    }

    /// Takes the first `size` bytes (at most all of them).
    fn take(&mut self, size: usize) -> PutPayload {
        let mut taken = Vec::new();
        let mut want = size.min(self.len);
        self.len -= want;
        let mut rest = std::mem::take(&mut self.pieces).into_iter();
        for mut piece in rest.by_ref() {
            if piece.len() <= want {
                want -= piece.len();
                taken.push(piece);
                if want == 0 {
                    break;
                }
            } else {
                taken.push(piece.split_to(want));
                self.pieces.push(piece);
                break;
            }
        }
        self.pieces.extend(rest);
        taken.into_iter().collect()
    }
}

/// An upload whose bytes have all been sent; completing it makes the object appear.
enum Staged {
    Single(PutPayload, Attributes),
    Multipart(Parts),
}

/// What [`stage`] received.
struct Received {
    staged: Staged,
    size: u64,
    head: Bytes,
}

impl Received {
    /// Makes the object appear at `location`, atomically.
    async fn finish(
        self,
        store: &dyn ObjectStore,
        location: &Path,
    ) -> Result<PutResult, StorageError> {
        match self.staged {
            Staged::Single(payload, attributes) => {
                let options = PutOptions {
                    attributes,
                    ..put_options(PutMode::Overwrite)
                };
                store
                    .put_opts(location, payload, options)
                    .await
                    .map_err(store_error)
            }
            Staged::Multipart(parts) => parts.complete().await,
        }
    }
}

/// Streams `body` towards `location` with at most three parts in memory: a body
/// that fits in one part is kept for a single put, a larger one goes into a
/// multipart upload as it arrives. With `expected`, the body must hold exactly
/// that many bytes. Nothing is visible until [`Received::finish`].
async fn stage(
    store: &dyn ObjectStore,
    location: &Path,
    mut body: BoxStream<'static, Result<Bytes, StorageError>>,
    part_size: usize,
    expected: Option<u64>,
    mut hasher: Option<&mut FileHasher>,
    attributes: Attributes,
) -> Result<Received, StorageError> {
    let mut buffer = Buffer::default();
    let mut parts: Option<Parts> = None;
    let mut head = BytesMut::new();
    let mut size = 0u64;
    while let Some(piece) = body.next().await {
        let piece = piece?;
        size = size.saturating_add(piece.len() as u64);
        if expected.is_some_and(|expected| size > expected) {
            return Err(content_mismatch());
        }
        if head.len() < HEAD_LEN {
            let take = piece.len().min(HEAD_LEN - head.len());
            head.extend_from_slice(&piece[..take]);
        }
        if let Some(hasher) = hasher.as_deref_mut() {
            hasher.update(&piece);
        }
        buffer.push(piece);
        // Keep one whole part buffered until the body ends, so the last part
        // is never empty and a body of exactly one part is a single put.
        while buffer.len > part_size {
            let part = buffer.take(part_size);
            if parts.is_none() {
                parts = Some(Parts::start(store, location, attributes.clone()).await?);
            }
            parts.as_mut().expect("started above").put(part).await?;
        }
    }
    if expected.is_some_and(|expected| size != expected) {
        return Err(content_mismatch());
    }
    let rest = buffer.take(buffer.len);
    let staged = match parts {
        None => Staged::Single(rest, attributes),
        Some(mut parts) => {
            parts.put(rest).await?;
            Staged::Multipart(parts)
        }
    };
    Ok(Received {
        staged,
        size,
        head: head.freeze(),
    })
}

// ---------------------------------------------------------------------------
// Completion claims

/// A claim held by this call; renewed in the background while held, released
/// (made stale at once) if dropped before the commit finished.
struct Claim {
    store: Arc<dyn ObjectStore>,
    location: Path,
    owner: String,
    version: Arc<Mutex<UpdateVersion>>,
    lost: Arc<AtomicBool>,
    renewer: Option<tokio::task::JoinHandle<()>>,
    done: bool,
}

fn lock(version: &Mutex<UpdateVersion>) -> MutexGuard<'_, UpdateVersion> {
    // A plain value: a panic cannot leave it half-updated.
    version
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Renews a claim with a conditional update; `Ok(false)` if someone took it over.
async fn renew(
    store: &dyn ObjectStore,
    location: &Path,
    owner: &str,
    at: u64,
    version: &Mutex<UpdateVersion>,
) -> Result<bool, StorageError> {
    let current = lock(version).clone();
    let body = ClaimBody {
        owner: owner.to_owned(),
        at,
    };
    match store
        .put_opts(
            location,
            to_json(&body),
            put_options(PutMode::Update(current)),
        )
        .await
    {
        Ok(result) => {
            *lock(version) = version_of(&result);
            Ok(true)
        }
        Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {
            Ok(false)
        }
        Err(error) => Err(store_error(error)),
    }
}

impl Claim {
    fn new(
        store: Arc<dyn ObjectStore>,
        location: Path,
        owner: String,
        version: UpdateVersion,
        lease: Duration,
    ) -> Self {
        let version = Arc::new(Mutex::new(version));
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (store, location, owner) = (Arc::clone(&store), location.clone(), owner.clone());
            let (version, lost) = (Arc::clone(&version), Arc::clone(&lost));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let at = unix_millis(SystemTime::now());
                    match renew(store.as_ref(), &location, &owner, at, &version).await {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        // A failed renewal is retried; the final one decides.
                        Err(error) => tracing::warn!(%error, "renewing a completion claim failed"),
                    }
                }
            })
        };
        Claim {
            store,
            location,
            owner,
            version,
            lost,
            renewer: Some(renewer),
            done: false,
        }
    }

    /// Stops renewing and renews once more, so the claim is fresh for the
    /// commit that follows; `Ok(false)` if it was taken over.
    async fn confirm(&mut self) -> Result<bool, StorageError> {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
            let _ = renewer.await;
        }
        if self.lost.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let at = unix_millis(SystemTime::now());
        renew(
            self.store.as_ref(),
            &self.location,
            &self.owner,
            at,
            &self.version,
        )
        .await
    }

    /// The commit is over (the record exists): the claim can go.
    async fn finish(mut self) {
        self.done = true;
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        if let Err(error) = self.store.delete(&self.location).await {
            tracing::debug!(%error, "removing a completion claim failed");
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        if self.done {
            return;
        }
        // The commit failed or was dropped: make the claim stale at once, so the
        // next call takes it over without waiting for the lease.
        let (store, location, owner) = (
            Arc::clone(&self.store),
            self.location.clone(),
            self.owner.clone(),
        );
        let version = Arc::clone(&self.version);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = renew(store.as_ref(), &location, &owner, 0, &version).await;
            });
        }
    }
}

enum ClaimAttempt {
    Won(Claim),
    Held,
}

// ---------------------------------------------------------------------------
// Store access

impl ObjectStoreStorage {
    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        location: &Path,
    ) -> Result<Option<(T, UpdateVersion)>, StorageError> {
        let result = match self.store.get_opts(location, GetOptions::default()).await {
            Ok(result) => result,
            Err(::object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(store_error(error)),
        };
        let version = version_of_meta(&result.meta);
        let bytes = result.bytes().await.map_err(store_error)?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|_| other(BackendError::Corrupt("a session object is not valid JSON")))?;
        Ok(Some((value, version)))
    }

    async fn read_record(&self, dir: &SessionDir) -> Result<Option<StoredRecord>, StorageError> {
        Ok(self
            .get_json(&dir.record())
            .await?
            .map(|(record, _)| record))
    }

    /// The session's completion record, or its manifest (if any).
    async fn load(
        &self,
        dir: &SessionDir,
    ) -> Result<Result<StoredRecord, Option<(Manifest, UpdateVersion)>>, StorageError> {
        if let Some(record) = self.read_record(dir).await? {
            return Ok(Ok(record));
        }
        Ok(Err(self.get_json(&dir.manifest()).await?))
    }

    async fn delete_quietly(&self, locations: Vec<Path>) {
        if locations.is_empty() {
            return;
        }
        let stream = stream::iter(locations.into_iter().map(Ok)).boxed();
        let mut results = self.store.delete_stream(stream);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(::object_store::Error::NotFound { .. }) => {}
                Err(error) => tracing::warn!(%error, "removing a session object failed"),
            }
        }
    }

    /// Every object under `prefix`.
    async fn list_all(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, StorageError> {
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(store_error)
    }

    /// Creates the session's manifest if it has none, so cleanup knows its expiry
    /// before any chunk object exists.
    async fn ensure_manifest(
        &self,
        dir: &SessionDir,
        session: &Session,
    ) -> Result<(), StorageError> {
        let manifest = Manifest {
            path: session.path().as_str().to_owned(),
            expires: unix_millis(session.expires()),
            ..Manifest::default()
        };
        match self
            .store
            .put_opts(
                &dir.manifest(),
                to_json(&manifest),
                put_options(PutMode::Create),
            )
            .await
        {
            Ok(_) | Err(::object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(error) => Err(store_error(error)),
        }
    }

    /// Removes an incomplete session: the manifest first (so a chunk being
    /// recorded meanwhile fails its conditional update), then the chunk objects
    /// and the claim.
    async fn remove_session(&self, dir: &SessionDir) -> Result<(), StorageError> {
        self.delete_quietly(vec![dir.manifest()]).await;
        let chunks = self.list_all(&dir.chunks()).await?;
        let mut locations: Vec<Path> = chunks.into_iter().map(|meta| meta.location).collect();
        locations.push(dir.claim());
        self.delete_quietly(locations).await;
        Ok(())
    }

    /// Second step of a chunk, once its object exists: checks the chunk against
    /// the session again, compares the bytes it shares with recorded chunks, and
    /// records it in the manifest with a conditional update. A lost update is
    /// retried against the new manifest; only chunks recorded meanwhile are
    /// compared again.
    /// A chunk failed reading stored chunk objects: if another instance
    /// completed the session meanwhile (and removed them), the chunk's answer
    /// is the completion; otherwise the failure stands.
    async fn completed_meanwhile(
        &self,
        dir: &SessionDir,
        error: StorageError,
    ) -> Result<SessionStatus, StorageError> {
        match self.load(dir).await {
            Ok(Ok(record)) => completed(record, false),
            _ => Err(error),
        }
    }

    async fn record_chunk(
        &self,
        dir: &SessionDir,
        own: &Recorded,
        range: ChunkRange,
        options: &ChunkOptions,
    ) -> Result<SessionStatus, StorageError> {
        let mut compared: Vec<Recorded> = Vec::new();
        for round in 0..CAS_ATTEMPTS {
            let (manifest, version) = match self.load(dir).await? {
                Ok(record) => return completed(record, false),
                Err(Some(found)) => found,
                Err(None) => {
                    return Err(unavailable(BackendError::Contended(
                        "the session was discarded while the chunk streamed",
                    )))
                }
            };
            admit(&manifest, range, options)?;
            for recorded in &manifest.chunks {
                let (from, to) = (recorded.first.max(own.first), recorded.last.min(own.last));
                if from > to || compared.contains(recorded) {
                    continue;
                }
                let mine = read_pieces(
                    Arc::clone(&self.store),
                    vec![(dir.object(own), from - own.first, to - own.first + 1)],
                );
                let theirs = read_pieces(
                    Arc::clone(&self.store),
                    vec![(
                        dir.object(recorded),
                        from - recorded.first,
                        to - recorded.first + 1,
                    )],
                );
                if compare(mine, theirs).await? != Comparison::Same {
                    return Err(StorageError::RangeConflict);
                }
                compared.push(recorded.clone());
            }
            let mut updated = manifest;
            updated.chunks.push(own.clone());
            if range.total.is_some() {
                updated.total = range.total;
            }
            if updated.repr_digest.is_none() {
                updated.repr_digest = options.repr_digest.clone();
            }
            match self
                .store
                .put_opts(
                    &dir.manifest(),
                    to_json(&updated),
                    put_options(PutMode::Update(version)),
                )
                .await
            {
                Ok(_) => return Ok(in_progress(updated.state())),
                Err(::object_store::Error::Precondition { .. }) => pause(round.min(2)).await,
                Err(error) => return Err(store_error(error)),
            }
        }
        Err(unavailable(BackendError::Contended(
            "the session's manifest kept changing",
        )))
    }

    /// Tries to become the one call that commits the session.
    async fn try_claim(&self, dir: &SessionDir) -> Result<ClaimAttempt, StorageError> {
        let owner = random_tag();
        let body = ClaimBody {
            owner: owner.clone(),
            at: unix_millis(SystemTime::now()),
        };
        let location = dir.claim();
        let won = |result: PutResult| {
            ClaimAttempt::Won(Claim::new(
                Arc::clone(&self.store),
                location.clone(),
                owner.clone(),
                version_of(&result),
                self.lease,
            ))
        };
        match self
            .store
            .put_opts(&location, to_json(&body), put_options(PutMode::Create))
            .await
        {
            Ok(result) => return Ok(won(result)),
            Err(::object_store::Error::AlreadyExists { .. }) => {}
            Err(error) => return Err(store_error(error)),
        }
        let Some((held, version)) = self.get_json::<ClaimBody>(&location).await? else {
            // Released between the two requests; the next round creates it.
            return Ok(ClaimAttempt::Held);
        };
        let now = unix_millis(SystemTime::now());
        if now.saturating_sub(held.at) <= self.lease.as_millis() as u64 {
            return Ok(ClaimAttempt::Held);
        }
        // Stale: its holder died or gave up. Take it over, conditionally.
        match self
            .store
            .put_opts(
                &location,
                to_json(&body),
                put_options(PutMode::Update(version)),
            )
            .await
        {
            Ok(result) => {
                tracing::info!(claim = %location, "took over a stale completion claim");
                Ok(won(result))
            }
            Err(
                ::object_store::Error::Precondition { .. } | ::object_store::Error::NotFound { .. },
            ) => Ok(ClaimAttempt::Held),
            Err(error) => Err(store_error(error)),
        }
    }

    /// The claimant's commit: streams the recorded chunks in order into the
    /// final key, lets the layer build (or refuse) the record, completes the
    /// upload, writes the record, removes the chunks.
    async fn commit(
        &self,
        dir: &SessionDir,
        session: &Session,
        options: &CompleteOptions,
        mut claim: Claim,
        make_record: MakeRecord,
    ) -> Result<SessionStatus, StorageError> {
        // Read again under the claim: a commit that finished just before it was
        // taken left its record.
        let manifest = match self.load(dir).await? {
            Ok(record) => {
                claim.finish().await;
                return completed(record, false);
            }
            Err(found) => found.map(|(manifest, _)| manifest).unwrap_or_default(),
        };
        let state = manifest.state();
        let total = match state.total {
            Some(total) if state.is_complete() => total,
            _ => return Ok(in_progress(state)),
        };
        let target = self.location(session.path())?;
        let pieces = plan(dir, &manifest.chunks, 0, total - 1).ok_or_else(|| {
            other(BackendError::Corrupt(
                "recorded chunks do not cover the file",
            ))
        })?;
        let bytes = read_pieces(Arc::clone(&self.store), pieces);

        let etag = random_tag();
        let mut hasher = FileHasher::new(
            options
                .digests
                .with_repr_digest(manifest.repr_digest.as_deref()),
        );
        let received = stage(
            self.store.as_ref(),
            &target,
            bytes,
            self.part_size,
            Some(total),
            Some(&mut hasher),
            tagged(&etag),
        )
        .await?;
        let info = CommitInfo {
            size: total,
            head: received.head.clone(),
            etag,
            repr_digest: manifest.repr_digest.clone(),
            digests: hasher.finish(),
        };
        let record_bytes = match make_record(&info) {
            Ok(record) => record,
            Err(CommitRefused) => {
                // Nothing was committed: the upload is aborted as `received` drops.
                drop(received);
                self.remove_session(dir).await?;
                claim.finish().await;
                return Err(StorageError::CommitRefused);
            }
        };
        if !claim.confirm().await? {
            // Taken over while streaming (this instance stalled past the lease):
            // the new holder commits; dropping `received` aborts the upload.
            return Err(unavailable(BackendError::Contended(
                "the completion claim was taken over",
            )));
        }
        received.finish(self.store.as_ref(), &target).await?;
        let record = StoredRecord {
            etag: info.etag,
            path: session.path().as_str().to_owned(),
            expires: unix_millis(session.expires()),
            record: base64::engine::general_purpose::STANDARD.encode(&record_bytes),
        };
        let status = match self
            .store
            .put_opts(
                &dir.record(),
                to_json(&record),
                put_options(PutMode::Create),
            )
            .await
        {
            Ok(_) => completed(record, true)?,
            Err(::object_store::Error::AlreadyExists { .. }) => {
                // Another holder after a takeover finished first; theirs stands.
                let record = self
                    .read_record(dir)
                    .await?
                    .ok_or_else(|| other(BackendError::Corrupt("completion record vanished")))?;
                completed(record, false)?
            }
            Err(error) => return Err(store_error(error)),
        };
        claim.finish().await;
        if let Ok(leftovers) = self.list_all(&dir.chunks()).await {
            self.delete_quietly(leftovers.into_iter().map(|meta| meta.location).collect())
                .await;
        }
        Ok(status)
    }
}

/// Session folders under the hidden prefix, with their objects.
fn group_sessions(hidden: &Path, objects: Vec<ObjectMeta>) -> BTreeMap<String, Vec<ObjectMeta>> {
    let mut sessions: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    for object in objects {
        let id = object
            .location
            .prefix_match(hidden)
            .and_then(|mut rest| rest.next())
            .map(|id| id.as_ref().to_owned());
        if let Some(id) = id {
            sessions.entry(id).or_default().push(object);
        }
    }
    sessions
}

impl Storage for ObjectStoreStorage {
    fn write_chunk(
        &self,
        session: &Session,
        range: ChunkRange,
        options: &ChunkOptions,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let session = session.clone();
        let options = options.clone();
        Box::pin(async move {
            let dir = self.session_dir(&session)?;
            self.location(session.path())?;
            if range.first > range.last {
                return Err(StorageError::RangeNotSatisfiable);
            }
            let expected = (range.last - range.first)
                .checked_add(1)
                .ok_or(StorageError::RangeNotSatisfiable)?;
            let body = body.map_err(StorageError::Body).boxed();

            let manifest = match self.load(&dir).await? {
                Ok(record) => return completed(record, false),
                Err(found) => found.map(|(manifest, _)| manifest),
            };
            let known = manifest.clone().unwrap_or_default();
            admit(&known, range, &options)?;
            let state = known.state();
            let resend = state.ranges.contains(range.first, range.last)
                && range.total.is_none_or(|total| state.total == Some(total))
                && (options.repr_digest.is_none() || known.repr_digest.is_some());
            if resend {
                // Stored already: the bytes must be the same; nothing is written.
                let stored =
                    plan(&dir, &known.chunks, range.first, range.last).ok_or_else(|| {
                        other(BackendError::Corrupt("recorded ranges without chunks"))
                    })?;
                let compared = compare(body, read_pieces(Arc::clone(&self.store), stored)).await;
                return match compared {
                    Ok(Comparison::Same) => self.status(&session).await,
                    Ok(Comparison::Differ) => Err(StorageError::RangeConflict),
                    Ok(Comparison::Shorter | Comparison::Longer) => Err(content_mismatch()),
                    Err(error) => self.completed_meanwhile(&dir, error).await,
                };
            }
            if manifest.is_none() {
                self.ensure_manifest(&dir, &session).await?;
            }

            let own = Recorded {
                first: range.first,
                last: range.last,
                tag: random_tag(),
            };
            let location = dir.object(&own);
            let received = stage(
                self.store.as_ref(),
                &location,
                body,
                self.part_size,
                Some(expected),
                None,
                Attributes::new(),
            )
            .await?;
            received.finish(self.store.as_ref(), &location).await?;
            let status = self.record_chunk(&dir, &own, range, &options).await;
            if !matches!(status, Ok(SessionStatus::InProgress { .. })) {
                // Refused, failed, or the session completed meanwhile: the
                // chunk is not recorded, so its object goes.
                self.delete_quietly(vec![location]).await;
            }
            match status {
                Err(error @ (StorageError::Other { .. } | StorageError::NotFound)) => {
                    self.completed_meanwhile(&dir, error).await
                }
                other => other,
            }
        })
    }

    fn status(&self, session: &Session) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let dir = self.session_dir(session);
        Box::pin(async move {
            match self.load(&dir?).await? {
                Ok(record) => completed(record, false),
                Err(found) => Ok(in_progress(
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
        let session = session.clone();
        let options = *options;
        Box::pin(async move {
            let dir = self.session_dir(&session)?;
            self.location(session.path())?;
            let started = Instant::now();
            let mut make_record = Some(make_record);
            let mut round = 0;
            loop {
                let state = match self.load(&dir).await? {
                    Ok(record) => return completed(record, false),
                    Err(found) => found
                        .map(|(manifest, _)| manifest.state())
                        .unwrap_or_default(),
                };
                if !state.is_complete() {
                    return Ok(in_progress(state));
                }
                if let ClaimAttempt::Won(claim) = self.try_claim(&dir).await? {
                    let make_record = make_record.take().expect("one commit per call");
                    return self
                        .commit(&dir, &session, &options, claim, make_record)
                        .await;
                }
                if started.elapsed() > self.lease {
                    return Err(unavailable(BackendError::Contended(
                        "another instance is still committing the session",
                    )));
                }
                pause(round).await;
                round += 1;
            }
        })
    }

    fn discard(&self, session: &Session) -> BoxFuture<'_, Result<(), StorageError>> {
        let dir = self.session_dir(session);
        Box::pin(async move {
            let dir = dir?;
            if self.read_record(&dir).await?.is_some() {
                return Ok(());
            }
            self.remove_session(&dir).await
        })
    }

    fn put(
        &self,
        path: &UploadPath,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<(FileMeta, Bytes), StorageError>> {
        let target = self.location(path);
        Box::pin(async move {
            let target = target?;
            let body = body.map_err(StorageError::Body).boxed();
            let etag = random_tag();
            let received = stage(
                self.store.as_ref(),
                &target,
                body,
                self.part_size,
                None,
                None,
                tagged(&etag),
            )
            .await?;
            let (size, head) = (received.size, received.head.clone());
            received.finish(self.store.as_ref(), &target).await?;
            let meta = match self.head_meta(&target).await {
                Ok(meta) if meta.etag == etag => meta,
                // Replaced again meanwhile: describe the file this call stored.
                _ => FileMeta {
                    size,
                    etag,
                    modified: SystemTime::now(),
                },
            };
            Ok((meta, head))
        })
    }

    fn read(
        &self,
        path: &UploadPath,
        range: Option<RangeInclusive<u64>>,
    ) -> BoxFuture<'_, Result<FileRead, StorageError>> {
        let target = self.location(path);
        Box::pin(async move {
            let target = target?;
            let options = GetOptions {
                range: range
                    .map(|range| GetRange::Bounded(*range.start()..range.end().saturating_add(1))),
                ..GetOptions::default()
            };
            let result = self
                .store
                .get_opts(&target, options)
                .await
                .map_err(read_error)?;
            let meta = file_meta(&result.meta, &result.attributes);
            Ok(FileRead {
                meta,
                body: result.into_stream().map_err(store_error).boxed(),
            })
        })
    }

    fn head(&self, path: &UploadPath) -> BoxFuture<'_, Result<FileMeta, StorageError>> {
        let target = self.location(path);
        Box::pin(async move { self.head_meta(&target?).await })
    }

    fn purge_expired(&self, now: SystemTime) -> BoxFuture<'_, Result<PurgeReport, StorageError>> {
        let cutoff = unix_millis(now.checked_sub(self.grace).unwrap_or(UNIX_EPOCH));
        Box::pin(async move {
            let hidden = self.hidden();
            let objects = self.list_all(&hidden).await?;
            let mut report = PurgeReport::default();
            for (id, objects) in group_sessions(&hidden, objects) {
                let dir = SessionDir(hidden.clone().join(id.as_str()));
                let record = self.read_record(&dir).await?;
                let expires = match (&record, self.get_json::<Manifest>(&dir.manifest()).await?) {
                    (Some(record), _) => record.expires,
                    (None, Some((manifest, _))) => manifest.expires,
                    // No manifest (discarded, or a crash before it was written):
                    // the newest object's age stands in for the expiry.
                    (None, None) => objects
                        .iter()
                        .map(|object| unix_millis(SystemTime::from(object.last_modified)))
                        .max()
                        .unwrap_or(0),
                };
                if expires >= cutoff {
                    continue;
                }
                if record.is_none() {
                    if let Some((claim, _)) = self.get_json::<ClaimBody>(&dir.claim()).await? {
                        let age = unix_millis(SystemTime::now()).saturating_sub(claim.at);
                        if age <= self.lease.as_millis() as u64 {
                            // A commit is running; the next cleanup removes it.
                            continue;
                        }
                    }
                }
                // The record goes last, so a cleanup cut short leaves a session
                // that still replays its record.
                let (records, rest): (Vec<Path>, Vec<Path>) = objects
                    .into_iter()
                    .map(|object| object.location)
                    .partition(|location| *location == dir.record());
                self.delete_quietly(rest).await;
                self.delete_quietly(records).await;
                if record.is_some() {
                    report.records += 1;
                } else {
                    report.sessions += 1;
                }
            }
            Ok(report)
        })
    }
}

impl ObjectStoreStorage {
    /// A file's metadata, with the user metadata that holds its entity tag.
    async fn head_meta(&self, location: &Path) -> Result<FileMeta, StorageError> {
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(location, options)
            .await
            .map_err(read_error)?;
        Ok(file_meta(&result.meta, &result.attributes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::{
        self, body, chunk, complete_default, expect_completed, failing, live_session, make_record,
        path, progress, read_all,
    };
    use ::object_store::memory::InMemory;
    use std::sync::atomic::AtomicUsize;

    fn memory() -> (Arc<InMemory>, ObjectStoreStorage) {
        let store = Arc::new(InMemory::new());
        let storage = ObjectStoreStorage::new(store.clone(), "/site//uploads/");
        (store, storage)
    }

    async fn keys(store: &InMemory, under: &str) -> Vec<String> {
        let prefix = Path::from(under);
        let mut keys: Vec<String> = store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .expect("list");
        keys.sort();
        keys
    }

    #[test]
    fn object_store_storage_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + fmt::Debug + 'static>() {}
        check::<ObjectStoreStorage>();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn object_store_storage_passes_conformance_in_memory() {
        let (_, storage) = memory();
        conformance::run_all(&storage).await;
        conformance::run_integrity(&storage).await;
    }

    #[tokio::test]
    async fn layout_keeps_sessions_under_the_hidden_prefix() {
        let (store, storage) = memory();
        storage
            .put(&path("a/b/simple.txt"), body(&[b"simple"]))
            .await
            .expect("put");
        assert_eq!(keys(&store, "site").await, ["site/uploads/a/b/simple.txt"]);

        let session = live_session(1, "a/chunked.bin");
        storage
            .write_chunk(
                &session,
                chunk(3, 5, Some(6)),
                &ChunkOptions::new(10),
                body(&[b"def"]),
            )
            .await
            .expect("chunk");
        let hidden = format!("site/uploads/.uploads/{}", session.id());
        let found = keys(&store, &hidden).await;
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[1], format!("{hidden}/manifest"));
        let name = found[0]
            .strip_prefix(&format!("{hidden}/chunks/"))
            .expect("a chunk object");
        assert!(
            name.starts_with("00000000000000000003-00000000000000000005-"),
            "{name}"
        );

        storage
            .write_chunk(
                &session,
                chunk(0, 2, None),
                &ChunkOptions::new(10),
                body(&[b"abc"]),
            )
            .await
            .expect("chunk");
        let completion = complete_default(&storage, &session).await;
        assert!(completion.fresh);
        assert_eq!(
            keys(&store, &hidden).await,
            [format!("{hidden}/manifest"), format!("{hidden}/record")],
            "chunks and claim removed, record kept"
        );
        assert_eq!(
            read_all(&storage, "a/chunked.bin").await.expect("file"),
            b"abcdef"
        );
        assert_eq!(
            storage
                .head(&path("a/chunked.bin"))
                .await
                .expect("head")
                .etag,
            completion.etag
        );
    }

    #[tokio::test]
    async fn hidden_folder_and_bad_session_ids_are_refused() {
        let (_, storage) = memory();
        for hidden in [".uploads/x", ".UPLOADS/x"] {
            let result = storage.put(&path(hidden), body(&[b"x"])).await;
            assert!(
                matches!(result, Err(StorageError::InvalidPath)),
                "{result:?}"
            );
        }
        let session = Session::new("../x".into(), path("a"), SystemTime::now());
        let result = storage.status(&session).await;
        assert!(
            matches!(result, Err(StorageError::InvalidPath)),
            "{result:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_chunks_and_files_go_in_parts() {
        let (_, storage) = memory();
        let storage = storage.part_size(1);
        assert_eq!(storage.part_size, MIN_PART_SIZE, "clamped to S3's minimum");
        let data: Vec<u8> = (0..12 * 1024 * 1024 + 7).map(|i| (i % 253) as u8).collect();
        let pieces: Vec<&[u8]> = data.chunks(100_000).collect();
        let (meta, head) = storage
            .put(&path("big/put.bin"), body(&pieces))
            .await
            .expect("put");
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(head.as_ref(), &data[..HEAD_LEN]);
        assert_eq!(
            read_all(&storage, "big/put.bin").await.expect("reads"),
            data
        );

        let session = live_session(2, "big/chunked.bin");
        let total = data.len() as u64;
        let split = 6 * 1024 * 1024 + 3;
        let (a, b) = data.split_at(split);
        storage
            .write_chunk(
                &session,
                chunk(split as u64, total - 1, Some(total)),
                &ChunkOptions::new(10),
                body(&b.chunks(65_536).collect::<Vec<_>>()),
            )
            .await
            .expect("second chunk");
        storage
            .write_chunk(
                &session,
                chunk(0, split as u64 - 1, None),
                &ChunkOptions::new(10),
                body(&a.chunks(65_536).collect::<Vec<_>>()),
            )
            .await
            .expect("first chunk");
        let completion = complete_default(&storage, &session).await;
        assert!(completion.fresh);
        assert_eq!(
            read_all(&storage, "big/chunked.bin").await.expect("reads"),
            data
        );
    }

    #[tokio::test]
    async fn overlapping_chunks_take_each_byte_once() {
        let (_, storage) = memory();
        let session = live_session(3, "overlap.bin");
        for (first, last, bytes) in [
            (2, 7, b"CDEFGH".as_slice()),
            (0, 3, b"ABCD"),
            (6, 9, b"GHIJ"),
        ] {
            storage
                .write_chunk(
                    &session,
                    chunk(first, last, Some(10)),
                    &ChunkOptions::new(10),
                    body(&[bytes]),
                )
                .await
                .expect("chunk");
        }
        complete_default(&storage, &session).await;
        assert_eq!(
            read_all(&storage, "overlap.bin").await.expect("reads"),
            b"ABCDEFGHIJ"
        );
    }

    #[tokio::test]
    async fn resent_range_stores_nothing_new() {
        let (store, storage) = memory();
        let session = live_session(4, "resend.bin");
        for _ in 0..3 {
            let status = storage
                .write_chunk(
                    &session,
                    chunk(0, 2, Some(9)),
                    &ChunkOptions::new(10),
                    body(&[b"abc"]),
                )
                .await
                .expect("chunk");
            assert_eq!(progress(&status), (Some(9), vec![[0, 2]]));
        }
        let chunks = format!("site/uploads/.uploads/{}/chunks", session.id());
        assert_eq!(keys(&store, &chunks).await.len(), 1);
        let result = storage
            .write_chunk(
                &session,
                chunk(0, 2, Some(9)),
                &ChunkOptions::new(10),
                body(&[b"ab"]),
            )
            .await;
        assert!(matches!(result, Err(StorageError::Body(_))), "{result:?}");
    }

    #[tokio::test]
    async fn unrecorded_chunk_object_does_not_count() {
        let (store, storage) = memory();
        let session = live_session(5, "leftover.bin");
        storage
            .write_chunk(
                &session,
                chunk(0, 3, Some(8)),
                &ChunkOptions::new(10),
                body(&[b"abcd"]),
            )
            .await
            .expect("chunk");
        // What a writer that died between its put and its record leaves.
        let dir = storage.session_dir(&session).expect("dir");
        let stray = Recorded {
            first: 4,
            last: 7,
            tag: "stray".into(),
        };
        store
            .put(&dir.object(&stray), PutPayload::from_static(b"XXXX"))
            .await
            .expect("put");
        let status = storage.status(&session).await.expect("status");
        assert_eq!(progress(&status), (Some(8), vec![[0, 3]]));
        storage
            .write_chunk(
                &session,
                chunk(4, 7, None),
                &ChunkOptions::new(10),
                body(&[b"efgh"]),
            )
            .await
            .expect("chunk");
        complete_default(&storage, &session).await;
        assert_eq!(
            read_all(&storage, "leftover.bin").await.expect("reads"),
            b"abcdefgh"
        );
        let chunks = format!("site/uploads/.uploads/{}/chunks", session.id());
        assert!(
            keys(&store, &chunks).await.is_empty(),
            "strays go with the session"
        );
    }

    #[tokio::test]
    async fn chunk_object_appears_only_when_whole() {
        let (store, storage) = memory();
        let session = live_session(6, "cut.bin");
        let result = storage
            .write_chunk(
                &session,
                chunk(0, 9, Some(10)),
                &ChunkOptions::new(10),
                failing(&[b"abcde"]),
            )
            .await;
        assert!(matches!(result, Err(StorageError::Body(_))), "{result:?}");
        let chunks = format!("site/uploads/.uploads/{}/chunks", session.id());
        assert!(keys(&store, &chunks).await.is_empty());
        assert_eq!(
            progress(&storage.status(&session).await.expect("status")),
            (None, vec![])
        );
    }

    async fn plant_claim(
        store: &InMemory,
        storage: &ObjectStoreStorage,
        session: &Session,
        at: u64,
    ) {
        let dir = storage.session_dir(session).expect("dir");
        let claim = ClaimBody {
            owner: "someone else".into(),
            at,
        };
        store
            .put(&dir.claim(), to_json(&claim))
            .await
            .expect("claim");
    }

    #[tokio::test]
    async fn stale_claim_is_taken_over() {
        let (store, storage) = memory();
        let session = live_session(7, "stale.bin");
        storage
            .write_chunk(
                &session,
                chunk(0, 3, Some(4)),
                &ChunkOptions::new(10),
                body(&[b"abcd"]),
            )
            .await
            .expect("chunk");
        // An instance that claimed the commit and died a minute ago.
        let old = unix_millis(SystemTime::now() - Duration::from_secs(60));
        plant_claim(&store, &storage, &session, old).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let completion = expect_completed(
            storage
                .complete(&session, &CompleteOptions::default(), make_record(&calls))
                .await,
        )
        .await;
        assert!(completion.fresh);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn live_claim_makes_others_wait_then_answer_unavailable() {
        let (store, storage) = memory();
        let storage = storage.completion_lease(Duration::from_secs(1));
        let session = live_session(8, "held.bin");
        storage
            .write_chunk(
                &session,
                chunk(0, 3, Some(4)),
                &ChunkOptions::new(10),
                body(&[b"abcd"]),
            )
            .await
            .expect("chunk");
        plant_claim(
            &store,
            &storage,
            &session,
            unix_millis(SystemTime::now()) + 60_000,
        )
        .await;
        let calls = Arc::new(AtomicUsize::new(0));
        let result = storage
            .complete(&session, &CompleteOptions::default(), make_record(&calls))
            .await;
        assert!(
            matches!(result, Err(StorageError::Unavailable { .. })),
            "{result:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(matches!(
            storage.head(session.path()).await,
            Err(StorageError::NotFound)
        ));
    }

    #[tokio::test]
    async fn purge_keeps_a_session_being_committed() {
        let (store, storage) = memory();
        let long_ago = SystemTime::now() - Duration::from_secs(30 * 24 * 3600);
        let session = conformance::session(9, "committing.bin", long_ago);
        storage
            .write_chunk(
                &session,
                chunk(0, 1, Some(4)),
                &ChunkOptions::new(10),
                body(&[b"ab"]),
            )
            .await
            .expect("chunk");
        plant_claim(&store, &storage, &session, unix_millis(SystemTime::now())).await;
        let report = storage
            .purge_expired(SystemTime::now())
            .await
            .expect("purge");
        assert_eq!(report.sessions, 0);
        plant_claim(&store, &storage, &session, 0).await;
        let report = storage
            .purge_expired(SystemTime::now())
            .await
            .expect("purge");
        assert_eq!(report.sessions, 1);
        assert!(keys(&store, "site/uploads/.uploads").await.is_empty());
    }

    #[test]
    fn buffer_takes_exact_parts() {
        let mut buffer = Buffer::default();
        for piece in [&b"abc"[..], b"defg", b"h"] {
            buffer.push(Bytes::copy_from_slice(piece));
        }
        let part: Bytes = buffer.take(5).into();
        assert_eq!(part.as_ref(), b"abcde");
        assert_eq!(buffer.len, 3);
        let rest: Bytes = buffer.take(10).into();
        assert_eq!(rest.as_ref(), b"fgh");
        assert_eq!(buffer.len, 0);
    }

    #[test]
    fn plan_takes_each_byte_once() {
        let dir = SessionDir(Path::from("d"));
        let chunk = |first, last, tag: &str| Recorded {
            first,
            last,
            tag: tag.into(),
        };
        let chunks = [
            chunk(5, 9, "b"),
            chunk(0, 6, "a"),
            chunk(8, 14, "c"),
            chunk(0, 2, "d"),
        ];
        let pieces = plan(&dir, &chunks, 0, 14).expect("covered");
        let spans: Vec<(String, u64, u64)> = pieces
            .into_iter()
            .map(|(path, from, to)| (path.filename().unwrap_or("").to_owned(), from, to))
            .collect();
        assert_eq!(
            spans,
            [
                (format!("{:020}-{:020}-a", 0, 6), 0, 7),
                (format!("{:020}-{:020}-b", 5, 9), 2, 5),
                (format!("{:020}-{:020}-c", 8, 14), 2, 7),
            ]
        );
        let window = plan(&dir, &chunks, 6, 8).expect("covered");
        assert_eq!(window.len(), 2);
        assert!(plan(&dir, &chunks[..2], 0, 14).is_none(), "a gap");
    }

    #[tokio::test]
    async fn compare_streams_piece_by_piece() {
        let pieces = |parts: &[&'static [u8]]| -> BoxStream<'static, Result<Bytes, StorageError>> {
            stream::iter(
                parts
                    .iter()
                    .map(|p| Ok(Bytes::from_static(p)))
                    .collect::<Vec<_>>(),
            )
            .boxed()
        };
        type Pieces = &'static [&'static [u8]];
        let cases: [(Pieces, Pieces, Comparison); 4] = [
            (&[b"ab", b"cd"], &[b"a", b"bcd"], Comparison::Same),
            (&[b"abcd"], &[b"abXd"], Comparison::Differ),
            (&[b"ab"], &[b"abc"], Comparison::Shorter),
            (&[b"abc", b""], &[b"ab"], Comparison::Longer),
        ];
        for (a, b, expected) in cases {
            assert_eq!(
                compare(pieces(a), pieces(b)).await.expect("compares"),
                expected
            );
        }
    }

    #[test]
    fn etags_lose_their_quotes() {
        assert_eq!(unquote("\"abc-2\""), "abc-2");
        assert_eq!(unquote("W/\"abc\""), "abc");
        assert_eq!(unquote("abc"), "abc");
    }

    // -----------------------------------------------------------------------
    // The conformance suite against a real S3 API: moto's server on loopback.

    /// A `moto_server` child, killed when dropped.
    struct Moto {
        child: std::process::Child,
        port: u16,
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn find_moto() -> Option<std::path::PathBuf> {
        let paths = std::env::var_os("PATH")?;
        std::env::split_paths(&paths)
            .map(|dir| dir.join("moto_server"))
            .find(|candidate| candidate.is_file())
    }

    /// One HTTP/1.1 request on a fresh connection; the status code.
    fn http(port: u16, method: &str, target: &str) -> std::io::Result<u16> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        answer
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not HTTP: {answer:.80}")))
    }

    fn start_moto() -> Option<Moto> {
        let Some(program) = find_moto() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "moto_server is not installed (pip install 'moto[server]'); CI must run these tests"
            );
            eprintln!("skipping: moto_server is not installed (pip install 'moto[server]')");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http(port, "GET", "/").ok() != Some(200) {
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    /// The backend's exactly-once guarantees rest on these; a server that
    /// ignored the headers would pass most tests by luck.
    async fn assert_conditional_puts(store: &dyn ObjectStore) {
        let key = Path::from("conditional/probe");
        let first = store
            .put_opts(
                &key,
                PutPayload::from_static(b"1"),
                put_options(PutMode::Create),
            )
            .await
            .expect("create");
        let again = store
            .put_opts(
                &key,
                PutPayload::from_static(b"2"),
                put_options(PutMode::Create),
            )
            .await;
        assert!(
            matches!(again, Err(::object_store::Error::AlreadyExists { .. })),
            "{again:?}"
        );
        let second = store
            .put_opts(
                &key,
                PutPayload::from_static(b"3"),
                put_options(PutMode::Update(version_of(&first))),
            )
            .await
            .expect("update on the current version");
        let stale = store
            .put_opts(
                &key,
                PutPayload::from_static(b"4"),
                put_options(PutMode::Update(version_of(&first))),
            )
            .await;
        assert!(
            matches!(stale, Err(::object_store::Error::Precondition { .. })),
            "{stale:?}"
        );
        assert_ne!(first.e_tag, second.e_tag);
        store.delete(&key).await.expect("delete");
    }

    #[tokio::test]
    async fn in_memory_store_honours_conditional_puts() {
        assert_conditional_puts(&InMemory::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn object_store_storage_passes_conformance_on_s3() {
        let Some(moto) = start_moto() else {
            return;
        };
        assert_eq!(http(moto.port, "PUT", "/conformance").expect("bucket"), 200);
        let store = ::object_store::aws::AmazonS3Builder::new()
            .with_endpoint(format!("http://127.0.0.1:{}", moto.port))
            .with_allow_http(true)
            .with_bucket_name("conformance")
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .expect("S3 client");
        let store: Arc<dyn ObjectStore> = Arc::new(store);
        assert_conditional_puts(store.as_ref()).await;
        let storage = ObjectStoreStorage::new(store, "prefix");
        conformance::run_all(&storage).await;
        conformance::run_integrity(&storage).await;
    }
}

//! [`FsStorage`]: durable storage in a local folder, shared by every process
//! that opens the same folder.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeInclusive;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::{xxh3_128, Xxh3Default};

use super::{
    BodyError, BoxFuture, ByteStream, ChunkOptions, ChunkRange, CommitInfo, CompleteOptions,
    Completion, FileDigests, FileHasher, FileMeta, FileRead, MakeRecord, PurgeReport, Session,
    SessionStatus, Storage, StorageError, HEAD_LEN,
};
use crate::{ByteRanges, SessionState, UploadPath};

/// The hidden folder under the root that holds sessions and temporary files.
const HIDDEN: &str = ".uploads";
/// Temporary files of simple uploads, under [`HIDDEN`].
const TMP: &str = "tmp";
/// Names inside a session folder.
const LOCK: &str = "lock";
const DATA_LOCK: &str = "data.lock";
const DATA: &str = "data";
const JOURNAL: &str = "journal";
const RECORD: &str = "record";
const RECORD_TMP: &str = "record.tmp";
const META: &str = "meta";
const REPR: &str = "repr";
const REPR_TMP: &str = "repr.tmp";
/// The folder of in-flight writers' markers, inside a session folder.
const WRITING: &str = "writing";
/// Prefix of a removed session folder's name under [`TMP`], while it is deleted.
const GONE: &str = "gone-";

/// Bytes of a chunk gathered from its body before one positional write (each
/// write of a chunk takes the writers' lock and checks the session).
const WRITE_BATCH: usize = 1024 * 1024;
/// Bytes of a simple upload gathered before one write: smaller, as many simple
/// uploads may stream at once and each holds up to two batches.
const PUT_BATCH: usize = 256 * 1024;
/// Bytes gathered before one write while the [`BufferBudget`] is spent: small,
/// yet enough that a hop to a blocking thread carries a few reads' worth.
const SPENT_BATCH: usize = 64 * 1024;
/// Default of [`FsStorage::buffer_budget`].
const DEFAULT_BUFFER_BUDGET: usize = 8 * 1024 * 1024;
/// Bytes written between two early `fdatasync` calls, each started on a blocking
/// thread while the body streams on, so that the last one, which the answer
/// waits for, finds little left to write.
const WRITEBACK_EVERY: u64 = 4 * 1024 * 1024;
/// Bytes per piece when a file is read back.
const READ_PIECE: usize = 256 * 1024;
/// One journal entry: first, last, total, flags (u64 little-endian each), the
/// chunk digest (u128 little-endian), then the first 8 bytes of the SHA-256 of
/// those 48 bytes.
const ENTRY_LEN: usize = 56;
/// Flag bit: the chunk named a total.
const FLAG_TOTAL: u64 = 1;
/// Flag bit: the entry carries the chunk's digest.
const FLAG_DIGEST: u64 = 2;
/// Chunks are hashed in blocks aligned on this many bytes of the file.
const BLOCK: u64 = 64 * 1024;
/// Attempts at a session call that met the session folder being removed.
const ATTEMPTS: usize = 3;
/// The first bytes of a completion record file.
const RECORD_MAGIC: &[u8; 8] = b"tsu-rec1";
/// Longest accepted session id.
const MAX_ID_LEN: usize = 128;

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
/// {root}/.uploads/{session id}/meta       the session URL's expiry, `{secs}.{nanos}`
/// {root}/.uploads/{session id}/data       the file being assembled (sparse)
/// {root}/.uploads/{session id}/journal   the ranges stored, one checksummed entry per chunk
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
/// - **Entity tags** derive from the file's size, modification time and inode, so
///   the tag given at completion is the one [`Storage::head`] reports later.
/// - A full disk (or quota) is [`StorageError::Full`], with nothing half committed.
/// - **Memory stays bounded**: bodies are written in batches of up to 256 KiB
///   (simple uploads) or 1 MiB (chunks), the next gathered while the last is
///   written; all uploads together gather at most [`FsStorage::buffer_budget`]
///   bytes this way, and past it each one writes as it reads.
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
}

impl FsStorage {
    /// A backend that stores files under `root`, creating it and its hidden
    /// `.uploads` folder if needed. Expired sessions are purged one hour after
    /// their URL expired.
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
            buffers: Arc::new(BufferBudget::new(DEFAULT_BUFFER_BUDGET)),
        })
    }

    /// How many body bytes all uploads of this backend together may gather in
    /// memory to write them in large batches (8 MiB by default). Above it, each
    /// upload writes every 64 KiB of its body and reads on only once the write
    /// is done, so memory stays bounded however many uploads
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
        let id = session.id();
        let safe = !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && id != TMP
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !safe {
            return Err(StorageError::InvalidPath);
        }
        Ok(self.root.join(HIDDEN).join(id))
    }
}

/// Why the fs backend failed, kept as the source of [`StorageError::Other`].
#[derive(Debug)]
enum FsError {
    Io(io::Error),
    Corrupt(&'static str),
    SessionRemoved,
    Abandoned,
    Blocking(tokio::task::JoinError),
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::Io(error) => write!(f, "i/o error: {error}"),
            FsError::Corrupt(what) => write!(f, "corrupt session: {what}"),
            FsError::SessionRemoved => {
                f.write_str("the session was removed (discarded, refused or cleaned up)")
            }
            FsError::Abandoned => f.write_str("the upload was abandoned"),
            FsError::Blocking(error) => write!(f, "blocking task failed: {error}"),
        }
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FsError::Io(error) => Some(error),
            FsError::Blocking(error) => Some(error),
            _ => None,
        }
    }
}

fn other(error: FsError) -> StorageError {
    StorageError::Other {
        backend: "fs",
        source: Box::new(error),
    }
}

fn is_full(error: &io::Error) -> bool {
    // ENOSPC (28) and EDQUOT (122 on Linux).
    error.kind() == io::ErrorKind::StorageFull || matches!(error.raw_os_error(), Some(28 | 122))
}

/// Maps an error of a write path: a missing file there is a failure, not a 404.
fn write_error(error: io::Error) -> StorageError {
    if is_full(&error) {
        StorageError::Full
    } else {
        other(FsError::Io(error))
    }
}

/// Maps an error of a read path, where a missing file is [`StorageError::NotFound`].
fn read_error(error: io::Error) -> StorageError {
    match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => StorageError::NotFound,
        _ => write_error(error),
    }
}

fn is_not_found(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
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

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The path's segments, refusing any that could leave the root or name the
/// hidden folder. [`UploadPath`] already refuses most; this is defence in depth.
fn checked_segments(path: &UploadPath) -> Result<Vec<&str>, StorageError> {
    let segments: Vec<&str> = path.segments().collect();
    if segments
        .first()
        .is_none_or(|first| first.eq_ignore_ascii_case(HIDDEN))
    {
        return Err(StorageError::InvalidPath);
    }
    for segment in &segments {
        if segment.is_empty() || *segment == "." || *segment == ".." || segment.contains('\0') {
            return Err(StorageError::InvalidPath);
        }
    }
    Ok(segments)
}

/// Where a file at `path` goes: creates the missing folders and refuses a path
/// that crosses a symbolic link, a file used as a folder, or ends at a folder or link.
fn prepare_destination(root: &Path, path: &UploadPath) -> Result<PathBuf, StorageError> {
    let segments = checked_segments(path)?;
    let (last, folders) = segments.split_last().ok_or(StorageError::InvalidPath)?;
    let mut dir = root.to_path_buf();
    for folder in folders {
        dir.push(folder);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => return Err(StorageError::InvalidPath),
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(write_error(error)),
        }
        match fs::create_dir(&dir) {
            Ok(()) => {
                if let Some(parent) = dir.parent() {
                    sync_dir(parent).map_err(write_error)?;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(write_error(error)),
        }
        // Another process may have raced us to this name with something else.
        if !fs::symlink_metadata(&dir).map_err(write_error)?.is_dir() {
            return Err(StorageError::InvalidPath);
        }
    }
    let target = dir.join(last);
    match fs::symlink_metadata(&target) {
        Ok(meta) if meta.is_file() => Ok(target),
        Ok(_) => Err(StorageError::InvalidPath),
        Err(error) if is_not_found(&error) => Ok(target),
        Err(error) => Err(write_error(error)),
    }
}

/// The stored file at `path`, opened without following symbolic links.
fn open_existing(root: &Path, path: &UploadPath) -> Result<(File, fs::Metadata), StorageError> {
    let segments = checked_segments(path)?;
    let mut target = root.to_path_buf();
    for (index, segment) in segments.iter().enumerate() {
        target.push(segment);
        let meta = fs::symlink_metadata(&target).map_err(read_error)?;
        if meta.file_type().is_symlink() {
            return Err(StorageError::InvalidPath);
        }
        let is_last = index + 1 == segments.len();
        if (is_last && !meta.is_file()) || (!is_last && !meta.is_dir()) {
            return Err(StorageError::NotFound);
        }
    }
    let file = File::open(&target).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    // The name may have been swapped for a link between the check and the open.
    let now = fs::symlink_metadata(&target).map_err(read_error)?;
    if now.ino() != meta.ino() || now.dev() != meta.dev() || !meta.is_file() {
        return Err(StorageError::NotFound);
    }
    Ok((file, meta))
}

/// The entity tag of a file, nginx-like: size, modification time, inode. A
/// rename keeps all three, so the tag computed before a commit holds after it.
fn etag_of(meta: &fs::Metadata) -> String {
    let nanos = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    format!("{:x}-{:x}-{:x}", meta.len(), nanos, meta.ino())
}

fn file_meta(meta: &fs::Metadata) -> Result<FileMeta, StorageError> {
    Ok(FileMeta {
        size: meta.len(),
        etag: etag_of(meta),
        modified: meta.modified().map_err(write_error)?,
    })
}

fn in_progress(state: SessionState) -> SessionStatus {
    SessionStatus::InProgress {
        total: state.total,
        ranges: state.ranges,
        repr_digest: state.repr_digest,
    }
}

fn empty_status() -> SessionStatus {
    in_progress(SessionState::default())
}

fn completed(record: StoredRecord, fresh: bool) -> SessionStatus {
    SessionStatus::Completed(Completion {
        etag: record.etag,
        record: record.record,
        fresh,
    })
}

// ---------------------------------------------------------------------------
// Journal

fn checksum(bytes: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(bytes);
    let mut out = [0; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// One recorded chunk: its range, and the digest of its bytes when the entry
/// carries one (flag bit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    range: ChunkRange,
    digest: Option<u128>,
}

fn encode_entry(entry: Entry) -> [u8; ENTRY_LEN] {
    let Entry { range, digest } = entry;
    let flags = if range.total.is_some() { FLAG_TOTAL } else { 0 }
        | if digest.is_some() { FLAG_DIGEST } else { 0 };
    let mut out = [0; ENTRY_LEN];
    out[0..8].copy_from_slice(&range.first.to_le_bytes());
    out[8..16].copy_from_slice(&range.last.to_le_bytes());
    out[16..24].copy_from_slice(&range.total.unwrap_or(0).to_le_bytes());
    out[24..32].copy_from_slice(&flags.to_le_bytes());
    out[32..48].copy_from_slice(&digest.unwrap_or(0).to_le_bytes());
    let sum = checksum(&out[..48]);
    out[48..].copy_from_slice(&sum);
    out
}

fn word(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|bytes| bytes.try_into().ok())
        .map(u64::from_le_bytes)
}

fn decode_entry(entry: &[u8]) -> Option<Entry> {
    if entry.len() != ENTRY_LEN || entry[48..] != checksum(&entry[..48]) {
        return None;
    }
    let (first, last, total, flags) = (
        word(entry, 0)?,
        word(entry, 8)?,
        word(entry, 16)?,
        word(entry, 24)?,
    );
    if first > last || flags > (FLAG_TOTAL | FLAG_DIGEST) {
        return None;
    }
    let digest = u128::from_le_bytes(entry[32..48].try_into().ok()?);
    Some(Entry {
        range: ChunkRange {
            first,
            last,
            total: (flags & FLAG_TOTAL != 0).then_some(total),
        },
        digest: (flags & FLAG_DIGEST != 0).then_some(digest),
    })
}

/// A session's journal, replayed.
#[derive(Debug, Default)]
struct Journal {
    state: SessionState,
    entries: Vec<Entry>,
    /// The length of the whole entries read.
    len: u64,
}

impl Journal {
    /// Replays the whole entries of `bytes` (the journal from offset `self.len`).
    /// Entries that fail their checksum (a torn write after a crash) are skipped.
    fn extend(&mut self, bytes: &[u8]) {
        for entry in bytes.chunks_exact(ENTRY_LEN) {
            if let Some(entry) = decode_entry(entry) {
                self.state.record(entry.range);
                self.entries.push(entry);
            }
            self.len += ENTRY_LEN as u64;
        }
    }

    /// Reads the entries appended to `journal` since it was read.
    fn refresh(&mut self, journal: &File) -> io::Result<()> {
        let len = journal.metadata()?.len();
        let whole = len - len % ENTRY_LEN as u64;
        if whole < self.len {
            // Never happens: appends only drop a torn tail. Start over.
            *self = Journal::default();
        }
        if whole == self.len {
            return Ok(());
        }
        let size =
            usize::try_from(whole - self.len).map_err(|_| io::Error::other("journal too large"))?;
        let mut bytes = vec![0; size];
        journal.read_exact_at(&mut bytes, self.len)?;
        self.extend(&bytes);
        Ok(())
    }

    /// The entry recorded for exactly `range`'s bytes with their digest.
    fn digest_of(&self, range: ChunkRange) -> Option<u128> {
        self.entries
            .iter()
            .find(|entry| entry.range.first == range.first && entry.range.last == range.last)
            .and_then(|entry| entry.digest)
    }
}

fn read_journal(journal: &File) -> io::Result<Journal> {
    let mut replayed = Journal::default();
    replayed.refresh(journal)?;
    Ok(replayed)
}

/// Appends one entry at `at` (the end of the whole entries, dropping a torn tail)
/// and makes it durable.
/// Writes `entry` at `at` (dropping a torn tail first). Not synced: the caller
/// syncs the journal before it answers.
fn append_entry(journal: &File, at: u64, entry: Entry) -> io::Result<()> {
    if journal.metadata()?.len() != at {
        journal.set_len(at)?;
    }
    journal.write_all_at(&encode_entry(entry), at)
}

fn open_journal(dir: &Path) -> Result<Option<File>, StorageError> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(JOURNAL))
    {
        Ok(file) => Ok(Some(file)),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(write_error(error)),
    }
}

/// The session's journal, replayed; empty when it has none yet.
fn session_state(dir: &Path) -> Result<Journal, StorageError> {
    match open_journal(dir)? {
        Some(journal) => read_journal(&journal).map_err(write_error),
        None => Ok(Journal::default()),
    }
}

// ---------------------------------------------------------------------------
// Repr-Digest

/// The `Repr-Digest` kept with the session, if a recorded chunk announced one.
fn read_repr(dir: &Path) -> Result<Option<String>, StorageError> {
    match fs::read(dir.join(REPR)) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| other(FsError::Corrupt("kept Repr-Digest is not text"))),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(write_error(error)),
    }
}

/// Keeps the session's `Repr-Digest` durably: temporary file, `fsync`, rename.
fn write_repr(dir: &Path, digest: &str) -> Result<(), StorageError> {
    let temp = dir.join(REPR_TMP);
    let mut file = File::create(&temp).map_err(write_error)?;
    file.write_all(digest.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    fs::rename(&temp, dir.join(REPR)).map_err(write_error)?;
    sync_dir(dir).map_err(write_error)
}

/// Fails with [`StorageError::DigestConflict`] if the chunk announces another
/// `Repr-Digest` than the kept one.
fn check_repr(kept: Option<&str>, sent: Option<&str>) -> Result<(), StorageError> {
    match (kept, sent) {
        (Some(kept), Some(sent)) if kept != sent => Err(StorageError::DigestConflict),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Chunk digests

/// Hashes a chunk's bytes as they stream: one xxh3-128 per block of the file
/// ([`BLOCK`]-aligned, cut at the chunk's ends).
struct BlockHasher {
    /// The file offset of the next byte.
    at: u64,
    current: Xxh3Default,
    /// Whether `current` holds bytes of an unfinished block.
    partial: bool,
    blocks: Vec<u128>,
}

impl BlockHasher {
    fn new(first: u64) -> Self {
        BlockHasher {
            at: first,
            current: Xxh3Default::new(),
            partial: false,
            blocks: Vec::new(),
        }
    }

    fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = BLOCK - self.at % BLOCK;
            let take = usize::try_from(room).unwrap_or(usize::MAX).min(bytes.len());
            let (head, rest) = bytes.split_at(take);
            if !self.partial && take as u64 == room {
                self.blocks.push(xxh3_128(head));
            } else {
                self.current.update(head);
                self.partial = true;
                if take as u64 == room {
                    self.blocks.push(self.current.digest128());
                    self.current.reset();
                    self.partial = false;
                }
            }
            self.at += take as u64;
            bytes = rest;
        }
    }

    fn finish(mut self) -> Vec<u128> {
        if self.partial {
            self.blocks.push(self.current.digest128());
        }
        self.blocks
    }
}

/// The digest kept in a journal entry: xxh3-128 of the chunk's block digests.
fn chunk_digest(blocks: &[u128]) -> u128 {
    let bytes: Vec<u8> = blocks
        .iter()
        .flat_map(|block| block.to_le_bytes())
        .collect();
    xxh3_128(&bytes)
}

/// Whether the data file holds `range`'s bytes (as `blocks` digests them) in
/// every block that meets one of `suspects`.
fn verify_blocks(
    data: &File,
    range: ChunkRange,
    blocks: &[u128],
    suspects: &ByteRanges,
) -> io::Result<bool> {
    let base = range.first / BLOCK;
    let mut next = base;
    let mut buffer = Vec::new();
    for &[first, last] in suspects.as_slice() {
        let (first, last) = (first.max(range.first), last.min(range.last));
        if first > last {
            continue;
        }
        for block in (first / BLOCK).max(next)..=last / BLOCK {
            let from = (block * BLOCK).max(range.first);
            let to = (block * BLOCK + BLOCK - 1).min(range.last);
            let len = usize::try_from(to - from + 1).map_err(io::Error::other)?;
            buffer.resize(len, 0);
            match data.read_exact_at(&mut buffer, from) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(error) => return Err(error),
            }
            let index = usize::try_from(block - base).map_err(io::Error::other)?;
            if blocks.get(index) != Some(&xxh3_128(&buffer)) {
                return Ok(false);
            }
            next = block + 1;
        }
    }
    Ok(true)
}

// ---------------------------------------------------------------------------
// In-flight writers

/// A chunk writer's marker, `writing/{random}`: 16 bytes of its range (`first`,
/// `last`), then 16 bytes per later writer whose range meets it. Its owner holds
/// an exclusive `flock` on it while it may write, so a marker nobody holds is
/// stale (its process died). Removed when dropped, after the owner's last write.
struct Marker {
    path: PathBuf,
    file: File,
}

impl Drop for Marker {
    fn drop(&mut self) {
        // Best effort: a leftover is stale (unlocked) and removed by the next scan.
        let _ = fs::remove_file(&self.path);
    }
}

impl Marker {
    /// The ranges of writers admitted after the owner that meet its range.
    fn later_writers(&self) -> io::Result<Vec<[u64; 2]>> {
        let len = usize::try_from(self.file.metadata()?.len()).map_err(io::Error::other)?;
        let mut bytes = vec![0; len];
        self.file.read_exact_at(&mut bytes, 0)?;
        Ok(decode_ranges(bytes.get(16..).unwrap_or_default()))
    }
}

fn decode_ranges(bytes: &[u8]) -> Vec<[u64; 2]> {
    bytes
        .chunks_exact(16)
        .filter_map(|pair| Some([word(pair, 0)?, word(pair, 8)?]))
        .collect()
}

fn encode_range(range: ChunkRange) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&range.first.to_le_bytes());
    out[8..].copy_from_slice(&range.last.to_le_bytes());
    out
}

fn meets(a: [u64; 2], range: ChunkRange) -> bool {
    a[0] <= range.last && range.first <= a[1]
}

/// Under the session lock: finds the live writers whose range meets `range`,
/// tells each of them about it (so they verify their bytes before recording),
/// removes stale markers, and registers the new writer. Returns its marker and
/// the ranges of the writers it met.
fn register_writer(dir: &Path, range: ChunkRange) -> Result<(Marker, Vec<[u64; 2]>), StorageError> {
    let writing = dir.join(WRITING);
    match fs::create_dir(&writing) {
        Err(error) if error.kind() != io::ErrorKind::AlreadyExists => {
            return Err(write_error(error))
        }
        _ => {}
    }
    let mut met = Vec::new();
    for entry in fs::read_dir(&writing).map_err(write_error)? {
        let path = entry.map_err(write_error)?.path();
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(error) if is_not_found(&error) => continue,
            Err(error) => return Err(write_error(error)),
        };
        match file.try_lock_shared() {
            Ok(()) => {
                // Nobody writes under this marker any more.
                let _ = fs::remove_file(&path);
                continue;
            }
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(error)) => return Err(write_error(error)),
        }
        let mut head = [0; 16];
        match file.read_exact_at(&mut head, 0) {
            Ok(()) => {}
            // Cannot happen: markers are written whole before anyone scans.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => continue,
            Err(error) => return Err(write_error(error)),
        }
        let [theirs] = decode_ranges(&head)[..] else {
            continue;
        };
        if meets(theirs, range) {
            let end = file.metadata().map_err(write_error)?.len();
            file.write_all_at(&encode_range(range), end)
                .map_err(write_error)?;
            met.push(theirs);
        }
    }
    let path = writing.join(random_name("w-", ""));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(write_error)?;
    let marker = Marker { path, file };
    marker.file.lock().map_err(write_error)?;
    marker
        .file
        .write_all_at(&encode_range(range), 0)
        .map_err(write_error)?;
    Ok((marker, met))
}

// ---------------------------------------------------------------------------
// Completion record

#[derive(Debug, Clone)]
struct StoredRecord {
    etag: String,
    path: String,
    record: Bytes,
}

fn encode_record(record: &StoredRecord) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(64 + record.etag.len() + record.path.len() + record.record.len());
    out.extend_from_slice(RECORD_MAGIC);
    for field in [
        record.etag.as_bytes(),
        record.path.as_bytes(),
        &record.record,
    ] {
        out.extend_from_slice(&(field.len() as u64).to_le_bytes());
        out.extend_from_slice(field);
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

fn decode_record(bytes: &[u8]) -> Option<StoredRecord> {
    let body_len = bytes.len().checked_sub(32)?;
    let (body, digest) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != digest {
        return None;
    }
    let mut rest = body.strip_prefix(RECORD_MAGIC.as_slice())?;
    let mut field = || -> Option<&[u8]> {
        let (len, tail) = rest.split_at_checked(8)?;
        let len = usize::try_from(u64::from_le_bytes(len.try_into().ok()?)).ok()?;
        let (value, tail) = tail.split_at_checked(len)?;
        rest = tail;
        Some(value)
    };
    let etag = String::from_utf8(field()?.to_vec()).ok()?;
    let path = String::from_utf8(field()?.to_vec()).ok()?;
    let record = Bytes::copy_from_slice(field()?);
    Some(StoredRecord { etag, path, record })
}

fn read_record(dir: &Path) -> Result<Option<StoredRecord>, StorageError> {
    match fs::read(dir.join(RECORD)) {
        Ok(bytes) => decode_record(&bytes)
            .map(Some)
            .ok_or_else(|| other(FsError::Corrupt("completion record fails its checksum"))),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(write_error(error)),
    }
}

fn record_exists(dir: &Path) -> Result<bool, StorageError> {
    match fs::symlink_metadata(dir.join(RECORD)) {
        Ok(_) => Ok(true),
        Err(error) if is_not_found(&error) => Ok(false),
        Err(error) => Err(write_error(error)),
    }
}

/// Writes the record durably: temporary file, `fsync`, rename, `fsync` of the folder.
fn write_record(dir: &Path, record: &StoredRecord) -> Result<(), StorageError> {
    let temp = dir.join(RECORD_TMP);
    let mut file = File::create(&temp).map_err(write_error)?;
    file.write_all(&encode_record(record))
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    fs::rename(&temp, dir.join(RECORD)).map_err(write_error)?;
    sync_dir(dir).map_err(write_error)
}

/// Finishes a commit that a crash interrupted between writing the record and
/// renaming the data file: if the session's data file is still there and is the
/// file the record describes, moves it into place.
fn roll_forward(root: &Path, dir: &Path, record: &StoredRecord) -> Result<(), StorageError> {
    let data = dir.join(DATA);
    let meta = match fs::symlink_metadata(&data) {
        Ok(meta) => meta,
        Err(error) if is_not_found(&error) => return Ok(()),
        Err(error) => return Err(write_error(error)),
    };
    if etag_of(&meta) != record.etag {
        return Ok(());
    }
    let path = UploadPath::new(&record.path)
        .ok_or_else(|| other(FsError::Corrupt("completion record names an invalid path")))?;
    let target = prepare_destination(root, &path)?;
    fs::rename(&data, &target).map_err(write_error)?;
    sync_dir(target.parent().unwrap_or(root)).map_err(write_error)
}

// ---------------------------------------------------------------------------
// Session lock and folder

/// The session's exclusive lock; released when dropped (the descriptor closes).
struct SessionLock {
    _file: File,
}

fn lock_session(dir: &Path) -> Result<SessionLock, StorageError> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| {
            if is_not_found(&error) {
                other(FsError::SessionRemoved)
            } else {
                write_error(error)
            }
        })?;
    file.lock().map_err(write_error)?;
    // Cleanup may have removed the session while we waited for the lock.
    let held = file.metadata().map_err(write_error)?;
    match fs::symlink_metadata(&path) {
        Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
            Ok(SessionLock { _file: file })
        }
        Ok(_) => Err(other(FsError::SessionRemoved)),
        Err(error) if is_not_found(&error) => Err(other(FsError::SessionRemoved)),
        Err(error) => Err(write_error(error)),
    }
}

/// Whether the call failed because the session folder was removed (by a
/// discard, a refused commit or cleanup) while it waited for the lock.
fn is_removed(error: &StorageError) -> bool {
    matches!(
        error,
        StorageError::Other { source, .. }
            if matches!(source.downcast_ref::<FsError>(), Some(FsError::SessionRemoved))
    )
}

/// Runs a session call again if it met the session folder being removed: the
/// next attempt sees the folder gone, or a fresh session.
fn retry_removed<T>(mut call: impl FnMut() -> Result<T, StorageError>) -> Result<T, StorageError> {
    let mut attempt = 1;
    loop {
        match call() {
            Err(error) if attempt < ATTEMPTS && is_removed(&error) => attempt += 1,
            result => return result,
        }
    }
}

fn dir_exists(dir: &Path) -> Result<bool, StorageError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) => Ok(meta.is_dir()),
        Err(error) if is_not_found(&error) => Ok(false),
        Err(error) => Err(write_error(error)),
    }
}

/// Creates the session folder; safe when several processes race to create it.
fn ensure_session_dir(dir: &Path) -> Result<(), StorageError> {
    let created = match fs::create_dir(dir) {
        Ok(()) => true,
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => false,
        Err(error) if is_not_found(&error) => {
            // The hidden folder was removed from under us; recreate it.
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent).map_err(write_error)?;
            }
            match fs::create_dir(dir) {
                Ok(()) => true,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => false,
                Err(error) => return Err(write_error(error)),
            }
        }
        Err(error) => return Err(write_error(error)),
    };
    if created {
        if let Some(parent) = dir.parent() {
            sync_dir(parent).map_err(write_error)?;
        }
    }
    if !fs::symlink_metadata(dir).map_err(write_error)?.is_dir() {
        return Err(other(FsError::Corrupt("session folder is not a folder")));
    }
    Ok(())
}

fn open_create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

fn encode_expiry(expires: SystemTime) -> String {
    let since = expires.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}\n", since.as_secs(), since.subsec_nanos())
}

fn decode_expiry(text: &str) -> Option<SystemTime> {
    let (secs, nanos) = text.trim().split_once('.')?;
    let since = Duration::new(
        secs.parse().ok()?,
        nanos.parse().ok().filter(|n| *n < 1_000_000_000)?,
    );
    UNIX_EPOCH.checked_add(since)
}

/// A session's expiry; without a readable `meta` file (a crash while creating
/// it), the folder's modification time stands in.
fn session_expiry(dir: &Path) -> Result<SystemTime, StorageError> {
    if let Some(expires) = fs::read_to_string(dir.join(META))
        .ok()
        .as_deref()
        .and_then(decode_expiry)
    {
        return Ok(expires);
    }
    fs::symlink_metadata(dir)
        .and_then(|meta| meta.modified())
        .map_err(write_error)
}

/// How a chunk's bytes are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// The chunk resends exactly a recorded range whose digest is known: its
    /// body is only hashed and compared with that digest.
    Resend(u128),
    /// Bytes in recorded ranges are compared with the stored ones, the others
    /// written.
    Stream,
}

/// What a chunk writer holds, from its admission to its end.
struct ChunkFiles {
    dir: PathBuf,
    plan: Plan,
    /// The data file, opened while the session lock was held (so it is the
    /// session's data file, never one created after a commit or discard
    /// replaced it).
    data: File,
    /// The writers' lock: shared while writing a batch, exclusive while a
    /// chunk is recorded or the session commits.
    data_lock: File,
    /// The session's journal, opened with the data file.
    journal: File,
    /// The journal as this writer last read it; refreshed before each batch.
    known: Mutex<Journal>,
    /// The ranges of writers in flight at admission that meet the chunk's range.
    met: Vec<[u64; 2]>,
    /// Registered when the chunk may write bytes; removed when this is dropped,
    /// after the last batch (the blocking tasks hold this value too).
    marker: Option<Marker>,
}

enum Admission {
    Completed(StoredRecord),
    Admitted(ChunkFiles),
}

/// First step of a chunk: under the session lock, check the chunk and open the
/// session's files.
fn admit_chunk(
    root: &Path,
    dir: PathBuf,
    session: &Session,
    range: ChunkRange,
    options: &ChunkOptions,
) -> Result<Admission, StorageError> {
    ensure_session_dir(&dir)?;
    let _lock = lock_session(&dir)?;
    if let Some(record) = read_record(&dir)? {
        roll_forward(root, &dir, &record)?;
        return Ok(Admission::Completed(record));
    }
    let journal = session_state(&dir)?;
    journal.state.admit(range, options.max_ranges)?;
    check_repr(read_repr(&dir)?.as_deref(), options.repr_digest.as_deref())?;

    let mut created = false;
    let meta = dir.join(META);
    if !meta.exists() {
        let mut file = File::create(&meta).map_err(write_error)?;
        file.write_all(encode_expiry(session.expires()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write_error)?;
        created = true;
    }
    let mut open = |name: &str| {
        let path = dir.join(name);
        created |= !path.exists();
        open_create(&path).map_err(write_error)
    };
    let data = open(DATA)?;
    let data_lock = open(DATA_LOCK)?;
    let journal_file = open(JOURNAL)?;
    if created {
        journal_file.sync_all().map_err(write_error)?;
        sync_dir(&dir).map_err(write_error)?;
    }
    let (plan, marker, met) = if let Some(digest) = journal.digest_of(range) {
        (Plan::Resend(digest), None, Vec::new())
    } else if journal.state.ranges.contains(range.first, range.last) {
        // Every byte is stored: the chunk only compares.
        (Plan::Stream, None, Vec::new())
    } else {
        let (marker, met) = register_writer(&dir, range)?;
        (Plan::Stream, Some(marker), met)
    };
    Ok(Admission::Admitted(ChunkFiles {
        dir,
        plan,
        data,
        data_lock,
        journal: journal_file,
        known: Mutex::new(journal),
        met,
        marker,
    }))
}

/// Stores `bytes` at `offset`: the parts in `stored` are compared with the data
/// file (a difference is [`StorageError::RangeConflict`]), the others written.
fn store_piece(
    file: &File,
    offset: u64,
    bytes: &[u8],
    stored: &ByteRanges,
) -> Result<(), StorageError> {
    let too_far = || write_error(io::Error::other("offset past the largest file size"));
    let end = offset.checked_add(bytes.len() as u64).ok_or_else(too_far)?;
    let slice = |from: u64, to: u64| -> Result<&[u8], StorageError> {
        let from = usize::try_from(from - offset).map_err(|_| too_far())?;
        let to = usize::try_from(to - offset).map_err(|_| too_far())?;
        bytes.get(from..to).ok_or_else(too_far)
    };
    let write = |from: u64, to: u64| -> Result<(), StorageError> {
        file.write_all_at(slice(from, to)?, from)
            .map_err(write_error)
    };
    let compare = |from: u64, to: u64| -> Result<(), StorageError> {
        let sent = slice(from, to)?;
        let mut on_disk = vec![0; sent.len()];
        file.read_exact_at(&mut on_disk, from)
            .map_err(write_error)?;
        if on_disk != sent {
            return Err(StorageError::RangeConflict);
        }
        Ok(())
    };
    let ranges = stored.as_slice();
    let mut cursor = offset;
    let start = ranges.partition_point(|r| r[1] < offset);
    for &[first, last] in &ranges[start..] {
        if first >= end || cursor >= end {
            break;
        }
        if first > cursor {
            write(cursor, first)?;
        }
        let stop = end.min(last.saturating_add(1));
        compare(cursor.max(first), stop)?;
        cursor = stop;
    }
    if cursor < end {
        write(cursor, end)?;
    }
    Ok(())
}

/// Stores a batch of pieces from `offset`, holding the writers' shared lock so
/// that no chunk is recorded and no commit happens midway. Ranges recorded
/// since the last batch are read first, so recorded bytes are compared, never
/// written. Returns false, storing nothing, once the session is complete: its
/// data file is the committed file now.
fn write_batch(files: &ChunkFiles, offset: u64, pieces: &[Bytes]) -> Result<bool, StorageError> {
    files.data_lock.lock_shared().map_err(write_error)?;
    let result = (|| {
        if record_exists(&files.dir)? {
            return Ok(false);
        }
        let mut known = files
            .known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        known.refresh(&files.journal).map_err(write_error)?;
        let mut at = offset;
        for piece in pieces {
            store_piece(&files.data, at, piece, &known.state.ranges)?;
            at += piece.len() as u64;
        }
        Ok(true)
    })();
    files.data_lock.unlock().map_err(write_error)?;
    result
}

/// Whether `file` is the file at `path`.
fn same_file(file: &File, path: &Path) -> Result<bool, StorageError> {
    let held = file.metadata().map_err(write_error)?;
    match fs::symlink_metadata(path) {
        Ok(now) => Ok(now.ino() == held.ino() && now.dev() == held.dev()),
        Err(error) if is_not_found(&error) => Ok(false),
        Err(error) => Err(write_error(error)),
    }
}

/// Holds the writers' lock exclusively; released when dropped.
struct ExclusiveData<'a>(&'a File);

impl<'a> ExclusiveData<'a> {
    fn lock(file: &'a File) -> Result<Self, StorageError> {
        file.lock().map_err(write_error)?;
        Ok(ExclusiveData(file))
    }
}

impl Drop for ExclusiveData<'_> {
    fn drop(&mut self) {
        // Closing the descriptor releases it too.
        let _ = self.0.unlock();
    }
}

/// Last step of a chunk: under the session lock, check it again and record it.
/// `blocks` are the digests of the chunk's bytes (see [`BlockHasher`]).
fn record_chunk(
    root: &Path,
    files: &ChunkFiles,
    range: ChunkRange,
    options: &ChunkOptions,
    blocks: &[u128],
) -> Result<SessionStatus, StorageError> {
    let dir = &files.dir;
    let _lock = lock_session(dir)?;
    if let Some(record) = read_record(dir)? {
        roll_forward(root, dir, &record)?;
        return Ok(completed(record, false));
    }
    // A session discarded since the admission (perhaps started afresh) is
    // none of this chunk's business any more.
    if !same_file(&files.journal, &dir.join(JOURNAL))? {
        return Err(other(FsError::SessionRemoved));
    }
    let journal = read_journal(&files.journal).map_err(write_error)?;
    let mut state = journal.state;
    state.admit(range, options.max_ranges)?;
    let kept = read_repr(dir)?;
    check_repr(kept.as_deref(), options.repr_digest.as_deref())?;
    let digest = chunk_digest(blocks);

    // Held until the entry is appended: no writer stores a batch meanwhile.
    let exclusive = match files.plan {
        Plan::Resend(stored) => {
            if stored != digest {
                return Err(StorageError::RangeConflict);
            }
            // Nothing was written: the range is recorded with these bytes.
            None
        }
        Plan::Stream => {
            let exclusive = ExclusiveData::lock(&files.data_lock)?;
            // Writers that met this chunk's range while it streamed may have
            // written over its bytes: check those blocks on disk.
            let mut suspects = ByteRanges::from_ranges(files.met.iter().copied());
            if let Some(marker) = &files.marker {
                for [first, last] in marker.later_writers().map_err(write_error)? {
                    suspects.insert(first, last);
                }
            }
            let overlapped = suspects
                .as_slice()
                .iter()
                .any(|suspect| meets(*suspect, range));
            if overlapped {
                if !verify_blocks(&files.data, range, blocks, &suspects).map_err(write_error)? {
                    return Err(StorageError::RangeConflict);
                }
                // The verified bytes may have been written after this chunk's sync.
                files.data.sync_data().map_err(write_error)?;
            }
            Some(exclusive)
        }
    };

    if kept.is_none() {
        if let Some(sent) = &options.repr_digest {
            write_repr(dir, sent)?;
        }
    }
    let known = state.ranges.contains(range.first, range.last)
        && (range.total.is_none() || range.total == state.total);
    if !known {
        let entry = Entry {
            range,
            digest: Some(digest),
        };
        append_entry(&files.journal, journal.len, entry).map_err(write_error)?;
        // Writers see the entry (they read the journal) from here on, so they
        // may store batches again while it is made durable. The chunk's bytes
        // already are: should a crash lose the entry, the chunk was never
        // answered, and its bytes on disk are what any writer compared with.
        drop(exclusive);
        files.journal.sync_data().map_err(write_error)?;
        state.record(range);
    }
    Ok(in_progress(state))
}

/// Removes a session folder atomically: renames it under [`TMP`] (so no later
/// call finds half a session, even after a crash), then deletes it.
fn remove_session_dir(dir: &Path) -> Result<(), StorageError> {
    let hidden = dir
        .parent()
        .ok_or_else(|| other(FsError::Corrupt("session folder has no parent")))?;
    let tmp = hidden.join(TMP);
    fs::create_dir_all(&tmp).map_err(write_error)?;
    let gone = tmp.join(random_name(GONE, ""));
    match fs::rename(dir, &gone) {
        Ok(()) => {}
        Err(error) if is_not_found(&error) => return Ok(()),
        Err(error) => return Err(write_error(error)),
    }
    sync_dir(hidden).map_err(write_error)?;
    // Best effort: a leftover is removed by `purge_expired`.
    let _ = fs::remove_dir_all(&gone);
    Ok(())
}

/// Commits a complete session, under its lock. See [`Storage::complete`].
fn complete_session(
    root: &Path,
    dir: &Path,
    path: &UploadPath,
    options: &CompleteOptions,
    make_record: MakeRecord,
) -> Result<SessionStatus, StorageError> {
    if !dir_exists(dir)? {
        return Ok(empty_status());
    }
    let _lock = lock_session(dir)?;
    if let Some(record) = read_record(dir)? {
        roll_forward(root, dir, &record)?;
        return Ok(completed(record, false));
    }
    let state = session_state(dir)?.state;
    let total = match state.total {
        Some(total) if state.is_complete() => total,
        _ => return Ok(in_progress(state)),
    };
    // Refuse a bad destination before anything irreversible.
    let target = prepare_destination(root, path)?;

    // No writer may touch the data file from here on.
    let data_lock = open_create(&dir.join(DATA_LOCK)).map_err(write_error)?;
    let exclusive = ExclusiveData::lock(&data_lock)?;
    let data_path = dir.join(DATA);
    let data = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&data_path)
        .map_err(write_error)?;
    let len = data.metadata().map_err(write_error)?.len();
    if len > total {
        // Bytes of a failed chunk past the end; they were never recorded.
        data.set_len(total).map_err(write_error)?;
    } else if len < total {
        return Err(other(FsError::Corrupt("data file shorter than its ranges")));
    }
    data.sync_all().map_err(write_error)?;
    let head = read_head(&data, total)?;
    let meta = data.metadata().map_err(write_error)?;
    let repr_digest = read_repr(dir)?;
    let wanted = options.digests.with_repr_digest(repr_digest.as_deref());
    let digests = if wanted.is_empty() {
        FileDigests::default()
    } else {
        let mut hasher = FileHasher::new(wanted);
        let mut buffer = vec![0u8; 1 << 20];
        let mut at = 0;
        loop {
            let read = data.read_at(&mut buffer, at).map_err(write_error)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            at += read as u64;
        }
        hasher.finish()
    };
    let info = CommitInfo {
        size: total,
        head,
        etag: etag_of(&meta),
        repr_digest,
        digests,
    };
    let Ok(record) = make_record(&info) else {
        // Nothing was committed; the session goes as a whole.
        drop(exclusive);
        remove_session_dir(dir)?;
        return Err(StorageError::CommitRefused);
    };
    let record = StoredRecord {
        record,
        etag: info.etag,
        path: path.as_str().to_owned(),
    };
    write_record(dir, &record)?;
    fs::rename(&data_path, &target).map_err(write_error)?;
    sync_dir(target.parent().unwrap_or(root)).map_err(write_error)?;
    drop(exclusive);
    Ok(completed(record, true))
}

// ---------------------------------------------------------------------------
// Simple uploads

/// A temporary file that is removed unless committed, even when the future that
/// owns it is dropped at any await point: the state is behind a mutex shared
/// with the blocking tasks, so creation, commit and removal never interleave.
#[derive(Debug)]
struct Temp {
    path: PathBuf,
    state: Mutex<TempState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TempState {
    Pending,
    Created,
    Committed,
    Abandoned,
}

impl Temp {
    fn state(&self) -> MutexGuard<'_, TempState> {
        // The state is a plain value; a panic cannot leave it half-updated.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn create(&self) -> Result<File, StorageError> {
        let mut state = self.state();
        if *state != TempState::Pending {
            return Err(other(FsError::Abandoned));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&self.path)
            .map_err(write_error)?;
        *state = TempState::Created;
        Ok(file)
    }

    fn commit(&self, target: &Path) -> Result<(), StorageError> {
        let mut state = self.state();
        if *state != TempState::Created {
            return Err(other(FsError::Abandoned));
        }
        fs::rename(&self.path, target).map_err(write_error)?;
        *state = TempState::Committed;
        Ok(())
    }
}

/// Removes the temporary file when dropped, unless it was committed.
struct TempGuard(Arc<Temp>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        let mut state = self.0.state();
        if *state == TempState::Created {
            // Best effort: a leftover is removed by `purge_expired` later.
            let _ = fs::remove_file(&self.0.path);
        }
        if *state != TempState::Committed {
            *state = TempState::Abandoned;
        }
    }
}

/// A unique file name: `{prefix}{32 random hex digits}{suffix}`.
fn random_name(prefix: &str, suffix: &str) -> String {
    let mut random = [0u8; 16];
    if getrandom::fill(&mut random).is_err() {
        // Uniqueness matters, not secrecy: fall back on the clock and the pid.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        random = (nanos ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}{suffix}")
}

fn temp_name() -> String {
    random_name("put-", ".part")
}

/// The first bytes of a file of `size` bytes, at most [`HEAD_LEN`].
fn read_head(file: &File, size: u64) -> Result<Bytes, StorageError> {
    let len = usize::try_from(size).unwrap_or(HEAD_LEN).min(HEAD_LEN);
    let mut head = vec![0; len];
    file.read_exact_at(&mut head, 0).map_err(write_error)?;
    Ok(Bytes::from(head))
}

/// Writes pieces in order from `offset`.
fn write_pieces(file: &File, offset: u64, pieces: &[Bytes]) -> Result<(), StorageError> {
    let mut at = offset;
    for piece in pieces {
        file.write_all_at(piece, at).map_err(write_error)?;
        at += piece.len() as u64;
    }
    Ok(())
}

/// Body bytes held in memory by all uploads of one backend, gathered into
/// batches or being written, against a limit.
#[derive(Debug)]
struct BufferBudget {
    held: AtomicUsize,
    limit: usize,
}

impl BufferBudget {
    fn new(limit: usize) -> Self {
        BufferBudget {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    fn exceeded(&self) -> bool {
        self.held.load(Ordering::Relaxed) > self.limit
    }
}

/// Pieces of a body gathered for one positional write; their bytes count
/// against the backend's [`BufferBudget`] until the batch is dropped.
struct Batch {
    pieces: Vec<Bytes>,
    len: usize,
    budget: Arc<BufferBudget>,
}

impl Batch {
    fn new(budget: Arc<BufferBudget>) -> Self {
        Batch {
            pieces: Vec::new(),
            len: 0,
            budget,
        }
    }

    fn push(&mut self, piece: Bytes) {
        self.budget.held.fetch_add(piece.len(), Ordering::Relaxed);
        self.len += piece.len();
        self.pieces.push(piece);
    }

    fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Whether to write the batch now: it is `size` bytes large, or
    /// [`SPENT_BATCH`] bytes large while the budget is spent.
    fn is_full(&self, size: usize) -> bool {
        self.len >= size || (self.len >= SPENT_BATCH && self.budget.exceeded())
    }

    /// The gathered batch; an empty one takes its place.
    fn take(&mut self) -> Batch {
        let budget = Arc::clone(&self.budget);
        std::mem::replace(self, Batch::new(budget))
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.len, Ordering::Relaxed);
    }
}

/// Writes a body's batches on blocking threads, one batch at a time, while the
/// async side reads the next one, and starts writeback early: every
/// [`WRITEBACK_EVERY`] bytes an `fdatasync` runs on another blocking thread
/// unless one still runs. At most two batches are held: one being written and
/// one being gathered; while the backend's [`BufferBudget`] is spent, only the
/// one being written.
struct Pipeline {
    file: Arc<File>,
    writing: Option<tokio::task::JoinHandle<Result<bool, StorageError>>>,
    syncing: Option<tokio::task::JoinHandle<io::Result<()>>>,
    unsynced: u64,
}

impl Pipeline {
    fn new(file: Arc<File>) -> Self {
        Pipeline {
            file,
            writing: None,
            syncing: None,
            unsynced: 0,
        }
    }

    /// Waits for the batch being written, then starts `write` of `batch` on a
    /// blocking thread (and, while the budget is spent, waits for it too).
    /// Returns false when a write found the session closed.
    async fn write<F>(&mut self, batch: Batch, write: F) -> Result<bool, StorageError>
    where
        F: FnOnce(&[Bytes]) -> Result<bool, StorageError> + Send + 'static,
    {
        let previous = self.wait().await?;
        if !previous {
            return Ok(false);
        }
        let len = batch.len as u64;
        let budget = Arc::clone(&batch.budget);
        self.writing = Some(tokio::task::spawn_blocking(move || {
            let written = write(&batch.pieces);
            drop(batch);
            written
        }));
        self.unsynced += len;
        if self.unsynced >= WRITEBACK_EVERY && self.syncing.as_ref().is_none_or(|s| s.is_finished())
        {
            // An error here shows again in the final sync, which the answer waits for.
            let file = Arc::clone(&self.file);
            self.syncing = Some(tokio::task::spawn_blocking(move || file.sync_data()));
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
            Some(task) => task
                .await
                .map_err(|error| other(FsError::Blocking(error)))?,
            None => Ok(true),
        }
    }

    /// Waits for the last batch and the early writeback.
    async fn finish(mut self) -> Result<bool, StorageError> {
        let open = self.wait().await;
        if let Some(task) = self.syncing.take() {
            let _ = task.await;
        }
        open
    }
}

impl Storage for FsStorage {
    fn write_chunk(
        &self,
        session: &Session,
        range: ChunkRange,
        options: &ChunkOptions,
        mut body: ByteStream,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let options = Arc::new(options.clone());
        let session = session.clone();
        let root = Arc::clone(&self.root);
        let buffers = Arc::clone(&self.buffers);
        let dir = self.session_dir(&session);
        Box::pin(async move {
            let dir = dir?;
            checked_segments(session.path())?;
            if range.first > range.last {
                return Err(StorageError::RangeNotSatisfiable);
            }
            let expected = (range.last - range.first)
                .checked_add(1)
                .ok_or(StorageError::RangeNotSatisfiable)?;

            let admission = {
                let (root, session, options) =
                    (Arc::clone(&root), session.clone(), Arc::clone(&options));
                blocking(move || {
                    retry_removed(|| admit_chunk(&root, dir.clone(), &session, range, &options))
                })
                .await?
            };
            let files = match admission {
                Admission::Completed(record) => return Ok(completed(record, false)),
                Admission::Admitted(files) => Arc::new(files),
            };

            let mut hasher = BlockHasher::new(range.first);
            let mut received = 0u64;
            let mut written = 0u64;
            let mut batch = Batch::new(Arc::clone(&buffers));
            let mut open = true;
            let mut pipeline =
                Pipeline::new(Arc::new(files.data.try_clone().map_err(write_error)?));
            loop {
                let piece = body.next().await;
                let end = piece.is_none();
                if let Some(piece) = piece {
                    let piece = match piece {
                        Ok(piece) => piece,
                        Err(error) => {
                            // No write of this chunk outlives its answer.
                            let _ = pipeline.finish().await;
                            return Err(StorageError::Body(error));
                        }
                    };
                    received = received.saturating_add(piece.len() as u64);
                    if received > expected {
                        let _ = pipeline.finish().await;
                        return Err(StorageError::Body(BodyError(
                            crate::Error::ContentRangeMismatch,
                        )));
                    }
                    hasher.update(&piece);
                    if files.plan == Plan::Stream {
                        batch.push(piece);
                    }
                }
                if !batch.is_empty() && (end || batch.is_full(WRITE_BATCH)) {
                    let at = range.first + written;
                    written += batch.len as u64;
                    let files = Arc::clone(&files);
                    open = pipeline
                        .write(batch.take(), move |pieces| write_batch(&files, at, pieces))
                        .await?;
                }
                if end || !open {
                    // Closed: the session completed meanwhile; the rest of the
                    // body is not needed.
                    break;
                }
            }
            open = pipeline.finish().await? && open;
            if open && received != expected {
                return Err(StorageError::Body(BodyError(
                    crate::Error::ContentRangeMismatch,
                )));
            }
            let blocks = hasher.finish();
            blocking(move || {
                if open && files.plan == Plan::Stream {
                    files.data.sync_data().map_err(write_error)?;
                }
                record_chunk(&root, &files, range, &options, &blocks)
            })
            .await
        })
    }

    fn status(&self, session: &Session) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let root = Arc::clone(&self.root);
        let dir = self.session_dir(session);
        Box::pin(async move {
            let dir = dir?;
            blocking(move || {
                retry_removed(|| {
                    if !dir_exists(&dir)? {
                        return Ok(empty_status());
                    }
                    let _lock = lock_session(&dir)?;
                    if let Some(record) = read_record(&dir)? {
                        roll_forward(&root, &dir, &record)?;
                        return Ok(completed(record, false));
                    }
                    let mut state = session_state(&dir)?.state;
                    state.repr_digest = read_repr(&dir)?;
                    Ok(in_progress(state))
                })
            })
            .await
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
        let path = session.path().clone();
        let options = *options;
        Box::pin(async move {
            let dir = dir?;
            checked_segments(&path)?;
            blocking(move || complete_session(&root, &dir, &path, &options, make_record)).await
        })
    }

    fn discard(&self, session: &Session) -> BoxFuture<'_, Result<(), StorageError>> {
        let dir = self.session_dir(session);
        Box::pin(async move {
            let dir = dir?;
            blocking(move || {
                retry_removed(|| {
                    if !dir_exists(&dir)? {
                        return Ok(());
                    }
                    let _lock = lock_session(&dir)?;
                    if read_record(&dir)?.is_some() {
                        return Ok(());
                    }
                    remove_session_dir(&dir)
                })
            })
            .await
        })
    }

    fn put(
        &self,
        path: &UploadPath,
        mut body: ByteStream,
    ) -> BoxFuture<'_, Result<(FileMeta, Bytes), StorageError>> {
        let root = Arc::clone(&self.root);
        let buffers = Arc::clone(&self.buffers);
        let path = path.clone();
        Box::pin(async move {
            checked_segments(&path)?;
            let temp = Arc::new(Temp {
                path: root.join(HIDDEN).join(TMP).join(temp_name()),
                state: Mutex::new(TempState::Pending),
            });
            let guard = TempGuard(Arc::clone(&temp));
            let file = {
                let temp = Arc::clone(&temp);
                let tmp_dir = root.join(HIDDEN).join(TMP);
                Arc::new(
                    blocking(move || {
                        fs::create_dir_all(&tmp_dir).map_err(write_error)?;
                        temp.create()
                    })
                    .await?,
                )
            };

            let mut written = 0u64;
            let mut batch = Batch::new(Arc::clone(&buffers));
            let mut pipeline = Pipeline::new(Arc::clone(&file));
            loop {
                let piece = body.next().await;
                let end = piece.is_none();
                if let Some(piece) = piece {
                    let piece = match piece {
                        Ok(piece) => piece,
                        Err(error) => {
                            let _ = pipeline.finish().await;
                            return Err(StorageError::Body(error));
                        }
                    };
                    batch.push(piece);
                }
                if !batch.is_empty() && (end || batch.is_full(PUT_BATCH)) {
                    let at = written;
                    written = written.saturating_add(batch.len as u64);
                    let file = Arc::clone(&file);
                    pipeline
                        .write(batch.take(), move |pieces| {
                            write_pieces(&file, at, pieces).map(|()| true)
                        })
                        .await?;
                }
                if end {
                    break;
                }
            }
            pipeline.finish().await?;

            let (meta, head) = blocking(move || {
                file.sync_all().map_err(write_error)?;
                let meta = file_meta(&file.metadata().map_err(write_error)?)?;
                // The head is read back (from the page cache) rather than kept
                // while the body streams: many uploads at once hold no copies.
                let head = read_head(&file, meta.size)?;
                let target = prepare_destination(&root, &path)?;
                temp.commit(&target)?;
                sync_dir(target.parent().unwrap_or(&root)).map_err(write_error)?;
                Ok((meta, head))
            })
            .await?;
            drop(guard);
            Ok((meta, head))
        })
    }

    fn read(
        &self,
        path: &UploadPath,
        range: Option<RangeInclusive<u64>>,
    ) -> BoxFuture<'_, Result<FileRead, StorageError>> {
        let root = Arc::clone(&self.root);
        let path = path.clone();
        Box::pin(async move {
            let (file, meta) = blocking(move || open_existing(&root, &path)).await?;
            let meta = file_meta(&meta)?;
            let (start, end) = match range {
                Some(range) => (*range.start(), range.end().saturating_add(1).min(meta.size)),
                None => (0, meta.size),
            };
            let state = Some((Arc::new(file), start, end));
            let body = stream::unfold(state, |state| async move {
                let (file, at, end) = state?;
                if at >= end {
                    return None;
                }
                let len = usize::try_from(end - at)
                    .unwrap_or(READ_PIECE)
                    .min(READ_PIECE);
                let reader = Arc::clone(&file);
                let piece = blocking(move || {
                    let mut buf = vec![0; len];
                    reader.read_exact_at(&mut buf, at).map_err(write_error)?;
                    Ok(Bytes::from(buf))
                })
                .await;
                match piece {
                    Ok(piece) => Some((Ok(piece), Some((file, at + len as u64, end)))),
                    Err(error) => Some((Err(error), None)),
                }
            });
            Ok(FileRead {
                meta,
                body: Box::pin(body),
            })
        })
    }

    fn head(&self, path: &UploadPath) -> BoxFuture<'_, Result<FileMeta, StorageError>> {
        let root = Arc::clone(&self.root);
        let path = path.clone();
        Box::pin(async move {
            let (_, meta) = blocking(move || open_existing(&root, &path)).await?;
            file_meta(&meta)
        })
    }

    fn purge_expired(&self, now: SystemTime) -> BoxFuture<'_, Result<PurgeReport, StorageError>> {
        let root = Arc::clone(&self.root);
        let cutoff = now.checked_sub(self.grace).unwrap_or(UNIX_EPOCH);
        Box::pin(async move { blocking(move || purge(&root, cutoff)).await })
    }
}

fn purge(root: &Path, cutoff: SystemTime) -> Result<PurgeReport, StorageError> {
    let mut report = PurgeReport::default();
    let hidden = root.join(HIDDEN);
    let entries = match fs::read_dir(&hidden) {
        Ok(entries) => entries,
        Err(error) if is_not_found(&error) => return Ok(report),
        Err(error) => return Err(write_error(error)),
    };
    for entry in entries {
        let entry = entry.map_err(write_error)?;
        let name = entry.file_name();
        let dir = entry.path();
        if !entry.file_type().map_err(write_error)?.is_dir() {
            continue;
        }
        if name == TMP {
            report.temporaries += purge_temporaries(&dir, cutoff)?;
            continue;
        }
        if session_expiry(&dir)? >= cutoff {
            continue;
        }
        // Wait for any writer of the session before removing it.
        let lock = match lock_session(&dir) {
            Ok(lock) => lock,
            Err(_) if !dir_exists(&dir)? => continue,
            Err(error) => return Err(error),
        };
        let record = read_record(&dir).ok().flatten();
        if let Some(record) = &record {
            // Never lose a committed file to a crash that interrupted its rename.
            roll_forward(root, &dir, record)?;
        }
        remove_session_dir(&dir)?;
        drop(lock);
        if record.is_some() {
            report.records += 1;
        } else {
            report.sessions += 1;
        }
    }
    Ok(report)
}

fn purge_temporaries(dir: &Path, cutoff: SystemTime) -> Result<usize, StorageError> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(write_error)? {
        let entry = entry.map_err(write_error)?;
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(error) if is_not_found(&error) => continue,
            Err(error) => return Err(write_error(error)),
        };
        if meta.is_dir() && entry.file_name().to_string_lossy().starts_with(GONE) {
            // A removed session folder whose deletion was interrupted.
            match fs::remove_dir_all(entry.path()) {
                Ok(()) => removed += 1,
                Err(error) if is_not_found(&error) => {}
                Err(error) => return Err(write_error(error)),
            }
            continue;
        }
        if !meta.is_file() || meta.modified().map_err(write_error)? >= cutoff {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(write_error(error)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::{
        self, body, chunk, complete_default, expect_completed, failing, live_session, make_record,
        path, progress, read_all,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
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

    #[test]
    fn fs_storage_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + fmt::Debug + 'static>() {}
        check::<FsStorage>();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fs_storage_passes_conformance() {
        let (_folder, storage) = storage();
        conformance::run_all(&storage).await;
        conformance::run_integrity(&storage).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn layout_puts_files_at_their_path_and_sessions_in_hidden_folder() {
        let (folder, storage) = storage();
        let root = folder.path();
        storage
            .put(&path("a/b/simple.txt"), body(&[b"simple"]))
            .await
            .expect("put");
        assert_eq!(
            fs::read(root.join("a/b/simple.txt")).expect("file"),
            b"simple"
        );
        assert_eq!(temporaries(&storage), 0);

        let session = live_session(1, "a/chunked.bin");
        let dir = session_dir(&storage, &session);
        assert_eq!(dir, root.join(".uploads").join(session.id()));
        storage
            .write_chunk(
                &session,
                chunk(0, 2, Some(6)),
                &ChunkOptions::new(10),
                body(&[b"abc"]),
            )
            .await
            .expect("chunk");
        for name in [DATA, JOURNAL, LOCK, META, DATA_LOCK] {
            assert!(dir.join(name).exists(), "{name} missing");
        }
        assert_eq!(
            fs::metadata(dir.join(JOURNAL)).expect("journal").len(),
            ENTRY_LEN as u64
        );
        let expiry = fs::read_to_string(dir.join(META)).expect("meta");
        assert_eq!(decode_expiry(&expiry), Some(session.expires()));
        assert!(!root.join("a/chunked.bin").exists());

        storage
            .write_chunk(
                &session,
                chunk(3, 5, None),
                &ChunkOptions::new(10),
                body(&[b"def"]),
            )
            .await
            .expect("chunk");
        let data_inode = fs::metadata(dir.join(DATA)).expect("data").ino();
        let completion = complete_default(&storage, &session).await;
        assert!(completion.fresh);
        assert!(dir.join(RECORD).exists());
        assert!(!dir.join(DATA).exists());
        let committed = fs::metadata(root.join("a/chunked.bin")).expect("committed");
        assert_eq!(committed.ino(), data_inode, "renamed, not copied");
        assert_eq!(etag_of(&committed), completion.etag);
        assert_eq!(
            fs::read(root.join("a/chunked.bin")).expect("file"),
            b"abcdef"
        );
    }

    #[tokio::test]
    async fn reserved_folder_is_refused() {
        let (folder, storage) = storage();
        for name in [".uploads/tmp/x", ".uploads/evil", ".UPLOADS/x", ".uploads"] {
            let reserved = path(name);
            assert!(matches!(
                storage.put(&reserved, body(&[b"x"])).await,
                Err(StorageError::InvalidPath)
            ));
            assert!(matches!(
                storage.read(&reserved, None).await,
                Err(StorageError::InvalidPath)
            ));
            assert!(matches!(
                storage.head(&reserved).await,
                Err(StorageError::InvalidPath)
            ));
            let session = live_session(2, name);
            assert!(matches!(
                storage
                    .write_chunk(
                        &session,
                        chunk(0, 0, Some(1)),
                        &ChunkOptions::new(10),
                        body(&[b"x"])
                    )
                    .await,
                Err(StorageError::InvalidPath)
            ));
            let calls = Arc::new(AtomicUsize::new(0));
            assert!(matches!(
                storage
                    .complete(&session, &CompleteOptions::default(), make_record(&calls))
                    .await,
                Err(StorageError::InvalidPath)
            ));
        }
        assert!(!folder.path().join(".uploads/evil").exists());
        // Names that merely start like the hidden folder are fine.
        storage
            .put(&path(".uploads2/x"), body(&[b"x"]))
            .await
            .expect("put");
    }

    #[tokio::test]
    async fn unsafe_session_ids_are_refused() {
        let (_folder, storage) = storage();
        for id in ["", "tmp", "../x", "a/b", "a.b"] {
            let session = Session::new(id.to_owned(), path("x"), SystemTime::now());
            assert!(matches!(
                storage.status(&session).await,
                Err(StorageError::InvalidPath)
            ));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn symlink_escape_is_refused() {
        let (folder, storage) = storage();
        let outside = tempfile::tempdir().expect("outside dir");
        fs::write(outside.path().join("secret"), b"secret").expect("secret");
        std::os::unix::fs::symlink(outside.path(), folder.path().join("link")).expect("link");
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            folder.path().join("file-link"),
        )
        .expect("file link");

        for name in ["link/x.txt", "link/deeper/x.txt", "file-link"] {
            let result = storage.put(&path(name), body(&[b"pwned"])).await;
            assert!(
                matches!(result, Err(StorageError::InvalidPath)),
                "{name}: {result:?}"
            );
        }
        for name in ["link/secret", "file-link"] {
            assert!(matches!(
                storage.read(&path(name), None).await,
                Err(StorageError::InvalidPath)
            ));
            assert!(matches!(
                storage.head(&path(name)).await,
                Err(StorageError::InvalidPath)
            ));
        }

        let session = live_session(3, "link/chunked.txt");
        storage
            .write_chunk(
                &session,
                chunk(0, 4, Some(5)),
                &ChunkOptions::new(10),
                body(&[b"pwned"]),
            )
            .await
            .expect("chunks are staged inside the root");
        let calls = Arc::new(AtomicUsize::new(0));
        assert!(matches!(
            storage
                .complete(&session, &CompleteOptions::default(), make_record(&calls))
                .await,
            Err(StorageError::InvalidPath)
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        let mut names: Vec<_> = fs::read_dir(outside.path())
            .expect("outside")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["secret"]);
        assert_eq!(
            fs::read(outside.path().join("secret")).expect("secret"),
            b"secret"
        );
        assert_eq!(temporaries(&storage), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_put_leaves_no_temporary() {
        let (folder, storage) = storage();
        let (tx, mut polls, stream) = channel_body();
        tx.send(Ok(Bytes::from(vec![7u8; 2 * WRITE_BATCH])))
            .expect("send");
        let target = path("dropped.bin");
        let mut put = storage.put(&target, stream);
        // Drive the upload until it asks for a second piece: the first was written.
        tokio::select! {
            result = &mut put => panic!("the upload ended: {result:?}"),
            () = wait_for_poll(&mut polls, 1) => {}
        }
        assert_eq!(temporaries(&storage), 1, "the upload is staged");
        drop(put);
        assert_eq!(temporaries(&storage), 0);
        assert!(!folder.path().join("dropped.bin").exists());
        drop(tx);
    }

    /// Pieces of uneven sizes that add up to `len` bytes of a known pattern.
    fn uneven_pieces(len: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut pieces = Vec::new();
        let mut at = 0;
        for size in [1usize, 5_000, 65_536, 70_000, 333, 20_480].iter().cycle() {
            if at == len {
                break;
            }
            let end = (at + size).min(len);
            pieces.push(data[at..end].to_vec());
            at = end;
        }
        (data, pieces)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spent_buffer_budget_still_stores_every_byte_in_order() {
        let folder = tempfile::tempdir().expect("temp dir");
        // No budget at all: every upload writes as it reads, one batch at a time.
        let storage = FsStorage::new(folder.path())
            .expect("storage")
            .buffer_budget(0);
        let (data, pieces) = uneven_pieces(3 * 1024 * 1024 + 17);
        let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let (meta, head) = storage
            .put(&path("spent/simple.bin"), body(&refs))
            .await
            .expect("put");
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(head.as_ref(), &data[..HEAD_LEN]);
        assert!(fs::read(folder.path().join("spent/simple.bin")).expect("file") == data);

        let session = live_session(21, "spent/chunked.bin");
        let half = data.len() / 2;
        let total = Some(data.len() as u64);
        for (first, part) in [(half, &data[half..]), (0, &data[..half])] {
            let (_, pieces) = uneven_pieces(part.len());
            let mut at = 0;
            let pieces: Vec<Vec<u8>> = pieces
                .iter()
                .map(|p| {
                    at += p.len();
                    part[at - p.len()..at].to_vec()
                })
                .collect();
            let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            let last = (first + part.len() - 1) as u64;
            storage
                .write_chunk(
                    &session,
                    chunk(first as u64, last, total),
                    &ChunkOptions::new(10),
                    body(&refs),
                )
                .await
                .expect("chunk");
        }
        let calls = Arc::new(AtomicUsize::new(0));
        storage
            .complete(&session, &CompleteOptions::default(), make_record(&calls))
            .await
            .expect("complete");
        assert!(fs::read(folder.path().join("spent/chunked.bin")).expect("file") == data);
        assert_eq!(storage.buffers.held.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gathered_bytes_count_against_the_budget_until_written_or_dropped() {
        let (_folder, storage) = storage();
        let (tx, mut polls, stream) = channel_body();
        let mut put = storage.put(&path("held.bin"), stream);
        tx.send(Ok(Bytes::from(vec![3u8; 1000]))).expect("send");
        // The piece is gathered (a batch is not full yet) while the next is awaited.
        tokio::select! {
            result = &mut put => panic!("the upload ended: {result:?}"),
            () = wait_for_poll(&mut polls, 1) => {}
        }
        assert_eq!(storage.buffers.held.load(Ordering::SeqCst), 1000);
        drop(put);
        assert_eq!(storage.buffers.held.load(Ordering::SeqCst), 0);
        drop(tx);
    }

    #[tokio::test]
    async fn failed_put_leaves_no_temporary() {
        let (_folder, storage) = storage();
        let big = vec![1u8; WRITE_BATCH + 1];
        let result = storage
            .put(&path("failed.bin"), failing(&[&big, &big]))
            .await;
        assert!(matches!(result, Err(StorageError::Body(_))));
        assert_eq!(temporaries(&storage), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crash_between_record_and_rename_rolls_forward() {
        let (folder, storage) = storage();
        let session = live_session(4, "rolled/forward.bin");
        storage
            .write_chunk(
                &session,
                chunk(0, 4, Some(5)),
                &ChunkOptions::new(10),
                body(&[b"hello"]),
            )
            .await
            .expect("chunk");
        // What a commit leaves when killed right after writing its record.
        let dir = session_dir(&storage, &session);
        let meta = fs::metadata(dir.join(DATA)).expect("data");
        let record = StoredRecord {
            etag: etag_of(&meta),
            path: session.path().as_str().to_owned(),
            record: Bytes::from_static(b"the record"),
        };
        write_record(&dir, &record).expect("record");
        assert!(!folder.path().join("rolled/forward.bin").exists());

        let completion = expect_completed(storage.status(&session).await).await;
        assert!(!completion.fresh);
        assert_eq!(completion.record, "the record");
        assert_eq!(
            fs::read(folder.path().join("rolled/forward.bin")).expect("file"),
            b"hello"
        );
        assert!(!dir.join(DATA).exists());
        let head = storage.head(session.path()).await.expect("head");
        assert_eq!(head.etag, record.etag);

        // A later completion replays it and does not call make_record.
        let calls = Arc::new(AtomicUsize::new(0));
        let again = expect_completed(
            storage
                .complete(&session, &CompleteOptions::default(), make_record(&calls))
                .await,
        )
        .await;
        assert!(!again.fresh);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_completions_commit_once() {
        let (_folder, storage) = storage();
        for round in 0..100u64 {
            let session = live_session(1000 + round, "race/file.bin");
            let content = format!("round {round:03}");
            storage
                .write_chunk(
                    &session,
                    chunk(0, content.len() as u64 - 1, Some(content.len() as u64)),
                    &ChunkOptions::new(10),
                    body(&[content.as_bytes()]),
                )
                .await
                .expect("chunk");
            let calls = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    let (storage, session) = (storage.clone(), session.clone());
                    let record = make_record(&calls);
                    tokio::spawn(async move {
                        storage
                            .complete(&session, &CompleteOptions::default(), record)
                            .await
                    })
                })
                .collect();
            let mut fresh = 0;
            let mut records = Vec::new();
            for task in tasks {
                let completion = tokio::time::timeout(WAIT, task)
                    .await
                    .expect("in time")
                    .expect("task");
                let completion = expect_completed(completion).await;
                fresh += usize::from(completion.fresh);
                records.push(completion.record);
            }
            assert_eq!(fresh, 1, "round {round}");
            assert_eq!(calls.load(Ordering::SeqCst), 1, "round {round}");
            assert!(records.iter().all(|record| *record == records[0]));
            assert_eq!(
                read_all(&storage, "race/file.bin").await.expect("reads"),
                content.as_bytes()
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_share_one_session() {
        let folder = tempfile::tempdir().expect("temp dir");
        let first = FsStorage::new(folder.path()).expect("first");
        let second = FsStorage::new(folder.path()).expect("second");
        let session = live_session(5, "shared/file.bin");
        let data: Vec<u8> = (0..100u8).collect();
        for (i, piece) in data.chunks(10).enumerate() {
            let storage = if i % 2 == 0 { &first } else { &second };
            let at = i as u64 * 10;
            let status = storage
                .write_chunk(
                    &session,
                    chunk(at, at + 9, Some(100)),
                    &ChunkOptions::new(100),
                    body(&[piece]),
                )
                .await
                .expect("chunk");
            assert_eq!(progress(&status), (Some(100), vec![[0, at + 9]]));
        }
        let calls = Arc::new(AtomicUsize::new(0));
        let (a, b) = tokio::join!(
            first.complete(&session, &CompleteOptions::default(), make_record(&calls)),
            second.complete(&session, &CompleteOptions::default(), make_record(&calls))
        );
        let (a, b) = (expect_completed(a).await, expect_completed(b).await);
        assert!(a.fresh != b.fresh, "exactly one commits");
        assert_eq!(a.record, b.record);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            read_all(&second, "shared/file.bin").await.expect("reads"),
            data
        );
        assert_eq!(
            second.head(session.path()).await.expect("head").etag,
            a.etag
        );
    }

    #[tokio::test]
    async fn torn_journal_tail_is_ignored() {
        let (_folder, storage) = storage();
        let session = live_session(6, "torn.bin");
        storage
            .write_chunk(
                &session,
                chunk(0, 3, Some(12)),
                &ChunkOptions::new(10),
                body(&[b"abcd"]),
            )
            .await
            .expect("chunk");
        let journal = session_dir(&storage, &session).join(JOURNAL);
        // A torn entry: a crash midway through an append.
        let torn = &encode_entry(Entry {
            range: chunk(4, 11, None),
            digest: Some(7),
        })[..17];
        let mut file = OpenOptions::new()
            .append(true)
            .open(&journal)
            .expect("journal");
        file.write_all(torn).expect("torn entry");
        drop(file);
        let status = storage.status(&session).await.expect("status");
        assert_eq!(progress(&status), (Some(12), vec![[0, 3]]));

        // The next append replaces the torn tail.
        storage
            .write_chunk(
                &session,
                chunk(8, 11, None),
                &ChunkOptions::new(10),
                body(&[b"ijkl"]),
            )
            .await
            .expect("chunk");
        assert_eq!(
            fs::metadata(&journal).expect("journal").len(),
            2 * ENTRY_LEN as u64
        );
        // A whole entry that fails its checksum is skipped, later ones still count.
        let mut garbage = encode_entry(Entry {
            range: chunk(0, 11, None),
            digest: None,
        });
        garbage[0] ^= 1;
        let mut file = OpenOptions::new()
            .append(true)
            .open(&journal)
            .expect("journal");
        file.write_all(&garbage).expect("garbage");
        drop(file);
        storage
            .write_chunk(
                &session,
                chunk(4, 7, None),
                &ChunkOptions::new(10),
                body(&[b"efgh"]),
            )
            .await
            .expect("chunk");
        let status = storage.status(&session).await.expect("status");
        assert_eq!(progress(&status), (Some(12), vec![[0, 11]]));
        let completion = complete_default(&storage, &session).await;
        assert!(completion.fresh);
        assert_eq!(
            read_all(&storage, "torn.bin").await.expect("reads"),
            b"abcdefghijkl"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_chunk_does_not_overwrite_stored_bytes() {
        let (_folder, storage) = storage();
        let session = live_session(7, "overwrite.bin");
        let size = 3 * WRITE_BATCH as u64;
        storage
            .write_chunk(
                &session,
                chunk(0, WRITE_BATCH as u64 - 1, Some(size)),
                &ChunkOptions::new(10),
                body(&[&vec![b'a'; WRITE_BATCH]]),
            )
            .await
            .expect("first chunk");
        // Equal bytes over the stored range, new ones after it, then a failure.
        let mut wrong = vec![b'a'; WRITE_BATCH];
        wrong.resize(2 * WRITE_BATCH, b'b');
        let result = storage
            .write_chunk(
                &session,
                chunk(0, size - 1, None),
                &ChunkOptions::new(10),
                failing(&[&wrong]),
            )
            .await;
        assert!(matches!(result, Err(StorageError::Body(_))), "{result:?}");
        storage
            .write_chunk(
                &session,
                chunk(WRITE_BATCH as u64, size - 1, None),
                &ChunkOptions::new(10),
                body(&[&vec![b'c'; 2 * WRITE_BATCH]]),
            )
            .await
            .expect("last chunk");
        complete_default(&storage, &session).await;
        let data = read_all(&storage, "overwrite.bin").await.expect("reads");
        assert_eq!(data.len() as u64, size);
        assert!(data[..WRITE_BATCH].iter().all(|b| *b == b'a'));
        assert!(data[WRITE_BATCH..].iter().all(|b| *b == b'c'));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunk_streaming_during_commit_does_not_touch_the_file() {
        let (_folder, storage) = storage();
        let session = live_session(8, "sealed.bin");
        let (tx, mut polls, late) = spawn_chunk(&storage, &session, chunk(0, 9, Some(10)));
        // The late chunk is admitted and waits for its body.
        wait_for_poll(&mut polls, 0).await;
        storage
            .write_chunk(
                &session,
                chunk(0, 9, Some(10)),
                &ChunkOptions::new(10),
                body(&[b"0123456789"]),
            )
            .await
            .expect("chunk");
        let completion = complete_default(&storage, &session).await;
        assert!(completion.fresh);

        tx.send(Ok(Bytes::from_static(b"XXXXXXXXXX")))
            .expect("send");
        drop(tx);
        let late = tokio::time::timeout(WAIT, late)
            .await
            .expect("in time")
            .expect("task");
        let late = expect_completed(late).await;
        assert!(!late.fresh);
        assert_eq!(
            read_all(&storage, "sealed.bin").await.expect("reads"),
            b"0123456789"
        );
        assert_eq!(
            storage.head(session.path()).await.expect("head").etag,
            completion.etag
        );
    }

    #[tokio::test]
    async fn body_length_must_match_range() {
        let (_folder, storage) = storage();
        let session = live_session(9, "length.bin");
        for pieces in [&[b"abc".as_slice()][..], &[b"abcdef".as_slice()][..]] {
            let result = storage
                .write_chunk(
                    &session,
                    chunk(0, 4, Some(5)),
                    &ChunkOptions::new(10),
                    body(pieces),
                )
                .await;
            assert!(
                matches!(
                    result,
                    Err(StorageError::Body(BodyError(
                        crate::Error::ContentRangeMismatch
                    )))
                ),
                "{result:?}"
            );
        }
        let status = storage.status(&session).await.expect("status");
        assert_eq!(progress(&status), (None, vec![]));
    }

    #[tokio::test]
    async fn purge_removes_old_temporaries_only() {
        let (_folder, storage) = storage();
        let tmp = storage.root().join(HIDDEN).join(TMP);
        let old = File::create(tmp.join("put-old.part")).expect("old");
        old.set_modified(SystemTime::now() - Duration::from_secs(2 * 3600))
            .expect("mtime");
        fs::write(tmp.join("put-new.part"), b"x").expect("new");
        let report = storage
            .purge_expired(SystemTime::now())
            .await
            .expect("purge");
        assert_eq!(report.temporaries, 1);
        assert!(!tmp.join("put-old.part").exists());
        assert!(tmp.join("put-new.part").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn purge_finishes_an_interrupted_commit_before_removing() {
        let (folder, storage) = storage();
        let session = conformance::session(
            10,
            "late/commit.bin",
            SystemTime::now() - 30 * Duration::from_secs(86_400),
        );
        storage
            .write_chunk(
                &session,
                chunk(0, 1, Some(2)),
                &ChunkOptions::new(10),
                body(&[b"ok"]),
            )
            .await
            .expect("chunk");
        let dir = session_dir(&storage, &session);
        let meta = fs::metadata(dir.join(DATA)).expect("data");
        let record = StoredRecord {
            etag: etag_of(&meta),
            path: session.path().as_str().to_owned(),
            record: Bytes::from_static(b"r"),
        };
        write_record(&dir, &record).expect("record");
        let report = storage
            .purge_expired(SystemTime::now())
            .await
            .expect("purge");
        assert_eq!((report.sessions, report.records), (0, 1));
        assert!(!dir.exists());
        assert_eq!(
            fs::read(folder.path().join("late/commit.bin")).expect("file"),
            b"ok"
        );
    }

    #[test]
    fn record_round_trips_and_detects_damage() {
        let record = StoredRecord {
            etag: "5-1-2".to_owned(),
            path: "a/b.txt".to_owned(),
            record: Bytes::from_static(b"{\"id\":1}"),
        };
        let bytes = encode_record(&record);
        let decoded = decode_record(&bytes).expect("decodes");
        assert_eq!(
            (decoded.etag, decoded.path, decoded.record),
            (record.etag, record.path, record.record)
        );
        for cut in 0..bytes.len() {
            assert!(decode_record(&bytes[..cut]).is_none());
        }
        let mut damaged = bytes.clone();
        damaged[10] ^= 0x40;
        assert!(decode_record(&damaged).is_none());
    }

    fn data_stamp(dir: &Path) -> (u64, i64, i64) {
        let meta = fs::metadata(dir.join(DATA)).expect("data");
        (meta.len(), meta.mtime(), meta.mtime_nsec())
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identical_resend_writes_nothing() {
        let (_folder, storage) = storage();
        let session = live_session(20, "resend.bin");
        let dir = session_dir(&storage, &session);
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        let range = chunk(1000, 1000 + bytes.len() as u64 - 1, Some(400_000));
        send(&storage, &session, range, &bytes)
            .await
            .expect("first send");
        let stamp = data_stamp(&dir);
        let journal_len = fs::metadata(dir.join(JOURNAL)).expect("journal").len();
        // The data file's mtime moves with any write; give it a chance to show.
        std::thread::sleep(Duration::from_millis(20));
        let pieces: Vec<&[u8]> = bytes.chunks(7777).collect();
        let status = storage
            .write_chunk(&session, range, &ChunkOptions::new(100), body(&pieces))
            .await
            .expect("identical resend");
        assert_eq!(progress(&status), (Some(400_000), vec![[1000, 300_999]]));
        assert_eq!(data_stamp(&dir), stamp, "the resend wrote to the data file");
        assert_eq!(
            fs::metadata(dir.join(JOURNAL)).expect("journal").len(),
            journal_len
        );
        // The same bytes with one changed: refused, still without a write.
        let mut changed = bytes.clone();
        changed[250_000] ^= 1;
        let result = send(&storage, &session, range, &changed).await;
        assert!(
            matches!(result, Err(StorageError::RangeConflict)),
            "{result:?}"
        );
        assert_eq!(data_stamp(&dir), stamp);
        let entries = fs::read_dir(dir.join(WRITING)).map_or(0, |dir| dir.count());
        assert_eq!(entries, 0, "no writer left a marker");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conflicts_and_repr_digest_survive_a_restart() {
        let folder = tempfile::tempdir().expect("temp dir");
        let session = live_session(21, "restart.bin");
        let kept = "sha-256=:LCa0a2j/xo/5m0U8HTBBNBNCLXBkg7+g+YpeiGJm564=:";
        {
            let first = FsStorage::new(folder.path()).expect("first");
            first
                .write_chunk(
                    &session,
                    chunk(0, 9, Some(20)),
                    &ChunkOptions::new(100).repr_digest(kept),
                    body(&[b"0123456789"]),
                )
                .await
                .expect("chunk");
        }
        let second = FsStorage::new(folder.path()).expect("second");
        for (range, bytes) in [
            (chunk(0, 9, None), &b"0123456789"[..]),
            (chunk(5, 14, None), &b"56789abcde"[..]),
        ] {
            let status = send(&second, &session, range, bytes)
                .await
                .expect("equal bytes are accepted");
            assert_eq!(progress(&status).0, Some(20));
        }
        for (range, bytes) in [
            (chunk(0, 9, None), &b"0123456789".map(|b| b ^ 1)[..]),
            (chunk(8, 17, None), &b"89XbcdefgH"[..]),
            (chunk(10, 14, None), &b"abcdE"[..]),
        ] {
            let result = send(&second, &session, range, bytes).await;
            assert!(
                matches!(result, Err(StorageError::RangeConflict)),
                "{range:?}: {result:?}"
            );
        }
        // Another Repr-Digest is refused before the body is read.
        let polled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&polled);
        let watched: ByteStream = Box::pin(stream::poll_fn(move |_| {
            flag.store(true, Ordering::SeqCst);
            std::task::Poll::Ready(Some(Ok(Bytes::from_static(b"fghij"))))
        }));
        let other = "sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:";
        let result = second
            .write_chunk(
                &session,
                chunk(15, 19, None),
                &ChunkOptions::new(100).repr_digest(other),
                watched,
            )
            .await;
        assert!(
            matches!(result, Err(StorageError::DigestConflict)),
            "{result:?}"
        );
        assert!(!polled.load(Ordering::SeqCst), "the body was read");
        assert_eq!(
            progress(&second.status(&session).await.expect("status")),
            (Some(20), vec![[0, 14]])
        );
        send(&second, &session, chunk(15, 19, None), b"fghij")
            .await
            .expect("last chunk");
        let seen = Arc::new(Mutex::new(None));
        let record: MakeRecord = {
            let seen = Arc::clone(&seen);
            Box::new(move |info| {
                *seen.lock().expect("unpoisoned") = Some(info.clone());
                Ok(Bytes::from_static(b"record"))
            })
        };
        expect_completed(
            second
                .complete(&session, &CompleteOptions::default(), record)
                .await,
        )
        .await;
        let info = seen.lock().expect("unpoisoned").take().expect("called");
        assert_eq!(info.repr_digest.as_deref(), Some(kept));
        assert_eq!(
            info.digests.sha256.map(|d| d.to_vec()),
            Some(Sha256::digest(b"0123456789abcdefghij").to_vec())
        );
        assert_eq!(info.digests.sha512, None);
    }

    /// A body of `bytes` in 64 KiB pieces that yields between pieces.
    fn slow_body(bytes: Vec<u8>) -> ByteStream {
        let pieces: Vec<Bytes> = bytes
            .chunks(64 * 1024)
            .map(Bytes::copy_from_slice)
            .collect();
        Box::pin(stream::iter(pieces).then(|piece| async move {
            tokio::task::yield_now().await;
            Ok(piece)
        }))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_instances_keep_one_version() {
        let folder = tempfile::tempdir().expect("temp dir");
        let instances = [
            FsStorage::new(folder.path()).expect("first"),
            FsStorage::new(folder.path()).expect("second"),
        ];
        const MIB: u64 = 1 << 20;
        let total = 2 * MIB;
        let mut outcomes = [0usize; 5];
        for round in 0..16u64 {
            let session = live_session(3000 + round, "race/versions.bin");
            // Overlapping ranges, each two batches long, with different bytes.
            let writers: Vec<(ChunkRange, Vec<u8>)> = (0..4u64)
                .map(|w| {
                    let first = (w * MIB / 8 + round * 4099) % (MIB / 2);
                    let last = (first + MIB + MIB / 8 + w * 12_345).min(total - 1);
                    let bytes = (first..=last)
                        .map(|at| (at as u8) ^ (w as u8 + 1).wrapping_mul(37))
                        .collect();
                    (chunk(first, last, Some(total)), bytes)
                })
                .collect();
            let tasks: Vec<_> = writers
                .iter()
                .enumerate()
                .map(|(w, (range, bytes))| {
                    let storage = instances[w % 2].clone();
                    let (session, range, bytes) = (session.clone(), *range, bytes.clone());
                    tokio::spawn(async move {
                        storage
                            .write_chunk(&session, range, &ChunkOptions::new(10), slow_body(bytes))
                            .await
                    })
                })
                .collect();
            let mut recorded = Vec::new();
            for (task, writer) in tasks.into_iter().zip(&writers) {
                match task.await.expect("task") {
                    Ok(_) => recorded.push(writer),
                    Err(StorageError::RangeConflict) => {}
                    Err(error) => panic!("round {round}: {error:?}"),
                }
            }
            outcomes[recorded.len()] += 1;
            let dir = session_dir(&instances[0], &session);
            let data = fs::read(dir.join(DATA)).expect("data");
            for (range, bytes) in &recorded {
                let stored = &data[range.first as usize..=range.last as usize];
                assert!(
                    stored == &bytes[..],
                    "round {round}: {range:?} not its own bytes"
                );
            }
            // Different bytes everywhere they overlap: at most one is recorded
            // where they meet.
            for (i, (a, _)) in recorded.iter().enumerate() {
                for (b, _) in &recorded[i + 1..] {
                    assert!(a.last < b.first || b.last < a.first, "round {round}");
                }
            }
            let status = instances[1].status(&session).await.expect("status");
            let expected = ByteRanges::from_ranges(recorded.iter().map(|(r, _)| [r.first, r.last]));
            assert_eq!(progress(&status).1, expected.as_slice(), "round {round}");
            assert_eq!(
                fs::read_dir(dir.join(WRITING)).expect("writing").count(),
                0,
                "round {round}: markers left"
            );
        }
        // How many rounds recorded 0, 1, 2… of the four chunks.
        println!("racing instances: {outcomes:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partial_overlap_with_a_writer_in_flight() {
        const MIB: usize = 1 << 20;
        let (_folder, storage) = storage();
        let options = ChunkOptions::new(10);

        // 1. The in-flight writer loses to a chunk recorded meanwhile: its later
        //    bytes meet the recorded range and are compared.
        let session = live_session(22, "inflight/a.bin");
        let (tx, mut polls, slow) =
            spawn_chunk(&storage, &session, chunk(0, 3 * MIB as u64 - 1, None));
        for _ in 0..2 {
            tx.send(Ok(Bytes::from(vec![b'a'; MIB]))).expect("send");
        }
        wait_for_poll(&mut polls, 2).await;
        let fast = chunk(MIB as u64, 4 * MIB as u64 - 1, Some(4 * MIB as u64));
        send(&storage, &session, fast, &vec![b'b'; 3 * MIB])
            .await
            .expect("the overlapping chunk is recorded");
        tx.send(Ok(Bytes::from(vec![b'a'; MIB]))).expect("send");
        drop(tx);
        let result = slow.await.expect("task");
        assert!(
            matches!(result, Err(StorageError::RangeConflict)),
            "{result:?}"
        );
        let dir = session_dir(&storage, &session);
        let data = fs::read(dir.join(DATA)).expect("data");
        assert!(data[MIB..].iter().all(|b| *b == b'b'));
        assert_eq!(
            progress(&storage.status(&session).await.expect("status")).1,
            vec![[MIB as u64, 4 * MIB as u64 - 1]]
        );

        // 2. A writer whose bytes are all written but not yet recorded loses
        //    them to a later chunk recorded first; it must not be recorded.
        // 3. Nor when the later writer fails instead of being recorded.
        for later_fails in [false, true] {
            let session = live_session(23 + u64::from(later_fails), "inflight/b.bin");
            let (tx, mut polls, slow) = spawn_chunk(
                &storage,
                &session,
                chunk(MIB as u64, 4 * MIB as u64 - 1, None),
            );
            for _ in 0..3 {
                tx.send(Ok(Bytes::from(vec![b'b'; MIB]))).expect("send");
            }
            wait_for_poll(&mut polls, 3).await;
            let range = chunk(0, 2 * MIB as u64 - 1, Some(4 * MIB as u64));
            if later_fails {
                let result = storage
                    .write_chunk(
                        &session,
                        range,
                        &options,
                        failing(&[&vec![b'c'; 3 * MIB / 2]]),
                    )
                    .await;
                assert!(matches!(result, Err(StorageError::Body(_))), "{result:?}");
            } else {
                send(&storage, &session, range, &vec![b'c'; 2 * MIB])
                    .await
                    .expect("the later chunk is recorded");
            }
            drop(tx);
            let result = slow.await.expect("task");
            assert!(
                matches!(result, Err(StorageError::RangeConflict)),
                "later fails: {later_fails}: {result:?}"
            );
            let expected = if later_fails {
                vec![]
            } else {
                vec![[0, 2 * MIB as u64 - 1]]
            };
            assert_eq!(
                progress(&storage.status(&session).await.expect("status")).1,
                expected
            );
            // Resent alone, the refused chunk goes through.
            send(
                &storage,
                &session,
                chunk(2 * MIB as u64, 4 * MIB as u64 - 1, Some(4 * MIB as u64)),
                &vec![b'b'; 2 * MIB],
            )
            .await
            .expect("resent alone");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn discarded_session_is_not_resurrected_by_a_late_writer() {
        let (_folder, storage) = storage();
        let session = live_session(25, "discarded.bin");
        let (tx, mut polls, late) = spawn_chunk(&storage, &session, chunk(0, 9, Some(10)));
        wait_for_poll(&mut polls, 0).await;
        storage.discard(&session).await.expect("discard");
        // The same URL starts afresh meanwhile.
        send(&storage, &session, chunk(5, 9, Some(10)), b"FGHIJ")
            .await
            .expect("fresh chunk");
        tx.send(Ok(Bytes::from_static(b"abcdefghij")))
            .expect("send");
        drop(tx);
        let result = late.await.expect("task");
        assert!(result.is_err(), "{result:?}");
        assert_eq!(
            progress(&storage.status(&session).await.expect("status")),
            (Some(10), vec![[5, 9]])
        );
        send(&storage, &session, chunk(0, 4, None), b"ABCDE")
            .await
            .expect("first half");
        complete_default(&storage, &session).await;
        assert_eq!(
            read_all(&storage, "discarded.bin").await.expect("reads"),
            b"ABCDEFGHIJ"
        );
        // No half-removed folder is left behind.
        let tmp = storage.root().join(HIDDEN).join(TMP);
        assert_eq!(fs::read_dir(tmp).expect("tmp").count(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_commit_removes_the_session_whole() {
        let (_folder, storage) = storage();
        let session = live_session(26, "refused.bin");
        send(&storage, &session, chunk(0, 3, Some(4)), b"zip!")
            .await
            .expect("chunk");
        let refuse: MakeRecord = Box::new(|_| Err(crate::storage::CommitRefused));
        let result = storage
            .complete(&session, &CompleteOptions::default(), refuse)
            .await;
        assert!(
            matches!(result, Err(StorageError::CommitRefused)),
            "{result:?}"
        );
        assert!(!session_dir(&storage, &session).exists());
        // A removal interrupted by a crash leaves a renamed folder, which no
        // session call reads and cleanup removes.
        let gone = storage.root().join(HIDDEN).join(TMP).join("gone-0123");
        fs::create_dir_all(gone.join(WRITING)).expect("leftover");
        fs::write(gone.join(JOURNAL), b"x").expect("leftover");
        let report = storage
            .purge_expired(SystemTime::now())
            .await
            .expect("purge");
        assert_eq!(report.temporaries, 1);
        assert!(!gone.exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stale_marker_of_a_dead_writer_is_dropped() {
        let (_folder, storage) = storage();
        let session = live_session(27, "stale.bin");
        send(&storage, &session, chunk(0, 4, Some(10)), b"abcde")
            .await
            .expect("chunk");
        let dir = session_dir(&storage, &session);
        // What a writer killed mid-chunk leaves: a marker nobody locks.
        let stale = dir.join(WRITING).join("w-dead");
        fs::write(&stale, encode_range(chunk(0, 9, None))).expect("marker");
        send(&storage, &session, chunk(3, 9, None), b"deFGHIJ")
            .await
            .expect("chunk");
        assert!(!stale.exists());
        assert_eq!(fs::read_dir(dir.join(WRITING)).expect("dir").count(), 0);
    }

    #[test]
    fn block_digests_match_however_the_bytes_arrive() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let file = tempfile::tempfile().expect("file");
        let first = 70_000u64;
        file.write_all_at(&bytes, first).expect("write");
        let range = chunk(first, first + bytes.len() as u64 - 1, None);
        let mut digests = Vec::new();
        for piece in [1usize, 1000, BLOCK as usize, 100_000, bytes.len()] {
            let mut hasher = BlockHasher::new(first);
            for part in bytes.chunks(piece) {
                hasher.update(part);
            }
            digests.push(hasher.finish());
        }
        assert!(digests.iter().all(|d| *d == digests[0]));
        assert_eq!(digests[0].len(), 5, "blocks cut at 64 KiB file offsets");
        let all = ByteRanges::from_ranges([[0, u64::MAX - 1]]);
        assert!(verify_blocks(&file, range, &digests[0], &all).expect("verify"));
        file.write_all_at(b"!", first + 200_000).expect("change");
        assert!(!verify_blocks(&file, range, &digests[0], &all).expect("verify"));
        // Only the blocks that meet a suspect range are read.
        let elsewhere = ByteRanges::from_ranges([[0, first + 100_000]]);
        assert!(verify_blocks(&file, range, &digests[0], &elsewhere).expect("verify"));
    }

    /// Throughput of one 1 GiB session sent in 16 MiB chunks (256 KiB body
    /// pieces), then completed. Run with
    /// `cargo test --release --lib fs::tests::throughput_1gib -- --ignored --nocapture`;
    /// `THROUGHPUT_DIR=/dev/shm` measures on tmpfs, without the disk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, not a check"]
    async fn throughput_1gib_session_in_16mib_chunks() {
        const TOTAL: u64 = 1 << 30;
        const CHUNK: u64 = 16 << 20;
        const PIECE: usize = 256 << 10;
        let _folder = match std::env::var_os("THROUGHPUT_DIR") {
            Some(dir) => tempfile::tempdir_in(dir),
            None => tempfile::tempdir(),
        }
        .expect("temp dir");
        let storage = FsStorage::new(_folder.path()).expect("storage");
        let pattern: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
        let pieces: Vec<Bytes> = pattern.chunks(PIECE).map(Bytes::copy_from_slice).collect();
        let session = live_session(77, "throughput.bin");
        let started = std::time::Instant::now();
        for first in (0..TOTAL).step_by(CHUNK as usize) {
            let body: ByteStream = Box::pin(stream::iter(pieces.clone().into_iter().map(Ok)));
            storage
                .write_chunk(
                    &session,
                    chunk(first, first + CHUNK - 1, Some(TOTAL)),
                    &ChunkOptions::new(10),
                    body,
                )
                .await
                .expect("chunk");
        }
        let written = started.elapsed();
        complete_default(&storage, &session).await;
        let total = started.elapsed();
        let mib = (TOTAL >> 20) as f64;
        println!(
            "1 GiB in 16 MiB chunks: chunks {:.0} MiB/s ({written:?}), with completion {:.0} MiB/s ({total:?})",
            mib / written.as_secs_f64(),
            mib / total.as_secs_f64()
        );
    }

    #[test]
    fn store_piece_writes_gaps_and_compares_stored_ranges() {
        let file = tempfile::tempfile().expect("file");
        file.write_all_at(b"..bc..f...", 0).expect("fill");
        let stored = ByteRanges::from_ranges([[2, 3], [6, 6]]);
        store_piece(&file, 1, b"abcdefgh", &stored).expect("store");
        let mut out = [0; 10];
        file.read_exact_at(&mut out, 0).expect("read");
        assert_eq!(&out, b".abcdefgh.");

        let before = out;
        let result = store_piece(&file, 0, b"xxXcdefghx", &stored);
        assert!(
            matches!(result, Err(StorageError::RangeConflict)),
            "{result:?}"
        );
        // The bytes before the conflicting one were written: they lie outside
        // the stored ranges, and the chunk counts for nothing.
        file.read_exact_at(&mut out, 0).expect("read");
        assert_eq!(&out[2..], &before[2..]);
    }
}

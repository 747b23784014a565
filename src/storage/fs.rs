//! [`FsStorage`]: durable storage in a local folder, shared by every process
//! that opens the same folder.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeInclusive;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::{stream, StreamExt};
use sha2::{Digest, Sha256};

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

/// Bytes gathered from a body before one positional write.
const WRITE_BATCH: usize = 1024 * 1024;
/// Bytes per piece when a file is read back.
const READ_PIECE: usize = 256 * 1024;
/// One journal entry: first, last, total, flags (u64 little-endian each), then
/// the first 8 bytes of the SHA-256 of those 32 bytes.
const ENTRY_LEN: usize = 40;
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
/// {root}/nested/folders/image.png      committed files
/// {root}/.uploads/tmp/put-{random}.part   simple uploads while they stream
/// {root}/.uploads/{session id}/meta       the session URL's expiry, `{secs}.{nanos}`
/// {root}/.uploads/{session id}/data       the file being assembled (sparse)
/// {root}/.uploads/{session id}/journal    the ranges stored, one checksummed entry per chunk
/// {root}/.uploads/{session id}/lock       locked (flock) while the journal changes
/// {root}/.uploads/{session id}/data.lock  shared by writers, exclusive while committing
/// {root}/.uploads/{session id}/record     the completion record, once complete
/// ```
///
/// A journal entry is 40 bytes: `first`, `last`, `total` and a flag (1 when the
/// chunk named a total), each a little-endian `u64`, then the first 8 bytes of
/// the SHA-256 of those 32 bytes. The completion record file is `tsu-rec1`, then
/// the entity tag, the file's path and the record, each preceded by its length
/// as a little-endian `u64`, then the SHA-256 of everything before it. Entity
/// tags are `{size:x}-{mtime in nanoseconds:x}-{inode:x}`.
///
/// # Guarantees
///
/// - **Chunks are durable before they count.** A chunk's bytes are written at their
///   offset in the session's data file as they arrive (never buffered whole), then
///   `fsync`ed; only then is its range appended to the journal, which is `fsync`ed
///   before [`Storage::write_chunk`] returns. A chunk answered `202` survives the
///   process being killed. A chunk whose body fails counts for nothing, and its
///   bytes never overwrite ranges the session had already stored.
/// - **Journal entries are checksummed**, so a torn entry left by a crash is ignored.
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
///
/// Several processes may share one root: each session's journal and completion are
/// guarded by `flock` locks on files in the session folder, and chunks of one session
/// stream in parallel without waiting on each other. The folder must be on a local
/// file system with working `flock` (not every network file system has it).
///
/// [`Storage::purge_expired`] removes sessions (complete or not) whose URL expired
/// more than the grace period ago, and temporary files older than the grace period.
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
        })
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
            FsError::SessionRemoved => f.write_str("the session was removed by cleanup"),
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

fn encode_entry(range: ChunkRange) -> [u8; ENTRY_LEN] {
    let mut entry = [0; ENTRY_LEN];
    entry[0..8].copy_from_slice(&range.first.to_le_bytes());
    entry[8..16].copy_from_slice(&range.last.to_le_bytes());
    entry[16..24].copy_from_slice(&range.total.unwrap_or(0).to_le_bytes());
    entry[24..32].copy_from_slice(&u64::from(range.total.is_some()).to_le_bytes());
    let sum = checksum(&entry[..32]);
    entry[32..].copy_from_slice(&sum);
    entry
}

fn decode_entry(entry: &[u8]) -> Option<ChunkRange> {
    let word = |at: usize| {
        entry
            .get(at..at + 8)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if entry.len() != ENTRY_LEN || entry[32..] != checksum(&entry[..32]) {
        return None;
    }
    let (first, last, total, flags) = (word(0)?, word(8)?, word(16)?, word(24)?);
    if first > last || flags > 1 {
        return None;
    }
    Some(ChunkRange {
        first,
        last,
        total: (flags == 1).then_some(total),
    })
}

/// Replays the journal. Entries that fail their checksum (a torn write after a
/// crash) are skipped. Returns the state and the length of whole entries.
fn read_journal(journal: &File) -> io::Result<(SessionState, u64)> {
    let len = journal.metadata()?.len();
    let whole = len - len % ENTRY_LEN as u64;
    let size = usize::try_from(whole).map_err(|_| io::Error::other("journal too large"))?;
    let mut bytes = vec![0; size];
    journal.read_exact_at(&mut bytes, 0)?;
    let mut state = SessionState::default();
    for entry in bytes.chunks_exact(ENTRY_LEN) {
        if let Some(range) = decode_entry(entry) {
            state.record(range);
        }
    }
    Ok((state, whole))
}

/// Appends one entry at `at` (the end of the whole entries, dropping a torn tail)
/// and makes it durable.
fn append_entry(journal: &File, at: u64, range: ChunkRange) -> io::Result<()> {
    if journal.metadata()?.len() != at {
        journal.set_len(at)?;
    }
    journal.write_all_at(&encode_entry(range), at)?;
    journal.sync_data()
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

fn session_state(dir: &Path) -> Result<(SessionState, u64, Option<File>), StorageError> {
    match open_journal(dir)? {
        Some(journal) => {
            let (state, at) = read_journal(&journal).map_err(write_error)?;
            Ok((state, at, Some(journal)))
        }
        None => Ok((SessionState::default(), 0, None)),
    }
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

/// The files a chunk writer holds: the data file, opened while the session lock
/// was held (so it is the session's data file, never one created after a commit
/// moved it), and the writers' lock.
struct ChunkFiles {
    dir: PathBuf,
    data: File,
    data_lock: File,
    /// The ranges stored when the chunk was admitted; the chunk does not
    /// overwrite them.
    stored: ByteRanges,
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
    max_ranges: usize,
) -> Result<Admission, StorageError> {
    ensure_session_dir(&dir)?;
    let _lock = lock_session(&dir)?;
    if let Some(record) = read_record(&dir)? {
        roll_forward(root, &dir, &record)?;
        return Ok(Admission::Completed(record));
    }
    let (state, _, _) = session_state(&dir)?;
    state.admit(range, max_ranges)?;

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
    let journal = open(JOURNAL)?;
    if created {
        journal.sync_all().map_err(write_error)?;
        sync_dir(&dir).map_err(write_error)?;
    }
    Ok(Admission::Admitted(ChunkFiles {
        dir,
        data,
        data_lock,
        stored: state.ranges,
    }))
}

/// Writes `bytes` at `offset`, skipping the parts that lie in `stored`.
fn write_gaps(file: &File, offset: u64, bytes: &[u8], stored: &ByteRanges) -> io::Result<()> {
    let too_far = || io::Error::other("offset past the largest file size");
    let end = offset.checked_add(bytes.len() as u64).ok_or_else(too_far)?;
    let slice = |from: u64, to: u64| -> io::Result<&[u8]> {
        let from = usize::try_from(from - offset).map_err(|_| too_far())?;
        let to = usize::try_from(to - offset).map_err(|_| too_far())?;
        bytes.get(from..to).ok_or_else(too_far)
    };
    let ranges = stored.as_slice();
    let mut cursor = offset;
    let start = ranges.partition_point(|r| r[1] < offset);
    for &[first, last] in &ranges[start..] {
        if first >= end || cursor >= end {
            break;
        }
        if first > cursor {
            file.write_all_at(slice(cursor, first)?, cursor)?;
        }
        cursor = cursor.max(last.saturating_add(1));
    }
    if cursor < end {
        file.write_all_at(slice(cursor, end)?, cursor)?;
    }
    Ok(())
}

/// Writes a batch of pieces from `offset`, holding the writers' shared lock so a
/// commit cannot happen midway. Returns false, writing nothing, once the session
/// is complete: its data file is the committed file now.
fn write_batch(files: &ChunkFiles, offset: u64, pieces: &[Bytes]) -> Result<bool, StorageError> {
    files.data_lock.lock_shared().map_err(write_error)?;
    let result = (|| {
        if record_exists(&files.dir)? {
            return Ok(false);
        }
        let mut at = offset;
        for piece in pieces {
            write_gaps(&files.data, at, piece, &files.stored).map_err(write_error)?;
            at += piece.len() as u64;
        }
        Ok(true)
    })();
    files.data_lock.unlock().map_err(write_error)?;
    result
}

/// Last step of a chunk: under the session lock, check it again and record it.
fn record_chunk(
    root: &Path,
    dir: &Path,
    range: ChunkRange,
    max_ranges: usize,
) -> Result<SessionStatus, StorageError> {
    let _lock = lock_session(dir)?;
    if let Some(record) = read_record(dir)? {
        roll_forward(root, dir, &record)?;
        return Ok(completed(record, false));
    }
    let (mut state, at, journal) = session_state(dir)?;
    let journal = journal.ok_or_else(|| other(FsError::Corrupt("journal missing")))?;
    state.admit(range, max_ranges)?;
    let known = state.ranges.contains(range.first, range.last)
        && (range.total.is_none() || range.total == state.total);
    if !known {
        append_entry(&journal, at, range).map_err(write_error)?;
        state.record(range);
    }
    Ok(in_progress(state))
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
    let (state, _, _) = session_state(dir)?;
    let total = match state.total {
        Some(total) if state.is_complete() => total,
        _ => return Ok(in_progress(state)),
    };
    // Refuse a bad destination before anything irreversible.
    let target = prepare_destination(root, path)?;

    // No writer may touch the data file from here on.
    let data_lock = open_create(&dir.join(DATA_LOCK)).map_err(write_error)?;
    data_lock.lock().map_err(write_error)?;
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
    let head_len = usize::try_from(total).unwrap_or(HEAD_LEN).min(HEAD_LEN);
    let mut head = vec![0; head_len];
    data.read_exact_at(&mut head, 0).map_err(write_error)?;
    let meta = data.metadata().map_err(write_error)?;
    let digests = if options.digests.is_empty() {
        FileDigests::default()
    } else {
        let mut hasher = FileHasher::new(options.digests);
        let mut buffer = vec![0u8; 1 << 20];
        let mut reader = &data;
        loop {
            let read = reader.read(&mut buffer).map_err(write_error)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        hasher.finish()
    };
    let info = CommitInfo {
        size: total,
        head: Bytes::from(head),
        etag: etag_of(&meta),
        repr_digest: None,
        digests,
    };
    let Ok(record) = make_record(&info) else {
        drop(data_lock);
        fs::remove_dir_all(dir).map_err(write_error)?;
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
    drop(data_lock);
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

fn temp_name() -> String {
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
    format!("put-{hex}.part")
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

impl Storage for FsStorage {
    fn write_chunk(
        &self,
        session: &Session,
        range: ChunkRange,
        options: &ChunkOptions,
        mut body: ByteStream,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let max_ranges = options.max_ranges;
        let session = session.clone();
        let root = Arc::clone(&self.root);
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
                let (root, session) = (Arc::clone(&root), session.clone());
                blocking(move || admit_chunk(&root, dir, &session, range, max_ranges)).await?
            };
            let files = match admission {
                Admission::Completed(record) => return Ok(completed(record, false)),
                Admission::Admitted(files) => Arc::new(files),
            };

            let mut received = 0u64;
            let mut written = 0u64;
            let mut batch: Vec<Bytes> = Vec::new();
            let mut batch_len = 0usize;
            let mut open = true;
            loop {
                let piece = body.next().await;
                let end = piece.is_none();
                if let Some(piece) = piece {
                    let piece = piece.map_err(StorageError::Body)?;
                    received = received.saturating_add(piece.len() as u64);
                    if received > expected {
                        return Err(StorageError::Body(BodyError(
                            crate::Error::ContentRangeMismatch,
                        )));
                    }
                    batch_len += piece.len();
                    batch.push(piece);
                }
                if !batch.is_empty() && (end || batch_len >= WRITE_BATCH) {
                    let pieces = std::mem::take(&mut batch);
                    let at = range.first + written;
                    written += batch_len as u64;
                    batch_len = 0;
                    let files = Arc::clone(&files);
                    open = blocking(move || write_batch(&files, at, &pieces)).await?;
                }
                if end || !open {
                    // Closed: the session completed meanwhile; the rest of the
                    // body is not needed.
                    break;
                }
            }
            if open && received != expected {
                return Err(StorageError::Body(BodyError(
                    crate::Error::ContentRangeMismatch,
                )));
            }
            blocking(move || {
                if open {
                    files.data.sync_data().map_err(write_error)?;
                }
                record_chunk(&root, &files.dir, range, max_ranges)
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
                if !dir_exists(&dir)? {
                    return Ok(empty_status());
                }
                let _lock = lock_session(&dir)?;
                if let Some(record) = read_record(&dir)? {
                    roll_forward(&root, &dir, &record)?;
                    return Ok(completed(record, false));
                }
                Ok(in_progress(session_state(&dir)?.0))
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
                if !dir_exists(&dir)? {
                    return Ok(());
                }
                let _lock = lock_session(&dir)?;
                if read_record(&dir)?.is_some() {
                    return Ok(());
                }
                match fs::remove_dir_all(&dir) {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => {
                        Err(write_error(error))
                    }
                    _ => Ok(()),
                }
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

            let mut head = BytesMut::new();
            let mut written = 0u64;
            let mut batch: Vec<Bytes> = Vec::new();
            let mut batch_len = 0usize;
            loop {
                let piece = body.next().await;
                let end = piece.is_none();
                if let Some(piece) = piece {
                    let piece = piece.map_err(StorageError::Body)?;
                    if head.len() < HEAD_LEN {
                        let take = piece.len().min(HEAD_LEN - head.len());
                        head.extend_from_slice(&piece[..take]);
                    }
                    batch_len += piece.len();
                    batch.push(piece);
                }
                if !batch.is_empty() && (end || batch_len >= WRITE_BATCH) {
                    let pieces = std::mem::take(&mut batch);
                    let at = written;
                    written = written.saturating_add(batch_len as u64);
                    batch_len = 0;
                    let file = Arc::clone(&file);
                    blocking(move || write_pieces(&file, at, &pieces)).await?;
                }
                if end {
                    break;
                }
            }

            let meta = blocking(move || {
                file.sync_all().map_err(write_error)?;
                let meta = file_meta(&file.metadata().map_err(write_error)?)?;
                let target = prepare_destination(&root, &path)?;
                temp.commit(&target)?;
                sync_dir(target.parent().unwrap_or(&root)).map_err(write_error)?;
                Ok(meta)
            })
            .await?;
            drop(guard);
            Ok((meta, head.freeze()))
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
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(error) if is_not_found(&error) => continue,
            Err(error) => return Err(write_error(error)),
        }
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
        self, body, chunk, failing, live_session, make_record, path, progress, read_all,
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
    fn channel_body() -> (
        mpsc::UnboundedSender<Result<Bytes, BodyError>>,
        mpsc::UnboundedReceiver<usize>,
        ByteStream,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (polled_tx, polls) = mpsc::unbounded_channel();
        let body = stream::unfold((0usize, rx, polled_tx), |(n, mut rx, polled)| async move {
            let _ = polled.send(n);
            rx.recv().await.map(|item| (item, (n + 1, rx, polled)))
        });
        (tx, polls, Box::pin(body))
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

    async fn expect_completed(status: Result<SessionStatus, StorageError>) -> Completion {
        match status.expect("storage call") {
            SessionStatus::Completed(completion) => completion,
            other => panic!("not completed: {other:?}"),
        }
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
        let calls = Arc::new(AtomicUsize::new(0));
        let completion = expect_completed(
            storage
                .complete(&session, &CompleteOptions::default(), make_record(&calls))
                .await,
        )
        .await;
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
        let torn = &encode_entry(chunk(4, 11, None))[..17];
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
        let mut garbage = encode_entry(chunk(0, 11, None));
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
        let calls = Arc::new(AtomicUsize::new(0));
        let completion = expect_completed(
            storage
                .complete(&session, &CompleteOptions::default(), make_record(&calls))
                .await,
        )
        .await;
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
        let wrong = vec![b'b'; 2 * WRITE_BATCH];
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
        let calls = Arc::new(AtomicUsize::new(0));
        expect_completed(
            storage
                .complete(&session, &CompleteOptions::default(), make_record(&calls))
                .await,
        )
        .await;
        let data = read_all(&storage, "overwrite.bin").await.expect("reads");
        assert_eq!(data.len() as u64, size);
        assert!(data[..WRITE_BATCH].iter().all(|b| *b == b'a'));
        assert!(data[WRITE_BATCH..].iter().all(|b| *b == b'c'));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunk_streaming_during_commit_does_not_touch_the_file() {
        let (_folder, storage) = storage();
        let session = live_session(8, "sealed.bin");
        let (tx, mut polls, stream) = channel_body();
        let late = {
            let (storage, session) = (storage.clone(), session.clone());
            tokio::spawn(async move {
                storage
                    .write_chunk(
                        &session,
                        chunk(0, 9, Some(10)),
                        &ChunkOptions::new(10),
                        stream,
                    )
                    .await
            })
        };
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
        let calls = Arc::new(AtomicUsize::new(0));
        let completion = expect_completed(
            storage
                .complete(&session, &CompleteOptions::default(), make_record(&calls))
                .await,
        )
        .await;
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

    #[test]
    fn write_gaps_skips_stored_ranges() {
        let file = tempfile::tempfile().expect("file");
        file.write_all_at(b"..........", 0).expect("fill");
        let stored = ByteRanges::from_ranges([[2, 3], [6, 6]]);
        write_gaps(&file, 1, b"abcdefgh", &stored).expect("write");
        let mut out = [0; 10];
        file.read_exact_at(&mut out, 0).expect("read");
        assert_eq!(&out, b".a..de.gh.");
    }
}

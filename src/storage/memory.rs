//! [`MemoryStorage`]: everything in the process's memory.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::{stream, StreamExt};

use super::{
    BoxFuture, ByteStream, ChunkOptions, ChunkRange, CommitInfo, CommitRefused, CompleteOptions,
    FileHasher, FileMeta, FileRead, MakeRecord, PurgeReport, Session, SessionStatus, Storage,
    StorageError, HEAD_LEN,
};
use crate::storage::SessionState;
use crate::UploadPath;

/// A backend that keeps files and sessions in memory.
///
/// For tests, examples and single-process apps whose uploads may vanish with the
/// process. Cloning shares the same store. Chunks are buffered (as the `Bytes`
/// pieces they arrived in) until their body has ended, so a failed chunk leaves
/// the session untouched.
///
/// # Example
///
/// ```
/// use tower_signed_upload::{storage::MemoryStorage, SignedUploadLayer, SigningKey};
///
/// let storage = MemoryStorage::new();
/// let layer = SignedUploadLayer::new(SigningKey::new(b"secret").unwrap(), storage.clone());
/// # drop(layer);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    inner: Arc<Mutex<Inner>>,
    grace: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    files: HashMap<UploadPath, StoredFile>,
    sessions: HashMap<String, SessionEntry>,
    versions: u64,
}

#[derive(Debug, Clone)]
struct StoredFile {
    data: Bytes,
    meta: FileMeta,
}

#[derive(Debug, Default)]
struct SessionEntry {
    state: SessionState,
    data: Vec<u8>,
    expires: Option<SystemTime>,
    completed: Option<(String, Bytes)>,
}

impl MemoryStorage {
    /// An empty store; expired sessions are purged one hour after their URL expired.
    pub fn new() -> Self {
        MemoryStorage {
            inner: Arc::default(),
            grace: Duration::from_secs(3600),
        }
    }

    /// How long after its URL expired a session is kept before cleanup removes it.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The stored file at `path`, whole, if any; for tests and small apps.
    pub fn file(&self, path: &str) -> Option<Bytes> {
        let path = UploadPath::new(path)?;
        self.lock().files.get(&path).map(|file| file.data.clone())
    }

    /// How many sessions (incomplete or completed) are kept.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock was held cannot leave the maps half-updated:
        // every mutation below is a single insert or remove.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    /// Checks a chunk against its session: `Some` status if the session is
    /// complete, an error if the chunk breaks a rule.
    fn admit(
        &self,
        session: &Session,
        range: ChunkRange,
        options: &ChunkOptions,
    ) -> Result<Option<SessionStatus>, StorageError> {
        let Some(entry) = self.sessions.get(session.id()) else {
            SessionState::default().admit(range, options)?;
            return Ok(None);
        };
        if entry.completed.is_some() {
            return Ok(Some(status_of(entry)));
        }
        entry.state.admit(range, options)?;
        Ok(None)
    }

    fn store(&mut self, path: &UploadPath, data: Bytes, now: SystemTime) -> FileMeta {
        self.versions += 1;
        let meta = FileMeta {
            size: data.len() as u64,
            etag: format!("{:x}-{:x}", data.len(), self.versions),
            modified: now,
        };
        self.files.insert(
            path.clone(),
            StoredFile {
                data,
                meta: meta.clone(),
            },
        );
        meta
    }
}

fn head_of(data: &Bytes) -> Bytes {
    data.slice(..data.len().min(HEAD_LEN))
}

/// Collects a body as the `Bytes` pieces it arrived in, without copying.
async fn collect(mut body: ByteStream) -> Result<Vec<Bytes>, StorageError> {
    let mut pieces = Vec::new();
    while let Some(piece) = body.next().await {
        pieces.push(piece.map_err(StorageError::Body)?);
    }
    Ok(pieces)
}

fn status_of(entry: &SessionEntry) -> SessionStatus {
    match &entry.completed {
        Some((etag, record)) => SessionStatus::completed(etag.clone(), record.clone(), false),
        None => SessionStatus::in_progress(entry.state.clone()),
    }
}

impl Storage for MemoryStorage {
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
            if let Some(done) = self.lock().admit(&session, range, &options)? {
                return Ok(done);
            }
            let pieces = collect(body).await?;
            let mut inner = self.lock();
            if let Some(done) = inner.admit(&session, range, &options)? {
                return Ok(done);
            }
            let entry = inner.sessions.entry(session.id().to_owned()).or_default();
            entry.expires = Some(session.expires());
            // Bytes already stored must match; only then is anything written
            // (or the buffer grown: a refused chunk leaves no trace).
            let mut offset = range.first;
            for piece in &pieces {
                let (start, stop) = (offset, offset + piece.len() as u64);
                for [first, last] in entry.state.ranges.as_slice() {
                    let (from, to) = (start.max(*first), stop.min(last + 1));
                    if from < to {
                        let stored = &entry.data[from as usize..to as usize];
                        let sent = &piece[(from - start) as usize..(to - start) as usize];
                        if stored != sent {
                            return Err(StorageError::RangeConflict);
                        }
                    }
                }
                offset = stop;
            }
            let end = usize::try_from(range.last + 1).map_err(|_| StorageError::Full)?;
            if entry.data.len() < end {
                entry.data.resize(end, 0);
            }
            let mut offset = range.first as usize;
            for piece in pieces {
                entry.data[offset..offset + piece.len()].copy_from_slice(&piece);
                offset += piece.len();
            }
            entry.state.record(range);
            entry.state.keep_repr_digest(options.repr_digest.as_ref());
            Ok(status_of(entry))
        })
    }

    fn status(&self, session: &Session) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let status = match self.lock().sessions.get(session.id()) {
            Some(entry) => status_of(entry),
            None => SessionStatus::in_progress(SessionState::default()),
        };
        Box::pin(async move { Ok(status) })
    }

    fn complete(
        &self,
        session: &Session,
        options: &CompleteOptions,
        make_record: MakeRecord,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let mut inner = self.lock();
        let now = SystemTime::now();
        let result = match inner.sessions.get_mut(session.id()) {
            None => Ok(SessionStatus::in_progress(SessionState::default())),
            Some(entry) if entry.completed.is_some() || !entry.state.is_complete() => {
                Ok(status_of(entry))
            }
            Some(entry) => {
                let wanted = options
                    .digests
                    .with_repr_digest(entry.state.repr_digest.as_ref());
                let mut hasher = FileHasher::new(wanted);
                hasher.update(&entry.data);
                let version = inner.versions + 1;
                let entry = inner
                    .sessions
                    .get_mut(session.id())
                    .expect("the entry was found under the same lock");
                let info = CommitInfo {
                    size: entry.data.len() as u64,
                    head: Bytes::copy_from_slice(&entry.data[..entry.data.len().min(HEAD_LEN)]),
                    etag: format!("{:x}-{:x}", entry.data.len(), version),
                    repr_digest: entry.state.repr_digest.clone(),
                    digests: hasher.finish(),
                };
                match make_record(&info) {
                    Err(CommitRefused) => {
                        inner.sessions.remove(session.id());
                        Err(StorageError::CommitRefused)
                    }
                    Ok(record) => {
                        let data = Bytes::from(std::mem::take(&mut entry.data));
                        entry.completed = Some((info.etag.clone(), record.clone()));
                        let meta = inner.store(session.path(), data, now);
                        debug_assert_eq!(meta.etag, info.etag);
                        Ok(SessionStatus::completed(info.etag, record, true))
                    }
                }
            }
        };
        Box::pin(async move { result })
    }

    fn discard(&self, session: &Session) -> BoxFuture<'_, Result<(), StorageError>> {
        let mut inner = self.lock();
        if inner
            .sessions
            .get(session.id())
            .is_some_and(|entry| entry.completed.is_none())
        {
            inner.sessions.remove(session.id());
        }
        Box::pin(async { Ok(()) })
    }

    fn put(
        &self,
        path: &UploadPath,
        body: ByteStream,
    ) -> BoxFuture<'_, Result<(FileMeta, Bytes), StorageError>> {
        let path = path.clone();
        Box::pin(async move {
            let pieces = collect(body).await?;
            let mut data = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
            for piece in pieces {
                data.extend_from_slice(&piece);
            }
            let data = data.freeze();
            let head = head_of(&data);
            let meta = self.lock().store(&path, data, SystemTime::now());
            Ok((meta, head))
        })
    }

    fn read(
        &self,
        path: &UploadPath,
        range: Option<RangeInclusive<u64>>,
    ) -> BoxFuture<'_, Result<FileRead, StorageError>> {
        let file = self.lock().files.get(path).cloned();
        Box::pin(async move {
            let file = file.ok_or(StorageError::NotFound)?;
            let data = match range {
                // Clamped to the file, so a range that no longer fits reads short, never panics.
                Some(range) => {
                    let end = range.end().saturating_add(1).min(file.meta.size) as usize;
                    let start = (*range.start() as usize).min(end);
                    file.data.slice(start..end)
                }
                None => file.data,
            };
            Ok(FileRead {
                meta: file.meta,
                body: Box::pin(stream::iter([Ok(data)])),
            })
        })
    }

    fn head(&self, path: &UploadPath) -> BoxFuture<'_, Result<FileMeta, StorageError>> {
        let meta = self.lock().files.get(path).map(|file| file.meta.clone());
        Box::pin(async move { meta.ok_or(StorageError::NotFound) })
    }

    fn purge_expired(&self, now: SystemTime) -> BoxFuture<'_, Result<PurgeReport, StorageError>> {
        let cutoff = now
            .checked_sub(self.grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut report = PurgeReport::default();
        self.lock().sessions.retain(|_, entry| {
            let keep = entry.expires.is_none_or(|expires| expires >= cutoff);
            if !keep {
                if entry.completed.is_some() {
                    report.records += 1;
                } else {
                    report.sessions += 1;
                }
            }
            keep
        });
        Box::pin(async move { Ok(report) })
    }
}

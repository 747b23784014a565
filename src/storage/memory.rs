//! [`MemoryStorage`]: everything in the process's memory.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::{stream, StreamExt};

use super::{
    BoxFuture, ByteStream, ChunkOptions, ChunkRange, CommitInfo, CommitRefused, CompleteOptions,
    ConcatOptions, FileHasher, FileMeta, FileRead, MakeRecord, OpenOptions, PurgeReport, Session,
    SessionStatus, Storage, StorageError, HEAD_LEN,
};
use crate::storage::concat::concat_by_copy;
use crate::storage::SessionState;
use crate::UploadPath;

/// A backend that keeps files and sessions in memory.
///
/// For tests, examples and single-process apps whose uploads may vanish with the
/// process. Cloning shares the same store. Chunks are buffered (as the `Bytes`
/// pieces they arrived in) until their body has ended, so a failed chunk leaves
/// the session untouched. A session holds only the bytes it received, never
/// more (a byte at a high offset costs one byte); the file is assembled when
/// the session completes.
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
    data: Pieces,
    expires: Option<SystemTime>,
    completed: Option<(String, Bytes)>,
}

/// A session's stored bytes: pieces keyed by their offset, never overlapping,
/// covering exactly the session's stored ranges. Adjacent pieces are joined
/// while the result is at most [`JOIN_LEN`] bytes, so that many small chunks
/// cost what their bytes and distinct ranges cost, not one map entry each.
#[derive(Debug, Default)]
struct Pieces(BTreeMap<u64, Bytes>);

/// The largest piece that small adjacent pieces are joined into (a copy).
/// Two adjacent pieces hold more than this together unless one was stored
/// after the other grew past it; so a session of `n` distinct ranges holding
/// `b` bytes keeps at most about `n + 2b / JOIN_LEN` pieces.
const JOIN_LEN: usize = 4096;

impl Pieces {
    /// The stored pieces that overlap `[start, stop)`, with their offsets.
    fn overlapping(&self, start: u64, stop: u64) -> impl Iterator<Item = (u64, &Bytes)> {
        self.0
            .range(..stop)
            .rev()
            .take_while(move |(at, piece)| *at + piece.len() as u64 > start)
            .map(|(at, piece)| (*at, piece))
    }

    /// Whether `piece`, sent for `start`, agrees with every stored byte it covers.
    fn agrees(&self, start: u64, piece: &[u8]) -> bool {
        let stop = start + piece.len() as u64;
        self.overlapping(start, stop).all(|(at, stored)| {
            let (from, to) = (start.max(at), stop.min(at + stored.len() as u64));
            stored[(from - at) as usize..(to - at) as usize]
                == piece[(from - start) as usize..(to - start) as usize]
        })
    }

    /// Stores the parts of `piece` (sent for `start`) that are not stored yet.
    /// A part is kept as a copy unless it is the whole piece, so that what is
    /// held never exceeds the distinct bytes received.
    fn insert(&mut self, start: u64, piece: Bytes) {
        let stop = start + piece.len() as u64;
        let mut stored: Vec<[u64; 2]> = self
            .overlapping(start, stop)
            .map(|(at, stored)| [at, at + stored.len() as u64])
            .collect();
        stored.reverse();
        let mut gaps = Vec::new();
        let mut cursor = start;
        for [from, to] in stored {
            if from > cursor {
                gaps.push([cursor, from]);
            }
            cursor = cursor.max(to);
        }
        if cursor < stop {
            gaps.push([cursor, stop]);
        }
        for [from, to] in gaps {
            let part = if from == start && to == stop {
                piece.clone()
            } else {
                let slice = &piece[(from - start) as usize..(to - start) as usize];
                Bytes::copy_from_slice(slice)
            };
            self.0.insert(from, part);
            self.join(from);
        }
    }

    /// Joins the piece at `at` with the pieces that end where it starts and
    /// start where it ends, while each join stays within [`JOIN_LEN`].
    fn join(&mut self, at: u64) {
        let mut at = at;
        let before = self.0.range(..at).next_back().map(|(k, v)| (*k, v.len()));
        if let Some((left, len)) = before {
            if left + len as u64 == at {
                at = self.join_pair(left, at).unwrap_or(at);
            }
        }
        let Some(len) = self.0.get(&at).map(Bytes::len) else {
            return;
        };
        let next = at + len as u64;
        if self.0.contains_key(&next) {
            self.join_pair(at, next);
        }
    }

    /// Joins the adjacent pieces at `left` and `right` if together they hold
    /// at most [`JOIN_LEN`] bytes; returns the offset of the joined piece.
    fn join_pair(&mut self, left: u64, right: u64) -> Option<u64> {
        let (first, second) = (self.0.get(&left)?, self.0.get(&right)?);
        if first.len() + second.len() > JOIN_LEN {
            return None;
        }
        let mut joined = BytesMut::with_capacity(first.len() + second.len());
        joined.extend_from_slice(first);
        joined.extend_from_slice(second);
        self.0.remove(&right);
        self.0.insert(left, joined.freeze());
        Some(left)
    }

    /// How many pieces are kept.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.0.len()
    }

    /// Bytes held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.0.values().map(Bytes::len).sum()
    }

    /// The first `len` bytes, assembled; `None` if a byte is missing.
    fn assemble(&self, len: usize) -> Option<Bytes> {
        let mut data = BytesMut::with_capacity(len);
        for (at, piece) in &self.0 {
            if *at != data.len() as u64 {
                return None;
            }
            let room = len - data.len();
            data.extend_from_slice(&piece[..piece.len().min(room)]);
            if data.len() == len {
                break;
            }
        }
        (data.len() == len).then(|| data.freeze())
    }
}

impl MemoryStorage {
    /// The pieces of a part's first `len` bytes, in order, if all arrived.
    fn part_pieces(&self, part: &Session, len: u64) -> Result<Vec<Bytes>, StorageError> {
        let inner = self.lock();
        let pieces = &inner
            .sessions
            .get(part.id())
            .ok_or(StorageError::PartIncomplete)?
            .data;
        let mut out = Vec::new();
        let mut at = 0;
        for (start, piece) in pieces
            .overlapping(0, len)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            if start != at {
                return Err(StorageError::PartIncomplete);
            }
            let keep = usize::try_from(len - at).map_or(piece.len(), |room| room.min(piece.len()));
            out.push(piece.slice(..keep));
            at += keep as u64;
        }
        if at != len {
            return Err(StorageError::PartIncomplete);
        }
        Ok(out)
    }

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

    /// Bytes held by incomplete sessions.
    #[cfg(test)]
    fn session_bytes(&self) -> usize {
        self.lock()
            .sessions
            .values()
            .map(|entry| entry.data.held())
            .sum()
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
            // Bytes already stored must match; only then is anything stored
            // (a refused chunk leaves no trace).
            let mut offset = range.first;
            for piece in &pieces {
                if !entry.data.agrees(offset, piece) {
                    return Err(StorageError::RangeConflict);
                }
                offset += piece.len() as u64;
            }
            let mut offset = range.first;
            for piece in pieces {
                let len = piece.len() as u64;
                entry.data.insert(offset, piece);
                offset += len;
            }
            entry.state.record(range);
            entry.state.keep_repr_digest(options.repr_digest.as_ref());
            Ok(status_of(entry))
        })
    }

    fn open(
        &self,
        session: &Session,
        options: &OpenOptions,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let mut inner = self.lock();
        let entry = inner.sessions.entry(session.id().to_owned()).or_default();
        let result = if entry.completed.is_some() {
            Ok(status_of(entry))
        } else {
            entry.expires = Some(session.expires());
            entry.state.open(options).map(|_| status_of(entry))
        };
        Box::pin(async move { result })
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
            let store = self.clone();
            // A complete part's pieces cover it from byte 0, in order: shared,
            // not copied, until the session's chunk copies them.
            let read = move |part: &Session, len: u64| -> BoxFuture<'static, _> {
                let pieces = store.part_pieces(part, len);
                Box::pin(async move {
                    pieces.map(|pieces| stream::iter(pieces.into_iter().map(Ok)).boxed())
                })
            };
            concat_by_copy(self, &session, &parts, &options, &read).await
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
        let empty = SessionState::default().with_declared_total(options.total);
        if empty.is_complete() && !inner.sessions.contains_key(session.id()) {
            // An empty file declared by a status query: nothing was stored.
            inner.sessions.insert(
                session.id().to_owned(),
                SessionEntry {
                    expires: Some(session.expires()),
                    ..SessionEntry::default()
                },
            );
        }
        let result = match inner.sessions.get_mut(session.id()) {
            None => Ok(SessionStatus::in_progress(SessionState::default())),
            Some(entry) if entry.completed.is_some() => Ok(status_of(entry)),
            Some(entry) => {
                let state = entry.state.clone().with_declared_total(options.total);
                if !state.is_complete() {
                    return Box::pin(async move { Ok(SessionStatus::in_progress(state)) });
                }
                entry.state = state;
                let total = entry.state.total.unwrap_or(0);
                let Ok(len) = usize::try_from(total) else {
                    return Box::pin(async { Err(StorageError::Full) });
                };
                let data = entry
                    .data
                    .assemble(len)
                    .expect("the pieces cover the stored ranges, complete up to the total");
                let wanted = options
                    .digests
                    .with_repr_digest(entry.state.repr_digest.as_ref());
                let mut hasher = FileHasher::new(wanted);
                hasher.update(&data);
                let version = inner.versions + 1;
                let entry = inner
                    .sessions
                    .get_mut(session.id())
                    .expect("the entry was found under the same lock");
                let info = CommitInfo {
                    size: data.len() as u64,
                    head: head_of(&data),
                    etag: format!("{:x}-{:x}", data.len(), version),
                    repr_digest: entry.state.repr_digest.clone(),
                    digests: hasher.finish(),
                };
                match make_record(&info) {
                    Err(CommitRefused) => {
                        inner.sessions.remove(session.id());
                        Err(StorageError::CommitRefused)
                    }
                    Ok(record) => {
                        entry.data = Pieces::default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::{body, chunk, complete_default, live_session};

    #[tokio::test]
    async fn many_small_chunks_cost_their_bytes_and_ranges() {
        const TOTAL: u64 = 20_000;
        let storage = MemoryStorage::new();
        let session = live_session(3, "many.bin");
        let options = ChunkOptions::new(10);
        // One byte at a time, in order, but byte 100 last: two ranges.
        for offset in (0..TOTAL).filter(|offset| *offset != 100) {
            let byte = [b'a' + (offset % 26) as u8];
            storage
                .write_chunk(
                    &session,
                    chunk(offset, offset, Some(TOTAL)),
                    &options,
                    body(&[&byte]),
                )
                .await
                .expect("chunk");
        }
        let pieces = {
            let inner = storage.lock();
            inner
                .sessions
                .values()
                .map(|entry| entry.data.count())
                .sum::<usize>()
        };
        assert!(
            pieces <= 2 + 2 * TOTAL as usize / JOIN_LEN + 1,
            "{pieces} pieces"
        );
        assert_eq!(storage.session_bytes(), TOTAL as usize - 1);
        storage
            .write_chunk(&session, chunk(100, 100, None), &options, body(&[b"w"]))
            .await
            .expect("chunk");
        complete_default(&storage, &session).await;
        let expected: Vec<u8> = (0..TOTAL)
            .map(|offset| b'a' + (offset % 26) as u8)
            .collect();
        assert_eq!(storage.file("many.bin").as_deref(), Some(&expected[..]));
    }

    #[tokio::test]
    async fn a_byte_at_a_high_offset_holds_one_byte() {
        let storage = MemoryStorage::new();
        let session = live_session(1, "sparse.bin");
        let high = 64 * 1024 * 1024;
        storage
            .write_chunk(
                &session,
                chunk(high, high, None),
                &ChunkOptions::new(10),
                body(&[b"z"]),
            )
            .await
            .expect("chunk");
        assert_eq!(storage.session_bytes(), 1);
    }

    #[tokio::test]
    async fn resends_and_overlaps_hold_each_byte_once() {
        let storage = MemoryStorage::new();
        let session = live_session(2, "overlap.bin");
        let options = ChunkOptions::new(10);
        for (first, last, bytes) in [
            (4, 7, &b"4567"[..]),
            (4, 7, b"4567"),
            (2, 9, b"23456789"),
            (0, 5, b"012345"),
        ] {
            storage
                .write_chunk(&session, chunk(first, last, None), &options, body(&[bytes]))
                .await
                .expect("chunk");
        }
        assert_eq!(storage.session_bytes(), 10);
        let conflict = storage
            .write_chunk(&session, chunk(3, 5, None), &options, body(&[b"3x5"]))
            .await;
        assert!(
            matches!(conflict, Err(StorageError::RangeConflict)),
            "{conflict:?}"
        );
        storage
            .write_chunk(&session, chunk(10, 11, Some(12)), &options, body(&[b"ab"]))
            .await
            .expect("last chunk");
        complete_default(&storage, &session).await;
        assert_eq!(
            storage.file("overlap.bin").as_deref(),
            Some(&b"0123456789ab"[..])
        );
        assert_eq!(storage.session_bytes(), 0);
    }
}

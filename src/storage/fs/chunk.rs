//! One chunk of a resumable upload: admitted under the session lock, its body
//! stored batch by batch (recorded bytes compared, never written), then
//! checked again and recorded in the journal.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;

use super::blocking;
use super::blocks::{chunk_digest, verify_blocks, BlockHasher};
use super::error::{is_not_found, other, write_error, FsError};
use super::journal::{
    append_entry, compact, open_journal, read_journal, session_state, Entry, Journal,
};
use super::lock::{lock_session, retry_removed, ExclusiveData};
use super::open::apply_opened;
use super::paths::{check_destination, open_create, sync_dir, DATA, DATA_LOCK, JOURNAL};
use super::pipeline::{Batch, BufferBudget, Pipeline, Synced};
use super::quota::{Quota, Reservation};
use super::record::{read_record, record_exists, roll_forward, StoredRecord};
use super::repr::{forget_repr, read_repr, write_repr};
use super::session::{completed, ensure_meta, ensure_session_dir};
use super::threads::WriteThreads;
use super::writers::{meets, register_writer, Marker};
use crate::storage::ByteRanges;
use crate::storage::{
    storage_segments, BodyError, ByteStream, ChunkOptions, ChunkRange, Session, SessionStatus,
    StorageError,
};

/// Bytes of a chunk gathered from its body before one positional write (each
/// write of a chunk takes the writers' lock and checks the session).
pub(super) const WRITE_BATCH: usize = 1024 * 1024;

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
    /// The journal as this writer last read it; refreshed before each batch.
    known: Mutex<Known>,
    /// The ranges of writers in flight at admission that meet the chunk's range.
    met: Vec<[u64; 2]>,
    /// Registered when the chunk may write bytes; removed when this is dropped,
    /// after the last batch (the blocking tasks hold this value too).
    marker: Option<Marker>,
}

/// The journal file a writer reads, and what it read of it. Compaction
/// replaces the file at [`JOURNAL`]; the writer then reads the new one whole.
struct Known {
    file: File,
    journal: Journal,
}

impl Known {
    /// Reads what was appended since the last read, or the whole journal if
    /// compaction replaced it since.
    fn refresh(&mut self, dir: &Path) -> Result<(), StorageError> {
        if !same_file(&self.file, &dir.join(JOURNAL))? {
            // Gone: the session was removed; the chunk fails when recorded.
            if let Some(file) = open_journal(dir)? {
                self.journal = read_journal(&file).map_err(write_error)?;
                self.file = file;
            }
        }
        self.journal.refresh(&self.file).map_err(write_error)
    }
}

enum Admission {
    Completed(StoredRecord),
    Admitted(ChunkFiles),
}

/// How many bytes of `[first, last]` are in `ranges`.
fn stored_within(ranges: &ByteRanges, first: u64, last: u64) -> u64 {
    ranges
        .as_slice()
        .iter()
        .filter(|r| r[0] <= last && first <= r[1])
        .map(|r| r[1].min(last) - r[0].max(first) + 1)
        .sum()
}

/// First step of a chunk: under the session lock, check the chunk, reserve
/// the bytes it would add against the quota, and open the session's files.
fn admit_chunk(
    root: &Path,
    dir: PathBuf,
    session: &Session,
    range: ChunkRange,
    options: &ChunkOptions,
    reservation: &mut Reservation,
) -> Result<Admission, StorageError> {
    ensure_session_dir(&dir)?;
    let _lock = lock_session(&dir)?;
    if let Some(record) = read_record(&dir)? {
        roll_forward(root, &dir, &record)?;
        return Ok(Admission::Completed(record));
    }
    let mut journal = session_state(&dir)?;
    journal.state.repr_digest = read_repr(&dir)?;
    apply_opened(&dir, &mut journal.state)?;
    journal.state.admit(range, options)?;
    // Refused before anything is created or read: the bytes the chunk would
    // add to the session must fit in the quota.
    let adds = (range.last - range.first + 1)
        - stored_within(&journal.state.ranges, range.first, range.last);
    if adds > reservation.bytes() {
        reservation.grow(adds - reservation.bytes())?;
    }

    let mut created = ensure_meta(&dir, session.expires())?;
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
        known: Mutex::new(Known {
            file: journal_file,
            journal,
        }),
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

/// Stores a batch's bytes from `offset`, holding the writers' shared lock so
/// that no chunk is recorded and no commit happens midway. Ranges recorded
/// since the last batch are read first, so recorded bytes are compared, never
/// written. Returns false, storing nothing, once the session is complete: its
/// data file is the committed file now.
fn write_batch(files: &ChunkFiles, offset: u64, batch: &Batch) -> Result<bool, StorageError> {
    files.data_lock.lock_shared().map_err(write_error)?;
    let result = (|| {
        if record_exists(&files.dir)? {
            return Ok(false);
        }
        let mut known = files
            .known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        known.refresh(&files.dir)?;
        let mut at = offset;
        for slice in batch.slices() {
            store_piece(&files.data, at, slice, &known.journal.state.ranges)?;
            at += slice.len() as u64;
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
    // none of this chunk's business any more. The data file tells: only a
    // commit (which leaves a record) or a removal ever replaces it (and a
    // concatenation, only while no writer is in flight), whereas compaction
    // replaces the journal.
    if !same_file(&files.data, &dir.join(DATA))? {
        return Err(other(FsError::SessionRemoved));
    }
    // Opened under the session lock: the file every append goes to.
    let journal_file = open_journal(dir)?.ok_or_else(|| other(FsError::SessionRemoved))?;
    let mut journal = read_journal(&journal_file).map_err(write_error)?;
    let mut state = journal.state.clone();
    state.repr_digest = read_repr(dir)?;
    apply_opened(dir, &mut state)?;
    state.admit(range, options)?;
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

    // The kept digest is made durable before the entry, and removed again if
    // the entry cannot be appended. This order is the safe one: a crash
    // between the two leaves a digest kept for a chunk that was never
    // answered, which only makes the session stricter (another digest is
    // refused, the commit is checked against this one), whereas the other
    // order could leave a recorded chunk whose digest is not kept, and a
    // later chunk with a different digest would be let in.
    let kept_now = state.keep_repr_digest(options.repr_digest.as_ref());
    if kept_now {
        if let Some(kept) = &state.repr_digest {
            write_repr(dir, kept)?;
        }
    }
    let known = state.ranges.contains(range.first, range.last)
        && (range.total.is_none() || range.total == state.total);
    if !known {
        let entry = Entry {
            range,
            digest: Some(digest),
        };
        if let Err(error) = append_entry(&journal_file, journal.len, entry) {
            if kept_now {
                // The chunk counts for nothing, and neither does its digest.
                // Should this removal fail too, the digest stays as after a
                // crash between the two (see above): stricter, never looser.
                forget_repr(dir)?;
            }
            return Err(write_error(error));
        }
        // From here on the entry is in the journal, and readers see it even if
        // the sync below fails: the kept digest stays with it.
        // Writers see the entry (they read the journal) from here on, so they
        // may store batches again while it is made durable. The chunk's bytes
        // already are: should a crash lose the entry, the chunk was never
        // answered, and its bytes on disk are what any writer compared with.
        drop(exclusive);
        journal_file.sync_data().map_err(write_error)?;
        state.record(range);
        journal.push(entry);
        if journal.needs_compaction() {
            // The chunk is recorded durably already, and an interrupted
            // compaction leaves the journal as it was: a failure here only
            // postpones compaction to the next chunk.
            if let Err(error) = compact(dir, &journal) {
                tracing::warn!(%error, "compacting a session journal failed");
            }
        }
    }
    Ok(SessionStatus::in_progress(state))
}

/// Writes one chunk; see [`Storage::write_chunk`](crate::storage::Storage::write_chunk).
///
/// The bytes the chunk would add to its session are reserved against the
/// quota at admission and released when the chunk ends, once what it stored
/// is counted with the session's bytes.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write_chunk(
    root: Arc<Path>,
    buffers: Arc<BufferBudget>,
    threads: Arc<WriteThreads>,
    quota: Option<Arc<Quota>>,
    dir: PathBuf,
    session: Session,
    range: ChunkRange,
    options: Arc<ChunkOptions>,
    mut body: ByteStream,
) -> Result<SessionStatus, StorageError> {
    let id = session.id().to_owned();
    let mut reservation = Reservation::new(quota.clone());
    storage_segments(session.path())?;
    if range.first > range.last {
        return Err(StorageError::RangeNotSatisfiable);
    }
    let expected = (range.last - range.first)
        .checked_add(1)
        .ok_or(StorageError::RangeNotSatisfiable)?;

    let admission = {
        let (root, session, options) = (Arc::clone(&root), session.clone(), Arc::clone(&options));
        blocking(move || {
            // Before the session folder exists: a path the file could never
            // take leaves no session behind.
            check_destination(&root, session.path())?;
            let admission = retry_removed(|| {
                admit_chunk(
                    &root,
                    dir.clone(),
                    &session,
                    range,
                    &options,
                    &mut reservation,
                )
            })?;
            Ok((admission, reservation))
        })
        .await?
    };
    let (admission, _reservation) = admission;
    let files = match admission {
        Admission::Completed(record) => {
            if let Some(quota) = &quota {
                quota.forget_session(&id);
            }
            return Ok(completed(record, false));
        }
        Admission::Admitted(files) => Arc::new(files),
    };

    let mut hasher = BlockHasher::new(range.first);
    let mut received = 0u64;
    let mut written = 0u64;
    let mut batch = Batch::new(Arc::clone(&buffers), WRITE_BATCH);
    let mut open = true;
    let mut pipeline = Pipeline::new(
        Arc::new(files.data.try_clone().map_err(write_error)?),
        threads,
    );
    loop {
        let piece = body.next().await;
        let end = piece.is_none();
        if let Some(piece) = piece {
            let piece = match piece {
                Ok(piece) => piece,
                Err(error) => {
                    // No write of this chunk outlives its answer; the
                    // chunk fails whatever the writes returned.
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
        if !batch.is_empty() && (end || batch.is_full()) {
            let at = range.first + written;
            written += batch.len() as u64;
            let files = Arc::clone(&files);
            open = pipeline
                .write(&mut batch, move |batch| write_batch(&files, at, batch))
                .await?;
        }
        if end || !open {
            // Closed: the session completed meanwhile; the rest of the
            // body is not needed.
            break;
        }
    }
    // The bytes are durable before the chunk counts (synced here or in the
    // blocking call below); a resend wrote none.
    let synced;
    (open, synced) = if files.plan == Plan::Stream && open {
        pipeline.finish_overlapped(File::sync_data).await?
    } else {
        (pipeline.finish().await? && open, Synced::Yes)
    };
    if open && received != expected {
        return Err(StorageError::Body(BodyError(
            crate::Error::ContentRangeMismatch,
        )));
    }
    let blocks = hasher.finish();
    let result = blocking(move || {
        if open && synced == Synced::No {
            files.data.sync_data().map_err(write_error)?;
        }
        record_chunk(&root, &files, range, &options, &blocks)
    })
    .await;
    if let (Ok(status), Some(quota)) = (&result, &quota) {
        match status {
            SessionStatus::InProgress { ranges, .. } => quota.set_session(&id, ranges.received()),
            _ => quota.forget_session(&id),
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::{chunk, live_session};
    use crate::storage::{FsStorage, ReprDigest, Storage};

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

    #[tokio::test]
    async fn a_chunk_whose_entry_fails_keeps_no_repr_digest() {
        let folder = tempfile::tempdir().expect("temp dir");
        let storage = FsStorage::new(folder.path()).expect("storage");
        let session = live_session(1, "kept.bin");
        let dir = storage.session_dir(&session).expect("valid id");
        let digest = |text: &str| ReprDigest::parse(text).expect("a valid digest");
        let first = digest("sha-256=:LCa0a2j/xo/5m0U8HTBBNBNCLXBkg7+g+YpeiGJm564=:");
        let range = chunk(0, 9, Some(10));
        let options = ChunkOptions::new(10).repr_digest(first);
        let admission = admit_chunk(
            storage.root(),
            dir.clone(),
            &session,
            range,
            &options,
            &mut Reservation::new(None),
        );
        let Ok(Admission::Admitted(files)) = admission else {
            panic!("not admitted");
        };
        // The journal becomes a device where every write fails (no space):
        // the entry cannot be appended.
        fs::remove_file(dir.join(JOURNAL)).expect("remove journal");
        std::os::unix::fs::symlink("/dev/full", dir.join(JOURNAL)).expect("link");
        files.data.write_all_at(b"0123456789", 0).expect("data");
        let mut hasher = BlockHasher::new(0);
        hasher.update(b"0123456789");
        let result = record_chunk(storage.root(), &files, range, &options, &hasher.finish());
        assert!(matches!(result, Err(StorageError::Full)), "{result:?}");
        drop(files);
        assert_eq!(read_repr(&dir).expect("readable"), None);
        fs::remove_file(dir.join(JOURNAL)).expect("remove link");

        // The failed chunk counts for nothing: another digest is welcome.
        let other = digest("sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:");
        storage
            .write_chunk(
                &session,
                range,
                &ChunkOptions::new(10).repr_digest(other.clone()),
                crate::storage::conformance::body(&[b"0123456789"]),
            )
            .await
            .expect("a chunk with another digest");
        assert_eq!(read_repr(&dir).expect("readable"), Some(other));
    }
}

//! Concatenation (tus `Upload-Concat: final`) without reading the parts'
//! bytes through the process: the parts' data files are copied by the kernel
//! (`copy_file_range`, which shares extents where the file system can) into a
//! temporary file, written back early while the copy goes on and synced at
//! its end, then put in place as the session's data file
//! with one journal entry.
//!
//! Only a session with no stored byte and no writer in flight is assembled
//! this way; any other goes through the generic path
//! ([`concat_by_copy`](crate::storage::concat::concat_by_copy)), which
//! compares what is stored and refuses a conflict.
//!
//! Crash-safe at every step: until the rename, the session is untouched and
//! the copy is a temporary file that cleanup removes; between the rename and
//! the journal entry, the data file holds bytes no entry counts (the session
//! has none, and a retry replaces the file again); the entry is checksummed,
//! so a torn one counts nothing. The parts are only read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{other, write_error, FsError};
use super::journal::{append_entry, read_journal, Entry};
use super::lock::{lock_session, retry_removed};
use super::open::apply_opened;
use super::paths::{
    check_destination, open_create, random_name, sync_dir, DATA, HIDDEN, JOURNAL, TMP,
};
use super::quota::Reservation;
use super::record::{read_record, roll_forward};
use super::repr::read_repr;
use super::session::{completed, ensure_meta, ensure_session_dir};
use super::writers::live_writers;
use super::{blocking, FsStorage};
use crate::storage::concat::complete_length;
use crate::storage::{
    ChunkOptions, ChunkRange, ConcatOptions, OpenOptions as SessionOpen, Session, SessionStatus,
    Storage, StorageError,
};

/// What the fast path did.
#[derive(Debug)]
pub(super) enum Concat {
    /// The session's status: assembled now, or complete already.
    Done(SessionStatus),
    /// The session holds bytes, or a writer is in flight: the generic path decides.
    Generic,
}

/// The parts' bytes made the session's data file, when the session holds
/// none yet; see the module docs.
pub(super) async fn concat_files(
    storage: &FsStorage,
    session: &Session,
    parts: &[Session],
    options: &ConcatOptions,
) -> Result<Concat, StorageError> {
    let status = storage.status(session).await?;
    if let SessionStatus::Completed(_) = status {
        return Ok(Concat::Done(status));
    }
    let mut sources = Vec::with_capacity(parts.len());
    let mut total = 0u64;
    for part in parts {
        let len = complete_length(storage.status(part).await?)?;
        total = total
            .checked_add(len)
            .ok_or(StorageError::RangeNotSatisfiable)?;
        if len > 0 {
            sources.push((storage.session_dir(part)?.join(DATA), len));
        }
    }
    let mut open = SessionOpen::new().total(total);
    open.metadata = options.metadata.clone();
    let status = storage.open(session, &open).await?;
    let Some(last) = total.checked_sub(1) else {
        // The empty file: nothing to write, the open total completes it.
        return Ok(Concat::Done(status));
    };
    match &status {
        SessionStatus::InProgress { ranges, .. } if ranges.is_empty() => {}
        SessionStatus::InProgress { .. } => return Ok(Concat::Generic),
        _ => return Ok(Concat::Done(status)),
    }
    // The copy costs what the session will hold, reserved before it starts.
    let mut reservation = Reservation::new(storage.quota.clone());
    reservation.grow(total)?;
    let range = ChunkRange {
        first: 0,
        last,
        total: Some(total),
    };
    let chunk = ChunkOptions::new(options.max_ranges);
    let root = Arc::clone(&storage.root);
    let dir = storage.session_dir(session)?;
    let owned = session.clone();
    let result = blocking(move || {
        check_destination(&root, owned.path())?;
        let mut copy = copy_parts(&root.join(HIDDEN).join(TMP), &sources, total)?;
        retry_removed(|| install(&root, &dir, &owned, &mut copy, range, &chunk))
    })
    .await;
    if let Ok(Concat::Done(status)) = &result {
        storage.count(session, status);
    }
    drop(reservation);
    result
}

/// A copy of the parts in the temporary folder, removed when dropped unless
/// it became the session's data file.
#[derive(Debug)]
pub(super) struct Copy {
    path: PathBuf,
    file: File,
    installed: bool,
}

impl Drop for Copy {
    fn drop(&mut self) {
        if !self.installed {
            // Best effort: a leftover is a temporary file that cleanup removes.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Copies the first `len` bytes of each data file in `sources`, in order,
/// into a new file in `tmp`, and syncs it. A part shorter than its length
/// fails the copy (the part is left as it is).
pub(super) fn copy_parts(
    tmp: &Path,
    sources: &[(PathBuf, u64)],
    total: u64,
) -> Result<Copy, StorageError> {
    fs::create_dir_all(tmp).map_err(write_error)?;
    let path = tmp.join(random_name("concat-", ".part"));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(write_error)?;
    let mut copy = Copy {
        path,
        file,
        installed: false,
    };
    let syncer = copy.file.try_clone().map_err(write_error)?;
    // Early writeback, as for a body: a sync runs on another thread while
    // the copy goes on, so the last one finds little left to write. Every
    // sync's result is read (a writeback error is reported only once).
    std::thread::scope(|scope| {
        let mut syncing: Option<std::thread::ScopedJoinHandle<'_, io::Result<()>>> = None;
        let mut copied_all = || -> Result<(), StorageError> {
            for (data, len) in sources {
                let mut part = File::open(data).map_err(write_error)?.take(*len);
                let mut copied = 0u64;
                loop {
                    // `io::copy` between files is `copy_file_range` on Linux.
                    let mut slice = (&mut part).take(COPY_SLICE);
                    let step = io::copy(&mut slice, &mut copy.file).map_err(write_error)?;
                    if step == 0 {
                        break;
                    }
                    copied += step;
                    if syncing.as_ref().is_none_or(|sync| sync.is_finished()) {
                        if let Some(done) = syncing.take() {
                            joined(done)?;
                        }
                        let syncer = &syncer;
                        syncing = Some(scope.spawn(move || syncer.sync_data()));
                    }
                }
                if copied != *len {
                    return Err(other(FsError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "a part's data file is shorter than the part",
                    ))));
                }
            }
            Ok(())
        };
        let result = copied_all();
        let synced = syncing.take().map_or(Ok(()), joined);
        result.and(synced)
    })?;
    if copy.file.metadata().map_err(write_error)?.len() != total {
        return Err(other(FsError::Io(io::Error::other(
            "the parts' copy is not as long as the parts",
        ))));
    }
    copy.file.sync_all().map_err(write_error)?;
    Ok(copy)
}

/// Bytes copied between two early syncs of a concatenation's copy.
const COPY_SLICE: u64 = 16 * 1024 * 1024;

/// The result of an early sync's thread.
fn joined(handle: std::thread::ScopedJoinHandle<'_, io::Result<()>>) -> Result<(), StorageError> {
    match handle.join() {
        Ok(result) => result.map_err(write_error),
        Err(_) => Err(other(FsError::Io(io::Error::other(
            "an early sync's thread panicked",
        )))),
    }
}

/// Under the session lock: puts `copy` in place as the session's data file
/// and records `range` (every byte), if the session still holds no byte and
/// no writer is in flight (else [`Concat::Generic`], the copy left unused).
pub(super) fn install(
    root: &Path,
    dir: &Path,
    session: &Session,
    copy: &mut Copy,
    range: ChunkRange,
    options: &ChunkOptions,
) -> Result<Concat, StorageError> {
    ensure_session_dir(dir)?;
    let _lock = lock_session(dir)?;
    if let Some(record) = read_record(dir)? {
        roll_forward(root, dir, &record)?;
        return Ok(Concat::Done(completed(record, false)));
    }
    let journal_file = open_create(&dir.join(JOURNAL)).map_err(write_error)?;
    let journal = read_journal(&journal_file).map_err(write_error)?;
    let mut state = journal.state.clone();
    state.repr_digest = read_repr(dir)?;
    apply_opened(dir, &mut state)?;
    // Writers open the data file when admitted, under this lock, and hold it
    // until they are recorded: with none in flight, nobody writes to the file
    // this one replaces.
    if !state.ranges.is_empty() || live_writers(dir)? {
        return Ok(Concat::Generic);
    }
    state.admit(range, options)?;
    ensure_meta(dir, session.expires())?;
    fs::rename(&copy.path, dir.join(DATA)).map_err(write_error)?;
    copy.installed = true;
    // The new name is durable before the entry that counts its bytes.
    sync_dir(dir).map_err(write_error)?;
    let entry = Entry {
        range,
        // Not hashed (that would read every byte again): a resend of these
        // bytes is compared with the data file instead.
        digest: None,
    };
    append_entry(&journal_file, journal.len, entry).map_err(write_error)?;
    journal_file.sync_all().map_err(write_error)?;
    state.record(range);
    Ok(Concat::Done(SessionStatus::in_progress(state)))
}

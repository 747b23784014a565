//! Completion: under the session lock, the record is written durably, then the
//! data file is renamed into place.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::error::{other, write_error, FsError};
use super::file::{etag_of, read_head};
use super::journal::session_state;
use super::lock::{lock_session, ExclusiveData};
use super::open::apply_opened;
use super::paths::{open_create, prepare_destination, sync_dir, DATA, DATA_LOCK};
use super::record::{read_record, roll_forward, write_record, StoredRecord};
use super::repr::read_repr;
use super::session::{completed, dir_exists, ensure_meta, ensure_session_dir, remove_session_dir};
use crate::storage::{
    CommitInfo, CompleteOptions, FileDigests, FileHasher, MakeRecord, Session, SessionState,
    SessionStatus, StorageError,
};

/// Commits a complete session, under its lock. See
/// [`Storage::complete`](crate::storage::Storage::complete).
pub(super) fn complete_session(
    root: &Path,
    dir: &Path,
    session: &Session,
    options: &CompleteOptions,
    make_record: MakeRecord,
) -> Result<SessionStatus, StorageError> {
    let empty = SessionState::default().with_declared_total(options.total);
    if !dir_exists(dir)? {
        if !empty.is_complete() {
            return Ok(SessionStatus::in_progress(SessionState::default()));
        }
        // An empty file declared by a status query: nothing was stored, so
        // the session folder is made here, to hold the record.
        ensure_session_dir(dir)?;
    }
    let path = session.path();
    let _lock = lock_session(dir)?;
    if empty.is_complete() && ensure_meta(dir, session.expires())? {
        sync_dir(dir).map_err(write_error)?;
    }
    if let Some(record) = read_record(dir)? {
        roll_forward(root, dir, &record)?;
        return Ok(completed(record, false));
    }
    let mut state = session_state(dir)?.state;
    apply_opened(dir, &mut state)?;
    let state = state.with_declared_total(options.total);
    let total = match state.total {
        Some(total) if state.is_complete() => total,
        _ => return Ok(SessionStatus::in_progress(state)),
    };
    // Refuse a bad destination before anything irreversible.
    let target = prepare_destination(root, path)?;

    // No writer may touch the data file from here on.
    let data_lock = open_create(&dir.join(DATA_LOCK)).map_err(write_error)?;
    let exclusive = ExclusiveData::lock(&data_lock)?;
    let data_path = dir.join(DATA);
    // An empty file may have no data file yet: no chunk came.
    let data = OpenOptions::new()
        .read(true)
        .write(true)
        .create(total == 0)
        .truncate(false)
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
    let wanted = options.digests.with_repr_digest(repr_digest.as_ref());
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

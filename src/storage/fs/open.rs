//! A session opened by a creation before its bytes arrive: the `open` file
//! keeps the creation's total and metadata.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{is_not_found, other, write_error, FsError};
use super::lock::{lock_session, retry_removed};
use super::paths::{sync_dir, OPEN, OPEN_TMP};
use super::record::{read_record, roll_forward};
use super::repr::read_repr;
use super::session::{completed, ensure_meta, ensure_session_dir};
use crate::storage::{OpenOptions, Session, SessionState, SessionStatus, StorageError};

/// What the `open` file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Opened {
    total: Option<u64>,
    metadata: Option<String>,
}

/// Adds what the session's creation kept (if it was opened) to the state its
/// journal replayed.
pub(super) fn apply_opened(dir: &Path, state: &mut SessionState) -> Result<(), StorageError> {
    let bytes = match fs::read(dir.join(OPEN)) {
        Ok(bytes) => bytes,
        Err(error) if is_not_found(&error) => return Ok(()),
        Err(error) => return Err(write_error(error)),
    };
    let opened: Opened = serde_json::from_slice(&bytes)
        .map_err(|_| other(FsError::Corrupt("the open file does not parse")))?;
    state.opened = true;
    if state.total.is_none() {
        state.total = opened.total;
    }
    state.metadata = opened.metadata;
    Ok(())
}

/// Keeps what a creation opened durably: temporary file, `fsync`, rename,
/// `fsync` of the folder.
fn write_opened(dir: &Path, state: &SessionState) -> Result<(), StorageError> {
    let opened = Opened {
        total: state.total,
        metadata: state.metadata.clone(),
    };
    let bytes = serde_json::to_vec(&opened)
        .map_err(|_| other(FsError::Corrupt("the open file cannot be encoded")))?;
    let temp = dir.join(OPEN_TMP);
    let mut file = File::create(&temp).map_err(write_error)?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    fs::rename(&temp, dir.join(OPEN)).map_err(write_error)?;
    sync_dir(dir).map_err(write_error)
}

/// Opens a session; see [`Storage::open`](crate::storage::Storage::open).
pub(super) fn open_session(
    root: &Path,
    dir: &Path,
    session: &Session,
    options: &OpenOptions,
) -> Result<SessionStatus, StorageError> {
    retry_removed(|| {
        ensure_session_dir(dir)?;
        let _lock = lock_session(dir)?;
        if let Some(record) = read_record(dir)? {
            roll_forward(root, dir, &record)?;
            return Ok(completed(record, false));
        }
        let mut state = super::journal::session_state(dir)?.state;
        state.repr_digest = read_repr(dir)?;
        apply_opened(dir, &mut state)?;
        if state.open(options)? {
            ensure_meta(dir, session.expires())?;
            write_opened(dir, &state)?;
        }
        Ok(SessionStatus::in_progress(state))
    })
}

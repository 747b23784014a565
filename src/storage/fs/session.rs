//! A session folder: created, dated by its URL's expiry, removed whole; and
//! the statuses a session answers with.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::{is_not_found, other, write_error, FsError};
use super::journal::session_state;
use super::lock::{lock_session, retry_removed};
use super::open::apply_opened;
use super::paths::{random_name, sync_dir, GONE, META, TMP};
use super::record::{read_record, roll_forward, StoredRecord};
use super::repr::read_repr;
use crate::storage::{SessionState, SessionStatus, StorageError};

pub(super) fn completed(record: StoredRecord, fresh: bool) -> SessionStatus {
    SessionStatus::completed(record.etag, record.record, fresh)
}

pub(super) fn dir_exists(dir: &Path) -> Result<bool, StorageError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) => Ok(meta.is_dir()),
        Err(error) if is_not_found(&error) => Ok(false),
        Err(error) => Err(write_error(error)),
    }
}

/// Creates the session folder; safe when several processes race to create it.
pub(super) fn ensure_session_dir(dir: &Path) -> Result<(), StorageError> {
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

/// Writes the session's `meta` file (its URL's expiry, for cleanup) unless it
/// exists; returns whether it wrote it (the folder then needs an `fsync`).
pub(super) fn ensure_meta(dir: &Path, expires: SystemTime) -> Result<bool, StorageError> {
    let meta = dir.join(META);
    if meta.exists() {
        return Ok(false);
    }
    let mut file = fs::File::create(&meta).map_err(write_error)?;
    file.write_all(encode_expiry(expires).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    Ok(true)
}

pub(super) fn encode_expiry(expires: SystemTime) -> String {
    let since = expires.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}\n", since.as_secs(), since.subsec_nanos())
}

pub(super) fn decode_expiry(text: &str) -> Option<SystemTime> {
    let (secs, nanos) = text.trim().split_once('.')?;
    let since = Duration::new(
        secs.parse().ok()?,
        nanos.parse().ok().filter(|n| *n < 1_000_000_000)?,
    );
    UNIX_EPOCH.checked_add(since)
}

/// A session's expiry; without a readable `meta` file (a crash while creating
/// it), the folder's modification time stands in.
pub(super) fn session_expiry(dir: &Path) -> Result<SystemTime, StorageError> {
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

/// Removes a session folder atomically: renames it under [`TMP`] (so no later
/// call finds half a session, even after a crash), then deletes it.
pub(super) fn remove_session_dir(dir: &Path) -> Result<(), StorageError> {
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

/// A session's status, finishing an interrupted commit first; see
/// [`Storage::status`](crate::storage::Storage::status).
pub(super) fn session_status(root: &Path, dir: &Path) -> Result<SessionStatus, StorageError> {
    retry_removed(|| {
        if !dir_exists(dir)? {
            return Ok(SessionStatus::in_progress(SessionState::default()));
        }
        let _lock = lock_session(dir)?;
        if let Some(record) = read_record(dir)? {
            roll_forward(root, dir, &record)?;
            return Ok(completed(record, false));
        }
        let mut state = session_state(dir)?.state;
        state.repr_digest = read_repr(dir)?;
        apply_opened(dir, &mut state)?;
        Ok(SessionStatus::in_progress(state))
    })
}

/// Removes a session unless it completed; see
/// [`Storage::discard`](crate::storage::Storage::discard).
pub(super) fn discard_session(dir: &Path) -> Result<(), StorageError> {
    retry_removed(|| {
        if !dir_exists(dir)? {
            return Ok(());
        }
        let _lock = lock_session(dir)?;
        if read_record(dir)?.is_some() {
            return Ok(());
        }
        remove_session_dir(dir)
    })
}

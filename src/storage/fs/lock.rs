//! The session lock (`flock` on `lock`, held while the journal changes or the
//! session commits) and the writers' lock on `data.lock`.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::error::{is_not_found, other, write_error, FsError};
use super::paths::LOCK;
use crate::storage::StorageError;

/// Attempts at a session call that met the session folder being removed.
const ATTEMPTS: usize = 3;

/// The session's exclusive lock; released when dropped (the descriptor closes).
pub(super) struct SessionLock {
    _file: File,
}

pub(super) fn lock_session(dir: &Path) -> Result<SessionLock, StorageError> {
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
pub(super) fn retry_removed<T>(
    mut call: impl FnMut() -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let mut attempt = 1;
    loop {
        match call() {
            Err(error) if attempt < ATTEMPTS && is_removed(&error) => attempt += 1,
            result => return result,
        }
    }
}

/// Holds the writers' lock exclusively; released when dropped.
pub(super) struct ExclusiveData<'a>(&'a File);

impl<'a> ExclusiveData<'a> {
    pub(super) fn lock(file: &'a File) -> Result<Self, StorageError> {
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

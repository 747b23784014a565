//! The `Repr-Digest` a session keeps once a recorded chunk announced one.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::error::{is_not_found, other, write_error, FsError};
use super::paths::{sync_dir, REPR, REPR_TMP};
use crate::storage::{ReprDigest, StorageError};

/// The `Repr-Digest` kept with the session, if a recorded chunk announced one.
pub(super) fn read_repr(dir: &Path) -> Result<Option<ReprDigest>, StorageError> {
    match fs::read(dir.join(REPR)) {
        Ok(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(ReprDigest::parse)
            .map(Some)
            .ok_or_else(|| other(FsError::Corrupt("kept Repr-Digest does not parse"))),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(write_error(error)),
    }
}

/// Keeps the session's `Repr-Digest` durably: temporary file, `fsync`, rename.
pub(super) fn write_repr(dir: &Path, digest: &ReprDigest) -> Result<(), StorageError> {
    let temp = dir.join(REPR_TMP);
    let mut file = File::create(&temp).map_err(write_error)?;
    file.write_all(digest.to_string().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    fs::rename(&temp, dir.join(REPR)).map_err(write_error)?;
    sync_dir(dir).map_err(write_error)
}

/// Removes the kept `Repr-Digest` durably (a chunk that announced it failed
/// to be recorded).
pub(super) fn forget_repr(dir: &Path) -> Result<(), StorageError> {
    match fs::remove_file(dir.join(REPR)) {
        Ok(()) => sync_dir(dir).map_err(write_error),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(write_error(error)),
    }
}

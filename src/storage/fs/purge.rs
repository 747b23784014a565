//! Cleanup: expired sessions (complete or not), old temporary files, and
//! removed session folders whose deletion was interrupted.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use super::error::{is_not_found, write_error};
use super::lock::lock_session;
use super::paths::{GONE, HIDDEN, TMP};
use super::record::{read_record, roll_forward};
use super::session::{dir_exists, remove_session_dir, session_expiry};
use crate::storage::{PurgeReport, StorageError};

pub(super) fn purge(root: &Path, cutoff: SystemTime) -> Result<PurgeReport, StorageError> {
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
        remove_session_dir(&dir)?;
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
        if meta.is_dir() && entry.file_name().to_string_lossy().starts_with(GONE) {
            // A removed session folder whose deletion was interrupted.
            match fs::remove_dir_all(entry.path()) {
                Ok(()) => removed += 1,
                Err(error) if is_not_found(&error) => {}
                Err(error) => return Err(write_error(error)),
            }
            continue;
        }
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

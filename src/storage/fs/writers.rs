//! In-flight chunk writers: one marker each under `writing/`, through which
//! writers whose ranges meet find each other.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::{is_not_found, write_error};
use super::journal::word;
use super::paths::{random_name, WRITING};
use crate::storage::{ChunkRange, StorageError};

/// A chunk writer's marker, `writing/{random}`: 16 bytes of its range (`first`,
/// `last`), then 16 bytes per later writer whose range meets it. Its owner holds
/// an exclusive `flock` on it while it may write, so a marker nobody holds is
/// stale (its process died). Removed when dropped, after the owner's last write.
pub(super) struct Marker {
    path: PathBuf,
    file: File,
}

impl Drop for Marker {
    fn drop(&mut self) {
        // Best effort: a leftover is stale (unlocked) and removed by the next scan.
        let _ = fs::remove_file(&self.path);
    }
}

impl Marker {
    /// The ranges of writers admitted after the owner that meet its range.
    pub(super) fn later_writers(&self) -> io::Result<Vec<[u64; 2]>> {
        let len = usize::try_from(self.file.metadata()?.len()).map_err(io::Error::other)?;
        let mut bytes = vec![0; len];
        self.file.read_exact_at(&mut bytes, 0)?;
        Ok(decode_ranges(bytes.get(16..).unwrap_or_default()))
    }
}

fn decode_ranges(bytes: &[u8]) -> Vec<[u64; 2]> {
    bytes
        .chunks_exact(16)
        .filter_map(|pair| Some([word(pair, 0)?, word(pair, 8)?]))
        .collect()
}

pub(super) fn encode_range(range: ChunkRange) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&range.first.to_le_bytes());
    out[8..].copy_from_slice(&range.last.to_le_bytes());
    out
}

pub(super) fn meets(a: [u64; 2], range: ChunkRange) -> bool {
    a[0] <= range.last && range.first <= a[1]
}

/// Under the session lock: whether a chunk writer is in flight (its marker
/// is still held by its owner). Stale markers are left to the next writer's scan.
pub(super) fn live_writers(dir: &Path) -> Result<bool, StorageError> {
    let entries = match fs::read_dir(dir.join(WRITING)) {
        Ok(entries) => entries,
        Err(error) if is_not_found(&error) => return Ok(false),
        Err(error) => return Err(write_error(error)),
    };
    for entry in entries {
        if let Marked::Live(_) = open_marker(&entry.map_err(write_error)?.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A writer's marker, as a scan finds it.
enum Marked {
    /// Its writer is in flight (it holds the marker's lock); opened for
    /// reading and writing.
    Live(File),
    /// Nobody writes under it any more.
    Stale,
    /// Removed since the folder was listed.
    Gone,
}

/// Opens the marker at `path` and tells whether its writer is in flight.
fn open_marker(path: &Path) -> Result<Marked, StorageError> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(error) if is_not_found(&error) => return Ok(Marked::Gone),
        Err(error) => return Err(write_error(error)),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(Marked::Stale),
        Err(fs::TryLockError::WouldBlock) => Ok(Marked::Live(file)),
        Err(fs::TryLockError::Error(error)) => Err(write_error(error)),
    }
}

/// Under the session lock: finds the live writers whose range meets `range`,
/// tells each of them about it (so they verify their bytes before recording),
/// removes stale markers, and registers the new writer. Returns its marker and
/// the ranges of the writers it met.
pub(super) fn register_writer(
    dir: &Path,
    range: ChunkRange,
) -> Result<(Marker, Vec<[u64; 2]>), StorageError> {
    let writing = dir.join(WRITING);
    match fs::create_dir(&writing) {
        Err(error) if error.kind() != io::ErrorKind::AlreadyExists => {
            return Err(write_error(error))
        }
        _ => {}
    }
    let mut met = Vec::new();
    for entry in fs::read_dir(&writing).map_err(write_error)? {
        let path = entry.map_err(write_error)?.path();
        let file = match open_marker(&path)? {
            Marked::Live(file) => file,
            Marked::Stale => {
                let _ = fs::remove_file(&path);
                continue;
            }
            Marked::Gone => continue,
        };
        let mut head = [0; 16];
        match file.read_exact_at(&mut head, 0) {
            Ok(()) => {}
            // Cannot happen: markers are written whole before anyone scans.
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => continue,
            Err(error) => return Err(write_error(error)),
        }
        let [theirs] = decode_ranges(&head)[..] else {
            continue;
        };
        if meets(theirs, range) {
            let end = file.metadata().map_err(write_error)?.len();
            file.write_all_at(&encode_range(range), end)
                .map_err(write_error)?;
            met.push(theirs);
        }
    }
    let path = writing.join(random_name("w-", ""));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(write_error)?;
    let marker = Marker { path, file };
    marker.file.lock().map_err(write_error)?;
    marker
        .file
        .write_all_at(&encode_range(range), 0)
        .map_err(write_error)?;
    Ok((marker, met))
}

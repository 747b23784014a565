//! The on-disk layout (see [`FsStorage`](super::FsStorage)) and the checks that keep
//! every path inside the root: upload paths that cannot leave it or name the
//! hidden folder, destinations that cross no symbolic link, unique file names.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::error::{is_not_found, read_error, write_error};
use crate::random::random_hex;
use crate::storage::{storage_segments, StorageError, RESERVED_FOLDER};
use crate::UploadPath;

/// The hidden folder under the root that holds sessions and temporary files.
pub(super) const HIDDEN: &str = RESERVED_FOLDER;

/// Temporary files of simple uploads, under [`HIDDEN`].
pub(super) const TMP: &str = "tmp";

/// Names inside a session folder.
pub(super) const LOCK: &str = "lock";
pub(super) const DATA_LOCK: &str = "data.lock";
pub(super) const DATA: &str = "data";
pub(super) const JOURNAL: &str = "journal";
/// A compacted journal while it is written, before it replaces [`JOURNAL`].
pub(super) const JOURNAL_TMP: &str = "journal.tmp";
pub(super) const RECORD: &str = "record";
pub(super) const RECORD_TMP: &str = "record.tmp";
pub(super) const META: &str = "meta";
pub(super) const REPR: &str = "repr";
pub(super) const REPR_TMP: &str = "repr.tmp";
pub(super) const OPEN: &str = "open";
pub(super) const OPEN_TMP: &str = "open.tmp";
/// The folder of in-flight writers' markers, inside a session folder.
pub(super) const WRITING: &str = "writing";

/// Prefix of a removed session folder's name under [`TMP`], while it is deleted.
pub(super) const GONE: &str = "gone-";

/// `fsync`s `dir` after a change in it; concurrent callers share syncs (see
/// `dirsync`).
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    super::dirsync::sync_dir_shared(dir)
}

pub(super) fn open_create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// A unique file name: `{prefix}{32 random hex digits}{suffix}`.
pub(super) fn random_name(prefix: &str, suffix: &str) -> String {
    format!("{prefix}{}{suffix}", random_hex::<16>())
}

/// Whether a file could be placed at `path` as the disk stands now, without
/// creating anything: each existing ancestor folder is a real folder (not a
/// file, not a symbolic link), and the final name, if it exists, is a file.
/// Checked when a simple upload or a session's chunk is admitted, so a path
/// that completion would refuse is refused at once; [`prepare_destination`]
/// checks again at completion, since the disk may change in between.
pub(super) fn check_destination(root: &Path, path: &UploadPath) -> Result<(), StorageError> {
    let segments = storage_segments(path)?;
    let mut target = root.to_path_buf();
    for (index, segment) in segments.iter().enumerate() {
        target.push(segment);
        let meta = match fs::symlink_metadata(&target) {
            Ok(meta) => meta,
            // Nothing there: the rest is created at completion.
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) => return Err(read_error(error)),
        };
        let is_last = index + 1 == segments.len();
        let fits = if is_last {
            meta.is_file()
        } else {
            meta.is_dir()
        };
        // `symlink_metadata` does not follow links: a link is neither.
        if !fits {
            return Err(StorageError::InvalidPath);
        }
    }
    Ok(())
}

/// Where a file at `path` goes: creates the missing folders and refuses a path
/// that crosses a symbolic link, a file used as a folder, or ends at a folder or link.
pub(super) fn prepare_destination(root: &Path, path: &UploadPath) -> Result<PathBuf, StorageError> {
    let segments = storage_segments(path)?;
    let (last, folders) = segments.split_last().ok_or(StorageError::InvalidPath)?;
    let mut dir = root.to_path_buf();
    for folder in folders {
        dir.push(folder);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => return Err(StorageError::InvalidPath),
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(write_error(error)),
        }
        match fs::create_dir(&dir) {
            Ok(()) => {
                if let Some(parent) = dir.parent() {
                    sync_dir(parent).map_err(write_error)?;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(write_error(error)),
        }
        // Another process may have raced us to this name with something else.
        if !fs::symlink_metadata(&dir).map_err(write_error)?.is_dir() {
            return Err(StorageError::InvalidPath);
        }
    }
    let target = dir.join(last);
    match fs::symlink_metadata(&target) {
        Ok(meta) if meta.is_file() => Ok(target),
        Ok(_) => Err(StorageError::InvalidPath),
        Err(error) if is_not_found(&error) => Ok(target),
        Err(error) => Err(write_error(error)),
    }
}

/// The stored file at `path`, opened without following symbolic links.
pub(super) fn open_existing(
    root: &Path,
    path: &UploadPath,
) -> Result<(File, fs::Metadata), StorageError> {
    let segments = storage_segments(path)?;
    let mut target = root.to_path_buf();
    for (index, segment) in segments.iter().enumerate() {
        target.push(segment);
        let meta = fs::symlink_metadata(&target).map_err(read_error)?;
        if meta.file_type().is_symlink() {
            return Err(StorageError::InvalidPath);
        }
        let is_last = index + 1 == segments.len();
        if (is_last && !meta.is_file()) || (!is_last && !meta.is_dir()) {
            return Err(StorageError::NotFound);
        }
    }
    let file = File::open(&target).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    // The name may have been swapped for a link between the check and the open.
    let now = fs::symlink_metadata(&target).map_err(read_error)?;
    if now.ino() != meta.ino() || now.dev() != meta.dev() || !meta.is_file() {
        return Err(StorageError::NotFound);
    }
    Ok((file, meta))
}

//! Why the fs backend failed, and how `io` errors map onto [`StorageError`].

use std::fmt;
use std::io;

use crate::storage::StorageError;

/// Why the fs backend failed, kept as the source of [`StorageError::Other`].
#[derive(Debug)]
pub(super) enum FsError {
    Io(io::Error),
    Corrupt(&'static str),
    SessionRemoved,
    Abandoned,
    Blocking(tokio::task::JoinError),
    /// A write job ended without a result (it panicked).
    WriteLost,
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::Io(error) => write!(f, "i/o error: {error}"),
            FsError::Corrupt(what) => write!(f, "corrupt session: {what}"),
            FsError::SessionRemoved => {
                f.write_str("the session was removed (discarded, refused or cleaned up)")
            }
            FsError::Abandoned => f.write_str("the upload was abandoned"),
            FsError::Blocking(error) => write!(f, "blocking task failed: {error}"),
            FsError::WriteLost => f.write_str("a write ended without a result"),
        }
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FsError::Io(error) => Some(error),
            FsError::Blocking(error) => Some(error),
            _ => None,
        }
    }
}

pub(super) fn other(error: FsError) -> StorageError {
    StorageError::Other {
        backend: "fs",
        source: Box::new(error),
    }
}

pub(super) fn is_full(error: &io::Error) -> bool {
    // ENOSPC (28) and EDQUOT (122 on Linux).
    error.kind() == io::ErrorKind::StorageFull || matches!(error.raw_os_error(), Some(28 | 122))
}

/// Whether the process or the system is out of file descriptors (EMFILE 24,
/// ENFILE 23): a shortage that passes, not a failure of the storage.
pub(super) fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(23 | 24))
}

/// Maps an error of a write path: a missing file there is a failure, not a 404;
/// running out of file descriptors is a passing shortage (`503`, retried by
/// clients), not a storage failure.
pub(super) fn write_error(error: io::Error) -> StorageError {
    if is_full(&error) {
        StorageError::Full
    } else if is_out_of_descriptors(&error) {
        StorageError::Unavailable {
            backend: "fs",
            source: Box::new(FsError::Io(error)),
        }
    } else {
        other(FsError::Io(error))
    }
}

/// Maps an error of a read path, where a missing file is [`StorageError::NotFound`].
pub(super) fn read_error(error: io::Error) -> StorageError {
    match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => StorageError::NotFound,
        _ => write_error(error),
    }
}

pub(super) fn is_not_found(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_is_unavailable_and_a_full_disk_is_full() {
        for errno in [23, 24] {
            let mapped = write_error(io::Error::from_raw_os_error(errno));
            assert!(
                matches!(mapped, StorageError::Unavailable { .. }),
                "errno {errno}: {mapped:?}"
            );
        }
        assert!(matches!(
            write_error(io::Error::from_raw_os_error(28)),
            StorageError::Full
        ));
        assert!(matches!(
            write_error(io::Error::from_raw_os_error(5)),
            StorageError::Other { .. }
        ));
    }
}

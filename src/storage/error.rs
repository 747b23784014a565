//! [`StorageError`], what a backend answers when an operation fails, and
//! [`BodyError`], the layer's reason a request body failed.

use std::fmt;

use super::BoxError;

/// The request body failed while streaming; the layer knows why.
///
/// Backends pass it back unchanged inside [`StorageError::Body`].
#[derive(Debug)]
pub struct BodyError(pub(crate) crate::Error);

impl BodyError {
    /// A body error that the layer reports as a storage failure; for tests of backends.
    pub fn aborted() -> Self {
        BodyError(crate::Error::StorageError)
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body failed: {}", self.0)
    }
}

impl std::error::Error for BodyError {}

/// Why a storage operation failed.
///
/// The layer maps each variant to a status of the wire contract; the source
/// errors are logged, never sent to clients.
#[derive(Debug)]
#[non_exhaustive]
pub enum StorageError {
    /// No file is stored at the path.
    NotFound,
    /// The chunk names another total than the session has (409).
    TotalMismatch,
    /// The chunk reaches past the session's total (416).
    RangeNotSatisfiable,
    /// Storing the chunk would split the session into more ranges than allowed (400).
    TooManyRanges,
    /// The backend refuses this path, for instance a name it reserves (400).
    InvalidPath,
    /// The chunk overlaps stored bytes that differ from its own (409); the
    /// stored bytes stay and the chunk counts for nothing.
    RangeConflict,
    /// The chunk announces another `Repr-Digest` than the session kept (409).
    DigestConflict,
    /// The layer's record builder refused the commit; the session was discarded.
    CommitRefused,
    /// A part given to [`Storage::concat`](crate::storage::Storage::concat)
    /// has not received all its bytes (400).
    PartIncomplete,
    /// No space left (507).
    Full,
    /// The request body failed; nothing of it was kept.
    Body(BodyError),
    /// The backend is unreachable for now (503).
    Unavailable {
        /// The backend's name.
        backend: &'static str,
        /// The underlying error.
        source: BoxError,
    },
    /// Any other failure (500).
    Other {
        /// The backend's name.
        backend: &'static str,
        /// The underlying error.
        source: BoxError,
    },
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::NotFound => f.write_str("not found"),
            StorageError::TotalMismatch => f.write_str("total differs from the session's"),
            StorageError::RangeNotSatisfiable => f.write_str("range past the session's total"),
            StorageError::TooManyRanges => f.write_str("too many ranges in the session"),
            StorageError::InvalidPath => f.write_str("path refused by the backend"),
            StorageError::RangeConflict => f.write_str("range stored with other bytes"),
            StorageError::DigestConflict => f.write_str("another Repr-Digest than the session's"),
            StorageError::CommitRefused => f.write_str("commit refused; session discarded"),
            StorageError::PartIncomplete => f.write_str("a part has not received all its bytes"),
            StorageError::Full => f.write_str("no space left"),
            StorageError::Body(error) => fmt::Display::fmt(error, f),
            StorageError::Unavailable { backend, source } => {
                write!(f, "{backend} storage unavailable: {source}")
            }
            StorageError::Other { backend, source } => write!(f, "{backend} storage: {source}"),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Body(error) => Some(error),
            StorageError::Unavailable { source, .. } | StorageError::Other { source, .. } => {
                Some(source.as_ref())
            }
            _ => None,
        }
    }
}

//! The backend's own failures, and how store errors map onto [`StorageError`].

use std::fmt;

use crate::storage::{BodyError, StorageError};

const BACKEND: &str = "object-store";

/// Why the backend failed, kept as the source of a [`StorageError`].
#[derive(Debug)]
pub(super) enum BackendError {
    Store(object_store::Error),
    Corrupt(&'static str),
    Contended(&'static str),
    Spawn(tokio::task::JoinError),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Store(error) => write!(f, "object store: {error}"),
            BackendError::Corrupt(what) => write!(f, "corrupt session: {what}"),
            BackendError::Contended(what) => write!(f, "contended: {what}"),
            BackendError::Spawn(error) => write!(f, "upload task failed: {error}"),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BackendError::Store(error) => Some(error),
            BackendError::Spawn(error) => Some(error),
            _ => None,
        }
    }
}

pub(super) fn other(error: BackendError) -> StorageError {
    StorageError::Other {
        backend: BACKEND,
        source: Box::new(error),
    }
}

pub(super) fn unavailable(error: BackendError) -> StorageError {
    StorageError::Unavailable {
        backend: BACKEND,
        source: Box::new(error),
    }
}

/// Maps a store error where a missing object is a failure.
pub(super) fn store_error(error: object_store::Error) -> StorageError {
    match error {
        // What the client gave up retrying: network errors, 5xx, throttling,
        // timeouts. Misconfiguration (denied, unauthenticated, unsupported)
        // has its own variants and is not worth retrying.
        object_store::Error::Generic { .. } => unavailable(BackendError::Store(error)),
        error => other(BackendError::Store(error)),
    }
}

/// Maps a store error of a read, where a missing object is [`StorageError::NotFound`].
pub(super) fn read_error(error: object_store::Error) -> StorageError {
    match error {
        object_store::Error::NotFound { .. } => StorageError::NotFound,
        error => store_error(error),
    }
}

pub(super) fn content_mismatch() -> StorageError {
    StorageError::Body(BodyError(crate::Error::ContentRangeMismatch))
}

//! Concatenation (tus `Upload-Concat: final`): the parts' bytes, in order,
//! become the bytes of the final upload's session, written as one chunk.
//!
//! [`concat_by_copy`] serves every backend (`FsStorage` first tries its own
//! copy by the kernel, for a session that holds no byte yet): it checks the parts,
//! opens the session with their sum as its total and streams each part's
//! bytes, read back by the backend, into one chunk of the session with
//! [`Storage::write_chunk`]. So the chunk rules hold unchanged: the bytes are
//! durable before the call returns, a racing concatenation of the same parts
//! is an identical resend, a session holding other bytes refuses them
//! (`RangeConflict`), and the completion that follows is the usual
//! exactly-once [`Storage::complete`].

use futures_util::{stream, StreamExt, TryStreamExt};

use super::{
    BodyError, BoxFuture, ByteStream, ChunkOptions, ChunkRange, ConcatOptions, OpenOptions,
    Session, SessionState, SessionStatus, Storage, StorageError,
};

/// Reads a complete part's `len` bytes back, in order.
pub(crate) type ReadPart<'a> = dyn Fn(&Session, u64) -> BoxFuture<'static, Result<ByteStream, StorageError>>
    + Send
    + Sync
    + 'a;

/// [`Storage::concat`] for a backend that can read a complete part's bytes
/// back with `read`.
pub(crate) async fn concat_by_copy<S: Storage + ?Sized>(
    storage: &S,
    session: &Session,
    parts: &[Session],
    options: &ConcatOptions,
    read: &ReadPart<'_>,
) -> Result<SessionStatus, StorageError> {
    let status = storage.status(session).await?;
    if let SessionStatus::Completed(_) = status {
        return Ok(status);
    }
    let mut lengths = Vec::with_capacity(parts.len());
    for part in parts {
        lengths.push(complete_length(storage.status(part).await?)?);
    }
    let total = lengths
        .iter()
        .try_fold(0u64, |sum, len| sum.checked_add(*len))
        .ok_or(StorageError::RangeNotSatisfiable)?;
    let mut open = OpenOptions::new().total(total);
    open.metadata = options.metadata.clone();
    let status = storage.open(session, &open).await?;
    let Some(last) = total.checked_sub(1) else {
        // The empty file: nothing to write, the open total completes it.
        return Ok(status);
    };
    if let SessionStatus::Completed(_) = status {
        return Ok(status);
    }
    let reads: Vec<(Session, u64)> = parts
        .iter()
        .cloned()
        .zip(lengths)
        .filter(|(_, len)| *len > 0)
        .collect();
    let body = part_bytes(reads, read);
    let range = ChunkRange {
        first: 0,
        last,
        total: Some(total),
    };
    storage
        .write_chunk(session, range, &ChunkOptions::new(options.max_ranges), body)
        .await
}

/// A part's length if every one of its bytes arrived, else
/// [`StorageError::PartIncomplete`].
pub(crate) fn complete_length(status: SessionStatus) -> Result<u64, StorageError> {
    match status {
        SessionStatus::InProgress {
            total: Some(total),
            ranges,
            ..
        } => {
            let state = SessionState {
                total: Some(total),
                ranges,
                ..SessionState::default()
            };
            if state.is_complete() {
                Ok(total)
            } else {
                Err(StorageError::PartIncomplete)
            }
        }
        // A part is never committed; anything else has bytes missing.
        _ => Err(StorageError::PartIncomplete),
    }
}

/// The parts' bytes one after the other, each part read only once the one
/// before it ended.
fn part_bytes(parts: Vec<(Session, u64)>, read: &ReadPart<'_>) -> ByteStream {
    let opened: Vec<_> = parts.iter().map(|(part, len)| read(part, *len)).collect();
    stream::iter(opened)
        .then(|future| future)
        .map_err(read_failed)
        .try_flatten()
        .boxed()
}

/// A part that could not be read back: the chunk fails, the client learns
/// only that storage failed, the log learns why.
pub(crate) fn read_failed(error: StorageError) -> BodyError {
    tracing::error!(%error, "reading a part back failed");
    BodyError(crate::Error::StorageError)
}

//! Simple uploads: the body streams into a temporary file under `.uploads/tmp`
//! that is `fsync`ed and renamed into place, or removed.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::StreamExt;

use super::blocking;
use super::error::{other, write_error, FsError};
use super::file::{file_meta, read_head};
use super::paths::{check_destination, prepare_destination, random_name, sync_dir, HIDDEN, TMP};
use super::pipeline::{Batch, BufferBudget, Pipeline, Synced};
use super::quota::Reservation;
use super::threads::WriteThreads;
use crate::storage::{storage_segments, ByteStream, FileMeta, StorageError};
use crate::UploadPath;

/// Bytes of a simple upload gathered before one write: smaller, as many simple
/// uploads may stream at once and each holds up to two batches.
const PUT_BATCH: usize = 256 * 1024;

/// A temporary file that is removed unless committed, even when the future that
/// owns it is dropped at any await point: the state is behind a mutex shared
/// with the blocking tasks, so creation, commit and removal never interleave.
#[derive(Debug)]
struct Temp {
    path: PathBuf,
    state: Mutex<TempState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TempState {
    Pending,
    Created,
    Committed,
    Abandoned,
}

impl Temp {
    fn state(&self) -> MutexGuard<'_, TempState> {
        // The state is a plain value; a panic cannot leave it half-updated.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn create(&self) -> Result<File, StorageError> {
        let mut state = self.state();
        if *state != TempState::Pending {
            return Err(other(FsError::Abandoned));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&self.path)
            .map_err(write_error)?;
        *state = TempState::Created;
        Ok(file)
    }

    fn commit(&self, target: &Path) -> Result<(), StorageError> {
        let mut state = self.state();
        if *state != TempState::Created {
            return Err(other(FsError::Abandoned));
        }
        fs::rename(&self.path, target).map_err(write_error)?;
        *state = TempState::Committed;
        Ok(())
    }
}

/// Removes the temporary file when dropped, unless it was committed.
struct TempGuard(Arc<Temp>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        let mut state = self.0.state();
        if *state == TempState::Created {
            // Best effort: a leftover is removed by `purge_expired` later.
            let _ = fs::remove_file(&self.0.path);
        }
        if *state != TempState::Committed {
            *state = TempState::Abandoned;
        }
    }
}

fn temp_name() -> String {
    random_name("put-", ".part")
}

/// Bodies of at most this many declared bytes are gathered whole, then
/// stored in one blocking call: created, written, synced and renamed into
/// place. One hop off the async threads instead of three, for what many
/// uploads are (avatars, documents); the same bytes in memory as a batch.
const SMALL_PUT: u64 = 64 * 1024;

/// Writes a batch's bytes in order from `offset`.
fn write_slices(file: &File, offset: u64, batch: &Batch) -> Result<(), StorageError> {
    let mut at = offset;
    for slice in batch.slices() {
        file.write_all_at(slice, at).map_err(write_error)?;
        at += slice.len() as u64;
    }
    Ok(())
}

/// Stores a simple upload; see [`Storage::put`](crate::storage::Storage::put).
/// Its bytes are reserved against the quota: the declared `length` before
/// anything is read, and whatever the body brings beyond it as it streams;
/// the reservation is released when the upload ends, however it ends.
pub(super) async fn put_file(
    root: Arc<Path>,
    buffers: Arc<BufferBudget>,
    threads: Arc<WriteThreads>,
    mut reservation: Reservation,
    path: UploadPath,
    length: Option<u64>,
    mut body: ByteStream,
) -> Result<(FileMeta, Bytes), StorageError> {
    storage_segments(&path)?;
    reservation.grow(length.unwrap_or(0))?;
    let temp = Arc::new(Temp {
        path: root.join(HIDDEN).join(TMP).join(temp_name()),
        state: Mutex::new(TempState::Pending),
    });
    let guard = TempGuard(Arc::clone(&temp));
    let mut received = 0u64;
    let mut batch = Batch::pieces_only(Arc::clone(&buffers), PUT_BATCH);

    if length.is_some_and(|length| length <= SMALL_PUT) {
        // The whole body first: should it bring more than it declared, the
        // rest streams below after these bytes.
        loop {
            match next_piece(&mut body, &mut received, &mut reservation).await? {
                Some(piece) => {
                    batch.push(piece);
                    if batch.len() as u64 > SMALL_PUT {
                        break;
                    }
                }
                None => {
                    let stored = blocking(move || {
                        let file = create_temp(&root, &path, &temp)?;
                        write_slices(&file, 0, &batch)?;
                        drop(batch);
                        commit(&root, &path, &temp, &file, Synced::No)
                    })
                    .await?;
                    drop(guard);
                    drop(reservation);
                    return Ok(stored);
                }
            }
        }
    }

    let file = {
        let temp = Arc::clone(&temp);
        let (root, path) = (Arc::clone(&root), path.clone());
        Arc::new(blocking(move || create_temp(&root, &path, &temp)).await?)
    };

    let mut written = 0u64;
    let mut pipeline = Pipeline::new(Arc::clone(&file), threads);
    loop {
        let piece = match next_piece(&mut body, &mut received, &mut reservation).await {
            Ok(piece) => piece,
            Err(error) => {
                // No write outlives the answer; the upload fails whatever
                // the writes returned, and the guard removes the file.
                let _ = pipeline.finish().await;
                return Err(error);
            }
        };
        let end = piece.is_none();
        if let Some(piece) = piece {
            batch.push(piece);
        }
        if !batch.is_empty() && (end || batch.is_full()) {
            let at = written;
            written = written.saturating_add(batch.len() as u64);
            let file = Arc::clone(&file);
            pipeline
                .write(&mut batch, move |batch| {
                    write_slices(&file, at, batch)?;
                    Ok(true)
                })
                .await?;
        }
        if end {
            break;
        }
    }
    let (_, synced) = pipeline.finish_overlapped(File::sync_all).await?;

    let stored = blocking(move || commit(&root, &path, &temp, &file, synced)).await?;
    drop(guard);
    drop(reservation);
    Ok(stored)
}

/// Checks that `path` can be stored under `root`, then creates the upload's
/// temporary file.
fn create_temp(root: &Path, path: &UploadPath, temp: &Temp) -> Result<File, StorageError> {
    check_destination(root, path)?;
    fs::create_dir_all(root.join(HIDDEN).join(TMP)).map_err(write_error)?;
    temp.create()
}

/// The body's next piece, counted against the quota (past the reservation,
/// the reservation grows, or the upload fails: the guard removes what was
/// written); `None` at its end.
async fn next_piece(
    body: &mut ByteStream,
    received: &mut u64,
    reservation: &mut Reservation,
) -> Result<Option<Bytes>, StorageError> {
    let Some(piece) = body.next().await else {
        return Ok(None);
    };
    let piece = piece.map_err(StorageError::Body)?;
    *received = received.saturating_add(piece.len() as u64);
    if *received > reservation.bytes() {
        reservation.grow(*received - reservation.bytes())?;
    }
    Ok(Some(piece))
}

/// Makes the written temporary file the file at `path`: synced (unless it
/// was), its head read back (from the page cache, rather than kept while the
/// body streamed: many uploads at once hold no copies), renamed into place,
/// the folder synced.
fn commit(
    root: &Path,
    path: &UploadPath,
    temp: &Temp,
    file: &File,
    synced: Synced,
) -> Result<(FileMeta, Bytes), StorageError> {
    if synced == Synced::No {
        file.sync_all().map_err(write_error)?;
    }
    let meta = file_meta(&file.metadata().map_err(write_error)?)?;
    let head = read_head(file, meta.size)?;
    let target = prepare_destination(root, path)?;
    temp.commit(&target)?;
    sync_dir(target.parent().unwrap_or(root)).map_err(write_error)?;
    Ok((meta, head))
}

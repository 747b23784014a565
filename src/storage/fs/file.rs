//! A stored file as callers see it: its entity tag and metadata, its first
//! bytes, and its bytes read back.

use std::fs::{self, File};
use std::ops::RangeInclusive;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;

use super::blocking;
use super::error::write_error;
use super::paths::open_existing;
use crate::storage::{BoxStream, FileMeta, FileRead, StorageError, HEAD_LEN};
use crate::UploadPath;

/// Bytes per piece when a file is read back.
const READ_PIECE: usize = 256 * 1024;

/// The entity tag of a file, nginx-like: size, modification time, inode. A
/// rename keeps all three, so the tag computed before a commit holds after it.
pub(super) fn etag_of(meta: &fs::Metadata) -> String {
    let nanos = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    format!("{:x}-{:x}-{:x}", meta.len(), nanos, meta.ino())
}

pub(super) fn file_meta(meta: &fs::Metadata) -> Result<FileMeta, StorageError> {
    Ok(FileMeta {
        size: meta.len(),
        etag: etag_of(meta),
        modified: meta.modified().map_err(write_error)?,
    })
}

/// The first bytes of a file of `size` bytes, at most [`HEAD_LEN`].
pub(super) fn read_head(file: &File, size: u64) -> Result<Bytes, StorageError> {
    let len = usize::try_from(size).unwrap_or(HEAD_LEN).min(HEAD_LEN);
    let mut head = vec![0; len];
    file.read_exact_at(&mut head, 0).map_err(write_error)?;
    Ok(Bytes::from(head))
}

/// Reads a stored file back; see [`Storage::read`](crate::storage::Storage::read).
pub(super) async fn read_file(
    root: Arc<Path>,
    path: UploadPath,
    range: Option<RangeInclusive<u64>>,
) -> Result<FileRead, StorageError> {
    let (file, meta) = blocking(move || open_existing(&root, &path)).await?;
    let meta = file_meta(&meta)?;
    let (start, end) = match range {
        Some(range) => (*range.start(), range.end().saturating_add(1).min(meta.size)),
        None => (0, meta.size),
    };
    let body = read_pieces(Arc::new(file), start, end);
    Ok(FileRead { meta, body })
}

/// Bytes `start..end` of `file`, piece by piece, each read off the async
/// threads.
pub(super) fn read_pieces(
    file: Arc<File>,
    start: u64,
    end: u64,
) -> BoxStream<'static, Result<Bytes, StorageError>> {
    let state = Some((file, start, end));
    let body = stream::unfold(state, |state| async move {
        let (file, at, end) = state?;
        if at >= end {
            return None;
        }
        let len = usize::try_from(end - at)
            .unwrap_or(READ_PIECE)
            .min(READ_PIECE);
        let reader = Arc::clone(&file);
        let piece = blocking(move || {
            let mut buf = vec![0; len];
            reader.read_exact_at(&mut buf, at).map_err(write_error)?;
            Ok(Bytes::from(buf))
        })
        .await;
        match piece {
            Ok(piece) => Some((Ok(piece), Some((file, at + len as u64, end)))),
            Err(error) => Some((Err(error), None)),
        }
    });
    Box::pin(body)
}

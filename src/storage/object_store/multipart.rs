//! Streaming a body into an object with bounded memory: one put when it fits
//! in a part, a multipart upload (parts uploading in spawned tasks) when it does
//! not. Nothing is visible until [`Received::finish`].

use ::object_store::path::Path;
use ::object_store::{
    Attributes, MultipartUpload, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult,
};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::error::{content_mismatch, other, store_error, BackendError};
use super::store::put_options;
use crate::storage::{BoxStream, FileHasher, StorageError, HEAD_LEN};

/// Parts uploading at once, per upload; memory is at most one more part than this.
const PARTS_IN_FLIGHT: usize = 2;

/// A multipart upload whose parts upload in spawned tasks, at most
/// [`PARTS_IN_FLIGHT`] at once. Dropped before it completes, it aborts.
struct Parts {
    upload: Option<Box<dyn MultipartUpload>>,
    tasks: std::collections::VecDeque<tokio::task::JoinHandle<object_store::Result<()>>>,
}

impl Parts {
    async fn start(
        store: &dyn ObjectStore,
        location: &Path,
        attributes: Attributes,
    ) -> Result<Self, StorageError> {
        let options = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let upload = store
            .put_multipart_opts(location, options)
            .await
            .map_err(store_error)?;
        Ok(Parts {
            upload: Some(upload),
            tasks: Default::default(),
        })
    }

    async fn wait_for(&mut self, in_flight: usize) -> Result<(), StorageError> {
        while self.tasks.len() > in_flight {
            let task = self.tasks.pop_front().expect("more tasks than allowed");
            task.await
                .map_err(|error| other(BackendError::Spawn(error)))?
                .map_err(store_error)?;
        }
        Ok(())
    }

    async fn put(&mut self, part: PutPayload) -> Result<(), StorageError> {
        self.wait_for(PARTS_IN_FLIGHT - 1).await?;
        let upload = self
            .upload
            .as_mut()
            .expect("parts are put before completion");
        self.tasks.push_back(tokio::spawn(upload.put_part(part)));
        Ok(())
    }

    async fn complete(mut self) -> Result<PutResult, StorageError> {
        self.wait_for(0).await?;
        let mut upload = self.upload.take().expect("completed once");
        match upload.complete().await {
            Ok(result) => Ok(result),
            Err(error) => {
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(error = %abort, "aborting a failed multipart upload failed");
                }
                Err(store_error(error))
            }
        }
    }
}

impl Drop for Parts {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(mut upload) = self.upload.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move {
                        if let Err(error) = upload.abort().await {
                            tracing::warn!(%error, "aborting an abandoned multipart upload failed");
                        }
                    });
                }
                Err(_) => tracing::warn!("no runtime to abort an abandoned multipart upload"),
            }
        }
    }
}

/// Pieces gathered for the next part.
#[derive(Default)]
struct Buffer {
    pieces: Vec<Bytes>,
    len: usize,
}

impl Buffer {
    fn push(&mut self, piece: Bytes) {
        self.len += piece.len();
        self.pieces.push(piece);
    }

    /// Takes the first `size` bytes (at most all of them).
    fn take(&mut self, size: usize) -> PutPayload {
        let mut taken = Vec::new();
        let mut want = size.min(self.len);
        self.len -= want;
        let mut rest = std::mem::take(&mut self.pieces).into_iter();
        for mut piece in rest.by_ref() {
            if piece.len() <= want {
                want -= piece.len();
                taken.push(piece);
                if want == 0 {
                    break;
                }
            } else {
                taken.push(piece.split_to(want));
                self.pieces.push(piece);
                break;
            }
        }
        self.pieces.extend(rest);
        taken.into_iter().collect()
    }
}

/// An upload whose bytes have all been sent; completing it makes the object appear.
enum Staged {
    Single(PutPayload, Attributes),
    Multipart(Parts),
}

/// What [`stage`] received.
pub(super) struct Received {
    staged: Staged,
    pub(super) size: u64,
    pub(super) head: Bytes,
}

impl Received {
    /// Makes the object appear at `location`, atomically.
    pub(super) async fn finish(
        self,
        store: &dyn ObjectStore,
        location: &Path,
    ) -> Result<PutResult, StorageError> {
        match self.staged {
            Staged::Single(payload, attributes) => {
                let options = PutOptions {
                    attributes,
                    ..put_options(PutMode::Overwrite)
                };
                store
                    .put_opts(location, payload, options)
                    .await
                    .map_err(store_error)
            }
            Staged::Multipart(parts) => parts.complete().await,
        }
    }
}

/// Streams `body` towards `location` with at most three parts in memory: a body
/// that fits in one part is kept for a single put, a larger one goes into a
/// multipart upload as it arrives. With `expected`, the body must hold exactly
/// that many bytes. Nothing is visible until [`Received::finish`].
pub(super) async fn stage(
    store: &dyn ObjectStore,
    location: &Path,
    mut body: BoxStream<'static, Result<Bytes, StorageError>>,
    part_size: usize,
    expected: Option<u64>,
    mut hasher: Option<&mut FileHasher>,
    attributes: Attributes,
) -> Result<Received, StorageError> {
    let mut buffer = Buffer::default();
    let mut parts: Option<Parts> = None;
    let mut head = BytesMut::new();
    let mut size = 0u64;
    while let Some(piece) = body.next().await {
        let piece = piece?;
        size = size.saturating_add(piece.len() as u64);
        if expected.is_some_and(|expected| size > expected) {
            return Err(content_mismatch());
        }
        if head.len() < HEAD_LEN {
            let take = piece.len().min(HEAD_LEN - head.len());
            head.extend_from_slice(&piece[..take]);
        }
        if let Some(hasher) = hasher.as_deref_mut() {
            hasher.update(&piece);
        }
        buffer.push(piece);
        // Keep one whole part buffered until the body ends, so the last part
        // is never empty and a body of exactly one part is a single put.
        while buffer.len > part_size {
            let part = buffer.take(part_size);
            if parts.is_none() {
                parts = Some(Parts::start(store, location, attributes.clone()).await?);
            }
            parts.as_mut().expect("started above").put(part).await?;
        }
    }
    if expected.is_some_and(|expected| size != expected) {
        return Err(content_mismatch());
    }
    let rest = buffer.take(buffer.len);
    let staged = match parts {
        None => Staged::Single(rest, attributes),
        Some(mut parts) => {
            parts.put(rest).await?;
            Staged::Multipart(parts)
        }
    };
    Ok(Received {
        staged,
        size,
        head: head.freeze(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::memory;
    use super::super::MIN_PART_SIZE;
    use super::*;
    use crate::storage::conformance::{
        body, chunk, complete_default, live_session, path, read_all,
    };
    use crate::storage::{ChunkOptions, Storage};

    #[test]
    fn buffer_takes_exact_parts() {
        let mut buffer = Buffer::default();
        for piece in [&b"abc"[..], b"defg", b"h"] {
            buffer.push(Bytes::copy_from_slice(piece));
        }
        let part: Bytes = buffer.take(5).into();
        assert_eq!(part.as_ref(), b"abcde");
        assert_eq!(buffer.len, 3);
        let rest: Bytes = buffer.take(10).into();
        assert_eq!(rest.as_ref(), b"fgh");
        assert_eq!(buffer.len, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_chunks_and_files_go_in_parts() {
        let (_, storage) = memory();
        let storage = storage.part_size(1);
        assert_eq!(storage.part_size, MIN_PART_SIZE, "clamped to S3's minimum");
        let data: Vec<u8> = (0..12 * 1024 * 1024 + 7).map(|i| (i % 253) as u8).collect();
        let pieces: Vec<&[u8]> = data.chunks(100_000).collect();
        let (meta, head) = storage
            .put(&path("big/put.bin"), body(&pieces))
            .await
            .expect("put");
        assert_eq!(meta.size, data.len() as u64);
        assert_eq!(head.as_ref(), &data[..HEAD_LEN]);
        assert_eq!(
            read_all(&storage, "big/put.bin").await.expect("reads"),
            data
        );

        let session = live_session(2, "big/chunked.bin");
        let total = data.len() as u64;
        let split = 6 * 1024 * 1024 + 3;
        let (a, b) = data.split_at(split);
        storage
            .write_chunk(
                &session,
                chunk(split as u64, total - 1, Some(total)),
                &ChunkOptions::new(10),
                body(&b.chunks(65_536).collect::<Vec<_>>()),
            )
            .await
            .expect("second chunk");
        storage
            .write_chunk(
                &session,
                chunk(0, split as u64 - 1, None),
                &ChunkOptions::new(10),
                body(&a.chunks(65_536).collect::<Vec<_>>()),
            )
            .await
            .expect("first chunk");
        let completion = complete_default(&storage, &session).await;
        assert!(completion.fresh);
        assert_eq!(
            read_all(&storage, "big/chunked.bin").await.expect("reads"),
            data
        );
    }
}

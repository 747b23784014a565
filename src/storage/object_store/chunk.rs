//! Writing a chunk: checked against the manifest, compared with what is stored
//! when its range is, streamed into its own object, then recorded.

use std::sync::Arc;

use ::object_store::Attributes;
use futures_util::{StreamExt, TryStreamExt};

use super::complete::completed;
use super::error::{content_mismatch, other, BackendError};
use super::manifest::{Manifest, Recorded};
use super::multipart::stage;
use super::pieces::{compare, plan, read_pieces, Comparison};
use super::{random_tag, ObjectStoreStorage, SessionDir};
use crate::storage::{
    ByteStream, ChunkOptions, ChunkRange, Session, SessionStatus, Storage, StorageError,
};

impl ObjectStoreStorage {
    /// Stores one chunk of a session: durable and recorded before it answers.
    pub(super) async fn store_chunk(
        &self,
        session: Session,
        range: ChunkRange,
        options: ChunkOptions,
        body: ByteStream,
    ) -> Result<SessionStatus, StorageError> {
        let dir = self.session_dir(&session)?;
        self.location(session.path())?;
        if range.first > range.last {
            return Err(StorageError::RangeNotSatisfiable);
        }
        let expected = (range.last - range.first)
            .checked_add(1)
            .ok_or(StorageError::RangeNotSatisfiable)?;
        let body = body.map_err(StorageError::Body).boxed();

        let manifest = match self.load(&dir).await? {
            Ok(record) => return completed(record, false),
            Err(found) => found.map(|(manifest, _)| manifest),
        };
        let known = manifest.clone().unwrap_or_default();
        known.state().admit(range, &options)?;
        let state = known.state();
        let resend = state.ranges.contains(range.first, range.last)
            && range.total.is_none_or(|total| state.total == Some(total))
            && (options.repr_digest.is_none() || known.repr_digest.is_some());
        if resend {
            // Stored already: the bytes must be the same; nothing is written.
            let stored = plan(&dir, &known.chunks, range.first, range.last)
                .ok_or_else(|| other(BackendError::Corrupt("recorded ranges without chunks")))?;
            let compared = compare(body, read_pieces(Arc::clone(&self.store), stored)).await;
            return match compared {
                Ok(Comparison::Same) => self.status(&session).await,
                Ok(Comparison::Differ) => Err(StorageError::RangeConflict),
                Ok(Comparison::Shorter | Comparison::Longer) => Err(content_mismatch()),
                Err(error) => self.resend_failed(&dir, &known, error).await,
            };
        }
        if manifest.is_none() {
            self.ensure_manifest(&dir, &session).await?;
        }

        let own = Recorded {
            first: range.first,
            last: range.last,
            tag: random_tag(),
        };
        let location = dir.object(&own);
        let received = stage(
            self.store.as_ref(),
            &location,
            body,
            self.part_size,
            Some(expected),
            None,
            Attributes::new(),
        )
        .await?;
        received.finish(self.store.as_ref(), &location).await?;
        let status = self.record_chunk(&dir, &own, range, &options).await;
        if !matches!(status, Ok(SessionStatus::InProgress { .. })) {
            // Refused, failed, or the session completed meanwhile: the
            // chunk is not recorded, so its object goes.
            self.delete_quietly(vec![location]).await;
        }
        match status {
            Err(error @ (StorageError::Other { .. } | StorageError::NotFound)) => {
                self.completed_meanwhile(&dir, error).await
            }
            other => other,
        }
    }

    /// A resent chunk failed: a failure of its body stands; one reading stored
    /// pieces is answered from the completion if the session completed
    /// meanwhile, or is `503` if a merge replaced the pieces it read (a retry
    /// compares against the merged piece).
    async fn resend_failed(
        &self,
        dir: &SessionDir,
        known: &Manifest,
        error: StorageError,
    ) -> Result<SessionStatus, StorageError> {
        if matches!(error, StorageError::Body(_)) {
            return Err(error);
        }
        match self.load(dir).await {
            Ok(Ok(record)) => completed(record, false),
            _ => Err(self.merged_meanwhile(dir, &known.chunks, error).await),
        }
    }

    /// A chunk failed reading stored chunk objects: if another instance
    /// completed the session meanwhile (and removed them), the chunk's answer
    /// is the completion; otherwise the failure stands.
    async fn completed_meanwhile(
        &self,
        dir: &SessionDir,
        error: StorageError,
    ) -> Result<SessionStatus, StorageError> {
        match self.load(dir).await {
            Ok(Ok(record)) => completed(record, false),
            _ => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use ::object_store::{ObjectStoreExt, PutPayload};

    use super::super::tests::{keys, memory};
    use super::*;
    use crate::storage::conformance::{
        body, chunk, complete_default, failing, live_session, progress, read_all,
    };

    #[tokio::test]
    async fn resent_range_stores_nothing_new() {
        let (store, storage) = memory();
        let session = live_session(4, "resend.bin");
        for _ in 0..3 {
            let status = storage
                .write_chunk(
                    &session,
                    chunk(0, 2, Some(9)),
                    &ChunkOptions::new(10),
                    body(&[b"abc"]),
                )
                .await
                .expect("chunk");
            assert_eq!(progress(&status), (Some(9), vec![[0, 2]]));
        }
        let chunks = format!("site/uploads/.uploads/{}/chunks", session.id());
        assert_eq!(keys(&store, &chunks).await.len(), 1);
        let result = storage
            .write_chunk(
                &session,
                chunk(0, 2, Some(9)),
                &ChunkOptions::new(10),
                body(&[b"ab"]),
            )
            .await;
        assert!(matches!(result, Err(StorageError::Body(_))), "{result:?}");
    }

    #[tokio::test]
    async fn unrecorded_chunk_object_does_not_count() {
        let (store, storage) = memory();
        let session = live_session(5, "leftover.bin");
        storage
            .write_chunk(
                &session,
                chunk(0, 3, Some(8)),
                &ChunkOptions::new(10),
                body(&[b"abcd"]),
            )
            .await
            .expect("chunk");
        // What a writer that died between its put and its record leaves.
        let dir = storage.session_dir(&session).expect("dir");
        let stray = Recorded {
            first: 4,
            last: 7,
            tag: "stray".into(),
        };
        store
            .put(&dir.object(&stray), PutPayload::from_static(b"XXXX"))
            .await
            .expect("put");
        let status = storage.status(&session).await.expect("status");
        assert_eq!(progress(&status), (Some(8), vec![[0, 3]]));
        storage
            .write_chunk(
                &session,
                chunk(4, 7, None),
                &ChunkOptions::new(10),
                body(&[b"efgh"]),
            )
            .await
            .expect("chunk");
        complete_default(&storage, &session).await;
        assert_eq!(
            read_all(&storage, "leftover.bin").await.expect("reads"),
            b"abcdefgh"
        );
        let chunks = format!("site/uploads/.uploads/{}/chunks", session.id());
        assert!(
            keys(&store, &chunks).await.is_empty(),
            "strays go with the session"
        );
    }

    #[tokio::test]
    async fn chunk_object_appears_only_when_whole() {
        let (store, storage) = memory();
        let session = live_session(6, "cut.bin");
        let result = storage
            .write_chunk(
                &session,
                chunk(0, 9, Some(10)),
                &ChunkOptions::new(10),
                failing(&[b"abcde"]),
            )
            .await;
        assert!(matches!(result, Err(StorageError::Body(_))), "{result:?}");
        let chunks = format!("site/uploads/.uploads/{}/chunks", session.id());
        assert!(keys(&store, &chunks).await.is_empty());
        assert_eq!(
            progress(&storage.status(&session).await.expect("status")),
            (None, vec![])
        );
    }
}

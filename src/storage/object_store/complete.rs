//! Completion: the call that wins the claim streams the recorded chunks into
//! the final key and writes the completion record; the others wait for that
//! record and answer from it.

use std::sync::Arc;
use std::time::Instant;

use ::object_store::PutMode;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::claim::{Claim, ClaimAttempt};
use super::error::{other, store_error, unavailable, BackendError};
use super::file::tagged;
use super::multipart::stage;
use super::pieces::{plan, read_pieces};
use super::store::{pause, put_options, to_json, unix_millis};
use super::{random_tag, ObjectStoreStorage, SessionDir};
use crate::storage::{
    CommitInfo, CommitRefused, CompleteOptions, Completion, FileHasher, MakeRecord, Session,
    SessionStatus, StorageError,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredRecord {
    pub(super) etag: String,
    pub(super) path: String,
    /// The URL's expiry, unix milliseconds, for cleanup.
    pub(super) expires: u64,
    /// The record the layer built, base64.
    pub(super) record: String,
}

pub(super) fn completed(record: StoredRecord, fresh: bool) -> Result<SessionStatus, StorageError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(record.record.as_bytes())
        .map_err(|_| other(BackendError::Corrupt("completion record is not base64")))?;
    Ok(SessionStatus::Completed(Completion {
        etag: record.etag,
        record: Bytes::from(bytes),
        fresh,
    }))
}

impl ObjectStoreStorage {
    pub(super) async fn read_record(
        &self,
        dir: &SessionDir,
    ) -> Result<Option<StoredRecord>, StorageError> {
        Ok(self
            .get_json(&dir.record())
            .await?
            .map(|(record, _)| record))
    }

    /// Completes the session once across instances: commits it if this call
    /// wins the claim, or waits (at most the lease) for the record of the call
    /// that did.
    pub(super) async fn complete_session(
        &self,
        session: Session,
        options: CompleteOptions,
        make_record: MakeRecord,
    ) -> Result<SessionStatus, StorageError> {
        let dir = self.session_dir(&session)?;
        self.location(session.path())?;
        let started = Instant::now();
        let mut make_record = Some(make_record);
        let mut round = 0;
        loop {
            let state = match self.load(&dir).await? {
                Ok(record) => return completed(record, false),
                Err(found) => found
                    .map(|(manifest, _)| manifest.state())
                    .unwrap_or_default()
                    .with_declared_total(options.total),
            };
            if !state.is_complete() {
                return Ok(SessionStatus::in_progress(state));
            }
            if let ClaimAttempt::Won(claim) = self.try_claim(&dir).await? {
                let make_record = make_record.take().expect("one commit per call");
                return self
                    .commit(&dir, &session, &options, claim, make_record)
                    .await;
            }
            if started.elapsed() > self.lease {
                return Err(unavailable(BackendError::Contended(
                    "another instance is still committing the session",
                )));
            }
            pause(round).await;
            round += 1;
        }
    }

    /// The claimant's commit: streams the recorded chunks in order into the
    /// final key, lets the layer build (or refuse) the record, completes the
    /// upload, writes the record, removes the chunks.
    pub(super) async fn commit(
        &self,
        dir: &SessionDir,
        session: &Session,
        options: &CompleteOptions,
        mut claim: Claim,
        make_record: MakeRecord,
    ) -> Result<SessionStatus, StorageError> {
        // Read again under the claim: a commit that finished just before it was
        // taken left its record.
        let manifest = match self.load(dir).await? {
            Ok(record) => {
                claim.finish().await;
                return completed(record, false);
            }
            Err(found) => found.map(|(manifest, _)| manifest).unwrap_or_default(),
        };
        let state = manifest.state().with_declared_total(options.total);
        let total = match state.total {
            Some(total) if state.is_complete() => total,
            _ => return Ok(SessionStatus::in_progress(state)),
        };
        let target = self.location(session.path())?;
        let pieces = match total.checked_sub(1) {
            // The empty file: no chunk, no piece.
            None => Vec::new(),
            Some(last) => plan(dir, &manifest.chunks, 0, last).ok_or_else(|| {
                other(BackendError::Corrupt(
                    "recorded chunks do not cover the file",
                ))
            })?,
        };
        let bytes = read_pieces(Arc::clone(&self.store), pieces);

        let etag = random_tag();
        let mut hasher = FileHasher::new(
            options
                .digests
                .with_repr_digest(manifest.repr_digest.as_ref()),
        );
        let received = stage(
            self.store.as_ref(),
            &target,
            bytes,
            self.part_size,
            Some(total),
            Some(&mut hasher),
            tagged(&etag),
        )
        .await?;
        let info = CommitInfo {
            size: total,
            head: received.head.clone(),
            etag,
            repr_digest: manifest.repr_digest.clone(),
            digests: hasher.finish(),
        };
        let record_bytes = match make_record(&info) {
            Ok(record) => record,
            Err(CommitRefused) => {
                // Nothing was committed: the upload is aborted as `received` drops.
                drop(received);
                self.remove_session(dir).await?;
                claim.finish().await;
                return Err(StorageError::CommitRefused);
            }
        };
        if !claim.confirm().await? {
            // Taken over while streaming (this instance stalled past the lease):
            // the new holder commits; dropping `received` aborts the upload.
            return Err(unavailable(BackendError::Contended(
                "the completion claim was taken over",
            )));
        }
        received.finish(self.store.as_ref(), &target).await?;
        let record = StoredRecord {
            etag: info.etag,
            path: session.path().as_str().to_owned(),
            expires: unix_millis(session.expires()),
            record: base64::engine::general_purpose::STANDARD.encode(&record_bytes),
        };
        let status = match self
            .store
            .put_opts(
                &dir.record(),
                to_json(&record),
                put_options(PutMode::Create),
            )
            .await
        {
            Ok(_) => completed(record, true)?,
            Err(::object_store::Error::AlreadyExists { .. }) => {
                // Another holder after a takeover finished first; theirs stands.
                let record = self
                    .read_record(dir)
                    .await?
                    .ok_or_else(|| other(BackendError::Corrupt("completion record vanished")))?;
                completed(record, false)?
            }
            Err(error) => return Err(store_error(error)),
        };
        claim.finish().await;
        if let Ok(leftovers) = self.list_all(&dir.chunks()).await {
            self.delete_quietly(leftovers.into_iter().map(|meta| meta.location).collect())
                .await;
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::memory;
    use crate::storage::conformance::{body, chunk, complete_default, live_session, read_all};
    use crate::storage::{ChunkOptions, Storage};

    #[tokio::test]
    async fn overlapping_chunks_take_each_byte_once() {
        let (_, storage) = memory();
        let session = live_session(3, "overlap.bin");
        for (first, last, bytes) in [
            (2, 7, b"CDEFGH".as_slice()),
            (0, 3, b"ABCD"),
            (6, 9, b"GHIJ"),
        ] {
            storage
                .write_chunk(
                    &session,
                    chunk(first, last, Some(10)),
                    &ChunkOptions::new(10),
                    body(&[bytes]),
                )
                .await
                .expect("chunk");
        }
        complete_default(&storage, &session).await;
        assert_eq!(
            read_all(&storage, "overlap.bin").await.expect("reads"),
            b"ABCDEFGHIJ"
        );
    }
}

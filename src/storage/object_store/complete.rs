//! Completion: the call that wins the claim streams the recorded chunks into
//! an upload of the final key, creates the completion record (the commit
//! point: of all the calls that get that far, one creates it), and only then
//! makes the final object appear. The others wait for the record and answer
//! from it; a record whose object was never made to appear (its writer died
//! between the two) is published again from the chunks, under the claim.

use std::sync::Arc;
use std::time::SystemTime;

use ::object_store::{ObjectMeta, PutMode, UpdateVersion};
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::claim::{Claim, ClaimAttempt, Watch};
use super::error::{other, store_error, unavailable, BackendError};
use super::file::tagged;
use super::manifest::Manifest;
use super::multipart::stage;
use super::pieces::{plan, read_pieces};
use super::store::{pause, put_options, to_json, unix_millis, version_of, version_of_meta};
use super::{random_tag, ObjectStoreStorage, SessionDir};
use crate::storage::{
    CommitInfo, CommitRefused, CompleteOptions, Completion, FileHasher, MakeRecord, Session,
    SessionStatus, StorageError,
};
use crate::UploadPath;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredRecord {
    pub(super) etag: String,
    pub(super) path: String,
    /// The URL's expiry, unix milliseconds, for cleanup.
    pub(super) expires: u64,
    /// The record the layer built, base64.
    pub(super) record: String,
    /// Whether the final object it names has appeared. Written `false` at the
    /// commit point, `true` once the object is in place.
    #[serde(default = "published_by_default")]
    pub(super) published: bool,
}

/// Records written before publication was tracked were written after their object.
fn published_by_default() -> bool {
    true
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
    /// The completion record as stored, published or not, with its metadata.
    async fn read_record_meta(
        &self,
        dir: &SessionDir,
    ) -> Result<Option<(StoredRecord, ObjectMeta)>, StorageError> {
        self.get_json_meta(&dir.record()).await
    }

    /// The completion record, if any, as stored (published or not).
    pub(super) async fn read_record(
        &self,
        dir: &SessionDir,
    ) -> Result<Option<StoredRecord>, StorageError> {
        Ok(self.read_record_meta(dir).await?.map(|(record, _)| record))
    }

    /// The completion record, if any, once its final object is in place: a
    /// record not yet published is waited for (at most two leases), or
    /// published again by this call if its writer is gone.
    pub(super) async fn published_record(
        &self,
        dir: &SessionDir,
    ) -> Result<Option<StoredRecord>, StorageError> {
        match self.read_record(dir).await? {
            Some(record) if !record.published => self.publish_pending(dir).await.map(Some),
            found => Ok(found),
        }
    }

    async fn publish_pending(&self, dir: &SessionDir) -> Result<StoredRecord, StorageError> {
        let started = Instant::now();
        let mut watch = Watch::default();
        let mut round = 0;
        loop {
            let record = self
                .read_record(dir)
                .await?
                .ok_or_else(|| other(BackendError::Corrupt("completion record vanished")))?;
            if record.published {
                return Ok(record);
            }
            if let ClaimAttempt::Won(claim) = self.try_claim(dir, &mut watch).await? {
                return self.republish(dir, claim).await;
            }
            if started.elapsed() > 2 * self.lease {
                return Err(unavailable(BackendError::Contended(
                    "another instance is still publishing the completed file",
                )));
            }
            pause(round).await;
            round += 1;
        }
    }

    /// Under the claim: makes the final object named by an unpublished record
    /// appear, from the recorded chunks, with the record's entity tag; the same
    /// bytes and tag however often it is done. A file written at the path
    /// after the record (by the store's clock) is newer and stays.
    async fn republish(
        &self,
        dir: &SessionDir,
        claim: Claim,
    ) -> Result<StoredRecord, StorageError> {
        let (record, meta) = self
            .read_record_meta(dir)
            .await?
            .ok_or_else(|| other(BackendError::Corrupt("completion record vanished")))?;
        if record.published {
            claim.finish().await;
            return Ok(record);
        }
        let path = UploadPath::new(&record.path)
            .ok_or_else(|| other(BackendError::Corrupt("completion record names no path")))?;
        let target = self.location(&path)?;
        let in_place = match self.head_meta(&target).await {
            Ok(file) => {
                file.etag == record.etag || file.modified > SystemTime::from(meta.last_modified)
            }
            Err(StorageError::NotFound) => false,
            Err(error) => return Err(error),
        };
        if !in_place {
            let (manifest, _) = self
                .get_json::<Manifest>(&dir.manifest())
                .await?
                .ok_or_else(|| {
                    other(BackendError::Corrupt("completed session lost its manifest"))
                })?;
            let total = manifest
                .total
                .ok_or_else(|| other(BackendError::Corrupt("completed session has no total")))?;
            let pieces = self.pieces_of_file(dir, &manifest, total)?;
            let received = stage(
                self.store.as_ref(),
                &target,
                read_pieces(Arc::clone(&self.store), pieces),
                self.part_size,
                Some(total),
                None,
                tagged(&record.etag),
            )
            .await?;
            received.finish(self.store.as_ref(), &target).await?;
            tracing::info!(record = %dir.record(), "published a completed file whose commit stopped midway");
        }
        self.mark_published(dir, &record, version_of_meta(&meta))
            .await;
        claim.finish().await;
        self.remove_chunks(dir).await;
        Ok(StoredRecord {
            published: true,
            ..record
        })
    }

    /// Where each byte of the file is, from the recorded chunks.
    fn pieces_of_file(
        &self,
        dir: &SessionDir,
        manifest: &Manifest,
        total: u64,
    ) -> Result<Vec<(::object_store::path::Path, u64, u64)>, StorageError> {
        match total.checked_sub(1) {
            // The empty file: no chunk, no piece.
            None => Ok(Vec::new()),
            Some(last) => plan(dir, &manifest.chunks, 0, last).ok_or_else(|| {
                other(BackendError::Corrupt(
                    "recorded chunks do not cover the file",
                ))
            }),
        }
    }

    /// Marks a record published; losing the conditional update means another
    /// call did it.
    async fn mark_published(
        &self,
        dir: &SessionDir,
        record: &StoredRecord,
        version: UpdateVersion,
    ) {
        let published = StoredRecord {
            published: true,
            ..record.clone()
        };
        match self
            .store
            .put_opts(
                &dir.record(),
                to_json(&published),
                put_options(PutMode::Update(version)),
            )
            .await
        {
            Ok(_) | Err(::object_store::Error::Precondition { .. }) => {}
            Err(error) => tracing::warn!(%error, "marking a completion record published failed"),
        }
    }

    async fn remove_chunks(&self, dir: &SessionDir) {
        if let Ok(leftovers) = self.list_all(&dir.chunks()).await {
            self.delete_quietly(leftovers.into_iter().map(|meta| meta.location).collect())
                .await;
        }
    }

    /// Completes the session once across instances: commits it if this call
    /// wins the claim, or waits (at most two leases) for the record of the
    /// call that did.
    pub(super) async fn complete_session(
        &self,
        session: Session,
        options: CompleteOptions,
        make_record: MakeRecord,
    ) -> Result<SessionStatus, StorageError> {
        let dir = self.session_dir(&session)?;
        self.location(session.path())?;
        let started = Instant::now();
        let mut watch = Watch::default();
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
            if let ClaimAttempt::Won(claim) = self.try_claim(&dir, &mut watch).await? {
                let make_record = make_record.take().expect("one commit per call");
                return self
                    .commit(&dir, &session, &options, claim, make_record)
                    .await;
            }
            if started.elapsed() > 2 * self.lease {
                return Err(unavailable(BackendError::Contended(
                    "another instance is still committing the session",
                )));
            }
            pause(round).await;
            round += 1;
        }
    }

    /// The claimant's commit: streams the recorded chunks in order into an
    /// upload of the final key, lets the layer build (or refuse) the record,
    /// creates the record (the commit point), completes the upload, marks the
    /// record published, removes the chunks.
    pub(super) async fn commit(
        &self,
        dir: &SessionDir,
        session: &Session,
        options: &CompleteOptions,
        claim: Claim,
        make_record: MakeRecord,
    ) -> Result<SessionStatus, StorageError> {
        // Read again under the claim: a commit that got past its commit point
        // just before the claim was taken left its record.
        if let Some(record) = self.read_record(dir).await? {
            let record = if record.published {
                claim.finish().await;
                record
            } else {
                self.republish(dir, claim).await?
            };
            return completed(record, false);
        }
        let manifest = self
            .get_json::<Manifest>(&dir.manifest())
            .await?
            .map(|(manifest, _)| manifest)
            .unwrap_or_default();
        let state = manifest.state().with_declared_total(options.total);
        let total = match state.total {
            Some(total) if state.is_complete() => total,
            _ => return Ok(SessionStatus::in_progress(state)),
        };
        let target = self.location(session.path())?;
        let pieces = self.pieces_of_file(dir, &manifest, total)?;
        let bytes = read_pieces(Arc::clone(&self.store), pieces);

        let etag = random_tag();
        let mut hasher = FileHasher::new(
            options
                .digests
                .with_repr_digest(manifest.repr_digest.as_ref()),
        );
        let received = match stage(
            self.store.as_ref(),
            &target,
            bytes,
            self.part_size,
            Some(total),
            Some(&mut hasher),
            tagged(&etag),
        )
        .await
        {
            Ok(received) => received,
            Err(error) => return Err(self.merged_meanwhile(dir, &manifest.chunks, error).await),
        };
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
        let record = StoredRecord {
            etag: info.etag,
            path: session.path().as_str().to_owned(),
            expires: unix_millis(session.expires()),
            record: base64::engine::general_purpose::STANDARD.encode(&record_bytes),
            published: false,
        };
        // The commit point. A call that stalled past the lease while another
        // took the claim over and got here first loses it, and its upload
        // never appears.
        let version = match self
            .store
            .put_opts(
                &dir.record(),
                to_json(&record),
                put_options(PutMode::Create),
            )
            .await
        {
            Ok(result) => version_of(&result),
            Err(::object_store::Error::AlreadyExists { .. }) => {
                // Aborted as it drops: the record names another upload.
                drop(received);
                claim.release().await;
                let record = self
                    .published_record(dir)
                    .await?
                    .ok_or_else(|| other(BackendError::Corrupt("completion record vanished")))?;
                return completed(record, false);
            }
            Err(error) => return Err(store_error(error)),
        };
        // A failure from here leaves the record unpublished and the claim
        // released as it drops: the next call publishes it again.
        received.finish(self.store.as_ref(), &target).await?;
        self.mark_published(dir, &record, version).await;
        claim.finish().await;
        self.remove_chunks(dir).await;
        completed(
            StoredRecord {
                published: true,
                ..record
            },
            true,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use ::object_store::memory::InMemory;

    use super::super::tests::{instance, memory, Cue};
    use crate::storage::conformance::{
        body, chunk, complete_default, expect_completed, live_session, make_record, read_all,
    };
    use crate::storage::{ChunkOptions, CompleteOptions, Storage};

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

    /// One instance commits and stops dead for minutes at the moment it writes
    /// the final object or the record (`at`); another takes the claim over and
    /// completes; then the first wakes up and carries on.
    async fn stall_while_committing(at: &'static [&'static str]) {
        let shared = Arc::new(InMemory::new());
        let (paused, first) = instance(&shared, move |kind, key| {
            let name = key.as_ref();
            if kind == "put" && at.iter().any(|end| name.ends_with(end)) {
                Cue::Freeze
            } else {
                Cue::Pass
            }
        });
        let (_, second) = instance(&shared, |_, _| Cue::Pass);
        let session = live_session(21, "stalled/file.bin");
        for (first_byte, last, bytes) in [(0, 3, b"abcd"), (4, 7, b"efgh")] {
            second
                .write_chunk(
                    &session,
                    chunk(first_byte, last, Some(8)),
                    &ChunkOptions::new(10),
                    body(&[bytes]),
                )
                .await
                .expect("chunk");
        }
        let calls = Arc::new(AtomicUsize::new(0));
        let stalled = {
            let (first, session, calls) = (first.clone(), session.clone(), calls.clone());
            tokio::spawn(async move {
                first
                    .complete(&session, &CompleteOptions::default(), make_record(&calls))
                    .await
            })
        };
        paused.frozen().await;
        // Minutes pass: the claim is not renewed, and the other instance
        // answers a retry of the last chunk or a status query.
        tokio::time::sleep(std::time::Duration::from_secs(120)).await;
        let other = expect_completed(
            second
                .complete(&session, &CompleteOptions::default(), make_record(&calls))
                .await,
        )
        .await;
        paused.thaw();
        let woken = expect_completed(stalled.await.expect("joins")).await;

        let record = second.status(&session).await.expect("status");
        let record = expect_completed(Ok(record)).await;
        assert_eq!(woken.etag, record.etag, "{at:?}");
        assert_eq!(other.etag, record.etag, "{at:?}");
        assert_eq!(woken.record, record.record);
        assert_eq!(
            usize::from(woken.fresh) + usize::from(other.fresh),
            1,
            "one completion: {at:?}"
        );
        let file = second.head(session.path()).await.expect("file");
        assert_eq!(
            file.etag, record.etag,
            "the final object is the record's: {at:?}"
        );
        assert_eq!(file.size, 8);
        assert_eq!(
            read_all(&second, "stalled/file.bin").await.expect("reads"),
            b"abcdefgh"
        );
        assert!(calls.load(Ordering::SeqCst) <= 2);
    }

    #[tokio::test(start_paused = true)]
    async fn claimant_stalled_before_its_commit_point_never_replaces_the_file() {
        stall_while_committing(&["/stalled/file.bin", "/record"]).await;
    }

    #[tokio::test(start_paused = true)]
    async fn claimant_stalled_after_its_commit_point_is_published_by_another() {
        stall_while_committing(&["/stalled/file.bin"]).await;
    }
}

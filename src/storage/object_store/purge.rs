//! Cleanup: discarding a session, and purging the sessions whose URL expired
//! more than the grace period ago.

use std::collections::BTreeMap;
use std::time::SystemTime;

use ::object_store::path::Path;
use ::object_store::ObjectMeta;

use super::claim::ClaimBody;
use super::manifest::Manifest;
use super::store::unix_millis;
use super::{ObjectStoreStorage, SessionDir};
use crate::storage::{PurgeReport, StorageError};

/// Session folders under the hidden prefix, with their objects.
fn group_sessions(hidden: &Path, objects: Vec<ObjectMeta>) -> BTreeMap<String, Vec<ObjectMeta>> {
    let mut sessions: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    for object in objects {
        let id = object
            .location
            .prefix_match(hidden)
            .and_then(|mut rest| rest.next())
            .map(|id| id.as_ref().to_owned());
        if let Some(id) = id {
            sessions.entry(id).or_default().push(object);
        }
    }
    sessions
}

impl ObjectStoreStorage {
    /// Removes an incomplete session: the manifest first (so a chunk being
    /// recorded meanwhile fails its conditional update), then the chunk objects
    /// and the claim.
    pub(super) async fn remove_session(&self, dir: &SessionDir) -> Result<(), StorageError> {
        self.delete_quietly(vec![dir.manifest()]).await;
        let chunks = self.list_all(&dir.chunks()).await?;
        let mut locations: Vec<Path> = chunks.into_iter().map(|meta| meta.location).collect();
        locations.push(dir.claim());
        self.delete_quietly(locations).await;
        Ok(())
    }

    /// Removes an incomplete session; a completed one keeps its record.
    pub(super) async fn discard_session(&self, dir: SessionDir) -> Result<(), StorageError> {
        if self.read_record(&dir).await?.is_some() {
            return Ok(());
        }
        self.remove_session(&dir).await
    }

    /// Removes the sessions (and completion records) that expired before
    /// `cutoff`, unix milliseconds, except those being committed (a claim the
    /// store saw renewed within a lease of `now`).
    pub(super) async fn purge_before(
        &self,
        cutoff: u64,
        now: u64,
    ) -> Result<PurgeReport, StorageError> {
        let hidden = self.hidden();
        let objects = self.list_all(&hidden).await?;
        let mut report = PurgeReport::default();
        for (id, objects) in group_sessions(&hidden, objects) {
            let dir = SessionDir(hidden.clone().join(id.as_str()));
            let record = self.read_record(&dir).await?;
            let expires = match (&record, self.get_json::<Manifest>(&dir.manifest()).await?) {
                (Some(record), _) => record.expires,
                (None, Some((manifest, _))) => manifest.expires,
                // No manifest (discarded, or a crash before it was written):
                // the newest object's age stands in for the expiry.
                (None, None) => objects
                    .iter()
                    .map(|object| unix_millis(SystemTime::from(object.last_modified)))
                    .max()
                    .unwrap_or(0),
            };
            if expires >= cutoff {
                continue;
            }
            if record.is_none() {
                if let Some((claim, meta)) = self.get_json_meta::<ClaimBody>(&dir.claim()).await? {
                    // The store's own time of the claim's last renewal, not
                    // the time its holder wrote in it.
                    let renewed = unix_millis(SystemTime::from(meta.last_modified));
                    if !claim.released
                        && now.saturating_sub(renewed) <= self.lease.as_millis() as u64
                    {
                        // A commit is running; the next cleanup removes it.
                        continue;
                    }
                }
            }
            // The record goes last, so a cleanup cut short leaves a session
            // that still replays its record.
            let (records, rest): (Vec<Path>, Vec<Path>) = objects
                .into_iter()
                .map(|object| object.location)
                .partition(|location| *location == dir.record());
            self.delete_quietly(rest).await;
            self.delete_quietly(records).await;
            if record.is_some() {
                report.records += 1;
            } else {
                report.sessions += 1;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{keys, memory, plant_claim};
    use super::*;
    use crate::storage::conformance::{self, body, chunk};
    use crate::storage::{ChunkOptions, Storage};

    #[tokio::test]
    async fn purge_keeps_a_session_being_committed() {
        let (store, storage) = memory();
        let long_ago = SystemTime::now() - Duration::from_secs(30 * 24 * 3600);
        let session = conformance::session(9, "committing.bin", long_ago);
        storage
            .write_chunk(
                &session,
                chunk(0, 1, Some(4)),
                &ChunkOptions::new(10),
                body(&[b"ab"]),
            )
            .await
            .expect("chunk");
        plant_claim(&store, &storage, &session, 0, false).await;
        let report = storage
            .purge_expired(SystemTime::now())
            .await
            .expect("purge");
        assert_eq!(report.sessions, 0);
        plant_claim(&store, &storage, &session, 1, true).await;
        let report = storage
            .purge_expired(SystemTime::now())
            .await
            .expect("purge");
        assert_eq!(report.sessions, 1);
        assert!(keys(&store, "site/uploads/.uploads").await.is_empty());
    }
}

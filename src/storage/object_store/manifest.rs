//! The manifest: a session's expiry, total, kept `Repr-Digest` and recorded
//! chunks, in one JSON object changed only with conditional updates.

use std::sync::Arc;

use ::object_store::{PutMode, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::coalesce::over_bound;
use super::complete::{completed, StoredRecord};
use super::error::{store_error, unavailable, BackendError};
use super::pieces::{compare, read_pieces, Comparison};
use super::store::{pause, put_options, to_json, unix_millis};
use super::{ObjectStoreStorage, SessionDir};
use crate::storage::{ByteRanges, SessionState};
use crate::storage::{ChunkOptions, ChunkRange, ReprDigest, Session, SessionStatus, StorageError};

/// Conditional updates of a manifest tried before giving up with `Unavailable`.
const CAS_ATTEMPTS: u32 = 32;

/// A chunk the session recorded; its object is `chunks/{first}-{last}-{tag}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Recorded {
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) tag: String,
}

/// The session's bookkeeping. Created with [`PutMode::Create`] and changed only
/// with [`PutMode::Update`] on the version it was read at, so every change is
/// judged against the state it replaces.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Manifest {
    /// The file's path, for people reading the bucket.
    pub(super) path: String,
    /// The URL's expiry, unix milliseconds.
    pub(super) expires: u64,
    /// The total, once a recorded chunk named it.
    pub(super) total: Option<u64>,
    /// The first `Repr-Digest` a recorded chunk announced.
    pub(super) repr_digest: Option<ReprDigest>,
    /// The recorded pieces: chunks in the order they were recorded, and
    /// pieces merged from runs of small ones (`coalesce.rs`), so at most a
    /// few dozen beyond the session's ranges are small.
    pub(super) chunks: Vec<Recorded>,
    /// Whether a creation opened the session.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) opened: bool,
    /// The metadata of the creation that opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) metadata: Option<String>,
}

impl Manifest {
    pub(super) fn state(&self) -> SessionState {
        SessionState {
            total: self.total,
            ranges: ByteRanges::from_ranges(self.chunks.iter().map(|c| [c.first, c.last])),
            repr_digest: self.repr_digest.clone(),
            opened: self.opened || !self.chunks.is_empty(),
            metadata: self.metadata.clone(),
        }
    }
}

impl ObjectStoreStorage {
    /// The session's completion record (once its file is in place), or its
    /// manifest (if any).
    pub(super) async fn load(
        &self,
        dir: &SessionDir,
    ) -> Result<Result<StoredRecord, Option<(Manifest, UpdateVersion)>>, StorageError> {
        if let Some(record) = self.published_record(dir).await? {
            return Ok(Ok(record));
        }
        Ok(Err(self.get_json(&dir.manifest()).await?))
    }

    /// Creates the session's manifest if it has none, so cleanup knows its expiry
    /// before any chunk object exists.
    pub(super) async fn ensure_manifest(
        &self,
        dir: &SessionDir,
        session: &Session,
    ) -> Result<(), StorageError> {
        let manifest = Manifest {
            path: session.path().as_str().to_owned(),
            expires: unix_millis(session.expires()),
            ..Manifest::default()
        };
        match self
            .store
            .put_opts(
                &dir.manifest(),
                to_json(&manifest),
                put_options(PutMode::Create),
            )
            .await
        {
            Ok(_) | Err(::object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(error) => Err(store_error(error)),
        }
    }

    /// Second step of a chunk, once its object exists: checks the chunk against
    /// the session again, compares the bytes it shares with recorded chunks, and
    /// records it in the manifest with a conditional update. A lost update is
    /// retried against the new manifest; only chunks recorded meanwhile are
    /// compared again.
    pub(super) async fn record_chunk(
        &self,
        dir: &SessionDir,
        own: &Recorded,
        range: ChunkRange,
        options: &ChunkOptions,
    ) -> Result<SessionStatus, StorageError> {
        let mut compared: Vec<Recorded> = Vec::new();
        'rounds: for round in 0..CAS_ATTEMPTS {
            let (manifest, version) = match self.load(dir).await? {
                Ok(record) => return completed(record, false),
                Err(Some(found)) => found,
                Err(None) => {
                    return Err(unavailable(BackendError::Contended(
                        "the session was discarded while the chunk streamed",
                    )))
                }
            };
            manifest.state().admit(range, options)?;
            for recorded in &manifest.chunks {
                let (from, to) = (recorded.first.max(own.first), recorded.last.min(own.last));
                if from > to || compared.contains(recorded) {
                    continue;
                }
                let mine = read_pieces(
                    Arc::clone(&self.store),
                    vec![(dir.object(own), from - own.first, to - own.first + 1)],
                );
                let theirs = read_pieces(
                    Arc::clone(&self.store),
                    vec![(
                        dir.object(recorded),
                        from - recorded.first,
                        to - recorded.first + 1,
                    )],
                );
                match compare(mine, theirs).await {
                    Ok(Comparison::Same) => {}
                    Ok(_) => return Err(StorageError::RangeConflict),
                    // A merge may have removed the piece after this manifest
                    // was read: compare again against the manifest that
                    // replaced it.
                    Err(error) => match self.get_json::<Manifest>(&dir.manifest()).await? {
                        Some((_, now)) if now != version => continue 'rounds,
                        _ => return Err(error),
                    },
                }
                compared.push(recorded.clone());
            }
            let mut updated = manifest;
            updated.chunks.push(own.clone());
            if range.total.is_some() {
                updated.total = range.total;
            }
            if updated.repr_digest.is_none() {
                updated.repr_digest.clone_from(&options.repr_digest);
            }
            match self
                .store
                .put_opts(
                    &dir.manifest(),
                    to_json(&updated),
                    put_options(PutMode::Update(version)),
                )
                .await
            {
                Ok(_) => {
                    let state = updated.state();
                    if over_bound(updated.chunks.len(), state.ranges.len()) && !state.is_complete()
                    {
                        self.coalesce(dir, &updated).await;
                    }
                    return Ok(SessionStatus::in_progress(state));
                }
                Err(::object_store::Error::Precondition { .. }) => pause(round.min(2)).await,
                Err(error) => return Err(store_error(error)),
            }
        }
        Err(unavailable(BackendError::Contended(
            "the session's manifest kept changing",
        )))
    }
}

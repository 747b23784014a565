//! A session opened by a creation before its bytes arrive: the manifest keeps
//! the creation's total and metadata.

use ::object_store::PutMode;

use super::complete::completed;
use super::error::{store_error, unavailable, BackendError};
use super::store::{pause, put_options, to_json};
use super::{ObjectStoreStorage, SessionDir};
use crate::storage::{OpenOptions, Session, SessionStatus, StorageError};

/// Conditional updates of a manifest tried before giving up with `Unavailable`.
const CAS_ATTEMPTS: u32 = 32;

impl ObjectStoreStorage {
    /// Opens a session; see [`Storage::open`](crate::storage::Storage::open).
    pub(super) async fn open_session(
        &self,
        dir: SessionDir,
        session: Session,
        options: OpenOptions,
    ) -> Result<SessionStatus, StorageError> {
        self.ensure_manifest(&dir, &session).await?;
        for round in 0..CAS_ATTEMPTS {
            let (manifest, version) = match self.load(&dir).await? {
                Ok(record) => return completed(record, false),
                Err(Some(found)) => found,
                // Discarded since it was made: make it again.
                Err(None) => {
                    self.ensure_manifest(&dir, &session).await?;
                    continue;
                }
            };
            let mut state = manifest.state();
            if !state.open(&options)? {
                return Ok(SessionStatus::in_progress(state));
            }
            let mut updated = manifest;
            updated.total = state.total;
            updated.opened = true;
            updated.metadata.clone_from(&state.metadata);
            match self
                .store
                .put_opts(
                    &dir.manifest(),
                    to_json(&updated),
                    put_options(PutMode::Update(version)),
                )
                .await
            {
                Ok(_) => return Ok(SessionStatus::in_progress(updated.state())),
                Err(::object_store::Error::Precondition { .. }) => pause(round.min(2)).await,
                Err(error) => return Err(store_error(error)),
            }
        }
        Err(unavailable(BackendError::Contended(
            "the session's manifest kept changing",
        )))
    }
}

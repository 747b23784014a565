//! The completion claim: the one object whose conditional create decides which
//! call commits a session, renewed while its holder streams, taken over once
//! it is older than the lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use ::object_store::path::Path;
use ::object_store::{ObjectStore, ObjectStoreExt, PutMode, PutResult, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::error::store_error;
use super::store::{put_options, to_json, unix_millis, version_of};
use super::{random_tag, ObjectStoreStorage, SessionDir};
use crate::storage::StorageError;

/// Who is committing a session, renewed while they do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ClaimBody {
    pub(super) owner: String,
    /// When it was last renewed, unix milliseconds; 0 once released.
    pub(super) at: u64,
}

/// A claim held by this call; renewed in the background while held, released
/// (made stale at once) if dropped before the commit finished.
pub(super) struct Claim {
    store: Arc<dyn ObjectStore>,
    location: Path,
    owner: String,
    version: Arc<Mutex<UpdateVersion>>,
    lost: Arc<AtomicBool>,
    renewer: Option<tokio::task::JoinHandle<()>>,
    done: bool,
}

fn lock(version: &Mutex<UpdateVersion>) -> MutexGuard<'_, UpdateVersion> {
    // A plain value: a panic cannot leave it half-updated.
    version
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Renews a claim with a conditional update; `Ok(false)` if someone took it over.
async fn renew(
    store: &dyn ObjectStore,
    location: &Path,
    owner: &str,
    at: u64,
    version: &Mutex<UpdateVersion>,
) -> Result<bool, StorageError> {
    let current = lock(version).clone();
    let body = ClaimBody {
        owner: owner.to_owned(),
        at,
    };
    match store
        .put_opts(
            location,
            to_json(&body),
            put_options(PutMode::Update(current)),
        )
        .await
    {
        Ok(result) => {
            *lock(version) = version_of(&result);
            Ok(true)
        }
        Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => {
            Ok(false)
        }
        Err(error) => Err(store_error(error)),
    }
}

impl Claim {
    fn new(
        store: Arc<dyn ObjectStore>,
        location: Path,
        owner: String,
        version: UpdateVersion,
        lease: Duration,
    ) -> Self {
        let version = Arc::new(Mutex::new(version));
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (store, location, owner) = (Arc::clone(&store), location.clone(), owner.clone());
            let (version, lost) = (Arc::clone(&version), Arc::clone(&lost));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let at = unix_millis(SystemTime::now());
                    match renew(store.as_ref(), &location, &owner, at, &version).await {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        // A failed renewal is retried; the final one decides.
                        Err(error) => tracing::warn!(%error, "renewing a completion claim failed"),
                    }
                }
            })
        };
        Claim {
            store,
            location,
            owner,
            version,
            lost,
            renewer: Some(renewer),
            done: false,
        }
    }

    /// Stops renewing and renews once more, so the claim is fresh for the
    /// commit that follows; `Ok(false)` if it was taken over.
    pub(super) async fn confirm(&mut self) -> Result<bool, StorageError> {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
            let _ = renewer.await;
        }
        if self.lost.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let at = unix_millis(SystemTime::now());
        renew(
            self.store.as_ref(),
            &self.location,
            &self.owner,
            at,
            &self.version,
        )
        .await
    }

    /// The commit is over (the record exists): the claim can go.
    pub(super) async fn finish(mut self) {
        self.done = true;
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        if let Err(error) = self.store.delete(&self.location).await {
            tracing::debug!(%error, "removing a completion claim failed");
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        if self.done {
            return;
        }
        // The commit failed or was dropped: make the claim stale at once, so the
        // next call takes it over without waiting for the lease.
        let (store, location, owner) = (
            Arc::clone(&self.store),
            self.location.clone(),
            self.owner.clone(),
        );
        let version = Arc::clone(&self.version);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = renew(store.as_ref(), &location, &owner, 0, &version).await;
            });
        }
    }
}

pub(super) enum ClaimAttempt {
    Won(Claim),
    Held,
}

impl ObjectStoreStorage {
    /// Tries to become the one call that commits the session.
    pub(super) async fn try_claim(&self, dir: &SessionDir) -> Result<ClaimAttempt, StorageError> {
        let owner = random_tag();
        let body = ClaimBody {
            owner: owner.clone(),
            at: unix_millis(SystemTime::now()),
        };
        let location = dir.claim();
        let won = |result: PutResult| {
            ClaimAttempt::Won(Claim::new(
                Arc::clone(&self.store),
                location.clone(),
                owner.clone(),
                version_of(&result),
                self.lease,
            ))
        };
        match self
            .store
            .put_opts(&location, to_json(&body), put_options(PutMode::Create))
            .await
        {
            Ok(result) => return Ok(won(result)),
            Err(::object_store::Error::AlreadyExists { .. }) => {}
            Err(error) => return Err(store_error(error)),
        }
        let Some((held, version)) = self.get_json::<ClaimBody>(&location).await? else {
            // Released between the two requests; the next round creates it.
            return Ok(ClaimAttempt::Held);
        };
        let now = unix_millis(SystemTime::now());
        if now.saturating_sub(held.at) <= self.lease.as_millis() as u64 {
            return Ok(ClaimAttempt::Held);
        }
        // Stale: its holder died or gave up. Take it over, conditionally.
        match self
            .store
            .put_opts(
                &location,
                to_json(&body),
                put_options(PutMode::Update(version)),
            )
            .await
        {
            Ok(result) => {
                tracing::info!(claim = %location, "took over a stale completion claim");
                Ok(won(result))
            }
            Err(
                ::object_store::Error::Precondition { .. } | ::object_store::Error::NotFound { .. },
            ) => Ok(ClaimAttempt::Held),
            Err(error) => Err(store_error(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::super::tests::{memory, plant_claim};
    use super::*;
    use crate::storage::conformance::{body, chunk, expect_completed, live_session, make_record};
    use crate::storage::{ChunkOptions, CompleteOptions, Storage};

    #[tokio::test]
    async fn stale_claim_is_taken_over() {
        let (store, storage) = memory();
        let session = live_session(7, "stale.bin");
        storage
            .write_chunk(
                &session,
                chunk(0, 3, Some(4)),
                &ChunkOptions::new(10),
                body(&[b"abcd"]),
            )
            .await
            .expect("chunk");
        // An instance that claimed the commit and died a minute ago.
        let old = unix_millis(SystemTime::now() - Duration::from_secs(60));
        plant_claim(&store, &storage, &session, old).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let completion = expect_completed(
            storage
                .complete(&session, &CompleteOptions::default(), make_record(&calls))
                .await,
        )
        .await;
        assert!(completion.fresh);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn live_claim_makes_others_wait_then_answer_unavailable() {
        let (store, storage) = memory();
        let storage = storage.completion_lease(Duration::from_secs(1));
        let session = live_session(8, "held.bin");
        storage
            .write_chunk(
                &session,
                chunk(0, 3, Some(4)),
                &ChunkOptions::new(10),
                body(&[b"abcd"]),
            )
            .await
            .expect("chunk");
        plant_claim(
            &store,
            &storage,
            &session,
            unix_millis(SystemTime::now()) + 60_000,
        )
        .await;
        let calls = Arc::new(AtomicUsize::new(0));
        let result = storage
            .complete(&session, &CompleteOptions::default(), make_record(&calls))
            .await;
        assert!(
            matches!(result, Err(StorageError::Unavailable { .. })),
            "{result:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(matches!(
            storage.head(session.path()).await,
            Err(StorageError::NotFound)
        ));
    }
}

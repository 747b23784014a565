//! The completion claim: the one object whose conditional create decides which
//! call commits a session. Its holder renews it while it works; another
//! instance takes it over only once it has seen it unchanged for a whole lease
//! on its own monotonic clock, so no two machines' clocks are ever compared.

use std::sync::{Arc, Mutex, MutexGuard};

use ::object_store::path::Path;
use ::object_store::{ObjectStore, ObjectStoreExt, PutMode, PutResult, UpdateVersion};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::error::store_error;
use super::store::{put_options, to_json, unix_millis, version_of};
use super::{random_tag, ObjectStoreStorage, SessionDir};
use crate::storage::StorageError;
use crate::Clock;

/// Who is committing a session. Every renewal changes it (`renewals` grows),
/// so an observer tells a live claim from a dead one by whether it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ClaimBody {
    pub(super) owner: String,
    /// How many times its holder renewed it.
    #[serde(default)]
    pub(super) renewals: u64,
    /// Given up by its holder (its commit failed or was dropped): anyone may
    /// take it over at once.
    #[serde(default)]
    pub(super) released: bool,
    /// The holder's wall clock at the last renewal, unix milliseconds, for
    /// people reading the bucket; no instance compares it with its own clock.
    #[serde(default)]
    pub(super) at: u64,
}

/// What the holder last wrote: the version to update and the renewals so far.
struct Held {
    version: UpdateVersion,
    renewals: u64,
}

/// A claim held by this call; renewed in the background until it is
/// finished, released (open to a takeover at once) if dropped before.
pub(super) struct Claim {
    store: Arc<dyn ObjectStore>,
    location: Path,
    owner: String,
    clock: Arc<dyn Clock>,
    held: Arc<Mutex<Held>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
    done: bool,
}

fn lock(held: &Mutex<Held>) -> MutexGuard<'_, Held> {
    // Plain values: a panic cannot leave them half-updated.
    held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Renews (or releases) a claim with a conditional update; `Ok(false)` if
/// someone took it over.
async fn renew(
    store: &dyn ObjectStore,
    location: &Path,
    owner: &str,
    clock: &dyn Clock,
    held: &Mutex<Held>,
    released: bool,
) -> Result<bool, StorageError> {
    let (current, renewals) = {
        let held = lock(held);
        (held.version.clone(), held.renewals + 1)
    };
    let body = ClaimBody {
        owner: owner.to_owned(),
        renewals,
        released,
        at: unix_millis(clock.now()),
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
            *lock(held) = Held {
                version: version_of(&result),
                renewals,
            };
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
        storage: &ObjectStoreStorage,
        location: Path,
        owner: String,
        version: UpdateVersion,
    ) -> Self {
        let store = Arc::clone(&storage.store);
        let clock = Arc::clone(&storage.clock);
        let held = Arc::new(Mutex::new(Held {
            version,
            renewals: 0,
        }));
        let every = storage.lease / 3;
        let renewer = {
            let (store, location, owner) = (Arc::clone(&store), location.clone(), owner.clone());
            let (clock, held) = (Arc::clone(&clock), Arc::clone(&held));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match renew(
                        store.as_ref(),
                        &location,
                        &owner,
                        clock.as_ref(),
                        &held,
                        false,
                    )
                    .await
                    {
                        Ok(true) => {}
                        // Taken over: the completion record decides which
                        // commit stands, so the holder carries on regardless.
                        Ok(false) => return,
                        // A failed renewal is retried at the next tick.
                        Err(error) => tracing::warn!(%error, "renewing a completion claim failed"),
                    }
                }
            })
        };
        Claim {
            store,
            location,
            owner,
            clock,
            held,
            renewer: Some(renewer),
            done: false,
        }
    }

    fn stop_renewing(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }

    /// The commit is over (its record is written and published): the claim goes.
    pub(super) async fn finish(mut self) {
        self.done = true;
        self.stop_renewing();
        if let Err(error) = self.store.delete(&self.location).await {
            tracing::debug!(%error, "removing a completion claim failed");
        }
    }

    /// Gives the claim up now, so the next call takes it over without waiting.
    pub(super) async fn release(mut self) {
        self.done = true;
        self.stop_renewing();
        let _ = renew(
            self.store.as_ref(),
            &self.location,
            &self.owner,
            self.clock.as_ref(),
            &self.held,
            true,
        )
        .await;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.stop_renewing();
        if self.done {
            return;
        }
        // The commit failed or was dropped: release the claim, so the next
        // call takes it over without waiting for a lease.
        let (store, location, owner) = (
            Arc::clone(&self.store),
            self.location.clone(),
            self.owner.clone(),
        );
        let (clock, held) = (Arc::clone(&self.clock), Arc::clone(&self.held));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = renew(
                    store.as_ref(),
                    &location,
                    &owner,
                    clock.as_ref(),
                    &held,
                    true,
                )
                .await;
            });
        }
    }
}

pub(super) enum ClaimAttempt {
    Won(Claim),
    Held,
}

/// What a waiting call has seen of someone else's claim, and since when on
/// its own monotonic clock: a claim seen unchanged for a whole lease was not
/// renewed three times over, so its holder is gone.
#[derive(Debug, Default)]
pub(super) struct Watch {
    seen: Option<(ClaimBody, Instant)>,
}

impl Watch {
    /// Whether `claim` has been seen unchanged for at least `lease`.
    fn unchanged_for(&mut self, claim: &ClaimBody, lease: std::time::Duration) -> bool {
        match &self.seen {
            Some((seen, since)) if seen == claim => since.elapsed() >= lease,
            _ => {
                self.seen = Some((claim.clone(), Instant::now()));
                false
            }
        }
    }
}

impl ObjectStoreStorage {
    /// Tries to become the one call that commits the session. A claim held by
    /// someone else is taken over (with a conditional update, so by one call)
    /// once it was released, or once `watch` has seen it unchanged for a lease.
    pub(super) async fn try_claim(
        &self,
        dir: &SessionDir,
        watch: &mut Watch,
    ) -> Result<ClaimAttempt, StorageError> {
        let owner = random_tag();
        let body = ClaimBody {
            owner: owner.clone(),
            renewals: 0,
            released: false,
            at: unix_millis(self.clock.now()),
        };
        let location = dir.claim();
        let won = |result: PutResult| {
            ClaimAttempt::Won(Claim::new(
                self,
                location.clone(),
                owner.clone(),
                version_of(&result),
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
            // Finished or removed between the two requests; the next round creates it.
            return Ok(ClaimAttempt::Held);
        };
        if !held.released && !watch.unchanged_for(&held, self.lease) {
            return Ok(ClaimAttempt::Held);
        }
        // Released, or not renewed for a lease: its holder died or gave up.
        // Take it over, conditionally.
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
                if !held.released {
                    tracing::info!(claim = %location, "took over a completion claim left unrenewed");
                }
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, SystemTime};

    use super::super::tests::{instance, memory, plant_claim, Cue};
    use super::*;
    use crate::storage::conformance::{body, chunk, expect_completed, live_session, make_record};
    use crate::storage::{ChunkOptions, CompleteOptions, Storage};

    /// A wall clock set `offset` ahead of the system's (behind when `ahead` is false).
    #[derive(Debug)]
    struct Skewed {
        offset: Duration,
        ahead: bool,
    }

    impl Clock for Skewed {
        fn now(&self) -> SystemTime {
            if self.ahead {
                SystemTime::now() + self.offset
            } else {
                SystemTime::now() - self.offset
            }
        }
    }

    const MINUTES: Duration = Duration::from_secs(10 * 60);

    async fn one_chunk(storage: &ObjectStoreStorage, session: &crate::storage::Session) {
        storage
            .write_chunk(
                session,
                chunk(0, 3, Some(4)),
                &ChunkOptions::new(10),
                body(&[b"abcd"]),
            )
            .await
            .expect("chunk");
    }

    #[tokio::test(start_paused = true)]
    async fn released_claim_is_taken_over_at_once() {
        let (store, storage) = memory();
        let session = live_session(7, "released.bin");
        one_chunk(&storage, &session).await;
        // An instance whose commit failed and gave its claim up.
        plant_claim(&store, &storage, &session, 4, true).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let completion = expect_completed(
            storage
                .complete(&session, &CompleteOptions::default(), make_record(&calls))
                .await,
        )
        .await;
        assert!(completion.fresh);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn claim_unchanged_for_a_lease_is_taken_over() {
        let (store, storage) = memory();
        let storage = storage.completion_lease(Duration::from_secs(5));
        let session = live_session(7, "stale.bin");
        one_chunk(&storage, &session).await;
        // An instance that claimed the commit and died.
        plant_claim(&store, &storage, &session, 2, false).await;
        let calls = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let completion = expect_completed(
            storage
                .complete(&session, &CompleteOptions::default(), make_record(&calls))
                .await,
        )
        .await;
        assert!(completion.fresh);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(5) && waited < Duration::from_secs(7),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn live_claim_makes_others_wait_then_answer_unavailable() {
        let (store, storage) = memory();
        let storage = storage.completion_lease(Duration::from_secs(1));
        let session = live_session(8, "held.bin");
        one_chunk(&storage, &session).await;
        // Another instance committing, renewing its claim every third of a lease.
        plant_claim(&store, &storage, &session, 0, false).await;
        let holder = {
            let (store, storage, session) = (store.clone(), storage.clone(), session.clone());
            tokio::spawn(async move {
                for renewals in 1..100 {
                    tokio::time::sleep(Duration::from_millis(333)).await;
                    plant_claim(&store, &storage, &session, renewals, false).await;
                }
            })
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let result = storage
            .complete(&session, &CompleteOptions::default(), make_record(&calls))
            .await;
        holder.abort();
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

    #[tokio::test(start_paused = true)]
    async fn skewed_clocks_never_steal_a_live_claim() {
        let shared = Arc::new(::object_store::memory::InMemory::new());
        // Its clock is ten minutes slow, and reading the chunks takes it three
        // leases, while it keeps renewing its claim.
        let (_, slow) = instance(&shared, |kind, key| {
            if kind == "get" && key.as_ref().contains("/chunks/") {
                Cue::Delay(Duration::from_secs(3))
            } else {
                Cue::Pass
            }
        });
        let slow = slow.clock(Skewed {
            offset: MINUTES,
            ahead: false,
        });
        // Its clock is ten minutes fast.
        let (_, fast) = instance(&shared, |_, _| Cue::Pass);
        let fast = fast.clock(Skewed {
            offset: MINUTES,
            ahead: true,
        });
        let session = live_session(11, "skew/live.bin");
        one_chunk(&fast, &session).await;

        let slow_calls = Arc::new(AtomicUsize::new(0));
        let committing = {
            let (slow, session, calls) = (slow.clone(), session.clone(), slow_calls.clone());
            tokio::spawn(async move {
                slow.complete(&session, &CompleteOptions::default(), make_record(&calls))
                    .await
            })
        };
        let claim = slow.session_dir(&session).expect("dir").claim();
        for _ in 0..100 {
            if shared.head(&claim).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let fast_calls = Arc::new(AtomicUsize::new(0));
        let result = fast
            .complete(
                &session,
                &CompleteOptions::default(),
                make_record(&fast_calls),
            )
            .await;
        assert!(
            matches!(result, Err(StorageError::Unavailable { .. })),
            "{result:?}"
        );
        assert_eq!(fast_calls.load(Ordering::SeqCst), 0, "a live claim stolen");

        let completion = expect_completed(committing.await.expect("joins")).await;
        assert!(completion.fresh);
        assert_eq!(slow_calls.load(Ordering::SeqCst), 1);
        let file = fast.head(session.path()).await.expect("file");
        assert_eq!(file.etag, completion.etag);
    }

    #[tokio::test(start_paused = true)]
    async fn skewed_clocks_never_wait_forever_on_a_dead_claim() {
        let shared = Arc::new(::object_store::memory::InMemory::new());
        // Its clock is ten minutes fast; it stops for good once it claimed the
        // commit and began reading the chunks.
        let (gone, dead) = instance(&shared, |kind, key| {
            if kind == "get" && key.as_ref().contains("/chunks/") {
                Cue::Freeze
            } else {
                Cue::Pass
            }
        });
        let dead = dead.clock(Skewed {
            offset: MINUTES,
            ahead: true,
        });
        let (_, alive) = instance(&shared, |_, _| Cue::Pass);
        let session = live_session(12, "skew/dead.bin");
        one_chunk(&alive, &session).await;

        let dead_calls = Arc::new(AtomicUsize::new(0));
        let stopped = {
            let (dead, session, calls) = (dead.clone(), session.clone(), dead_calls.clone());
            tokio::spawn(async move {
                dead.complete(&session, &CompleteOptions::default(), make_record(&calls))
                    .await
            })
        };
        gone.frozen().await;

        let calls = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let completion = expect_completed(
            alive
                .complete(&session, &CompleteOptions::default(), make_record(&calls))
                .await,
        )
        .await;
        let waited = started.elapsed();
        assert!(completion.fresh);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        assert_eq!(
            alive.head(session.path()).await.expect("file").etag,
            completion.etag
        );
        stopped.abort();
    }
}

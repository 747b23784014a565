//! Keeping a session's manifest bounded: once it records more pieces than the
//! session holds distinct ranges (plus some slack), the request that recorded
//! the last one merges runs of small adjacent pieces into one object each, so
//! a session of 100,000 one-byte chunks keeps a manifest of a few dozen pieces.
//!
//! A merge reads at most [`MERGE_BUDGET`] bytes and writes them once, so its
//! cost is bounded whatever the session's size. It follows the manifest's
//! rules: the merged object is written first, under a name of its own; the
//! manifest swaps the pieces for it with a conditional update, and only if
//! every piece is still recorded; the old objects are deleted only after
//! that update succeeded. A writer comparing bytes against a piece that a
//! merge removed meanwhile sees the manifest changed and compares again.

use std::sync::Arc;

use ::object_store::path::Path;
use ::object_store::Attributes;
use ::object_store::PutMode;

use super::error::{other, store_error, unavailable, BackendError};
use super::manifest::{Manifest, Recorded};
use super::multipart::stage;
use super::pieces::{plan, read_pieces};
use super::store::{pause, put_options, to_json};
use super::{random_tag, ObjectStoreStorage, SessionDir};
use crate::storage::StorageError;

/// Pieces a manifest may hold beyond its distinct ranges before a merge.
pub(super) const SLACK: usize = 32;
/// A piece this small (or smaller) may be merged with its neighbours.
pub(super) const SMALL_PIECE: u64 = 1024 * 1024;
/// The most bytes one merge reads (and writes): the bound of its cost.
pub(super) const MERGE_BUDGET: u64 = 4 * 1024 * 1024;
/// Conditional updates a merge tries before it leaves the pieces as they are.
const ATTEMPTS: u32 = 8;

/// Whether a manifest of this many pieces over this many distinct ranges
/// should merge some. Finding the runs costs no request, so a manifest whose
/// pieces cannot merge (large ones, or small ones between large ones) only
/// pays for that.
pub(super) fn over_bound(pieces: usize, ranges: usize) -> bool {
    pieces > ranges.saturating_add(SLACK)
}

/// One merge: the pieces it replaces, and the piece that replaces them.
struct Merge {
    run: Vec<Recorded>,
    merged: Recorded,
}

fn len(piece: &Recorded) -> u64 {
    piece.last - piece.first + 1
}

/// Runs of small pieces that together cover a contiguous span of at most
/// [`MERGE_BUDGET`] bytes, the longest runs first, within the budget in total.
fn runs(chunks: &[Recorded]) -> Vec<Vec<Recorded>> {
    let mut small: Vec<&Recorded> = chunks
        .iter()
        .filter(|piece| len(piece) <= SMALL_PIECE)
        .collect();
    small.sort_by(|a, b| a.first.cmp(&b.first).then(b.last.cmp(&a.last)));
    let mut runs: Vec<Vec<Recorded>> = Vec::new();
    let mut current: Vec<Recorded> = Vec::new();
    let (mut first, mut last) = (0u64, 0u64);
    for piece in small {
        let joins = !current.is_empty()
            && piece.first <= last.saturating_add(1)
            && piece.last.max(last) - first < MERGE_BUDGET;
        if joins {
            last = last.max(piece.last);
        } else {
            if current.len() > 1 {
                runs.push(std::mem::take(&mut current));
            }
            current.clear();
            (first, last) = (piece.first, piece.last);
        }
        current.push(piece.clone());
    }
    if current.len() > 1 {
        runs.push(current);
    }
    runs.sort_by_key(|run| std::cmp::Reverse(run.len()));
    let mut budget = MERGE_BUDGET;
    runs.retain(|run| {
        let span = span(run);
        let fits = span.1 - span.0 < budget;
        if fits {
            budget -= span.1 - span.0 + 1;
        }
        fits
    });
    runs
}

/// The first and last byte a run covers.
fn span(run: &[Recorded]) -> (u64, u64) {
    let first = run.iter().map(|piece| piece.first).min().unwrap_or(0);
    let last = run.iter().map(|piece| piece.last).max().unwrap_or(0);
    (first, last)
}

impl ObjectStoreStorage {
    /// Merges runs of small pieces of the manifest (as it was just recorded);
    /// best effort: the chunk that triggered it is recorded either way, so a
    /// failure is only logged.
    pub(super) async fn coalesce(&self, dir: &SessionDir, manifest: &Manifest) {
        if let Err(error) = self.try_coalesce(dir, manifest).await {
            tracing::warn!(%error, "merging a session's small pieces failed");
        }
    }

    async fn try_coalesce(
        &self,
        dir: &SessionDir,
        manifest: &Manifest,
    ) -> Result<(), StorageError> {
        let mut merges: Vec<Merge> = Vec::new();
        for run in runs(&manifest.chunks) {
            let (first, last) = span(&run);
            let merged = Recorded {
                first,
                last,
                tag: random_tag(),
            };
            match self.write_merged(dir, &run, &merged).await {
                Ok(()) => merges.push(Merge { run, merged }),
                Err(error) => {
                    self.drop_merged(dir, &merges).await;
                    return Err(error);
                }
            }
        }
        if merges.is_empty() {
            return Ok(());
        }
        for round in 0..ATTEMPTS {
            let Some((mut current, version)) = self.get_json::<Manifest>(&dir.manifest()).await?
            else {
                // Discarded meanwhile.
                break;
            };
            // A complete session is being committed from its pieces: leave them.
            if current.state().is_complete() || self.read_record(dir).await?.is_some() {
                break;
            }
            // Merges whose pieces another writer merged meanwhile are dropped.
            let (apply, stale): (Vec<Merge>, Vec<Merge>) = merges
                .into_iter()
                .partition(|merge| merge.run.iter().all(|piece| current.chunks.contains(piece)));
            self.drop_merged(dir, &stale).await;
            merges = apply;
            if merges.is_empty() {
                return Ok(());
            }
            current
                .chunks
                .retain(|piece| !merges.iter().any(|merge| merge.run.contains(piece)));
            current
                .chunks
                .extend(merges.iter().map(|merge| merge.merged.clone()));
            match self
                .store
                .put_opts(
                    &dir.manifest(),
                    to_json(&current),
                    put_options(PutMode::Update(version)),
                )
                .await
            {
                Ok(_) => {
                    let replaced: Vec<Path> = merges
                        .iter()
                        .flat_map(|merge| merge.run.iter().map(|piece| dir.object(piece)))
                        .collect();
                    self.delete_quietly(replaced).await;
                    return Ok(());
                }
                Err(::object_store::Error::Precondition { .. }) => pause(round.min(2)).await,
                Err(error) => {
                    self.drop_merged(dir, &merges).await;
                    return Err(store_error(error));
                }
            }
        }
        self.drop_merged(dir, &merges).await;
        Ok(())
    }

    /// Writes the bytes of `run` into the object of `merged`, at most
    /// [`MERGE_BUDGET`] bytes, in bounded memory.
    async fn write_merged(
        &self,
        dir: &SessionDir,
        run: &[Recorded],
        merged: &Recorded,
    ) -> Result<(), StorageError> {
        let pieces = plan(dir, run, merged.first, merged.last)
            .ok_or_else(|| other(BackendError::Corrupt("a run of pieces has a gap")))?;
        let location = dir.object(merged);
        let received = stage(
            self.store.as_ref(),
            &location,
            read_pieces(Arc::clone(&self.store), pieces),
            self.part_size,
            Some(len(merged)),
            None,
            Attributes::new(),
        )
        .await?;
        received.finish(self.store.as_ref(), &location).await?;
        Ok(())
    }

    /// What a read of recorded pieces that failed answers: `503` (a retry
    /// reads the merged piece) if the manifest no longer records the pieces
    /// `known` did, because a merge replaced them; otherwise `error`.
    pub(super) async fn merged_meanwhile(
        &self,
        dir: &SessionDir,
        known: &[Recorded],
        error: StorageError,
    ) -> StorageError {
        match self.get_json::<Manifest>(&dir.manifest()).await {
            Ok(Some((manifest, _))) if manifest.chunks != known => unavailable(
                BackendError::Contended("the session's pieces were merged while they were read"),
            ),
            _ => error,
        }
    }

    async fn drop_merged(&self, dir: &SessionDir, merges: &[Merge]) {
        self.delete_quietly(
            merges
                .iter()
                .map(|merge| dir.object(&merge.merged))
                .collect(),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{keys, memory};
    use super::*;
    use crate::storage::conformance::{body, chunk, complete_default, live_session, read_all};
    use crate::storage::{ChunkOptions, Storage};

    /// The layer's default: far more ranges than the sessions below hold.
    const MAX_RANGES: usize = crate::DEFAULT_MAX_RANGES;
    /// The most pieces a manifest holds: the bound for the nine distinct
    /// ranges the sessions below hold at most, plus the piece whose recording
    /// crosses it; never more with more chunks.
    const MOST: usize = 9 + SLACK + 1;

    async fn pieces(storage: &ObjectStoreStorage, dir: &SessionDir) -> usize {
        let (manifest, _) = storage
            .get_json::<Manifest>(&dir.manifest())
            .await
            .expect("reads")
            .expect("a manifest");
        manifest.chunks.len()
    }

    #[tokio::test]
    async fn thousands_of_one_byte_chunks_keep_the_manifest_bounded() {
        let (store, storage) = memory();
        let session = live_session(31, "bytes.bin");
        let dir = storage.session_dir(&session).expect("dir");
        let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let total = data.len() as u64;
        // Three disjoint ranges growing one byte at a time, then the gaps.
        let order = (0..1000)
            .flat_map(|i| [i, 1000 + i, 2000 + i])
            .filter(|i| i % 500 != 250)
            .chain((0..6).map(|k| k * 500 + 250));
        let chunks_folder = format!("site/uploads/.uploads/{}/chunks", session.id());
        let mut most = 0;
        for (sent, at) in order.enumerate() {
            storage
                .write_chunk(
                    &session,
                    chunk(at, at, Some(total)),
                    &ChunkOptions::new(MAX_RANGES),
                    body(&[&data[at as usize..=at as usize]]),
                )
                .await
                .expect("chunk");
            if sent % 97 == 0 {
                let recorded = pieces(&storage, &dir).await;
                most = most.max(recorded);
                // Replaced pieces are deleted, not only forgotten.
                assert!(keys(&store, &chunks_folder).await.len() <= MOST);
            }
        }
        most = most.max(pieces(&storage, &dir).await);
        assert!(most <= MOST, "{most} pieces recorded");
        let completion = complete_default(&storage, &session).await;
        assert!(completion.fresh);
        assert_eq!(read_all(&storage, "bytes.bin").await.expect("reads"), data);
        assert!(keys(&store, &chunks_folder).await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn merging_under_concurrent_overlapping_writers_keeps_every_byte() {
        let (_, storage) = memory();
        let session = live_session(32, "racing-bytes.bin");
        let dir = storage.session_dir(&session).expect("dir");
        let data: Arc<Vec<u8>> = Arc::new((0..801u32).map(|i| (i * 13 % 241) as u8).collect());
        let total = data.len() as u64;
        // Four writers, each sending two-byte chunks that overlap their
        // neighbours', so bytes are compared against pieces being merged.
        let writers: Vec<_> = (0..4u64)
            .map(|writer| {
                let (storage, session, data) = (storage.clone(), session.clone(), data.clone());
                tokio::spawn(async move {
                    let (mut at, mut retries) = (writer * 200, 0);
                    while at < (writer + 1) * 200 {
                        let piece = &data[at as usize..=at as usize + 1];
                        let result = storage
                            .write_chunk(
                                &session,
                                chunk(at, at + 1, Some(total)),
                                &ChunkOptions::new(MAX_RANGES),
                                body(&[piece]),
                            )
                            .await;
                        match result {
                            Ok(_) => at += 1,
                            // A resent range whose pieces a merge replaced
                            // while it was compared: the client retries.
                            Err(StorageError::Unavailable { .. }) if retries < 20 => retries += 1,
                            Err(error) => panic!("chunk at {at}: {error:?}"),
                        }
                    }
                    retries
                })
            })
            .collect();
        for writer in writers {
            let retries = writer.await.expect("joins");
            assert!(retries <= 20);
        }
        assert!(pieces(&storage, &dir).await <= MOST);
        complete_default(&storage, &session).await;
        assert_eq!(
            read_all(&storage, "racing-bytes.bin").await.expect("reads"),
            *data
        );
    }

    fn piece(first: u64, last: u64) -> Recorded {
        Recorded {
            first,
            last,
            tag: format!("{first}-{last}"),
        }
    }

    #[test]
    fn runs_take_small_adjacent_pieces_within_the_budget() {
        let big = SMALL_PIECE + 1;
        let chunks = [
            piece(0, 0),
            piece(1, 1),
            piece(1, 2),
            // A gap at 3: a new run.
            piece(4, 4),
            piece(5, 5),
            piece(6, 6),
            // Too big to merge, and it splits the run after it.
            piece(7, 6 + big),
            piece(7 + big, 7 + big),
            // Alone: not a run.
            piece(100 + big, 100 + big),
        ];
        let found = runs(&chunks);
        let spans: Vec<(u64, u64, usize)> = found
            .iter()
            .map(|run| (span(run).0, span(run).1, run.len()))
            .collect();
        assert_eq!(spans, [(0, 2, 3), (4, 6, 3)]);
    }

    #[test]
    fn runs_stay_within_the_budget() {
        // Sixteen adjacent pieces of just under 1 MiB: at most 4 MiB merge.
        let size = SMALL_PIECE - 1;
        let chunks: Vec<Recorded> = (0..16)
            .map(|i| piece(i * size, (i + 1) * size - 1))
            .collect();
        let found = runs(&chunks);
        let total: u64 = found.iter().map(|run| span(run).1 - span(run).0 + 1).sum();
        assert!(total <= MERGE_BUDGET, "{total}");
        assert!(!found.is_empty());
        assert!(found.iter().all(|run| run.len() > 1));
    }
}

//! The storage conformance suite: the guarantees of the [`Storage`] trait as
//! checks any backend runs in its own tests, with one call.
//!
//! Enabled by the `conformance` feature. An author of a third-party backend
//! (Redis, PostgreSQL large objects, a cloud SDK…) adds the crate with that
//! feature as a dev-dependency and runs [`run`] against a fresh store:
//!
//! ```toml
//! [dev-dependencies]
//! tower-signed-upload = { version = "0.1", features = ["conformance"] }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! ```
//! # use tower_signed_upload::storage::MemoryStorage as MyStorage;
//! #[tokio::test]
//! async fn my_storage_conforms() {
//!     let storage = MyStorage::new(); // a fresh, empty store
//!     tower_signed_upload::storage::conformance::run(&storage).await;
//! }
//! # tokio::runtime::Runtime::new().unwrap().block_on(tower_signed_upload::storage::conformance::run(&MyStorage::new()));
//! ```
//!
//! A failed check panics with what it expected, so it fails the test that
//! ran it. Each `check_*` function can also run alone, to bisect a failure.
//! The crate's own backends (memory, local disk, object stores) run this
//! suite exactly this way.
//!
//! What the store must allow: every check uses its own paths (under
//! `conformance/`) and session ids, so they share one store; sessions outside
//! [`check_purge_removes_expired_keeps_live`] expire a day ahead, so that
//! check can count exactly what cleanup removes — give [`run`] a store with
//! no other expired sessions. Checks spawn no tasks and need no particular
//! runtime; concurrency comes from futures polled together.
//!
//! The helpers ([`body`], [`session`], [`chunk`], [`make_record`]…) are
//! public too, for a backend's own further tests.

mod concat;
mod integrity;
mod open;
mod uploads;

pub use concat::*;
pub use integrity::*;
pub use open::*;
pub use uploads::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{stream, StreamExt};

use super::{
    BodyError, ByteStream, ChunkRange, CompleteOptions, Completion, MakeRecord, Session,
    SessionStatus, Storage, StorageError,
};
use crate::UploadPath;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// An upload path; panics on an invalid one.
pub fn path(path: &str) -> UploadPath {
    UploadPath::new(path).expect("test paths are valid")
}

/// A body made of the given pieces.
pub fn body(pieces: &[&[u8]]) -> ByteStream {
    let pieces: Vec<_> = pieces
        .iter()
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .collect();
    Box::pin(stream::iter(pieces))
}

/// A body that yields the given pieces, then fails.
pub fn failing(pieces: &[&[u8]]) -> ByteStream {
    let pieces: Vec<_> = pieces
        .iter()
        .map(|piece| Ok(Bytes::copy_from_slice(piece)))
        .chain([Err(BodyError::aborted())])
        .collect();
    Box::pin(stream::iter(pieces))
}

/// A session id (64 hex digits) for a test number.
pub fn session(number: u64, file: &str, expires: SystemTime) -> Session {
    Session::new(format!("{number:064x}"), path(file), expires)
}

/// A session (see [`session`]) whose URL expires a day from now.
pub fn live_session(number: u64, file: &str) -> Session {
    session(number, file, SystemTime::now() + DAY)
}

/// The range `first..=last` of a file of `total` bytes (`None`: not known yet).
pub fn chunk(first: u64, last: u64, total: Option<u64>) -> ChunkRange {
    ChunkRange { first, last, total }
}

/// A record builder that writes `size:etag:head` and counts its calls.
pub fn make_record(calls: &Arc<AtomicUsize>) -> MakeRecord {
    let calls = Arc::clone(calls);
    Box::new(move |info| {
        calls.fetch_add(1, Ordering::SeqCst);
        let mut record = format!("{}:{}:", info.size, info.etag).into_bytes();
        record.extend_from_slice(&info.head);
        Ok(Bytes::from(record))
    })
}

/// The completion a storage call answered with; panics on anything else.
pub async fn expect_completed(status: Result<SessionStatus, StorageError>) -> Completion {
    match status.expect("storage call") {
        SessionStatus::Completed(completion) => completion,
        other => panic!("not completed: {other:?}"),
    }
}

/// Completes `session` with default options and a counting record builder
/// whose count nobody looks at; panics unless it completes.
pub async fn complete_default(storage: &dyn Storage, session: &Session) -> Completion {
    let calls = Arc::new(AtomicUsize::new(0));
    expect_completed(
        storage
            .complete(session, &CompleteOptions::default(), make_record(&calls))
            .await,
    )
    .await
}

/// The whole stored file at `file`.
///
/// # Errors
///
/// What [`Storage::read`] or its stream fails with.
pub async fn read_all(storage: &dyn Storage, file: &str) -> Result<Vec<u8>, StorageError> {
    let read = storage.read(&path(file), None).await?;
    let mut body = read.body;
    let mut out = Vec::new();
    while let Some(piece) = body.next().await {
        out.extend_from_slice(&piece?);
    }
    Ok(out)
}

/// A status's total and ranges; panics for a completed session.
pub fn progress(status: &SessionStatus) -> (Option<u64>, Vec<[u64; 2]>) {
    match status {
        SessionStatus::InProgress { total, ranges, .. } => (*total, ranges.as_slice().to_vec()),
        SessionStatus::Completed(_) => panic!("expected a session in progress, got {status:?}"),
    }
}

/// Runs every check against `storage`, one after another; panics at the first
/// guarantee the backend breaks.
pub async fn run(storage: &dyn Storage) {
    run_uploads(storage).await;
    run_integrity(storage).await;
}

/// The checks of the trait's policy and integrity guarantees.
pub async fn run_integrity(storage: &dyn Storage) {
    check_range_conflicts(storage).await;
    check_racing_conflicts_keep_one_version(storage).await;
    check_repr_digest_and_file_digests(storage).await;
    check_refused_commit_and_discard(storage).await;
}

/// The checks of simple uploads, sessions, completion and cleanup.
pub async fn run_uploads(storage: &dyn Storage) {
    check_put_read_head(storage).await;
    check_put_replaces(storage).await;
    check_failed_put_leaves_nothing(storage).await;
    check_unknown_session(storage).await;
    check_empty_session_completes(storage).await;
    check_chunks_out_of_order(storage).await;
    check_chunk_errors(storage).await;
    check_failed_chunk_counts_for_nothing(storage).await;
    check_complete_exactly_once(storage).await;
    check_chunk_after_completion(storage).await;
    check_purge_removes_expired_keeps_live(storage).await;
    check_open_with_total(storage).await;
    check_open_deferred(storage).await;
    check_open_empty_and_discard(storage).await;
    check_concat_makes_the_parts_the_file(storage).await;
    check_concat_refuses_incomplete_parts(storage).await;
    check_concat_conflicts_and_the_empty_file(storage).await;
}

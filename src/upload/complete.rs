//! Settling a session after a chunk or a status query: its progress, a replay
//! of its completion, or the commit of a session whose bytes all arrived.

use std::sync::{Arc, Mutex};

use http::StatusCode;

use super::action::Checks;
use super::layer::Config;
use super::record::{completed, lock, make_record};
use super::Outcome;
use crate::envelope::{self, Meta};
use crate::error::storage_error;
use crate::headers::digest::DigestSet;
use crate::storage::{CompleteOptions, Session, SessionState, SessionStatus, StorageError};
use crate::Error;

/// Turns a session's status into the answer: progress (`202`/`308`), a replay
/// of the completion (`200`), or the commit of a session whose bytes all arrived.
/// `declared` is the total a status query names (`None` for a chunk): a session
/// that stored nothing completes as an empty file when it is 0 (see
/// [`SessionState::with_declared_total`]).
pub(super) async fn settle(
    config: &Config,
    session: &Session,
    status: SessionStatus,
    declared: Option<u64>,
    progress: StatusCode,
    meta: &Meta,
    checks: &Checks,
) -> Result<Outcome, Error> {
    match settle_status(config, session, status, declared, checks).await? {
        SessionStatus::InProgress { total, ranges, .. } => Ok(Outcome::Respond(envelope::upload(
            meta,
            progress,
            session.path().as_str(),
            total,
            &ranges,
        ))),
        SessionStatus::Completed(completion) => completed(session, completion, meta),
    }
}

/// Commits the session if its bytes all arrived (see [`settle`]); its status
/// after that, whatever the wire protocol that answers it.
pub(super) async fn settle_status(
    config: &Config,
    session: &Session,
    status: SessionStatus,
    declared: Option<u64>,
    checks: &Checks,
) -> Result<SessionStatus, Error> {
    Ok(match status {
        SessionStatus::InProgress {
            total,
            ranges,
            repr_digest,
            opened,
            metadata,
        } => {
            let state = SessionState {
                total,
                ranges,
                repr_digest,
                opened,
                metadata,
            }
            .with_declared_total(declared);
            if state.is_complete() {
                commit(config, session, declared, checks).await?
            } else {
                // Unchanged: only a total that completes the session is taken.
                SessionStatus::in_progress(state)
            }
        }
        other => other,
    })
}

/// Commits a session whose bytes all arrived (or the empty file a status query
/// declared): the completion, or the refusal the record builder left.
async fn commit(
    config: &Config,
    session: &Session,
    declared: Option<u64>,
    checks: &Checks,
) -> Result<SessionStatus, Error> {
    let mut digests = DigestSet {
        sha256: config.compute_sha256 || checks.repr_digest.is_some(),
        sha512: false,
    };
    if let Some(repr) = &checks.repr_digest {
        digests = digests.with(repr.algorithm);
    }
    let refusal = Arc::new(Mutex::new(None));
    let record = make_record(
        config,
        session,
        checks.types.clone(),
        checks.repr_digest.clone(),
        checks.concat.clone(),
        Arc::clone(&refusal),
    );
    match config
        .storage
        .complete(
            session,
            &CompleteOptions::new(digests).total(declared),
            record,
        )
        .await
    {
        Err(StorageError::CommitRefused) => {
            let error = lock(&refusal).take().unwrap_or(Error::StorageError);
            tracing::info!(
                session = session.id(),
                code = error.code(),
                "session discarded at commit"
            );
            Err(error)
        }
        other => other.map_err(storage_error),
    }
}

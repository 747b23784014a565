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
use crate::storage::{CompleteOptions, Session, SessionStatus, StorageError};
use crate::Error;

/// Turns a session's status into the answer: progress (`202`/`308`), a replay
/// of the completion (`200`), or the commit of a session whose bytes all arrived.
pub(super) async fn settle(
    config: &Config,
    session: &Session,
    status: SessionStatus,
    progress: StatusCode,
    meta: &Meta,
    checks: &Checks,
) -> Result<Outcome, Error> {
    let status = match status {
        SessionStatus::InProgress {
            total: Some(total),
            ranges,
            ..
        } if ranges.is_complete(total) && total > 0 => {
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
                Arc::clone(&refusal),
            );
            match config
                .storage
                .complete(session, &CompleteOptions::new(digests), record)
                .await
            {
                Err(StorageError::CommitRefused) => {
                    let error = lock(&refusal).take().unwrap_or(Error::StorageError);
                    tracing::info!(
                        session = session.id(),
                        code = error.code(),
                        "session discarded at commit"
                    );
                    return Err(error);
                }
                other => other.map_err(storage_error)?,
            }
        }
        other => other,
    };
    match status {
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

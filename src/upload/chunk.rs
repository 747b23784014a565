//! One chunk of a resumable upload: streamed into its session's range, then
//! settled (progress, or the completion).

use std::sync::Arc;

use bytes::Buf;
use http::StatusCode;
use http_body::Body;

use super::action::Checks;
use super::complete::settle;
use super::inspect::{Inspect, SNIFF_LEN};
use super::layer::Config;
use super::stream::{Expect, UploadStream};
use super::Outcome;
use crate::envelope::Meta;
use crate::error::storage_error;
use crate::storage::{ChunkOptions, ChunkRange, Session, SessionStatus};
use crate::Error;

/// One chunk of a session: stored, then, if it completed the file, committed.
///
/// The chunk that carries offset 0 is judged against the signed type as its
/// first bytes arrive, when it holds enough of them to judge (8 KiB, or the
/// whole file); a smaller one is judged with the assembled file at commit. A
/// refusal discards the whole session, unless byte 0 was stored already: then
/// the chunk changed stored bytes, and is a range conflict.
pub(crate) async fn chunk<B>(
    config: Arc<Config>,
    session: Session,
    range: ChunkRange,
    body: B,
    meta: Meta,
    checks: Checks,
) -> Result<Outcome, Error>
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    let judged_now = range.first == 0
        && (range.len() >= SNIFF_LEN as u64 || range.total == Some(range.last + 1));
    let sniff = checks.types.clone().filter(|_| judged_now);
    let inspect = Inspect::new(
        sniff,
        checks.content_digest.clone().into_iter().collect(),
        None,
    );
    let stream =
        UploadStream::new(body, Expect::Exactly(range.len()), config.timers()).inspect(inspect);
    let mut options = ChunkOptions::new(config.max_ranges);
    options.repr_digest = checks.repr_digest.clone();
    let written = config
        .storage
        .write_chunk(&session, range, &options, Box::pin(stream))
        .await
        .map_err(storage_error);
    let status = match written {
        Err(Error::TypeNotAllowed) => return Err(refuse_type(&config, &session).await),
        other => other?,
    };
    tracing::debug!(session = session.id(), first = range.first, last = range.last, total = ?range.total, "chunk stored");
    settle(
        &config,
        &session,
        status,
        None,
        StatusCode::ACCEPTED,
        &meta,
        &checks,
    )
    .await
}

/// Answers an offset-0 chunk whose type is refused: a range conflict if byte 0
/// is stored already (the chunk changed it), else the session is discarded.
pub(crate) async fn refuse_type(config: &Config, session: &Session) -> Error {
    match config.storage.status(session).await {
        Ok(SessionStatus::InProgress { ranges, .. }) if ranges.prefix_end().is_some() => {
            Error::RangeConflict
        }
        Ok(_) => discard(config, session, Error::TypeNotAllowed).await,
        Err(failure) => storage_error(failure),
    }
}

/// Removes a session refused by its policy, and answers with `error`.
async fn discard(config: &Config, session: &Session, error: Error) -> Error {
    tracing::info!(
        session = session.id(),
        code = error.code(),
        "session discarded"
    );
    match config.storage.discard(session).await {
        Ok(()) => error,
        Err(failure) => storage_error(failure),
    }
}

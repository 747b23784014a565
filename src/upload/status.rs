//! A status query (`Content-Range: bytes */TOTAL`, no body): what is stored,
//! or the completion once every byte is.

use std::sync::Arc;

use bytes::Buf;
use http::StatusCode;
use http_body::Body;

use super::action::Checks;
use super::complete::settle;
use super::inspect::Inspect;
use super::layer::Config;
use super::stream::{Expect, UploadStream};
use super::Outcome;
use crate::envelope::Meta;
use crate::error::storage_error;
use crate::storage::state::check_query;
use crate::storage::Session;
use crate::Error;

/// A status query: `308` with what is stored, or `200` once complete. Its
/// body must be empty (a chunked body that carries bytes is `400`). `bytes
/// */0` on a session that stored nothing completes it as an empty file.
pub(crate) async fn status<B>(
    config: Arc<Config>,
    session: Session,
    total: Option<u64>,
    body: B,
    meta: Meta,
    checks: Checks,
) -> Result<Outcome, Error>
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    let mut empty = std::pin::pin!(UploadStream::new(body, Expect::Exactly(0), config.timers())
        .inspect(Inspect::new(
            None,
            checks.content_digest.clone().into_iter().collect(),
            None
        )));
    if let Some(Err(error)) = futures_util::StreamExt::next(&mut empty).await {
        return Err(error.0);
    }
    let status = config
        .storage
        .status(&session)
        .await
        .map_err(storage_error)?;
    // The total and Repr-Digest a query names must agree with the session's,
    // by the rules chunks follow.
    check_query(&status, total, checks.repr_digest.as_ref()).map_err(storage_error)?;
    settle(
        &config,
        &session,
        status,
        total,
        StatusCode::PERMANENT_REDIRECT,
        &meta,
        &checks,
    )
    .await
}

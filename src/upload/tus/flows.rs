//! The tus flows: creation, offset, append and termination on the session of
//! the signed URL, through the same storage calls and completion as chunks.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Body;

use super::{
    TusAction, EXTENSIONS, TUS_CHECKSUM_ALGORITHM, TUS_EXTENSION, TUS_MAX_SIZE, TUS_RESUMABLE,
    TUS_VERSION, UPLOAD_CONCAT, UPLOAD_DEFER_LENGTH, UPLOAD_EXPIRES, UPLOAD_LENGTH,
    UPLOAD_METADATA, UPLOAD_OFFSET, VERSION,
};
use crate::envelope::{self, Meta};
use crate::error::storage_error;
use crate::headers::{ChecksumAlgorithm, UploadChecksum};
use crate::storage::{
    ChunkOptions, ChunkRange, ConcatOptions, OpenOptions, Session, SessionStatus, StorageError,
};
use crate::upload::action::Checks;
use crate::upload::complete::settle_status;
use crate::upload::fields::{offset_of, set};
use crate::upload::inspect::{Inspect, SNIFF_LEN};
use crate::upload::layer::Config;
use crate::upload::pieces::{from_memory, Pieces, BUFFERED_PIECE, PIECE};
use crate::upload::record::{concat_of, file_of};
use crate::upload::stream::{Expect, UploadStream};
use crate::upload::Outcome;
use crate::Error;

/// What a tus request needs besides its action; an IETF draft request needs
/// the same (it is never a part, and lists no parts).
pub(crate) struct TusRequest {
    pub(crate) config: Arc<Config>,
    pub(crate) session: Session,
    pub(crate) meta: Meta,
    pub(crate) checks: Checks,
    /// The upload URL: the signed URL itself, absolute.
    pub(crate) location: String,
    /// The largest file this URL takes.
    pub(crate) max_size: u64,
    /// Whether `session` is a part of the upload (a partial upload, on a part
    /// URL the layer minted): it is never committed, its last byte stored is
    /// its end.
    pub(crate) part: bool,
    /// A final upload's parts, resolved and checked, in order.
    pub(crate) parts: Vec<Session>,
}

/// Runs a tus request.
pub(crate) async fn run<B>(
    action: TusAction,
    request: TusRequest,
    body: B,
) -> Result<Outcome, Error>
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    match action {
        TusAction::Options => Ok(Outcome::Respond(options(request.max_size))),
        TusAction::Head => head(request).await,
        TusAction::Terminate => terminate(request).await,
        TusAction::Create {
            total,
            metadata,
            body: length,
            partial: _,
        } => create(request, total, metadata, length, body).await,
        TusAction::Final {
            concat, metadata, ..
        } => finish(request, concat, metadata).await,
        TusAction::Append {
            offset,
            total,
            length,
            checksum,
        } => append(request, offset, total, length, checksum, body).await,
    }
}

/// An empty tus answer.
fn answer(status: StatusCode) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(TUS_RESUMABLE, HeaderValue::from_static(VERSION));
    response
}

fn options(max_size: u64) -> Response<Bytes> {
    let mut response = answer(StatusCode::NO_CONTENT);
    let headers = response.headers_mut();
    headers.insert(TUS_VERSION, HeaderValue::from_static(VERSION));
    headers.insert(TUS_EXTENSION, HeaderValue::from_static(EXTENSIONS));
    set(headers, TUS_MAX_SIZE, max_size);
    let algorithms: Vec<&str> = ChecksumAlgorithm::ALL.iter().map(|a| a.name()).collect();
    set(headers, TUS_CHECKSUM_ALGORITHM, algorithms.join(","));
    response
}

fn expires(headers: &mut HeaderMap, session: &Session) {
    set(
        headers,
        UPLOAD_EXPIRES,
        httpdate::fmt_http_date(session.expires()),
    );
}

/// How a flow's session ended up, answered the tus way: progress with
/// `progress` (plus `extra` headers), the completion handed to the inner
/// service with the tus headers added, or the completion replayed.
fn settled(
    request: &TusRequest,
    status: SessionStatus,
    progress: StatusCode,
    extra: HeaderMap,
) -> Result<Outcome, Error> {
    match status {
        SessionStatus::InProgress { ranges, .. } => {
            let mut response = answer(progress);
            let headers = response.headers_mut();
            headers.extend(extra);
            set(headers, UPLOAD_OFFSET, offset_of(&ranges));
            expires(headers, &request.session);
            Ok(Outcome::Respond(response))
        }
        SessionStatus::Completed(completion) => {
            let file = file_of(&request.session, &completion)?;
            let mut headers = extra;
            headers.insert(TUS_RESUMABLE, HeaderValue::from_static(VERSION));
            set(&mut headers, UPLOAD_OFFSET, file.filesize);
            if completion.fresh {
                tracing::info!(session = request.session.id(), path = %request.session.path(), size = file.filesize, file = %file.id, "upload committed");
                return Ok(Outcome::Committed {
                    file,
                    etag: completion.etag,
                    headers: Box::new(headers),
                });
            }
            let mut response = answer(progress);
            response.headers_mut().extend(headers);
            Ok(Outcome::Respond(response))
        }
    }
}

/// The session's status once settled: a whole upload whose bytes all
/// arrived is committed (see [`settle_status`]); a part is left as it is.
async fn settle(request: &TusRequest, status: SessionStatus) -> Result<SessionStatus, Error> {
    if request.part {
        return Ok(status);
    }
    settle_status(
        &request.config,
        &request.session,
        status,
        None,
        &request.checks,
    )
    .await
}

/// `HEAD`: the offset. A session whose bytes all arrived but which is not
/// committed yet (a crash fell between) is committed now: the completion.
async fn head(request: TusRequest) -> Result<Outcome, Error> {
    let config = &request.config;
    let status = config
        .storage
        .status(&request.session)
        .await
        .map_err(storage_error)?;
    let mut extra = HeaderMap::new();
    extra.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match &status {
        SessionStatus::InProgress { opened: false, .. } => return Err(Error::UploadNotFound),
        SessionStatus::InProgress {
            total, metadata, ..
        } => {
            match total {
                Some(total) => set(&mut extra, UPLOAD_LENGTH, total),
                None => {
                    extra.insert(UPLOAD_DEFER_LENGTH, HeaderValue::from_static("1"));
                }
            }
            if let Some(metadata) = metadata {
                set(&mut extra, UPLOAD_METADATA, metadata);
            }
        }
        SessionStatus::Completed(_) => {}
    }
    if request.part {
        extra.insert(UPLOAD_CONCAT, HeaderValue::from_static("partial"));
    }
    let status = settle(&request, status).await?;
    if let SessionStatus::Completed(completion) = &status {
        let size = file_of(&request.session, completion)?.filesize;
        set(&mut extra, UPLOAD_LENGTH, size);
        if let Some(concat) = concat_of(completion) {
            set(&mut extra, UPLOAD_CONCAT, concat);
        }
    }
    settled(&request, status, StatusCode::OK, extra)
}

/// `DELETE`: removes an unfinished upload; a completed file stays.
async fn terminate(request: TusRequest) -> Result<Outcome, Error> {
    let storage = &request.config.storage;
    match storage
        .status(&request.session)
        .await
        .map_err(storage_error)?
    {
        SessionStatus::Completed(_) => Err(Error::UploadComplete),
        SessionStatus::InProgress { opened: false, .. } => Err(Error::UploadNotFound),
        SessionStatus::InProgress { .. } => {
            storage
                .discard(&request.session)
                .await
                .map_err(storage_error)?;
            tracing::info!(session = request.session.id(), "upload terminated");
            Ok(Outcome::Respond(answer(StatusCode::NO_CONTENT)))
        }
    }
}

/// `POST`: opens the session with its length (or none yet), then appends
/// the body from offset 0 if it has one.
async fn create<B>(
    request: TusRequest,
    total: Option<u64>,
    metadata: Option<String>,
    length: Option<Option<u64>>,
    body: B,
) -> Result<Outcome, Error>
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    let config = Arc::clone(&request.config);
    let options = OpenOptions { total, metadata };
    let status = config
        .storage
        .open(&request.session, &options)
        .await
        .map_err(storage_error)?;
    let mut extra = HeaderMap::new();
    set(&mut extra, header::LOCATION, &request.location);
    let status = match (status, length) {
        (SessionStatus::InProgress { total: known, .. }, Some(length)) => {
            store(&request, body, 0, known, length, None).await?
        }
        (status, _) => status,
    };
    let status = settle(&request, status).await?;
    settled(&request, status, StatusCode::CREATED, extra)
}

/// `POST` with `Upload-Concat: final;…`: the parts' bytes, in order, become
/// the upload's (no larger than the URL allows), then the upload completes
/// as any other: the inner service sees it once, and `Location` is the
/// upload's own URL. A final upload already complete (a retry, or a racing
/// final that won) answers as completed, whatever became of its parts.
async fn finish(
    request: TusRequest,
    concat: String,
    metadata: Option<String>,
) -> Result<Outcome, Error> {
    let config = Arc::clone(&request.config);
    let storage = &config.storage;
    let session = &request.session;
    let mut extra = HeaderMap::new();
    set(&mut extra, header::LOCATION, &request.location);
    let status = storage.status(session).await.map_err(storage_error)?;
    if let SessionStatus::Completed(_) = status {
        return settled(&request, status, StatusCode::CREATED, extra);
    }
    let mut total = 0u64;
    for part in &request.parts {
        match storage.status(part).await.map_err(storage_error)? {
            SessionStatus::InProgress {
                total: Some(length),
                ..
            } => total = total.saturating_add(length),
            // Its length is not known yet: it cannot be complete.
            _ => return Err(Error::ConcatPartIncomplete),
        }
    }
    if total > request.max_size {
        return Err(Error::TooLarge);
    }
    let mut options = ConcatOptions::new(config.max_ranges);
    options.metadata = metadata;
    let status = match storage.concat(session, &request.parts, &options).await {
        // A racing final may have completed the upload meanwhile.
        Err(StorageError::PartIncomplete) => {
            match storage.status(session).await.map_err(storage_error)? {
                status @ SessionStatus::Completed(_) => status,
                SessionStatus::InProgress { .. } => return Err(Error::ConcatPartIncomplete),
            }
        }
        other => other.map_err(storage_error)?,
    };
    let mut checks = request.checks.clone();
    checks.concat = Some(concat);
    let status = settle_status(&config, session, status, None, &checks).await?;
    settled(&request, status, StatusCode::CREATED, extra)
}

/// `PATCH`: bytes at the upload's offset.
async fn append<B>(
    request: TusRequest,
    offset: u64,
    declared: Option<u64>,
    length: Option<u64>,
    checksum: Option<UploadChecksum>,
    body: B,
) -> Result<Outcome, Error>
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    let config = Arc::clone(&request.config);
    let status = config
        .storage
        .status(&request.session)
        .await
        .map_err(storage_error)?;
    let total = match &status {
        SessionStatus::Completed(completion) if concat_of(completion).is_some() => {
            return Err(Error::UploadFinal);
        }
        SessionStatus::Completed(_) => {
            // Nothing is stored; the answer is the final offset.
            return settled(&request, status, StatusCode::NO_CONTENT, HeaderMap::new());
        }
        SessionStatus::InProgress { opened: false, .. } => return Err(Error::UploadNotFound),
        SessionStatus::InProgress { ranges, total, .. } => {
            let current = offset_of(ranges);
            if offset != current {
                let mut response = envelope::error(&request.meta, Error::OffsetMismatch);
                let headers = response.headers_mut();
                headers.insert(TUS_RESUMABLE, HeaderValue::from_static(VERSION));
                set(headers, UPLOAD_OFFSET, current);
                return Ok(Outcome::Respond(response));
            }
            match (total, declared) {
                (Some(known), Some(sent)) if *known != sent => return Err(Error::TotalMismatch),
                (known, sent) => known.or(sent),
            }
        }
    };
    if let (Some(declared), SessionStatus::InProgress { total: None, .. }) = (declared, &status) {
        // A deferred length, declared now: kept before any byte of this append.
        config
            .storage
            .open(&request.session, &OpenOptions::new().total(declared))
            .await
            .map_err(storage_error)?;
    }
    let status = match length {
        Some(0) => config
            .storage
            .status(&request.session)
            .await
            .map_err(storage_error)?,
        _ => store(&request, body, offset, total, length, checksum).await?,
    };
    let status = settle(&request, status).await?;
    settled(&request, status, StatusCode::NO_CONTENT, HeaderMap::new())
}

/// Streams the body into the session from `offset`, piece by piece: each
/// piece is one stored range, so a body cut off midway keeps its whole
/// pieces. With a checksum the body is one piece, judged before it counts.
/// The IETF draft's creations and appends store their bytes the same way.
pub(crate) async fn store<B>(
    request: &TusRequest,
    body: B,
    offset: u64,
    total: Option<u64>,
    length: Option<u64>,
    checksum: Option<UploadChecksum>,
) -> Result<SessionStatus, Error>
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    let config = &request.config;
    let storage = &config.storage;
    let session = &request.session;
    let whole = checksum.is_some();
    let judged_now =
        offset == 0 && length.is_some_and(|len| len >= SNIFF_LEN as u64 || total == Some(len));
    let sniff = request.checks.types.clone().filter(|_| judged_now);
    let inspect = Inspect::new(sniff, Vec::new(), None).checksum(checksum);
    let limit = total.unwrap_or(request.max_size);
    let expect = match length {
        Some(len) => Expect::Exactly(len),
        None => Expect::AtMost(limit.saturating_sub(offset)),
    };
    let stream = UploadStream::new(body, expect, config.timers()).inspect(inspect);
    let pieces = Pieces::new(stream);
    let options = ChunkOptions::new(config.max_ranges);
    let mut at = offset;
    let mut status = None;
    loop {
        let (len, piece) = match length {
            Some(length) => {
                let remaining = offset + length - at;
                if remaining == 0 {
                    break;
                }
                let len = if whole {
                    remaining
                } else {
                    remaining.min(PIECE)
                };
                (len, pieces.exactly(len, len == remaining))
            }
            None => match pieces.buffered(BUFFERED_PIECE).await {
                None => break,
                Some(Err(error)) => return Err(error.0),
                Some(Ok(read)) => {
                    let len: u64 = read.iter().map(|bytes| bytes.len() as u64).sum();
                    (len, from_memory(read))
                }
            },
        };
        let range = ChunkRange {
            first: at,
            last: at + len - 1,
            total,
        };
        let written = storage
            .write_chunk(session, range, &options, piece)
            .await
            .map_err(storage_error);
        let written = match written {
            Err(Error::TypeNotAllowed) => {
                return Err(crate::upload::chunk::refuse_type(config, session).await)
            }
            other => other?,
        };
        tracing::debug!(
            session = session.id(),
            first = range.first,
            last = range.last,
            "piece stored"
        );
        at += len;
        let done = matches!(written, SessionStatus::Completed(_));
        status = Some(written);
        if done {
            break;
        }
    }
    match status {
        Some(status) => Ok(status),
        None => storage.status(session).await.map_err(storage_error),
    }
}

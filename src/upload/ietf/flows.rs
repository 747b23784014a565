//! The draft's flows: creation, offset, append and cancellation on the
//! session of the signed URL, through the same storage calls, pieces and
//! completion as tus.

use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Body;

use super::{
    completed_append, offset_mismatch, IetfAction, Interop, UPLOAD_LENGTH, UPLOAD_LIMIT,
    UPLOAD_OFFSET,
};
use crate::error::storage_error;
use crate::storage::{OpenOptions, SessionStatus};
use crate::upload::complete::settle_status;
use crate::upload::fields::{offset_of, set};
use crate::upload::record::file_of;
use crate::upload::tus::{store, TusRequest};
use crate::upload::Outcome;
use crate::Error;

/// Runs a draft request; `request` holds what every resumable flow needs
/// (it is never a tus part).
pub(crate) async fn run<B>(
    interop: Interop,
    action: IetfAction,
    request: TusRequest,
    body: B,
) -> Result<Outcome, Error>
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    let flow = Flow { interop, request };
    match action {
        IetfAction::Options => Ok(Outcome::Respond(flow.options())),
        IetfAction::Offset => flow.offset().await,
        IetfAction::Cancel => flow.cancel().await,
        IetfAction::Create {
            complete,
            total,
            body: length,
        } => flow.create(complete, total, length, body).await,
        IetfAction::Append {
            offset,
            complete,
            total,
            length,
        } => flow.append(offset, complete, total, length, body).await,
    }
}

/// A draft request being run: its interop version decides the answers.
struct Flow {
    interop: Interop,
    request: TusRequest,
}

impl Flow {
    fn answer(&self, status: StatusCode, headers: HeaderMap) -> Response<Bytes> {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    /// `Upload-Limit`: the URL's size limit, and the seconds left before it expires.
    fn limits(&self, headers: &mut HeaderMap) {
        if !self.interop.announces_limits() {
            return;
        }
        let config = &self.request.config;
        let left = self
            .request
            .session
            .expires()
            .duration_since(config.clock.now())
            .unwrap_or(Duration::ZERO)
            .as_secs();
        set(
            headers,
            UPLOAD_LIMIT,
            format!(
                "max-size={}, min-size=0, {}={left}",
                self.request.max_size,
                self.interop.age_key()
            ),
        );
    }

    fn completion(&self, headers: &mut HeaderMap, complete: bool) {
        let (name, value) = self.interop.completion_header(complete);
        headers.insert(name, value);
    }

    fn options(&self) -> Response<Bytes> {
        let mut headers = HeaderMap::new();
        self.limits(&mut headers);
        if self.interop.accepts_patch() {
            headers.insert(
                http::HeaderName::from_static("accept-patch"),
                HeaderValue::from_static(super::PARTIAL_UPLOAD),
            );
        }
        self.answer(StatusCode::NO_CONTENT, headers)
    }

    /// How a flow's session ended up: progress with `progress` (plus
    /// `extra`), the completion handed to the inner service with the draft's
    /// headers added, or the completion replayed with `progress`.
    async fn settled(
        &self,
        status: SessionStatus,
        progress: StatusCode,
        mut extra: HeaderMap,
    ) -> Result<Outcome, Error> {
        let request = &self.request;
        let status = settle_status(
            &request.config,
            &request.session,
            status,
            None,
            &request.checks,
        )
        .await?;
        match status {
            SessionStatus::InProgress { ranges, total, .. } => {
                set(&mut extra, UPLOAD_OFFSET, offset_of(&ranges));
                if let (Some(total), true) = (total, self.interop.announces_limits()) {
                    set(&mut extra, UPLOAD_LENGTH, total);
                }
                self.completion(&mut extra, false);
                Ok(Outcome::Respond(self.answer(progress, extra)))
            }
            SessionStatus::Completed(completion) => {
                let file = file_of(&request.session, &completion)?;
                set(&mut extra, UPLOAD_OFFSET, file.filesize);
                if self.interop.announces_limits() {
                    set(&mut extra, UPLOAD_LENGTH, file.filesize);
                }
                self.completion(&mut extra, true);
                if completion.fresh {
                    tracing::info!(session = request.session.id(), path = %request.session.path(), size = file.filesize, file = %file.id, "upload committed");
                    return Ok(Outcome::Committed {
                        file,
                        etag: completion.etag,
                        headers: Box::new(extra),
                    });
                }
                Ok(Outcome::Respond(self.answer(progress, extra)))
            }
        }
    }

    /// `HEAD`: the offset. A session whose bytes all arrived but which is not
    /// committed yet (a crash fell between) is committed now.
    async fn offset(self) -> Result<Outcome, Error> {
        let status = self
            .request
            .config
            .storage
            .status(&self.request.session)
            .await
            .map_err(storage_error)?;
        if let SessionStatus::InProgress { opened: false, .. } = status {
            return Err(Error::UploadNotFound);
        }
        let mut extra = HeaderMap::new();
        extra.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        self.limits(&mut extra);
        self.settled(status, StatusCode::NO_CONTENT, extra).await
    }

    /// `DELETE`: removes an unfinished upload; a completed file stays.
    async fn cancel(self) -> Result<Outcome, Error> {
        let storage = &self.request.config.storage;
        match storage
            .status(&self.request.session)
            .await
            .map_err(storage_error)?
        {
            SessionStatus::Completed(_) => Err(Error::UploadComplete),
            SessionStatus::InProgress { opened: false, .. } => Err(Error::UploadNotFound),
            SessionStatus::InProgress { .. } => {
                storage
                    .discard(&self.request.session)
                    .await
                    .map_err(storage_error)?;
                tracing::info!(session = self.request.session.id(), "upload cancelled");
                Ok(Outcome::Respond(
                    self.answer(StatusCode::NO_CONTENT, HeaderMap::new()),
                ))
            }
        }
    }

    /// Declares the length of an upload the request completes once its
    /// body's length is known only at its end: the bytes stored so far.
    async fn declare_end(&self, status: SessionStatus) -> Result<SessionStatus, Error> {
        match status {
            SessionStatus::InProgress {
                total: None,
                ranges,
                ..
            } => self
                .request
                .config
                .storage
                .open(
                    &self.request.session,
                    &OpenOptions::new().total(offset_of(&ranges)),
                )
                .await
                .map_err(storage_error),
            status => Ok(status),
        }
    }

    /// `POST` or `PUT` with `Upload-Complete`: opens the session with the
    /// length the request indicates, then stores the body from offset 0.
    async fn create<B>(
        self,
        complete: bool,
        total: Option<u64>,
        length: Option<Option<u64>>,
        body: B,
    ) -> Result<Outcome, Error>
    where
        B: Body + Send + 'static,
        B::Data: Buf + Send,
    {
        let storage = &self.request.config.storage;
        let total = match (complete, length) {
            // An empty body completes an empty file.
            (true, None) => Some(total.unwrap_or(0)),
            _ => total,
        };
        let options = OpenOptions {
            total,
            metadata: None,
        };
        let status = storage
            .open(&self.request.session, &options)
            .await
            .map_err(storage_error)?;
        let status = match (status, length) {
            (SessionStatus::InProgress { total: known, .. }, Some(length)) => {
                store(&self.request, body, 0, known, length, None).await?
            }
            (status, _) => status,
        };
        let status = if complete {
            self.declare_end(status).await?
        } else {
            status
        };
        let mut extra = HeaderMap::new();
        set(&mut extra, header::LOCATION, &self.request.location);
        self.limits(&mut extra);
        self.settled(status, StatusCode::CREATED, extra).await
    }

    /// `PATCH`: bytes at the upload's offset.
    async fn append<B>(
        self,
        offset: u64,
        complete: bool,
        declared: Option<u64>,
        length: Option<u64>,
        body: B,
    ) -> Result<Outcome, Error>
    where
        B: Body + Send + 'static,
        B::Data: Buf + Send,
    {
        let storage = &self.request.config.storage;
        let session = &self.request.session;
        let status = storage.status(session).await.map_err(storage_error)?;
        let total = match &status {
            SessionStatus::Completed(_) => {
                return Ok(Outcome::Respond(completed_append(
                    &self.request.meta,
                    self.interop,
                    length == Some(0),
                )));
            }
            SessionStatus::InProgress { opened: false, .. } => return Err(Error::UploadNotFound),
            SessionStatus::InProgress { ranges, total, .. } => {
                let current = offset_of(ranges);
                if offset != current {
                    return Ok(Outcome::Respond(offset_mismatch(
                        &self.request.meta,
                        self.interop,
                        current,
                        offset,
                    )));
                }
                match (*total, declared) {
                    (Some(known), Some(sent)) if known != sent => return Err(Error::TotalMismatch),
                    // A known length the request's bytes pass, or one it
                    // says it completes short of.
                    (Some(known), None) if length.is_some_and(|length| offset + length > known) => {
                        return Err(Error::TotalMismatch)
                    }
                    (known, sent) => known.or(sent),
                }
            }
        };
        if let (Some(declared), SessionStatus::InProgress { total: None, .. }) = (total, &status) {
            // A length indicated now: kept before any byte of this append.
            storage
                .open(session, &OpenOptions::new().total(declared))
                .await
                .map_err(storage_error)?;
        }
        let status = match length {
            Some(0) => storage.status(session).await.map_err(storage_error)?,
            _ => store(&self.request, body, offset, total, length, None).await?,
        };
        let status = if complete {
            self.declare_end(status).await?
        } else {
            status
        };
        let progress = self.interop.append_progress();
        self.settled(status, progress, HeaderMap::new()).await
    }
}

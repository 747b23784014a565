//! [`SignedUpload`], the service the layer makes.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;
use tracing::Instrument as _;

use super::action::{checks, classify, declared_length, signed_method, Action, Checks};
use super::body::{RequestBody, ResponseBody};
use super::drain::{self, Drained};
use super::future::{close_if_unread, ResponseFuture};
use super::layer::Config;
use super::record::session_id;
use super::via::UploadProtocol;
use super::{chunk, simple, status, tus};
use crate::envelope::{self, Meta, RequestId};
use crate::file::public_url;
use crate::signing::SignedMethod;
use crate::storage::Session;
use crate::Error;

/// Verifies signed URLs and takes uploads in front of the service `S`; made by
/// [`SignedUploadLayer`](crate::SignedUploadLayer).
///
/// `S` receives `Request<RequestBody<B>>`: a `GET`/`HEAD` with the client's body
/// and the verified [`UploadPath`](crate::UploadPath) in its extensions, or the
/// `PUT` that committed a file with an empty body and the
/// [`UploadedFile`](crate::UploadedFile) in its extensions.
#[derive(Clone)]
pub struct SignedUpload<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> SignedUpload<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        SignedUpload { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for SignedUpload<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedUpload")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, B, ResBody> Service<Request<B>> for SignedUpload<S>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Buf + Send,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Keep the service that `poll_ready` approved for this request.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let config = Arc::clone(&self.config);
        let meta = Meta {
            request_id: RequestId::next(),
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            link: None,
        };
        match plan(&config, &request) {
            Err((error, meta_link)) => {
                tracing::debug!(method = %meta.method, code = error.code(), "request refused");
                let meta = Meta {
                    link: meta_link,
                    ..meta
                };
                let mut response = envelope::error(&meta, error);
                if tus::is_tus(request.headers()) {
                    tus::decorate_error(&mut response);
                }
                if !request.body().is_end_stream() {
                    close_if_unread(&mut response, request.version());
                    if drain::wanted(request.version(), request.headers()) {
                        drain::spawn(request.into_body());
                    }
                }
                ResponseFuture::respond(response, ready)
            }
            Ok(Plan {
                action,
                checks,
                session,
                link,
                location,
                max_size,
            }) => {
                let meta = Meta {
                    link: Some(link),
                    ..meta
                };
                let has_body = !request.body().is_end_stream();
                let drains = has_body && drain::wanted(request.version(), request.headers());
                let (mut parts, body) = request.into_parts();
                parts.extensions.insert(meta.request_id.clone());
                parts.extensions.insert(session.path().clone());
                let span = tracing::info_span!(
                    "upload",
                    request_id = meta.request_id.as_str(),
                    session = session.id(),
                    path = %session.path(),
                );
                match action {
                    Action::Download => ResponseFuture::call(
                        Request::from_parts(parts, RequestBody::new(body)),
                        ready,
                    ),
                    Action::Simple { max } => {
                        let body = Drained::new(body, drains);
                        let path = session.path().clone();
                        let step = simple::simple(Arc::clone(&config), path, body, max, checks)
                            .instrument(span);
                        ResponseFuture::store(
                            step,
                            parts,
                            meta,
                            has_body,
                            UploadProtocol::Simple,
                            ready,
                        )
                    }
                    Action::Chunk(range) => {
                        let body = Drained::new(body, drains);
                        let step = chunk::chunk(
                            Arc::clone(&config),
                            session,
                            range,
                            body,
                            meta.clone(),
                            checks,
                        )
                        .instrument(span);
                        ResponseFuture::store(
                            step,
                            parts,
                            meta,
                            has_body,
                            UploadProtocol::Chunks,
                            ready,
                        )
                    }
                    Action::Tus(action) => {
                        // The method it stands for (`X-HTTP-Method-Override`).
                        parts.method = action.method();
                        let body = Drained::new(body, drains);
                        let request = tus::TusRequest {
                            config: Arc::clone(&config),
                            session,
                            meta: meta.clone(),
                            checks,
                            location,
                            max_size,
                        };
                        let step = tus::run(action, request, body).instrument(span);
                        ResponseFuture::store(
                            step,
                            parts,
                            meta,
                            has_body,
                            UploadProtocol::Tus,
                            ready,
                        )
                    }
                    Action::Status { total } => {
                        let body = Drained::new(body, drains);
                        let step = status::status(
                            Arc::clone(&config),
                            session,
                            total,
                            body,
                            meta.clone(),
                            checks,
                        )
                        .instrument(span);
                        ResponseFuture::store(
                            step,
                            parts,
                            meta,
                            has_body,
                            UploadProtocol::Chunks,
                            ready,
                        )
                    }
                }
            }
        }
    }
}

/// A verified, classified request.
struct Plan {
    action: Action,
    checks: Checks,
    session: Session,
    link: String,
    location: String,
    max_size: u64,
}

/// Verifies and classifies a request, without touching its body. On refusal,
/// returns the error and, if the path was valid, the file's public URL.
fn plan<B: Body>(config: &Config, request: &Request<B>) -> Result<Plan, (Error, Option<String>)> {
    let is_tus = tus::is_tus(request.headers());
    // Every tus request works on the upload: it needs a `put` signature.
    let wanted = if is_tus {
        SignedMethod::Put
    } else {
        signed_method(request.method()).map_err(|error| (error, None))?
    };
    let verified = config
        .verifier
        .verify(
            request.uri().path(),
            request.uri().query(),
            wanted,
            config.clock.now(),
        )
        .map_err(|error| (error, None))?;
    let link = public_url(&config.public_base, &verified.path);
    let refuse = |error| (error, Some(link.clone()));
    // The signed limit narrows the server's, never widens it.
    let max_size = verified
        .policy
        .max_size
        .map_or(config.max_size, |signed| signed.min(config.max_size));
    let body_len = request.body().size_hint().exact();
    let action = if is_tus {
        let declared = declared_length(request.headers()).map_err(refuse)?;
        let has_body = !request.body().is_end_stream();
        Action::Tus(
            tus::classify(
                request.method(),
                request.headers(),
                declared.or(body_len),
                has_body,
                max_size,
            )
            .map_err(refuse)?,
        )
    } else {
        classify(request.method(), request.headers(), body_len, max_size).map_err(refuse)?
    };
    let checks = match action {
        Action::Download => Checks::default(),
        _ => checks(request.headers(), verified.policy.types).map_err(refuse)?,
    };
    let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(verified.expiry);
    let session = Session::new(session_id(verified.signed), verified.path, expires);
    // The upload URL of tus's `Location`: the signed URL itself, absolute.
    let location = match request.uri().query() {
        Some(query) => format!("{}{}?{query}", config.public_base, request.uri().path()),
        None => format!("{}{}", config.public_base, request.uri().path()),
    };
    Ok(Plan {
        action,
        checks,
        session,
        link,
        location,
        max_size,
    })
}

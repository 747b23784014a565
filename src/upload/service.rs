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
use super::future::{close_unread, ResponseFuture};
use super::layer::Config;
use super::record::{part_session_id, session_id};
use super::tus::TusAction;
use super::via::UploadProtocol;
use super::{chunk, ietf, simple, status, tus};
use crate::envelope::{self, Meta, RequestId};
use crate::file::public_url;
use crate::random::random_hex;
use crate::signing::{SignedMethod, PART_NONCE_LEN};
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
                } else if ietf::is_ietf(request.headers()) {
                    if let Ok(interop) = ietf::Interop::of(request.headers()) {
                        response = ietf::error_response(&meta, error, interop);
                    }
                }
                if !request.body().is_end_stream() {
                    close_unread(&mut response, request.version());
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
                part,
                parts: concat_parts,
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
                        let end = body.end();
                        let path = session.path().clone();
                        let step = simple::simple(Arc::clone(&config), path, body, max, checks)
                            .instrument(span);
                        ResponseFuture::store(step, parts, meta, end, UploadProtocol::Simple, ready)
                    }
                    Action::Chunk(range) => {
                        let body = Drained::new(body, drains);
                        let end = body.end();
                        let step = chunk::chunk(
                            Arc::clone(&config),
                            session,
                            range,
                            body,
                            meta.clone(),
                            checks,
                        )
                        .instrument(span);
                        ResponseFuture::store(step, parts, meta, end, UploadProtocol::Chunks, ready)
                    }
                    Action::Tus(action) => {
                        // The method it stands for (`X-HTTP-Method-Override`).
                        parts.method = action.method();
                        let body = Drained::new(body, drains);
                        let end = body.end();
                        let request = tus::TusRequest {
                            config: Arc::clone(&config),
                            session,
                            meta: meta.clone(),
                            checks,
                            location,
                            max_size,
                            part,
                            parts: concat_parts,
                        };
                        let step = tus::run(action, request, body).instrument(span);
                        ResponseFuture::store(step, parts, meta, end, UploadProtocol::Tus, ready)
                    }
                    Action::Ietf(interop, action) => {
                        let body = Drained::new(body, drains);
                        let end = body.end();
                        let request = tus::TusRequest {
                            config: Arc::clone(&config),
                            session,
                            meta: meta.clone(),
                            checks,
                            location,
                            max_size,
                            part: false,
                            parts: Vec::new(),
                        };
                        let step = ietf::run(interop, action, request, body).instrument(span);
                        ResponseFuture::store(
                            step,
                            parts,
                            meta,
                            end,
                            UploadProtocol::IetfDraft {
                                interop_version: interop.number(),
                            },
                            ready,
                        )
                    }
                    Action::Status { total } => {
                        let body = Drained::new(body, drains);
                        let end = body.end();
                        let step = status::status(
                            Arc::clone(&config),
                            session,
                            total,
                            body,
                            meta.clone(),
                            checks,
                        )
                        .instrument(span);
                        ResponseFuture::store(step, parts, meta, end, UploadProtocol::Chunks, ready)
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
    /// The session is a tus part of the upload (see [`tus::TusRequest`]).
    part: bool,
    /// A tus final upload's parts.
    parts: Vec<Session>,
}

/// Verifies and classifies a request, without touching its body. On refusal,
/// returns the error and, if the path was valid, the file's public URL.
fn plan<B: Body>(config: &Config, request: &Request<B>) -> Result<Plan, (Error, Option<String>)> {
    let is_tus = tus::is_tus(request.headers());
    let is_ietf = !is_tus && ietf::is_ietf(request.headers());
    // Every tus or draft request works on the upload: it needs a `put` signature.
    let wanted = if is_tus || is_ietf {
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
    // A part URL serves its part's tus requests, nothing else.
    if verified.part.is_some() && !is_tus {
        return Err(refuse(Error::PartUrlRestricted));
    }
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
    } else if is_ietf {
        let declared = declared_length(request.headers()).map_err(refuse)?;
        let has_body = !request.body().is_end_stream();
        let (interop, action) = ietf::classify(
            request.method(),
            request.headers(),
            declared.or(body_len),
            has_body,
            max_size,
        )
        .map_err(refuse)?;
        Action::Ietf(interop, action)
    } else {
        classify(request.method(), request.headers(), body_len, max_size).map_err(refuse)?
    };
    let checks = match action {
        Action::Download => Checks::default(),
        _ => checks(request.headers(), verified.policy.types.clone()).map_err(refuse)?,
    };
    let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(verified.expiry);
    // The upload URL of tus's `Location`: the signed URL itself, absolute.
    let mut location = match request.uri().query() {
        Some(query) => format!("{}{}?{query}", config.public_base, request.uri().path()),
        None => format!("{}{}", config.public_base, request.uri().path()),
    };
    let mut checks = checks;
    let mut parts = Vec::new();
    let (id, part) = match (verified.part, &action) {
        (
            Some(part),
            Action::Tus(
                TusAction::Head
                | TusAction::Append { .. }
                | TusAction::Terminate
                | TusAction::Options,
            ),
        ) => {
            let parent = session_id([verified.signed[0], part.parent_query]);
            // A part's first bytes are not the file's: its type is judged
            // when the parts make the file.
            checks.types = None;
            (part_session_id(&parent, part.nonce), true)
        }
        (Some(_), _) => return Err(refuse(Error::PartUrlRestricted)),
        (None, Action::Tus(TusAction::Create { partial: true, .. })) => {
            let nonce = random_hex::<{ PART_NONCE_LEN / 2 }>();
            location = config
                .verifier
                .part_url(&config.public_base, &verified, &nonce);
            checks.types = None;
            (part_session_id(&session_id(verified.signed), &nonce), true)
        }
        (None, Action::Tus(TusAction::Final { parts: urls, .. })) => {
            let id = session_id(verified.signed);
            parts = resolve_parts(config, urls, &id).map_err(refuse)?;
            (id, false)
        }
        (None, _) => (session_id(verified.signed), false),
    };
    let session = Session::new(id, verified.path, expires);
    Ok(Plan {
        action,
        checks,
        session,
        link,
        location,
        max_size,
        part,
        parts,
    })
}

/// The sessions of a final upload's parts, from their URLs: each absolute
/// under the public base (whatever `Host` the request came with) or
/// relative, signed, unexpired, and a part of the upload `parent` (else
/// `400 concat_part_invalid`; a URL whose signature does not hold keeps its
/// `403`).
fn resolve_parts(config: &Config, urls: &[String], parent: &str) -> Result<Vec<Session>, Error> {
    let now = config.clock.now();
    urls.iter()
        .map(|url| {
            let target = match url.strip_prefix(config.public_base.as_str()) {
                Some(rest) if rest.starts_with('/') => rest,
                _ if url.starts_with('/') && !url.starts_with("//") => url.as_str(),
                _ => return Err(Error::ConcatPartInvalid),
            };
            let (path, query) = target.split_once('?').ok_or(Error::ConcatPartInvalid)?;
            let verified = config
                .verifier
                .verify(path, Some(query), SignedMethod::Put, now)
                .map_err(|error| match error.status() {
                    http::StatusCode::FORBIDDEN => error,
                    _ => Error::ConcatPartInvalid,
                })?;
            let part = verified.part.ok_or(Error::ConcatPartInvalid)?;
            if session_id([verified.signed[0], part.parent_query]) != parent {
                return Err(Error::ConcatPartInvalid);
            }
            let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(verified.expiry);
            Ok(Session::new(
                part_session_id(parent, part.nonce),
                verified.path,
                expires,
            ))
        })
        .collect()
}

//! [`ResponseFuture`]: sequences storage, then the inner service.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::{RequestBody, ResponseBody};
use super::drain::BodyEnd;
use super::record::completion_headers;
use super::via::{UploadProtocol, UploadVia};
use super::Outcome;
use super::{ietf, tus};
use crate::envelope::{self, Meta};
use crate::Error;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pin_project! {
    /// The response future of [`SignedUpload`](crate::SignedUpload).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<RequestBody<B>>>,
    {
        #[pin]
        state: State<S::Future>,
        service: Option<S>,
        pending: Option<Pending>,
    }
}

/// What the storage step still needs to call the inner service.
struct Pending {
    parts: Parts,
    meta: Meta,
    /// Whether the request's body was read to its end.
    body: BodyEnd,
    /// The wire protocol, which shapes the answer.
    protocol: UploadProtocol,
}

/// Marks an answer given before the request body was read to its end as the
/// last on its HTTP/1 connection (`Connection: close`): the server closes the
/// connection after it, and a client must not send its next request there
/// (the unread rest of the body would be taken for it). An answer to a body
/// read to its end, whatever its status, leaves the connection open.
/// What the client still sends is drained before the close (`drain`), so it
/// reads this answer rather than a reset.
pub(crate) fn close_unread<B>(response: &mut Response<B>, version: http::Version) {
    if version <= http::Version::HTTP_11 {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        /// Waiting for storage to take the body.
        Storing { step: BoxFuture<Result<Outcome, Error>> },
        /// Waiting for the inner service's response to a committed upload or a
        /// download; `close` holds the version when the body was not read to its end.
        Inner {
            #[pin] future: F,
            headers: Option<(String, String)>,
            extra: HeaderMap,
            close: Option<http::Version>,
        },
        /// Answering with an envelope of our own.
        Done { response: Option<Response<Bytes>> },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>>,
{
    pub(crate) fn respond(response: Response<Bytes>, service: S) -> Self {
        ResponseFuture {
            state: State::Done {
                response: Some(response),
            },
            service: Some(service),
            pending: None,
        }
    }

    pub(crate) fn call(request: Request<RequestBody<B>>, mut service: S) -> Self {
        let future = service.call(request);
        ResponseFuture {
            state: State::Inner {
                future,
                headers: None,
                extra: HeaderMap::new(),
                close: None,
            },
            service: None,
            pending: None,
        }
    }

    /// Waits for `step`; `body` tells whether the request's body was read to
    /// its end (an answer given before its end closes the connection).
    pub(crate) fn store(
        step: impl Future<Output = Result<Outcome, Error>> + Send + 'static,
        parts: Parts,
        meta: Meta,
        body: BodyEnd,
        protocol: UploadProtocol,
        service: S,
    ) -> Self {
        ResponseFuture {
            state: State::Storing {
                step: Box::pin(step),
            },
            service: Some(service),
            pending: Some(Pending {
                parts,
                meta,
                body,
                protocol,
            }),
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>, Response = Response<ResBody>>,
    ResBody: http_body::Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Storing { step } => {
                    let outcome = ready!(step.as_mut().poll(cx));
                    let pending = this
                        .pending
                        .take()
                        .expect("a storing future holds its request parts");
                    // The step is over: its body was read to its end, or never will be.
                    let unread = !pending.body.reached();
                    match outcome {
                        Err(error) => {
                            tracing::info!(
                                request_id = pending.meta.request_id.as_str(),
                                code = error.code(),
                                status = error.status().as_u16(),
                                "upload refused"
                            );
                            let mut response = match pending.protocol {
                                UploadProtocol::IetfDraft { interop_version } => {
                                    ietf::error_response(
                                        &pending.meta,
                                        error,
                                        ietf::Interop::known(interop_version),
                                    )
                                }
                                UploadProtocol::Tus => {
                                    let mut response = envelope::error(&pending.meta, error);
                                    tus::decorate_error(&mut response);
                                    response
                                }
                                _ => envelope::error(&pending.meta, error),
                            };
                            if unread {
                                close_unread(&mut response, pending.parts.version);
                            }
                            this.state.set(State::Done {
                                response: Some(response),
                            });
                        }
                        Ok(Outcome::Respond(mut response)) => {
                            if unread {
                                close_unread(&mut response, pending.parts.version);
                            }
                            this.state.set(State::Done {
                                response: Some(response),
                            });
                        }
                        Ok(Outcome::Committed {
                            file,
                            etag,
                            headers: extra,
                        }) => {
                            let mut parts = pending.parts;
                            let close = unread.then_some(parts.version);
                            let headers = Some((etag, file.url.clone()));
                            parts.extensions.insert(file);
                            // Every completion reaches the inner service as a
                            // `PUT` of the path; how it came is beside it.
                            parts.extensions.insert(UploadVia {
                                protocol: pending.protocol,
                                method: parts.method.clone(),
                            });
                            parts.method = http::Method::PUT;
                            let request = Request::from_parts(parts, RequestBody::empty());
                            let mut service = this
                                .service
                                .take()
                                .expect("a storing future holds the ready service");
                            let future = service.call(request);
                            this.state.set(State::Inner {
                                future,
                                headers,
                                extra: *extra,
                                close,
                            });
                        }
                    }
                }
                StateProj::Inner {
                    future,
                    headers,
                    extra,
                    close,
                } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some((etag, url)) = headers.take() {
                        completion_headers(response.headers_mut(), &etag, &url);
                    }
                    for (name, value) in std::mem::take(extra) {
                        if let Some(name) = name {
                            response.headers_mut().insert(name, value);
                        }
                    }
                    if let Some(version) = *close {
                        close_unread(&mut response, version);
                    }
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Done { response } => {
                    let response = response
                        .take()
                        .expect("a response future is not polled after it finished");
                    return Poll::Ready(Ok(response.map(ResponseBody::envelope)));
                }
            }
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<RequestBody<B>>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

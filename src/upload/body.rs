//! Bodies: [`ResponseBody`] (the inner service's, or an envelope written by the
//! layer), [`RequestBody`] (what the inner service receives) and
//! [`EnvelopeBody`] (an envelope written whole).

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The body of a response that went through the layer: the inner service's
    /// body, or a JSON envelope the layer wrote itself.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Envelope { body: EnvelopeBody },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn envelope(data: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Envelope {
                body: EnvelopeBody::new(data),
            },
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("ResponseBody::Inner"),
            Kind::Envelope { body } => f.debug_tuple("ResponseBody::Envelope").field(body).finish(),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Envelope { body } => {
                Poll::Ready(body.data.take().map(|data| Ok(Frame::data(data))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Envelope { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Envelope { body } => body.size_hint(),
        }
    }
}

pin_project! {
    /// The body of a request the layer passes to the inner service: the
    /// client's body for downloads, empty for a completed upload (whose bytes
    /// are in storage already).
    pub struct RequestBody<B> {
        #[pin]
        body: Option<B>,
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn new(body: B) -> Self {
        RequestBody { body: Some(body) }
    }

    /// A body with no bytes.
    pub fn empty() -> Self {
        RequestBody { body: None }
    }
}

impl<B> fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.body.is_some() {
            "RequestBody"
        } else {
            "RequestBody::Empty"
        })
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        match self.project().body.as_pin_mut() {
            Some(body) => body.poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or(SizeHint::with_exact(0), Body::size_hint)
    }
}

/// A JSON envelope written whole: the body of the default inner service's
/// responses.
#[derive(Debug, Clone, Default)]
pub struct EnvelopeBody {
    data: Option<Bytes>,
}

impl EnvelopeBody {
    pub(crate) fn new(data: Bytes) -> Self {
        EnvelopeBody { data: Some(data) }
    }
}

impl Body for EnvelopeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().data.take().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

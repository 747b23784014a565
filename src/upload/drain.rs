//! Early refusals stay readable: the rest of a request body that the layer
//! answered before reading is read and discarded in the background, within
//! bounds, so the connection closes in order instead of being reset.
//!
//! A server that closes an HTTP/1 connection with unread bytes in its receive
//! buffer makes the kernel send a reset, and a client still sending its body
//! (a browser, `curl`, Node) then often sees that reset (`ECONNRESET`,
//! `EPIPE`) instead of the 413 or 403 that was already on its way. So when the
//! layer lets go of a request body before its end, a task on the runtime keeps
//! reading it, one frame at a time, for at most [`DRAIN_TIME`] and
//! [`DRAIN_BYTES`], while the answer goes out; then it drops the body and the
//! connection closes (the answer carries `Connection: close`).
//!
//! Not drained: HTTP/2 (a stream is reset on its own, the connection stays),
//! and a request that asked `Expect: 100-continue` (draining would invite the
//! client to send the body it has not sent yet).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;

/// How long the rest of a refused request body is read and discarded, from
/// the moment the layer lets go of it: 5 s.
pub(crate) const DRAIN_TIME: Duration = Duration::from_secs(5);

/// How many bytes of a refused request body are read and discarded at most:
/// 64 MiB. A client sending more than this after its answer is reset.
pub(crate) const DRAIN_BYTES: u64 = 64 * 1024 * 1024;

/// Whether a request whose body was not read to its end should have the
/// rest drained: HTTP/1 only, and not after `Expect: 100-continue`.
pub(crate) fn wanted(version: http::Version, headers: &HeaderMap) -> bool {
    let continues = headers
        .get(http::header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    version <= http::Version::HTTP_11 && !continues
}

/// Drains `body` on the current tokio runtime, within [`DRAIN_TIME`] and
/// [`DRAIN_BYTES`], unless it is already at its end. Without a runtime the
/// body is dropped as before.
pub(crate) fn spawn<B>(body: B)
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    if body.is_end_stream() {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(discard(body));
    }
}

/// Reads `body` frame by frame and drops each, until it ends, fails, or a
/// bound is reached.
async fn discard<B>(body: B)
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    let mut body = std::pin::pin!(body);
    let mut read: u64 = 0;
    let reading = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                read = read.saturating_add(data.remaining() as u64);
                if read >= DRAIN_BYTES {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, reading).await;
}

/// Whether a request body was read to its end: set by [`Drained`] when its
/// body reports its end (or holds nothing from the start), read by the answer (an answer to a body read to its
/// end keeps the connection; any other closes it).
#[derive(Debug, Clone, Default)]
pub(crate) struct BodyEnd(Arc<AtomicBool>);

impl BodyEnd {
    /// Whether the body was read to its end.
    pub(crate) fn reached(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn mark(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A request body handed to a storage step: when the step lets go of it before
/// its end (a refusal mid-body, or before reading it), the rest is drained
/// (see the module docs). Whether it was read to its end is kept in its
/// [`BodyEnd`].
///
/// The bounds sit on the type because its `Drop` spawns the drain.
#[derive(Debug)]
pub(crate) struct Drained<B>
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    /// `None` once dropped; boxed so that it can be moved out of a pinned self.
    body: Option<Pin<Box<B>>>,
    /// Whether to drain what is left when dropped.
    drain: bool,
    /// Set once the body reported its end.
    end: BodyEnd,
}

impl<B> Drained<B>
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    /// Wraps `body`; `drain` says whether what is left is drained when dropped.
    pub(crate) fn new(body: B, drain: bool) -> Self {
        let end = BodyEnd::default();
        if body.is_end_stream() {
            // Nothing to read: at its end already.
            end.mark();
        }
        Drained {
            body: Some(Box::pin(body)),
            drain,
            end,
        }
    }

    /// Tells, later, whether this body was read to its end.
    pub(crate) fn end(&self) -> BodyEnd {
        self.end.clone()
    }
}

impl<B> Body for Drained<B>
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = body.as_mut().poll_frame(cx);
        match &frame {
            Poll::Ready(None) => {
                // Read to its end: nothing left to drain, the connection can serve on.
                this.drain = false;
                this.end.mark();
            }
            // Broke: nothing a drain could read, but the connection is no
            // longer to be trusted with another request.
            Poll::Ready(Some(Err(_))) => this.drain = false,
            // The last bytes of a body of known length: it says so at once.
            Poll::Ready(Some(Ok(_))) if body.is_end_stream() => this.end.mark(),
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|body| body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |body| body.size_hint())
    }
}

impl<B> Drop for Drained<B>
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
{
    fn drop(&mut self) {
        if !self.drain {
            return;
        }
        if let Some(body) = self.body.take() {
            spawn(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Version};
    use http_body_util::Full;

    #[test]
    fn drains_http1_but_not_http2_nor_after_expect_continue() {
        let plain = HeaderMap::new();
        assert!(wanted(Version::HTTP_11, &plain));
        assert!(wanted(Version::HTTP_10, &plain));
        assert!(!wanted(Version::HTTP_2, &plain));
        let mut expect = HeaderMap::new();
        expect.insert(
            http::header::EXPECT,
            HeaderValue::from_static("100-Continue"),
        );
        assert!(!wanted(Version::HTTP_11, &expect));
    }

    #[tokio::test]
    async fn drained_body_reads_through_unchanged() {
        let body = Drained::new(Full::new(bytes::Bytes::from_static(b"abc")), true);
        let end = body.end();
        assert!(!end.reached());
        let read = body.collect().await.unwrap().to_bytes();
        assert_eq!(&read[..], b"abc");
        assert!(end.reached());
    }

    #[test]
    fn an_empty_body_is_at_its_end_before_any_read() {
        let body = Drained::new(Full::new(bytes::Bytes::new()), true);
        assert!(body.end().reached());
    }

    #[tokio::test]
    async fn a_body_let_go_before_its_end_is_not_read_to_its_end() {
        let frames = [b"ab", b"cd"].map(|data| {
            Ok::<_, std::convert::Infallible>(Frame::data(bytes::Bytes::from_static(data)))
        });
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let mut body = Drained::new(body, false);
        let end = body.end();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), &b"ab"[..]);
        drop(body);
        assert!(!end.reached());
    }
}

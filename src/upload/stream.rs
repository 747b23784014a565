//! The request body of an upload as a stream of `Bytes` for storage: the
//! expected length, the size limit and the idle timeout, checked as it arrives.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::Stream;
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{sleep, Instant, Sleep};

use super::inspect::Inspect;
use crate::storage::BodyError;
use crate::Error;

/// What the upload stream checks as the body arrives.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    /// Exactly this many bytes (a chunk's range).
    Exactly(u64),
    /// At most this many bytes (a simple upload under the size limit).
    AtMost(u64),
}

pin_project! {
    /// A request body as a stream of `Bytes` for storage: it enforces the
    /// expected length, the size limit and the idle timeout, and turns every
    /// failure into the [`Error`] the client will be answered with.
    pub(crate) struct UploadStream<B> {
        #[pin]
        body: B,
        #[pin]
        idle: Sleep,
        timeout: Duration,
        expect: Expect,
        inspect: Option<Box<Inspect>>,
        received: u64,
        done: bool,
    }
}

impl<B> UploadStream<B> {
    pub(crate) fn new(body: B, expect: Expect, timeout: Duration) -> Self {
        UploadStream {
            body,
            idle: sleep(timeout),
            timeout,
            expect,
            inspect: None,
            received: 0,
            done: false,
        }
    }

    /// Also checks the bytes with `inspect` (type, digests).
    pub(crate) fn inspect(mut self, inspect: Inspect) -> Self {
        self.inspect = (!inspect.is_empty()).then(|| Box::new(inspect));
        self
    }
}

impl<B> Stream for UploadStream<B>
where
    B: Body,
    B::Data: Buf,
{
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        loop {
            let frame = match this.body.as_mut().poll_frame(cx) {
                Poll::Pending => {
                    ready!(this.idle.as_mut().poll(cx));
                    *this.done = true;
                    return Poll::Ready(Some(Err(BodyError(Error::BodyTimeout))));
                }
                Poll::Ready(frame) => frame,
            };
            let failure = match frame {
                None => {
                    *this.done = true;
                    match *this.expect {
                        Expect::Exactly(len) if *this.received != len => {
                            Error::ContentRangeMismatch
                        }
                        _ => match this.inspect.as_mut().map_or(Ok(()), |i| i.end()) {
                            Ok(()) => return Poll::Ready(None),
                            Err(error) => error,
                        },
                    }
                }
                Some(Err(_)) => Error::BodyIncomplete,
                Some(Ok(frame)) => {
                    let Ok(mut data) = frame.into_data() else {
                        continue; // trailers carry no bytes
                    };
                    let len = data.remaining();
                    if len == 0 {
                        continue;
                    }
                    *this.received += len as u64;
                    match *this.expect {
                        Expect::Exactly(limit) if *this.received > limit => {
                            Error::ContentRangeMismatch
                        }
                        Expect::AtMost(limit) if *this.received > limit => Error::TooLarge,
                        _ => {
                            let deadline = Instant::now() + *this.timeout;
                            this.idle.as_mut().reset(deadline);
                            let bytes = data.copy_to_bytes(len);
                            match this.inspect.as_mut().map_or(Ok(()), |i| i.data(&bytes)) {
                                Ok(()) => return Poll::Ready(Some(Ok(bytes))),
                                Err(error) => error,
                            }
                        }
                    }
                }
            };
            *this.done = true;
            return Poll::Ready(Some(Err(BodyError(failure))));
        }
    }
}

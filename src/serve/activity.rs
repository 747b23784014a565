//! What a connection is doing, seen from its requests and response bodies: the
//! facts its timers judge.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;

/// A connection's requests in flight (until their response bodies are sent or
/// dropped), since when it has had none, and when a response body in progress
/// was last asked for more.
pub(super) struct Activity {
    begun: AtomicBool,
    busy: AtomicUsize,
    idle_since: Mutex<Instant>,
    sending: AtomicUsize,
    last_pull: Mutex<Instant>,
}

fn now_into(at: &Mutex<Instant>) {
    *at.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
}

fn read(at: &Mutex<Instant>) -> Instant {
    *at.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Activity {
            begun: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            idle_since: Mutex::new(now),
            sending: AtomicUsize::new(0),
            last_pull: Mutex::new(now),
        })
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.begun.store(true, Ordering::SeqCst);
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }

    /// Whether a request head has ever been read whole on this connection.
    pub(super) fn begun(&self) -> bool {
        self.begun.load(Ordering::SeqCst)
    }

    /// When the connection counts as idle for `timeout`, if no request is in
    /// flight now.
    pub(super) fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        (self.busy.load(Ordering::SeqCst) == 0).then(|| read(&self.idle_since) + timeout)
    }

    /// When the connection counts as stalled by a client that does not read
    /// its answers, if a response body is in progress now.
    pub(super) fn write_deadline(&self, timeout: Duration) -> Option<Instant> {
        (self.sending.load(Ordering::SeqCst) > 0).then(|| read(&self.last_pull) + timeout)
    }
}

/// One request in flight on a connection; its end is dropping it.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        now_into(&self.0.idle_since);
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One response body in progress; its end is dropping it.
struct Sending(Arc<Activity>);

impl Sending {
    fn new(activity: &Arc<Activity>) -> Self {
        now_into(&activity.last_pull);
        activity.sending.fetch_add(1, Ordering::SeqCst);
        Sending(Arc::clone(activity))
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.0.sending.fetch_sub(1, Ordering::SeqCst);
    }
}

pin_project! {
    /// A response body that keeps its request counted as in flight until it
    /// is sent or dropped, and notes each time the connection asks it for
    /// more.
    pub(super) struct Tracked<B> {
        #[pin]
        body: B,
        sending: Sending,
        _busy: Busy,
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        now_into(&this.sending.0.last_pull);
        this.body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The host's service with its requests and response bodies tracked.
#[derive(Clone)]
pub(super) struct Tracking<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracking<S> {
    pub(super) fn new(inner: S, activity: &Arc<Activity>) -> Self {
        Tracking {
            inner,
            activity: Arc::clone(activity),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Tracking<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<Tracked<ResBody>>;
    type Error = S::Error;
    type Future = TrackingFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let busy = self.activity.begin();
        TrackingFuture {
            inner: self.inner.call(request),
            busy: Some(busy),
        }
    }
}

pin_project! {
    /// The response future of [`Tracking`].
    pub(super) struct TrackingFuture<F> {
        #[pin]
        inner: F,
        busy: Option<Busy>,
    }
}

impl<F, B, E> Future for TrackingFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Tracked<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let busy = this
            .busy
            .take()
            .expect("a response future is not polled after it is ready");
        let sending = Sending::new(&busy.0);
        Poll::Ready(Ok(response.map(|body| Tracked {
            body,
            sending,
            _busy: busy,
        })))
    }
}

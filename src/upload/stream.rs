//! The request body of an upload as a stream of `Bytes` for storage: the
//! expected length, the size limit and the idle timeout, checked as it arrives.
//!
//! The timer runs on the client's time only: from the moment the consumer
//! (storage) asks for the next piece and the body has none ready, until a piece
//! arrives. Time the consumer spends elsewhere (waiting for a lock, writing
//! what it read) is never held against the client.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::Stream;
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{sleep_until, Instant, Sleep};

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
        // Armed at the deadline of the current wait; polled only while waiting.
        #[pin]
        alarm: Sleep,
        timers: Timers,
        expect: Expect,
        inspect: Option<Box<Inspect>>,
        received: u64,
        done: bool,
    }
}

impl<B> UploadStream<B> {
    pub(crate) fn new(body: B, expect: Expect, timers: Timers) -> Self {
        UploadStream {
            body,
            alarm: sleep_until(later(Instant::now(), timers.timeout)),
            timers,
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
                Poll::Pending => match this.timers.waiting(Instant::now()) {
                    Ok(deadline) => {
                        if this.alarm.deadline() != deadline {
                            this.alarm.as_mut().reset(deadline);
                        }
                        ready!(this.alarm.as_mut().poll(cx));
                        continue; // the deadline passed: judged again above
                    }
                    Err(error) => {
                        *this.done = true;
                        return Poll::Ready(Some(Err(BodyError(error))));
                    }
                },
                Poll::Ready(frame) => {
                    this.timers.arrived();
                    frame
                }
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
                            let bytes = data.copy_to_bytes(len);
                            let checked = this.timers.received(len as u64).and_then(|()| {
                                this.inspect.as_mut().map_or(Ok(()), |i| i.data(&bytes))
                            });
                            match checked {
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

/// The body timers, on the client's time: they run only while the consumer
/// waits for a piece the body has not sent yet.
///
/// Two rules: no piece for `timeout`, and, after the first window, fewer than
/// `floor` bytes per second over a window of `timeout` of the client's time.
/// Both answer `408 body_timeout`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timers {
    /// No byte for this long while waiting; also the floor's window.
    timeout: Duration,
    /// The floor rate in bytes per second; 0 turns it off.
    floor: u64,
    /// When the current wait for the client began; `None` while the consumer
    /// is busy elsewhere, and before it first asks.
    since: Option<Instant>,
    /// The client's time before the current wait: every wait, added up.
    waited: Duration,
    /// When, in the client's time, the current window closes.
    window_end: Duration,
    /// Bytes received in the current window.
    window_bytes: u64,
    /// Whether the current window is the first, which the floor spares.
    first_window: bool,
}

impl Timers {
    /// Timers with this idle timeout (also the floor's window) and floor rate
    /// in bytes per second (0: none).
    pub(crate) fn new(timeout: Duration, floor: u64) -> Self {
        Timers {
            timeout,
            floor,
            since: None,
            waited: Duration::ZERO,
            window_end: timeout,
            window_bytes: 0,
            first_window: true,
        }
    }

    /// Whether the floor rate is enforced: it is set, and has a window.
    fn has_floor(&self) -> bool {
        self.floor > 0 && !self.timeout.is_zero()
    }

    /// The consumer asked for the next piece and the body has none: the wait
    /// starts now unless it already runs. Returns when to judge again, or the
    /// timeout once the client has kept the layer waiting for too long or
    /// sent too little in a window.
    fn waiting(&mut self, now: Instant) -> Result<Instant, Error> {
        let since = *self.since.get_or_insert(now);
        let this_wait = now.saturating_duration_since(since);
        if this_wait >= self.timeout {
            return Err(Error::BodyTimeout);
        }
        let mut deadline = later(since, self.timeout);
        if self.has_floor() {
            // A window ends within one timeout of any wait's start, so the
            // wait closes at most one before the idle rule applies.
            if self.waited.saturating_add(this_wait) >= self.window_end {
                self.close_window()?;
            }
            let window_left = self.window_end.saturating_sub(self.waited);
            deadline = deadline.min(later(since, window_left));
        }
        Ok(deadline)
    }

    /// The body answered (a piece, its end or an error): the wait is over.
    fn arrived(&mut self) {
        if let Some(since) = self.since.take() {
            let this_wait = Instant::now().saturating_duration_since(since);
            self.waited = self.waited.saturating_add(this_wait);
        }
    }

    /// Counts `len` bytes that just arrived, and judges the window if it
    /// closed while they were awaited.
    fn received(&mut self, len: u64) -> Result<(), Error> {
        self.window_bytes = self.window_bytes.saturating_add(len);
        if self.has_floor() && self.waited >= self.window_end {
            self.close_window()?;
            if self.window_end <= self.waited {
                // The consumer came back late to a wait that spanned windows:
                // the empty ones are not the client's doing.
                self.window_end = self.waited.saturating_add(self.timeout);
            }
        }
        Ok(())
    }

    /// Closes the current window: past the first, it must have carried
    /// `floor` bytes per second.
    fn close_window(&mut self) -> Result<(), Error> {
        let needed = u128::from(self.floor).saturating_mul(self.timeout.as_nanos());
        let carried = u128::from(self.window_bytes).saturating_mul(1_000_000_000);
        let judged = !self.first_window;
        self.first_window = false;
        self.window_bytes = 0;
        self.window_end = self.window_end.saturating_add(self.timeout);
        if judged && carried < needed {
            return Err(Error::BodyTimeout);
        }
        Ok(())
    }
}

/// `start + by`, or a time too far ahead to matter where that overflows.
fn later(start: Instant, by: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    start.checked_add(by).unwrap_or_else(|| start + FAR)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use futures_util::StreamExt;
    use http_body::Frame;
    use tokio::time::sleep;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    /// A client that sends each piece `delay` after the layer first asks for
    /// it (as a client does behind `Expect: 100-continue` or a full TCP
    /// window), or never (`None`).
    struct Scripted {
        pieces: VecDeque<(Option<Duration>, Bytes)>,
        wait: Option<Pin<Box<Sleep>>>,
    }

    /// A client that sends `count` pieces of `size` bytes, each `delay` after
    /// the layer asks.
    fn steady(count: usize, size: usize, delay: Duration) -> Scripted {
        Scripted {
            pieces: (0..count)
                .map(|_| (Some(delay), Bytes::from(vec![7; size])))
                .collect(),
            wait: None,
        }
    }

    fn client(pieces: &[(Option<Duration>, &'static [u8])]) -> Scripted {
        Scripted {
            pieces: pieces
                .iter()
                .map(|&(delay, bytes)| (delay, Bytes::from_static(bytes)))
                .collect(),
            wait: None,
        }
    }

    impl Body for Scripted {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            let this = &mut *self;
            let Some(&(delay, _)) = this.pieces.front() else {
                return Poll::Ready(None);
            };
            let Some(delay) = delay else {
                return Poll::Pending; // a client that stalls for good
            };
            if delay.is_zero() {
                let (_, bytes) = this.pieces.pop_front().expect("a piece is due");
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            let wait = this.wait.get_or_insert_with(|| Box::pin(sleep(delay)));
            ready!(wait.as_mut().poll(cx));
            this.wait = None;
            let (_, bytes) = this.pieces.pop_front().expect("a piece is due");
            Poll::Ready(Some(Ok(Frame::data(bytes))))
        }
    }

    fn upload(body: Scripted, len: u64) -> UploadStream<Scripted> {
        UploadStream::new(body, Expect::Exactly(len), Timers::new(TIMEOUT, 0))
    }

    /// Reads the next piece as storage would.
    async fn next(stream: &mut Pin<&mut UploadStream<Scripted>>) -> Option<Result<Bytes, Error>> {
        stream.next().await.map(|item| item.map_err(|e| e.0))
    }

    fn piece(bytes: &'static [u8]) -> Option<Result<Bytes, Error>> {
        Some(Ok(Bytes::from_static(bytes)))
    }

    #[tokio::test(start_paused = true)]
    async fn storage_waiting_before_it_reads_is_not_a_stall() {
        let half = Some(TIMEOUT / 2);
        let mut stream = std::pin::pin!(upload(client(&[(half, b"abc"), (half, b"def")]), 6));
        // Storage waits for a lock or a store three timeouts long before it reads.
        sleep(TIMEOUT * 3).await;
        assert_eq!(next(&mut stream).await, piece(b"abc"));
        assert_eq!(next(&mut stream).await, piece(b"def"));
        assert_eq!(next(&mut stream).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn storage_busy_between_pieces_is_not_a_stall() {
        let half = Some(TIMEOUT / 2);
        let mut stream = std::pin::pin!(upload(client(&[(half, b"abc"), (half, b"def")]), 6));
        assert_eq!(next(&mut stream).await, piece(b"abc"));
        // Storage writes what it read, slowly, before it asks again.
        sleep(TIMEOUT * 3).await;
        assert_eq!(next(&mut stream).await, piece(b"def"));
        assert_eq!(next(&mut stream).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stalls_is_cut_one_timeout_after_the_layer_asks() {
        let mut stream = std::pin::pin!(upload(client(&[(None, b"abc")]), 3));
        sleep(TIMEOUT * 3).await; // storage admission: not the client's time
        let asked = Instant::now();
        assert_eq!(next(&mut stream).await, Some(Err(Error::BodyTimeout)));
        assert_eq!(asked.elapsed(), TIMEOUT);
        assert_eq!(next(&mut stream).await, None);

        // The timer restarts with every piece: a client just inside the
        // timeout each time is never cut; one past it is.
        let inside = Some(TIMEOUT - Duration::from_millis(1));
        let past = Some(TIMEOUT + Duration::from_millis(1));
        let mut stream = std::pin::pin!(upload(
            client(&[(inside, b"a"), (inside, b"b"), (inside, b"c"), (past, b"d")]),
            4
        ));
        for bytes in [b"a", b"b", b"c"] {
            assert_eq!(next(&mut stream).await, piece(bytes));
        }
        let asked = Instant::now();
        assert_eq!(next(&mut stream).await, Some(Err(Error::BodyTimeout)));
        assert_eq!(asked.elapsed(), TIMEOUT);
    }

    /// Reads the whole stream as storage would, pausing `busy` after each
    /// piece; returns the bytes read and how it ended.
    async fn drain(
        mut stream: Pin<&mut UploadStream<Scripted>>,
        busy: Duration,
    ) -> (u64, Result<(), Error>) {
        let mut read = 0;
        while let Some(item) = stream.next().await {
            match item {
                Ok(bytes) => read += bytes.len() as u64,
                Err(error) => return (read, Err(error.0)),
            }
            if !busy.is_zero() {
                sleep(busy).await;
            }
        }
        (read, Ok(()))
    }

    const FLOOR: u64 = 1024;

    fn with_floor(body: Scripted, len: u64) -> UploadStream<Scripted> {
        UploadStream::new(body, Expect::Exactly(len), Timers::new(TIMEOUT, FLOOR))
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_within_two_windows() {
        // One byte every five seconds: never idle for a whole timeout.
        let stream = std::pin::pin!(with_floor(steady(1000, 1, Duration::from_secs(5)), 1000));
        let started = Instant::now();
        let (read, end) = drain(stream, Duration::ZERO).await;
        assert_eq!(end, Err(Error::BodyTimeout));
        let cut = started.elapsed();
        assert!(cut > TIMEOUT && cut <= TIMEOUT * 2, "cut after {cut:?}");
        assert!(read <= 12, "{read} bytes read");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_just_above_the_floor_is_not_cut() {
        // 1100 bytes a second for 150 seconds: five windows.
        let stream = std::pin::pin!(with_floor(
            steady(150, 1100, Duration::from_secs(1)),
            165_000
        ));
        assert_eq!(drain(stream, Duration::ZERO).await, (165_000, Ok(())));
        // Just below it is cut at the end of the second window.
        let stream = std::pin::pin!(with_floor(
            steady(150, 1000, Duration::from_secs(1)),
            150_000
        ));
        let started = Instant::now();
        let (_, end) = drain(stream, Duration::ZERO).await;
        assert_eq!(end, Err(Error::BodyTimeout));
        assert_eq!(started.elapsed(), TIMEOUT * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn storage_time_does_not_count_against_the_floor() {
        // Storage takes five seconds over each 10-byte piece (2 bytes a second
        // overall), and waits three timeouts before it reads at all; the
        // client sends each piece 10 ms after it is asked.
        let mut stream =
            std::pin::pin!(with_floor(steady(100, 10, Duration::from_millis(10)), 1000));
        sleep(TIMEOUT * 3).await;
        assert_eq!(
            drain(stream.as_mut(), Duration::from_secs(5)).await,
            (1000, Ok(()))
        );
        // Pieces that were ready before each read: no client time at all.
        let stream = std::pin::pin!(with_floor(steady(100, 10, Duration::ZERO), 1000));
        assert_eq!(drain(stream, Duration::from_secs(5)).await, (1000, Ok(())));
    }

    #[tokio::test(start_paused = true)]
    async fn a_floor_of_zero_leaves_only_the_idle_timeout() {
        let stream = std::pin::pin!(UploadStream::new(
            steady(20, 1, Duration::from_secs(25)),
            Expect::Exactly(20),
            Timers::new(TIMEOUT, 0)
        ));
        assert_eq!(drain(stream, Duration::ZERO).await, (20, Ok(())));
    }
}

//! The body timers (docs/protocol.md#body-idle-timeout) through the layer,
//! on tokio's paused time: they run only while the layer waits for the
//! client, never while it waits for its own storage.
//!
//! The requests go through the service in this process rather than over a
//! socket: with the clock paused, tokio moves time ahead whenever nothing is
//! ready, and a socket's bytes would look late.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use crate::common::*;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::time::{sleep, Sleep};
use tower::ServiceExt;
use tower_layer::Layer;
use tower_signed_upload::services::RespondCreated;
use tower_signed_upload::storage::{
    BoxFuture, ByteStream, ChunkOptions, ChunkRange, CompleteOptions, ConcatOptions, FileMeta,
    FileRead, MakeRecord, MemoryStorage, OpenOptions, PurgeReport, Session, SessionStatus, Storage,
    StorageError,
};
use tower_signed_upload::{SignedMethod, SignedUploadLayer, SigningKey, UploadPath};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Memory storage that waits `admission` (a lock, a busy store) before it
/// reads a request's body.
#[derive(Debug, Clone)]
struct Slow {
    memory: MemoryStorage,
    admission: Duration,
}

impl Storage for Slow {
    fn write_chunk(
        &self,
        session: &Session,
        range: ChunkRange,
        options: &ChunkOptions,
        bytes: ByteStream,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let (session, options) = (session.clone(), options.clone());
        Box::pin(async move {
            sleep(self.admission).await;
            self.memory
                .write_chunk(&session, range, &options, bytes)
                .await
        })
    }

    fn open(
        &self,
        session: &Session,
        options: &OpenOptions,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        self.memory.open(session, options)
    }

    fn concat(
        &self,
        session: &Session,
        parts: &[Session],
        options: &ConcatOptions,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        self.memory.concat(session, parts, options)
    }

    fn status(&self, session: &Session) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        self.memory.status(session)
    }

    fn complete(
        &self,
        session: &Session,
        options: &CompleteOptions,
        make_record: MakeRecord,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        self.memory.complete(session, options, make_record)
    }

    fn discard(&self, session: &Session) -> BoxFuture<'_, Result<(), StorageError>> {
        self.memory.discard(session)
    }

    fn put(
        &self,
        path: &UploadPath,
        bytes: ByteStream,
    ) -> BoxFuture<'_, Result<(FileMeta, Bytes), StorageError>> {
        let path = path.clone();
        Box::pin(async move {
            sleep(self.admission).await;
            self.memory.put(&path, bytes).await
        })
    }

    fn read(
        &self,
        path: &UploadPath,
        range: Option<RangeInclusive<u64>>,
    ) -> BoxFuture<'_, Result<FileRead, StorageError>> {
        self.memory.read(path, range)
    }

    fn head(&self, path: &UploadPath) -> BoxFuture<'_, Result<FileMeta, StorageError>> {
        self.memory.head(path)
    }

    fn purge_expired(&self, now: SystemTime) -> BoxFuture<'_, Result<PurgeReport, StorageError>> {
        self.memory.purge_expired(now)
    }
}

/// A client that sends each piece `delay` after the layer first asks for it
/// (as one does behind `Expect: 100-continue` or a full TCP window), or never
/// (`None`).
struct Client {
    pieces: VecDeque<(Option<Duration>, Bytes)>,
    wait: Option<Pin<Box<Sleep>>>,
}

impl Client {
    fn new(pieces: impl IntoIterator<Item = (Option<Duration>, Vec<u8>)>) -> Self {
        Client {
            pieces: pieces
                .into_iter()
                .map(|(delay, bytes)| (delay, Bytes::from(bytes)))
                .collect(),
            wait: None,
        }
    }
}

impl Body for Client {
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
            return Poll::Pending; // stalls for good
        };
        let wait = this.wait.get_or_insert_with(|| Box::pin(sleep(delay)));
        ready!(wait.as_mut().poll(cx));
        this.wait = None;
        let (_, bytes) = this.pieces.pop_front().expect("a piece is due");
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }
}

/// A layer over memory storage that waits `admission` before each read, with
/// `configure` applied; returns the layer and the storage.
fn slow_layer(
    admission: Duration,
    configure: impl FnOnce(SignedUploadLayer) -> SignedUploadLayer,
) -> (SignedUploadLayer, MemoryStorage) {
    let memory = MemoryStorage::new();
    let layer = SignedUploadLayer::new(
        SigningKey::new(KEY).unwrap(),
        Slow {
            memory: memory.clone(),
            admission,
        },
    )
    .clock(TestClock::at(NOW))
    .public_base(PUBLIC_BASE)
    .unwrap()
    .body_timeout(TIMEOUT);
    (configure(layer), memory)
}

/// Sends a `PUT` of `body` to `path` through `layer`; returns the status and
/// the envelope's error code (if any).
async fn upload(
    layer: &SignedUploadLayer,
    path: &str,
    headers: &[(&str, &str)],
    body: Client,
) -> (u16, Option<String>) {
    let url = layer.signer().sign(
        &UploadPath::new(path).unwrap(),
        SignedMethod::Put,
        Duration::from_secs(3600),
    );
    let mut request = Request::put(url.path_and_query());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body).unwrap();
    let response: Response<_> = layer.layer(RespondCreated).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let code = json["error"]["code"].as_str().map(str::to_owned);
    (status, code)
}

#[tokio::test(start_paused = true)]
async fn storage_admission_longer_than_the_timeout_is_not_a_stall() {
    let (layer, memory) = slow_layer(TIMEOUT * 3, |layer| layer);
    let half = Some(TIMEOUT / 2);
    let data = bytes(200, 1);
    let client = Client::new([(half, data[..100].to_vec()), (half, data[100..].to_vec())]);
    let answer = upload(&layer, "a.bin", &[("content-length", "200")], client).await;
    assert_eq!(answer, (201, None));
    assert_eq!(memory.file("a.bin").unwrap(), data);

    let client = Client::new([(half, data[..100].to_vec())]);
    let answer = upload(
        &layer,
        "b.bin",
        &[("content-range", "bytes 0-99/200")],
        client,
    )
    .await;
    assert_eq!(answer, (202, None));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stalls_behind_a_slow_storage_is_still_408() {
    let (layer, memory) = slow_layer(TIMEOUT * 3, |layer| layer);
    let client = Client::new([(Some(TIMEOUT / 2), vec![7; 10]), (None, vec![7; 90])]);
    let started = tokio::time::Instant::now();
    let answer = upload(&layer, "a.bin", &[("content-length", "100")], client).await;
    assert_eq!(answer, (408, Some("body_timeout".to_owned())));
    // Admission, half a timeout for the first piece, then the full timeout.
    assert_eq!(started.elapsed(), TIMEOUT * 3 + TIMEOUT / 2 + TIMEOUT);
    assert_eq!(memory.file("a.bin"), None);
}

/// `count` pieces of `size` bytes, each sent `every` after the layer asks.
fn steady(count: usize, size: usize, every: Duration) -> Client {
    Client::new((0..count).map(|i| (Some(every), vec![i as u8; size])))
}

#[tokio::test(start_paused = true)]
async fn a_trickle_is_408_within_two_windows_by_default() {
    let (layer, memory) = slow_layer(Duration::ZERO, |layer| layer);
    let started = tokio::time::Instant::now();
    let client = steady(100, 1, Duration::from_secs(5));
    let answer = upload(&layer, "a.bin", &[("content-length", "100")], client).await;
    assert_eq!(answer, (408, Some("body_timeout".to_owned())));
    let cut = started.elapsed();
    assert!(cut > TIMEOUT && cut <= TIMEOUT * 2, "cut after {cut:?}");
    assert_eq!(memory.file("a.bin"), None);

    let client = steady(100, 1, Duration::from_secs(5));
    let answer = upload(
        &layer,
        "b.bin",
        &[("content-range", "bytes 0-99/200")],
        client,
    )
    .await;
    assert_eq!(answer, (408, Some("body_timeout".to_owned())));
}

#[tokio::test(start_paused = true)]
async fn min_body_rate_sets_the_floor_and_zero_turns_it_off() {
    let (layer, memory) = slow_layer(Duration::ZERO, |layer| layer.min_body_rate(0));
    let client = steady(100, 1, Duration::from_secs(5));
    let answer = upload(&layer, "a.bin", &[("content-length", "100")], client).await;
    assert_eq!(answer, (201, None));
    assert_eq!(memory.file("a.bin").unwrap().len(), 100);

    // 100 bytes a second passes a floor of 50, not one of 200.
    let (layer, _) = slow_layer(Duration::ZERO, |layer| layer.min_body_rate(50));
    let client = steady(100, 100, Duration::from_secs(1));
    let answer = upload(&layer, "a.bin", &[("content-length", "10000")], client).await;
    assert_eq!(answer, (201, None));
    let (layer, _) = slow_layer(Duration::ZERO, |layer| layer.min_body_rate(200));
    let client = steady(100, 100, Duration::from_secs(1));
    let answer = upload(&layer, "a.bin", &[("content-length", "10000")], client).await;
    assert_eq!(answer, (408, Some("body_timeout".to_owned())));
}

#[tokio::test(start_paused = true)]
async fn storage_admission_does_not_count_against_the_floor() {
    // Admission takes three windows; the client then sends at 2 KiB/s.
    let (layer, memory) = slow_layer(TIMEOUT * 3, |layer| layer);
    let client = steady(100, 2048, Duration::from_secs(1));
    let answer = upload(&layer, "a.bin", &[("content-length", "204800")], client).await;
    assert_eq!(answer, (201, None));
    assert_eq!(memory.file("a.bin").unwrap().len(), 204_800);
}

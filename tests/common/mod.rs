//! Helpers for the loopback HTTP tests: a layered service served by hyper on
//! 127.0.0.1, a hyper client, a fixed clock.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tower::Service;
use tower_signed_upload::{Clock, SignedMethod, Signer, UploadPath};

/// The time every test runs at, unless it moves the clock.
pub const NOW: u64 = 1_750_000_000;

/// A clock tests can move.
#[derive(Debug, Clone, Default)]
pub struct TestClock(pub Arc<AtomicU64>);

impl TestClock {
    pub fn at(seconds: u64) -> Self {
        TestClock(Arc::new(AtomicU64::new(seconds)))
    }

    pub fn set(&self, seconds: u64) {
        self.0.store(seconds, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
    }
}

/// Whether a test whose prerequisite is missing (moto's S3 server, root for a
/// tmpfs) must fail rather than skip: under `CI=true` or
/// `SIGNED_UPLOAD_REQUIRE_ALL=1`.
pub fn prerequisites_required() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
        || std::env::var("SIGNED_UPLOAD_REQUIRE_ALL").as_deref() == Ok("1")
}

/// A test cannot run because of `missing` (what is missing, and how to get
/// it): panics naming it when [`prerequisites_required`], else prints why the
/// test is skipped and returns, for the test to return.
pub fn missing_prerequisite(missing: &str) {
    if prerequisites_required() {
        panic!("{missing}; required under CI=true or SIGNED_UPLOAD_REQUIRE_ALL=1");
    }
    eprintln!("skipped: {missing}");
}

/// Serves `service` on 127.0.0.1 with hyper; returns the address.
pub async fn serve<S, B>(service: S) -> SocketAddr
where
    S: Service<Request<hyper::body::Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| service.clone().call(request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A hyper client with a connection pool.
pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// `error.code` of the envelope.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Sends a request and reads the answer whole, within 30 s.
pub async fn send(client: &HttpClient, request: Request<Full<Bytes>>) -> Answer {
    tokio::time::timeout(Duration::from_secs(30), async {
        let response = client.request(request).await.expect("request failed");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body failed").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
    .await
    .expect("request timed out")
}

/// A `PUT` of `body` to `url` with the given headers.
pub fn put(url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let mut builder = Request::put(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body.into())).unwrap()
}

/// Signs `path` for `method`, valid for an hour, against `addr`.
pub fn sign(signer: &Signer, addr: SocketAddr, path: &str, method: SignedMethod) -> String {
    let url = signer.sign(
        &UploadPath::new(path).unwrap(),
        method,
        Duration::from_secs(3600),
    );
    format!("http://{addr}{}", url.path_and_query())
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Helpers for the wire-contract tests: a ready server, raw signing, envelope
// checks, streaming (chunked) bodies, raw TCP exchanges, PNG headers.
// ---------------------------------------------------------------------------

/// The key every test server signs and verifies with.
pub const KEY: &str = "secret";

/// The public base every test server describes files with.
pub const PUBLIC_BASE: &str = "http://files.test";

/// A layered [`tower_signed_upload::services::RespondCreated`] that counts its calls.
#[derive(Debug, Clone, Default)]
pub struct CountingInner {
    pub calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl<B> Service<Request<B>> for CountingInner {
    type Response = Response<tower_signed_upload::EnvelopeBody>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tower_signed_upload::services::RespondCreated.call(request)
    }
}

/// A layer over [`MemoryStorage`](tower_signed_upload::storage::MemoryStorage),
/// served on 127.0.0.1 in front of a [`CountingInner`], at the fixed [`NOW`].
pub struct TestServer {
    pub addr: SocketAddr,
    pub storage: tower_signed_upload::storage::MemoryStorage,
    pub clock: TestClock,
    pub signer: Signer,
    pub inner: CountingInner,
}

impl TestServer {
    /// A server with the default settings.
    pub async fn start() -> Self {
        Self::with(|layer| layer).await
    }

    /// A server whose layer `configure` adjusts.
    pub async fn with(
        configure: impl FnOnce(
            tower_signed_upload::SignedUploadLayer,
        ) -> tower_signed_upload::SignedUploadLayer,
    ) -> Self {
        use tower_layer::Layer;
        let storage = tower_signed_upload::storage::MemoryStorage::new();
        let clock = TestClock::at(NOW);
        let layer = tower_signed_upload::SignedUploadLayer::new(
            tower_signed_upload::SigningKey::new(KEY).unwrap(),
            storage.clone(),
        )
        .clock(clock.clone())
        .public_base(PUBLIC_BASE)
        .unwrap();
        let layer = configure(layer);
        let signer = layer.signer();
        let inner = CountingInner::default();
        let addr = serve(layer.layer(inner.clone())).await;
        TestServer {
            addr,
            storage,
            clock,
            signer,
            inner,
        }
    }

    /// A `put` URL for the decoded `path`, valid for an hour.
    pub fn put_url(&self, path: &str) -> String {
        sign(&self.signer, self.addr, path, SignedMethod::Put)
    }

    /// A `get` URL for the decoded `path`, valid for an hour.
    pub fn get_url(&self, path: &str) -> String {
        sign(&self.signer, self.addr, path, SignedMethod::Get)
    }

    /// A URL for `path`, signed with `expiry` (an absolute unix time).
    pub fn url_expiring_at(&self, path: &str, method: SignedMethod, expiry: u64) -> String {
        let url = self.signer.sign(
            &UploadPath::new(path).unwrap(),
            method,
            tower_signed_upload::Expiry::At(UNIX_EPOCH + Duration::from_secs(expiry)),
        );
        format!("http://{}{}", self.addr, url.path_and_query())
    }

    /// How often the inner service was called.
    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }
}

/// The signature of a signed string under `key`, computed here the way the
/// contract's Node.js snippet does: HMAC-SHA256, base64url without padding.
pub fn raw_signature(key: &str, signed: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// A URL whose raw path (without its leading `/`, sent byte for byte) and
/// query are signed here, independently of the crate's signer.
pub fn raw_url(addr: SocketAddr, raw_path: &str, expiry: u64, method: &str) -> String {
    let signed = format!("{raw_path}?expiry={expiry}&method={method}");
    let signature = raw_signature(KEY, &signed);
    format!("http://{addr}/{signed}&signature={signature}")
}

/// Checks the envelope of a rejection: status, `error.code`, `meta`, `data: null`.
pub fn assert_rejected(answer: &Answer, status: u16, code: &str, method: &str, path: &str) {
    assert_eq!(
        answer.status.as_u16(),
        status,
        "status for {method} {path}: {:?}",
        answer.body
    );
    assert_eq!(answer.code(), code, "code for {method} {path}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let json = answer.json();
    assert_meta(&json, status, method, path);
    assert!(json["data"].is_null(), "data of a rejection: {json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "error.message: {json}"
    );
}

/// Checks `meta` of an envelope against the request and the HTTP status.
pub fn assert_meta(json: &Value, status: u16, method: &str, path: &str) {
    let meta = &json["meta"];
    assert!(
        meta["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("req_") && id.len() > 4),
        "meta.request_id: {json}"
    );
    assert_eq!(meta["method"], method, "meta.method: {json}");
    assert_eq!(meta["path"], path, "meta.path: {json}");
    assert_eq!(meta["status"], status, "meta.status: {json}");
    assert_eq!(meta["type"], "object", "meta.type: {json}");
}

/// A boxed request body, for bodies streamed without `Content-Length`.
pub type StreamBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A hyper client that sends [`StreamBody`] requests.
pub type StreamClient = Client<hyper_util::client::legacy::connect::HttpConnector, StreamBody>;

pub fn stream_client() -> StreamClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A body of `pieces` with no known length: hyper sends it chunked, without
/// `Content-Length`.
pub fn chunked_body(pieces: Vec<Vec<u8>>) -> StreamBody {
    let frames = pieces
        .into_iter()
        .map(|piece| Ok(http_body::Frame::data(Bytes::from(piece))));
    http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
        frames,
    )))
}

/// A `PUT` of a streamed body.
pub fn stream_put(url: &str, headers: &[(&str, &str)], body: StreamBody) -> Request<StreamBody> {
    let mut builder = Request::put(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body).unwrap()
}

/// Sends a streamed request and reads the answer whole, within 30 s.
pub async fn send_stream(client: &StreamClient, request: Request<StreamBody>) -> Answer {
    tokio::time::timeout(Duration::from_secs(30), async {
        let response = client.request(request).await.expect("request failed");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body failed").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
    .await
    .expect("request timed out")
}

/// The request head `METHOD target HTTP/1.1` with `headers`, ready for raw TCP.
pub fn raw_head(method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: localhost\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The path and query of a URL, for a raw request line.
pub fn target(url: &str) -> &str {
    let rest = url.strip_prefix("http://").unwrap();
    &rest[rest.find('/').unwrap()..]
}

/// The status and headers of a raw HTTP/1.1 response head (status line,
/// header lines, the blank line).
pub fn parse_head(head: &[u8]) -> (StatusCode, http::HeaderMap) {
    let head = std::str::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers = http::HeaderMap::new();
    for line in lines.filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            http::HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    (StatusCode::from_u16(status).unwrap(), headers)
}

/// Writes `bytes` to a fresh connection, keeps it open without sending more,
/// and reads one response (framed by `Content-Length`), within `within`.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    tokio::time::timeout(within, async {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "connection closed before a response");
            buffer.extend_from_slice(&chunk[..read]);
        };
        let (status, headers) = parse_head(&buffer[..head_end]);
        let length: usize = headers
            .get("content-length")
            .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
        while buffer.len() < head_end + length {
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "connection closed inside the response body");
            buffer.extend_from_slice(&chunk[..read]);
        }
        Answer {
            status,
            headers,
            body: Bytes::copy_from_slice(&buffer[head_end..head_end + length]),
        }
    })
    .await
    .expect("no response in time")
}

/// Writes `bytes` to a fresh connection, then closes the writing half, so the
/// server sees the body break off; waits (at most 10 s) until the server has
/// closed the connection, which it does once it is done with the request.
pub async fn raw_cut_off(addr: SocketAddr, bytes: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
    })
    .await
    .expect("the server kept the cut-off connection open");
}

/// A PNG file's start: signature, an IHDR chunk of `width` x `height` (with its
/// CRC) and an IEND chunk, padded with `extra` bytes of pseudo-random data.
pub fn png(width: u32, height: u32, extra: usize) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, deflate, no filter, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IEND", &[]);
    out.extend_from_slice(&bytes(extra, u64::from(width)));
    out
}

/// CRC-32 (ISO-HDLC), as PNG chunks carry it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// ---------------------------------------------------------------------------
// Helpers for the policy and integrity tests (docs/protocol.md#signed-policy): a server
// over any `Arc<dyn Storage>`, URLs minted with `UrlOptions`, digest headers,
// and real files (PNG, JPEG, GIF, ZIP) built byte by byte.
// ---------------------------------------------------------------------------

/// A backend behind an `Arc`, as the per-backend cases take it.
pub type Store = Arc<dyn tower_signed_upload::storage::Storage>;

/// Runs each `case` (an `async fn(Store)` of the test file) once on a
/// MemoryStorage, once (with the `fs` feature, on Unix) on an FsStorage in a
/// fresh temporary folder, and (with the `object-store` feature) once on an ObjectStoreStorage over an in-memory
/// object store; the test file declares `#[macro_use] mod common;`.
#[allow(unused_macros)]
macro_rules! on_every_backend {
    ($($name:ident => $case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$case(super::memory_storage()).await;
                }
            )*
        }
        #[cfg(all(feature = "fs", unix))]
        mod fs {
            $(
                #[tokio::test]
                async fn $name() {
                    let (_dir, storage) = super::fs_storage();
                    super::$case(storage).await;
                }
            )*
        }
        #[cfg(feature = "object-store")]
        mod object_store {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$case(super::object_store_storage()).await;
                }
            )*
        }
    };
}

/// A [`MemoryStorage`](tower_signed_upload::storage::MemoryStorage) behind an `Arc<dyn Storage>`.
pub fn memory_storage() -> Arc<dyn tower_signed_upload::storage::Storage> {
    Arc::new(tower_signed_upload::storage::MemoryStorage::new())
}

/// An [`FsStorage`](tower_signed_upload::storage::FsStorage) in a fresh
/// temporary folder; keep the folder alive as long as the storage.
#[cfg(all(feature = "fs", unix))]
pub fn fs_storage() -> (
    tempfile::TempDir,
    Arc<dyn tower_signed_upload::storage::Storage>,
) {
    let dir = tempfile::tempdir().unwrap();
    let storage = tower_signed_upload::storage::FsStorage::new(dir.path()).unwrap();
    (dir, Arc::new(storage))
}

/// A layer over `storage` with `key`, the fixed clock at [`NOW`] and [`PUBLIC_BASE`].
pub fn layer_over(
    storage: Arc<dyn tower_signed_upload::storage::Storage>,
    key: tower_signed_upload::SigningKey,
) -> tower_signed_upload::SignedUploadLayer {
    tower_signed_upload::SignedUploadLayer::with_storage(key, storage)
        .clock(TestClock::at(NOW))
        .public_base(PUBLIC_BASE)
        .unwrap()
}

/// What an inner service saw of one request: its method, how the upload came
/// in, and the size of the File it carried.
pub type Seen = (
    http::Method,
    Option<tower_signed_upload::UploadVia>,
    Option<u64>,
);

/// A layer over memory storage with key [`KEY`], served on 127.0.0.1 in front
/// of an inner service that records what it sees of each request and answers
/// `200` with no body: its signer, its address and that record.
pub async fn serve_recording_inner() -> (Signer, SocketAddr, Arc<std::sync::Mutex<Vec<Seen>>>) {
    use tower_layer::Layer;
    use tower_signed_upload::{RequestBody, UploadVia, UploadedFile};
    let seen: Arc<std::sync::Mutex<Vec<Seen>>> = Arc::default();
    let inner = {
        let seen = Arc::clone(&seen);
        tower::service_fn(
            move |request: Request<RequestBody<hyper::body::Incoming>>| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().unwrap().push((
                        request.method().clone(),
                        request.extensions().get::<UploadVia>().cloned(),
                        request
                            .extensions()
                            .get::<UploadedFile>()
                            .map(|file| file.filesize),
                    ));
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                }
            },
        )
    };
    let layer = layer_over(
        memory_storage(),
        tower_signed_upload::SigningKey::new(KEY).unwrap(),
    );
    let signer = layer.signer();
    let addr = serve(layer.layer(inner)).await;
    (signer, addr, seen)
}

/// A layer over any storage, served on 127.0.0.1 in front of a [`CountingInner`].
pub struct StorageServer {
    pub addr: SocketAddr,
    pub storage: Arc<dyn tower_signed_upload::storage::Storage>,
    pub signer: Signer,
    pub inner: CountingInner,
}

impl StorageServer {
    /// A server with key [`KEY`] over `storage`, its layer adjusted by `configure`.
    pub async fn start(
        storage: Arc<dyn tower_signed_upload::storage::Storage>,
        configure: impl FnOnce(
            tower_signed_upload::SignedUploadLayer,
        ) -> tower_signed_upload::SignedUploadLayer,
    ) -> Self {
        let layer = configure(layer_over(
            Arc::clone(&storage),
            tower_signed_upload::SigningKey::new(KEY).unwrap(),
        ));
        Self::serve(layer).await
    }

    /// Serves `layer` as it is.
    pub async fn serve(layer: tower_signed_upload::SignedUploadLayer) -> Self {
        use tower_layer::Layer;
        let storage = Arc::clone(layer.storage());
        let signer = layer.signer();
        let inner = CountingInner::default();
        let addr = serve(layer.layer(inner.clone())).await;
        StorageServer {
            addr,
            storage,
            signer,
            inner,
        }
    }

    /// A URL for `path` minted by the layer's signer with `options`, valid for an hour.
    pub fn url(
        &self,
        path: &str,
        method: SignedMethod,
        options: &tower_signed_upload::UrlOptions,
    ) -> String {
        let url = self
            .signer
            .sign_with(
                &UploadPath::new(path).unwrap(),
                method,
                Duration::from_secs(3600),
                options,
            )
            .unwrap();
        format!("http://{}{}", self.addr, url.path_and_query())
    }

    /// A `put` URL for `path` with `options`.
    pub fn put_url(&self, path: &str, options: &tower_signed_upload::UrlOptions) -> String {
        self.url(path, SignedMethod::Put, options)
    }

    /// A URL whose signed string `{path}?{query}` is signed here with `key`.
    pub fn hand_signed(&self, key: &str, path: &str, query: &str) -> String {
        let signed = format!("{path}?{query}");
        let signature = raw_signature(key, &signed);
        format!("http://{}/{signed}&signature={signature}", self.addr)
    }

    /// The bytes stored at `path`, if a file is there.
    pub async fn file(&self, path: &str) -> Option<Vec<u8>> {
        stored_file(&*self.storage, path).await
    }

    /// How often the inner service was called.
    pub fn calls(&self) -> usize {
        self.inner.calls.load(Ordering::SeqCst)
    }
}

/// The bytes stored at `path` in `storage`, read through the `Storage` trait.
pub async fn stored_file(
    storage: &dyn tower_signed_upload::storage::Storage,
    path: &str,
) -> Option<Vec<u8>> {
    use futures_util::StreamExt as _;
    use tower_signed_upload::storage::StorageError;
    let path = UploadPath::new(path).unwrap();
    let mut read = match storage.read(&path, None).await {
        Ok(read) => read,
        Err(StorageError::NotFound) => return None,
        Err(error) => panic!("reading {path}: {error}"),
    };
    let mut out = Vec::new();
    while let Some(piece) = read.body.next().await {
        out.extend_from_slice(&piece.unwrap());
    }
    Some(out)
}

/// An RFC 9530 `sha-256=:…:` value for `data`.
pub fn sha256_field(data: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(data))
    )
}

/// An RFC 9530 `sha-512=:…:` value for `data`.
pub fn sha512_field(data: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    format!(
        "sha-512=:{}:",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(data))
    )
}

/// Lowercase hex SHA-256 of `data`, as the File object's `sha256`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// A `Content-Range` chunk of `data[first..=last]` with `total` (`None`: `*`)
/// and extra headers.
pub fn range_put(
    url: &str,
    data: &[u8],
    first: usize,
    last: usize,
    total: Option<usize>,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let total = total.map_or("*".to_owned(), |total| total.to_string());
    let range = format!("bytes {first}-{last}/{total}");
    let mut all = vec![("content-range", range.as_str())];
    all.extend_from_slice(headers);
    put(url, &all, data[first..=last].to_vec())
}

/// A status query (`Content-Range: bytes */*`) answer.
pub async fn status_query(client: &HttpClient, url: &str) -> Answer {
    send(client, put(url, &[("content-range", "bytes */*")], "")).await
}

/// The `ranges` and `received` of a `308` status query answer.
pub async fn session_progress(client: &HttpClient, url: &str) -> (Value, u64) {
    let answer = status_query(client, url).await;
    assert_eq!(answer.status, 308, "status query: {:?}", answer.body);
    let data = &answer.json()["data"];
    assert_eq!(data["object"], "upload", "{data}");
    (data["ranges"].clone(), data["received"].as_u64().unwrap())
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// A complete, decodable PNG of `width` x `height` RGBA pixels: signature,
/// IHDR, one IDAT (zlib with stored deflate blocks), a `tEXt` chunk holding
/// `comment`, and IEND, every chunk with its CRC.
pub fn png_with_comment(width: u32, height: u32, comment: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    for row in 0..height {
        raw.push(0); // filter: none
        for col in 0..width {
            raw.extend_from_slice(&[(row * 40) as u8, (col * 40) as u8, 0x80, 0xff]);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let mut blocks = raw.chunks(65_535).peekable();
    if raw.is_empty() {
        zlib.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        zlib.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, deflate, no filter, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &zlib);
    let mut text = b"Comment\0".to_vec();
    text.extend_from_slice(comment);
    png_chunk(&mut out, b"tEXt", &text);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A complete PNG of `width` x `height`.
pub fn png_image(width: u32, height: u32) -> Vec<u8> {
    png_with_comment(width, height, b"test")
}

/// A complete 2 x 2 PNG of exactly `len` bytes (at least 113), padded by its comment.
pub fn png_of_len(len: usize) -> Vec<u8> {
    let base = png_with_comment(2, 2, b"").len();
    assert!(len >= base, "a PNG takes at least {base} bytes");
    let comment: Vec<u8> = (0..len - base).map(|i| b'a' + (i % 26) as u8).collect();
    let png = png_with_comment(2, 2, &comment);
    assert_eq!(png.len(), len);
    png
}

/// A JPEG header: SOI, a JFIF APP0 segment, a baseline SOF0 of `width` x
/// `height` with three components, then EOI.
pub fn jpeg_image(width: u16, height: u16) -> Vec<u8> {
    let mut out = vec![0xff, 0xd8];
    out.extend_from_slice(&[0xff, 0xe0, 0x00, 0x10]);
    out.extend_from_slice(b"JFIF\0");
    out.extend_from_slice(&[1, 1, 0, 0, 1, 0, 1, 0, 0]);
    out.extend_from_slice(&[0xff, 0xc0, 0x00, 0x11, 8]);
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&width.to_be_bytes());
    out.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    out.extend_from_slice(&[0xff, 0xd9]);
    out
}

/// A GIF89a of `width` x `height` with no frames: header, logical screen, trailer.
pub fn gif_image(width: u16, height: u16) -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0x3b]);
    out
}

/// A ZIP archive holding one stored (uncompressed) file `name` with `data`:
/// local file header, data, central directory, end of central directory.
pub fn zip_file(name: &str, data: &[u8]) -> Vec<u8> {
    let crc = crc32(data);
    let size = data.len() as u32;
    let name_len = name.len() as u16;
    let mut out = Vec::new();
    out.extend_from_slice(b"PK\x03\x04");
    out.extend_from_slice(&20u16.to_le_bytes()); // version needed
    out.extend_from_slice(&0u16.to_le_bytes()); // flags
    out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
    out.extend_from_slice(&0u16.to_le_bytes()); // time
    out.extend_from_slice(&0x5a21u16.to_le_bytes()); // date
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // extra
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(data);
    let directory = out.len() as u32;
    out.extend_from_slice(b"PK\x01\x02");
    out.extend_from_slice(&20u16.to_le_bytes()); // version made by
    out.extend_from_slice(&20u16.to_le_bytes()); // version needed
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0x5a21u16.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(&[0; 12]); // extra, comment, disk, internal and external attributes
    out.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    out.extend_from_slice(name.as_bytes());
    let directory_len = out.len() as u32 - directory;
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]); // this disk, directory disk
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&directory_len.to_le_bytes());
    out.extend_from_slice(&directory.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// An [`ObjectStoreStorage`](tower_signed_upload::storage::ObjectStoreStorage)
/// over a fresh in-memory object store, under the prefix `uploads`.
#[cfg(feature = "object-store")]
pub fn object_store_storage() -> Arc<dyn tower_signed_upload::storage::Storage> {
    let store = Arc::new(object_store::memory::InMemory::new());
    Arc::new(tower_signed_upload::storage::ObjectStoreStorage::new(
        store, "uploads",
    ))
}

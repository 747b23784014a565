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

/// A layered [`tower_signed_upload::RespondCreated`] that counts its calls.
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
        tower_signed_upload::RespondCreated.call(request)
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
        let head = std::str::from_utf8(&buffer[..head_end]).unwrap().to_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = http::HeaderMap::new();
        for line in lines.filter(|line| !line.is_empty()) {
            let (name, value) = line.split_once(':').unwrap();
            headers.append(
                http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                http::HeaderValue::from_str(value.trim()).unwrap(),
            );
        }
        let length: usize = headers
            .get("content-length")
            .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
        while buffer.len() < head_end + length {
            let read = stream.read(&mut chunk).await.unwrap();
            assert!(read > 0, "connection closed inside the response body");
            buffer.extend_from_slice(&chunk[..read]);
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
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

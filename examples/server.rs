//! The example upload service: an uploader page, URL minting, signed uploads
//! and downloads on local disk.
//!
//! ```sh
//! SIGNED_UPLOAD_KEY=secret cargo run --release --example server -- \
//!     --addr 127.0.0.1:3000 --dir ./uploads --public-url http://127.0.0.1:3000
//! ```
//!
//! Then open http://127.0.0.1:3000. Flags and routes: see SERVER.md in the docs.
//!
//! With `--features object-store` and `--s3-bucket`, files and sessions live in
//! an S3 bucket instead (credentials and region from the usual `AWS_*`
//! variables), so several servers behind a load balancer share uploads:
//!
//! ```sh
//! AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… AWS_REGION=us-east-1 SIGNED_UPLOAD_KEY=secret \
//!     cargo run --release --features object-store --example server -- \
//!     --s3-bucket uploads --s3-url http://127.0.0.1:9000 --s3-prefix site
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_layer::Layer;
use tower_signed_upload::storage::{FsStorage, Storage};
use tower_signed_upload::{
    services::{FileService, SignatureEndpoint},
    SignedMethod, SignedUploadLayer, Signer, SigningKey, UploadPath, UploadedFile, UrlOptions,
};

const PAGE: &str = include_str!("server/index.html");

/// How often expired sessions are purged.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(about = "Signed uploads to a local folder, with an uploader page")]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Folder the files are stored in.
    #[arg(long, default_value = "./uploads")]
    dir: PathBuf,
    /// Public base URL of the files [default: http://{addr}].
    #[arg(long)]
    public_url: Option<String>,
    /// Largest file accepted, in bytes.
    #[arg(long, default_value_t = tower_signed_upload::DEFAULT_MAX_SIZE)]
    max_size: u64,
    /// Another origin allowed to upload from a browser (repeatable).
    #[arg(long = "allow-origin")]
    allow_origins: Vec<String>,
    /// Keep files and sessions in this S3 bucket instead of `--dir`; credentials
    /// and region come from the AWS_* environment variables.
    #[cfg(feature = "object-store")]
    #[arg(long)]
    s3_bucket: Option<String>,
    /// The S3 endpoint, for S3-compatible stores (MinIO, R2, moto…) [default: AWS].
    #[cfg(feature = "object-store")]
    #[arg(long, requires = "s3_bucket")]
    s3_url: Option<String>,
    /// The key prefix under which files and sessions are kept in the bucket.
    #[cfg(feature = "object-store")]
    #[arg(long, default_value = "", requires = "s3_bucket")]
    s3_prefix: String,
    /// Seconds a connection has to send its first bytes, and again to finish each
    /// HTTP/1 request head; the demo JSON routes give their bodies as long too.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a connection may stay open with no request in flight (HTTP/1
    /// keep-alive and HTTP/2 alike) before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
    /// Seconds between HTTP/2 keep-alive pings; a ping left unanswered as long
    /// closes the connection.
    #[arg(long, value_name = "SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    ping_interval: u64,
    /// Open connections at most. Past it, and while the process is out of file
    /// descriptors, new connections wait in the kernel's queue until one closes.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
}

/// The connection limits the flags set.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    idle_timeout: Duration,
    ping_interval: Duration,
    max_connections: usize,
}

impl Limits {
    fn from_args(args: &Args) -> Self {
        Limits {
            header_timeout: Duration::from_secs(args.header_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            ping_interval: Duration::from_secs(args.ping_interval),
            // The parser caps the flag far below `usize::MAX`.
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        }
    }
}

/// The storage the flags ask for: a bucket, or the folder.
fn storage(args: &Args) -> Result<Arc<dyn Storage>, String> {
    #[cfg(feature = "object-store")]
    if let Some(bucket) = &args.s3_bucket {
        let mut builder =
            object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket.as_str());
        if let Some(url) = &args.s3_url {
            builder = builder
                .with_endpoint(url.as_str())
                .with_allow_http(url.starts_with("http://"));
        }
        let store = builder
            .build()
            .map_err(|e| format!("cannot use bucket {bucket}: {e}"))?;
        let storage =
            tower_signed_upload::storage::ObjectStoreStorage::new(Arc::new(store), &args.s3_prefix);
        return Ok(Arc::new(storage));
    }
    let storage =
        FsStorage::new(&args.dir).map_err(|e| format!("cannot use {}: {e}", args.dir.display()))?;
    Ok(Arc::new(storage))
}

/// The keys from the environment: (id, secret) pairs, the first signs.
fn keys() -> Result<Vec<(Option<String>, String)>, String> {
    let single = std::env::var("SIGNED_UPLOAD_KEY").ok();
    let several = std::env::var("SIGNED_UPLOAD_KEYS").ok();
    match (single, several) {
        (Some(_), Some(_)) => Err("set SIGNED_UPLOAD_KEY or SIGNED_UPLOAD_KEYS, not both".into()),
        (Some(key), None) if !key.is_empty() => Ok(vec![(None, key)]),
        (Some(_), None) => Err("SIGNED_UPLOAD_KEY is empty".into()),
        (None, Some(list)) => list
            .split(',')
            .map(|entry| {
                let (id, secret) = entry.split_once(':').ok_or(format!("SIGNED_UPLOAD_KEYS entry without `id:`: {id}", id = entry.split(':').next().unwrap_or("")))?;
                let valid_id = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
                if !valid_id || secret.is_empty() {
                    return Err(format!("SIGNED_UPLOAD_KEYS entry `{id}` needs an id of letters, digits, -_.~ and a secret"));
                }
                Ok((Some(id.to_owned()), secret.to_owned()))
            })
            .collect(),
        (None, None) => {
            let mut bytes = [0u8; 24];
            getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a key: {e}"))?;
            let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            println!("no SIGNED_UPLOAD_KEY set; using a random key for this run: SIGNED_UPLOAD_KEY={key}");
            Ok(vec![(None, key)])
        }
    }
}

#[derive(Deserialize)]
struct UploadUrlRequest {
    filename: String,
    #[serde(default)]
    folder: Option<String>,
    /// Signed limit on the file's size, in bytes.
    #[serde(default)]
    max_size: Option<u64>,
    /// Signed MIME patterns the file's sniffed type must match, such as `image/*`.
    #[serde(default, rename = "type")]
    types: Option<String>,
}

/// The demo's own URL endpoint. A real app checks here who its user is and
/// which paths they may write, before it signs anything.
async fn upload_url(
    State(signer): State<Signer>,
    body: Result<Json<UploadUrlRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let bad = |message: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": message })),
        )
            .into_response()
    };
    let Ok(Json(request)) = body else {
        return bad("send JSON: {\"filename\": \"image.png\", \"folder\": \"optional/folder\"}");
    };
    let joined = match request.folder.as_deref().map(|f| f.trim_matches('/')) {
        Some(folder) if !folder.is_empty() => format!("{folder}/{}", request.filename),
        _ => request.filename,
    };
    let Some(path) = UploadPath::new(&joined) else {
        return bad("the filename is not a valid path");
    };
    let mut options = UrlOptions::new();
    if let Some(max_size) = request.max_size {
        options = options.max_size(max_size);
    }
    if let Some(types) = &request.types {
        let Ok(with_types) = options.types(types) else {
            return bad("type is a list of MIME patterns such as image/* or video/mp4");
        };
        options = with_types;
    }
    match signer.sign_with(
        &path,
        SignedMethod::Put,
        Duration::from_secs(3600),
        &options,
    ) {
        Ok(url) => Json(serde_json::json!({ "signedUrl": url.as_str() })).into_response(),
        Err(error) => bad(&error.to_string()),
    }
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE))
}

fn cors(public_url: &str, origins: &[String]) -> Result<CorsLayer, String> {
    let mut allowed = vec![HeaderValue::from_str(public_url).map_err(|_| "invalid public URL")?];
    for origin in origins {
        allowed.push(
            HeaderValue::from_str(origin.trim_end_matches('/'))
                .map_err(|_| format!("invalid origin {origin}"))?,
        );
    }
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::PUT, Method::GET, Method::HEAD, Method::POST])
        .allow_headers([
            header::CONTENT_RANGE,
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("content-digest"),
            header::HeaderName::from_static("repr-digest"),
        ])
        .expose_headers([header::ETAG, header::LOCATION, header::RANGE])
        .max_age(Duration::from_secs(3600)))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}

async fn run(args: Args) -> Result<(), String> {
    let keys = keys()?;
    let listener = listen(args.addr).map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let storage = storage(&args)?;

    // Keys from SIGNED_UPLOAD_KEYS carry their id, the `kid` a URL may name.
    let signing_key = |(id, secret): &(Option<String>, String)| {
        let key = SigningKey::new(secret).map_err(|e| e.to_string())?;
        match id {
            Some(id) => key.with_id(id).map_err(|e| e.to_string()),
            None => Ok(key),
        }
    };
    let mut layer = SignedUploadLayer::with_storage(signing_key(&keys[0])?, Arc::clone(&storage))
        .public_base(&public_url)
        .map_err(|e| e.to_string())?
        .max_size(args.max_size);
    for key in &keys[1..] {
        layer = layer.verify_key(signing_key(key)?);
    }
    let files = tower::ServiceBuilder::new()
        .map_request(log_completion)
        .service(FileService::for_layer(&layer));
    let uploads = layer.layer(files);
    let signatures = SignatureEndpoint::for_layer(&layer, &keys[0].1);

    let limits = Limits::from_args(&args);
    let body_timeout = limits.header_timeout;
    let json_routes = Router::new()
        .route("/upload-url", post(upload_url))
        .route_service("/signatures", signatures)
        .route_layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                bounded_json_body(request, next, body_timeout)
            },
        ));
    let app = Router::new()
        .route("/", get(page))
        .merge(json_routes)
        .fallback_service(uploads)
        .with_state(layer.signer())
        .layer(cors(&public_url, &args.allow_origins)?)
        .layer(tower_http::trace::TraceLayer::new_for_http());

    tokio::spawn(async move {
        let mut every = tokio::time::interval(PURGE_EVERY);
        loop {
            every.tick().await;
            match storage.purge_expired(SystemTime::now()).await {
                Ok(report) => tracing::info!(?report, "purged expired uploads"),
                Err(error) => tracing::warn!(%error, "purge failed"),
            }
        }
    });

    println!("listening on http://{addr}");
    serve(listener, app, limits).await;
    Ok(())
}

/// Connections the kernel completes and queues until the server accepts them
/// (capped by the system's `net.core.somaxconn`). It is where connections wait
/// past `--max-connections` and while the process is out of file descriptors;
/// the usual 128 overflows under a burst of connects, and a connection that
/// overflows it never reaches the server, though a client that has sent nothing
/// yet sees it open.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The largest body the demo JSON routes read.
const MAX_JSON_BODY: usize = 64 * 1024;

/// Reads the body of a demo JSON route whole before the route sees it: at most
/// [`MAX_JSON_BODY`] bytes (413 past it), within `within` (408 after it), so a
/// client that declares a body and never sends it holds nothing for long.
async fn bounded_json_body(
    request: axum::extract::Request,
    next: axum::middleware::Next,
    within: Duration,
) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_JSON_BODY as u64) {
        return refuse_body(StatusCode::PAYLOAD_TOO_LARGE, "the body is over 64 KiB");
    }
    let read = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, MAX_JSON_BODY));
    match tokio::time::timeout(within, read).await {
        Err(_) => refuse_body(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time",
        ),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            refuse_body(StatusCode::PAYLOAD_TOO_LARGE, "the body is over 64 KiB")
        }
        Ok(Err(_)) => refuse_body(StatusCode::BAD_REQUEST, "the body could not be read"),
        Ok(Ok(collected)) => {
            let body = axum::body::Body::from(collected.to_bytes());
            next.run(axum::extract::Request::from_parts(parts, body))
                .await
        }
    }
}

/// A JSON error for a body that was not read whole; the rest of the body is
/// never read, so the connection closes after the answer.
fn refuse_body(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONNECTION, "close")],
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// Logs each completed upload as the layer hands it to the inner service, at
/// INFO (`RUST_LOG=server=info`): one `upload completed` line per file.
fn log_completion<B>(request: axum::http::Request<B>) -> axum::http::Request<B> {
    if let Some(file) = request.extensions().get::<UploadedFile>() {
        tracing::info!(id = %file.id, url = %file.url, "upload completed");
    }
    request
}

/// Bytes all connections together read from their sockets at once, at most. A
/// connection reads up to this share of it per read (and never less than
/// [`MIN_READ`]): a lone upload reads in large pieces (hyper's own limit, about
/// 400 KiB), the fewest system calls and wake-ups per byte, while 200 uploads at
/// once read 20 KiB each, so their buffers stay small. Waiting bytes stay in the
/// kernel's socket buffers.
const READ_BUDGET: usize = 4 * 1024 * 1024;
const MIN_READ: usize = 16 * 1024;

/// A connection's socket whose reads are capped at its share of
/// [`READ_BUDGET`] among the open connections.
///
/// The bytes read before the connection was handed to hyper (see
/// [`read_first_bytes`]) are read again first.
struct SharedReads {
    stream: tokio::net::TcpStream,
    first: bytes::Bytes,
    open: Arc<AtomicUsize>,
}

impl SharedReads {
    fn new(stream: tokio::net::TcpStream, first: Vec<u8>, open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        SharedReads {
            stream,
            first: first.into(),
            open: Arc::clone(open),
        }
    }
}

impl Drop for SharedReads {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for SharedReads {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.first.is_empty() {
            let take = self.first.len().min(buf.remaining());
            let first = self.first.split_to(take);
            buf.put_slice(&first);
            return Poll::Ready(Ok(()));
        }
        let share = (READ_BUDGET / self.open.load(Ordering::Relaxed).max(1)).max(MIN_READ);
        if buf.remaining() <= share {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let mut part = buf.take(share);
        ready!(Pin::new(&mut self.stream).poll_read(cx, &mut part))?;
        let read = part.filled().len();
        // SAFETY: the `read` bytes after `buf`'s filled part were just
        // initialised by the socket through `part`, which views that memory.
        unsafe { buf.assume_init(read) };
        buf.advance(read);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SharedReads {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// How long the accept loop waits after `accept` failed (out of file
/// descriptors and the like) before it tries again: the connections it has
/// keep being served meanwhile, and the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The HTTP/2 connection preface. hyper's auto builder reads up to this many
/// bytes to tell HTTP/2 from HTTP/1, with no timeout of its own.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the protocol is known: the whole HTTP/2 preface, or the first
/// byte that differs from it (HTTP/1). `None` if the client closed first.
async fn read_first_bytes(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut first = vec![0; H2_PREFACE.len()];
    let mut filled = 0;
    loop {
        let read = stream.read(&mut first[filled..]).await.ok()?;
        if read == 0 {
            return None;
        }
        filled += read;
        if filled == first.len() || first[..filled] != H2_PREFACE[..filled] {
            first.truncate(filled);
            return Some(first);
        }
    }
}

/// What a connection is doing: requests in flight (until their response
/// bodies are sent or dropped), and since when it has had none.
struct Activity {
    busy: AtomicUsize,
    idle_since: std::sync::Mutex<tokio::time::Instant>,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Activity {
            busy: AtomicUsize::new(0),
            idle_since: std::sync::Mutex::new(tokio::time::Instant::now()),
        })
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }

    /// When the connection counts as idle for `timeout`, if no request is in
    /// flight now.
    fn idle_deadline(&self, timeout: Duration) -> Option<tokio::time::Instant> {
        let since = *self
            .idle_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (self.busy.load(Ordering::SeqCst) == 0).then_some(since + timeout)
    }
}

/// One request in flight on a connection; its end is dropping it.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self
            .0
            .idle_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tokio::time::Instant::now();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted as in flight until it is
/// sent or dropped.
struct Tracked {
    body: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves `app` on `listener` until SIGINT or SIGTERM, then stops accepting,
/// lets in-flight requests finish for up to [`SHUTDOWN_GRACE`] and returns.
///
/// At most `limits.max_connections` connections are open at once; past that,
/// and while `accept` fails (out of file descriptors), new connections wait in
/// the kernel's queue while the open ones are served.
async fn serve(listener: tokio::net::TcpListener, app: Router, limits: Limits) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.ping_interval)
        .keep_alive_timeout(limits.ping_interval);
    let builder = Arc::new(builder);
    let open = Arc::new(AtomicUsize::new(0));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (stopping, stop_watch) = tokio::sync::watch::channel(false);
    // Every connection task holds a sender; `recv` ends once all are gone.
    let (running, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
    let mut stop = std::pin::pin!(shutdown_signal());
    let mut failing = false;
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
            _ = stop.as_mut() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    failing = false;
                    stream
                }
                Err(error) => {
                    // Once per run of failures, not ten times a second.
                    if !failing {
                        tracing::warn!(%error, "accept failed; serving the open connections");
                    }
                    failing = true;
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                        _ = stop.as_mut() => break,
                    }
                }
            },
            _ = stop.as_mut() => break,
        };
        let connection = Connection {
            builder: Arc::clone(&builder),
            app: app.clone(),
            open: Arc::clone(&open),
            limits,
            stop: stop_watch.clone(),
            _slot: slot,
            _running: running.clone(),
        };
        tokio::spawn(connection.serve(stream));
    }
    drop(listener);
    let _ = stopping.send(true);
    drop(running);
    tokio::select! {
        _ = all_done.recv() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            eprintln!("in-flight requests did not finish in {SHUTDOWN_GRACE:?}; stopping");
        }
    }
}

/// One accepted connection and what it holds while it is open.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    open: Arc<AtomicUsize>,
    limits: Limits,
    stop: tokio::sync::watch::Receiver<bool>,
    /// Its place among `--max-connections`, given back when it closes.
    _slot: tokio::sync::OwnedSemaphorePermit,
    _running: tokio::sync::mpsc::Sender<()>,
}

impl Connection {
    /// Serves the connection until it closes: closed if its first bytes do not
    /// come within the header timeout, or once it has been idle for the idle
    /// timeout, or at shutdown once its requests are answered.
    async fn serve(mut self, mut stream: tokio::net::TcpStream) {
        let _ = stream.set_nodelay(true);
        let first = tokio::select! {
            first = tokio::time::timeout(self.limits.header_timeout, read_first_bytes(&mut stream)) => first,
            _ = self.stop.changed() => return,
        };
        let Ok(Some(first)) = first else {
            return;
        };
        let activity = Activity::new();
        let tracking = Arc::clone(&activity);
        let service = tower::ServiceBuilder::new()
            .map_future(move |future| {
                let busy = tracking.begin();
                async move {
                    let response: Response = future.await?;
                    Ok::<_, std::convert::Infallible>(
                        response.map(|body| axum::body::Body::new(Tracked { body, _busy: busy })),
                    )
                }
            })
            .service(self.app.clone());
        let io = TokioIo::new(SharedReads::new(stream, first, &self.open));
        let connection = self
            .builder
            .serve_connection_with_upgrades(io, TowerToHyperService::new(service));
        let mut connection = std::pin::pin!(connection);
        let mut closing = false;
        loop {
            let idle_at = activity
                .idle_deadline(self.limits.idle_timeout)
                .unwrap_or_else(|| tokio::time::Instant::now() + self.limits.idle_timeout);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                _ = self.stop.changed(), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = tokio::time::sleep_until(idle_at), if !closing => {
                    let idle = activity
                        .idle_deadline(self.limits.idle_timeout)
                        .is_some_and(|deadline| deadline <= tokio::time::Instant::now());
                    if idle {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

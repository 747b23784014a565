//! The example upload service: an uploader page, URL minting, signed uploads
//! and downloads on local disk.
//!
//! ```sh
//! SIGNED_UPLOAD_KEY=secret cargo run --release --example server -- \
//!     --addr 127.0.0.1:3000 --dir ./uploads --public-url http://127.0.0.1:3000
//! ```
//!
//! Then open http://127.0.0.1:3000. Flags: `--help`. Routes: `GET /` (the
//! uploader page), `POST /upload-url`, `POST /signatures`, and the signed upload and
//! download URLs (docs/protocol.md).
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
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_layer::Layer;
use tower_signed_upload::serve::Server;
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
    /// Seconds a response may wait for its client to take more of it (a
    /// download nobody reads) before the connection is closed.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    write_timeout: u64,
    /// Open connections at most. Past it, and while the process is out of file
    /// descriptors, new connections wait in the kernel's queue until one closes.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Bytes that unfinished uploads (sessions and simple uploads in flight)
    /// may hold in `--dir` together; past it, uploads are refused with 507
    /// `storage_full`, and what was acknowledged stays. Counted per process.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_PENDING, value_parser = clap::value_parser!(u64).range(1..))]
    max_pending: u64,
    /// Bytes read from all connections at once, shared among them; a lone
    /// upload reads in large pieces, many at once in smaller ones.
    #[arg(long, value_name = "BYTES", default_value_t = tower_signed_upload::serve::DEFAULT_READ_BUDGET as u64, value_parser = clap::value_parser!(u64).range(65536..=(1 << 32)))]
    read_budget: u64,
    /// Body bytes all uploads to `--dir` may hold in memory while they are
    /// written to disk.
    #[arg(long, value_name = "BYTES", default_value_t = FsStorage::DEFAULT_BUFFER_BUDGET as u64, value_parser = clap::value_parser!(u64).range(65536..=(1 << 32)))]
    buffer_budget: u64,
}

/// Default of `--max-pending`: 8 GiB.
const DEFAULT_MAX_PENDING: u64 = 8 << 30;

/// The connection limits the flags set.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    idle_timeout: Duration,
    write_timeout: Duration,
    ping_interval: Duration,
    max_connections: usize,
    read_budget: usize,
}

impl Limits {
    fn from_args(args: &Args) -> Self {
        Limits {
            header_timeout: Duration::from_secs(args.header_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            write_timeout: Duration::from_secs(args.write_timeout),
            ping_interval: Duration::from_secs(args.ping_interval),
            // The parser caps the flag far below `usize::MAX`.
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
            read_budget: usize::try_from(args.read_budget).unwrap_or(usize::MAX),
        }
    }

    fn server(&self) -> Server {
        Server::new()
            .header_timeout(self.header_timeout)
            .idle_timeout(self.idle_timeout)
            .write_timeout(self.write_timeout)
            .ping_interval(self.ping_interval)
            .max_connections(self.max_connections)
            .read_budget(self.read_budget)
            .shutdown_grace(SHUTDOWN_GRACE)
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
    let storage = FsStorage::new(&args.dir)
        .map_err(|e| format!("cannot use {}: {e}", args.dir.display()))?
        .max_pending(args.max_pending)
        .buffer_budget(usize::try_from(args.buffer_budget).unwrap_or(usize::MAX));
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

/// The headers every answer to an allowed origin exposes.
const EXPOSED_HEADERS: &str = "etag,location,range,upload-offset,upload-length,upload-expires,\
upload-limit,upload-complete,upload-incomplete,tus-resumable,tus-version,tus-extension,tus-max-size,\
tus-checksum-algorithm";

/// The server's own origin and the `--allow-origin` ones.
fn allowed_origins(public_url: &str, origins: &[String]) -> Result<Arc<[HeaderValue]>, String> {
    let mut allowed = vec![HeaderValue::from_str(public_url).map_err(|_| "invalid public URL")?];
    for origin in origins {
        allowed.push(
            HeaderValue::from_str(origin.trim_end_matches('/'))
                .map_err(|_| format!("invalid origin {origin}"))?,
        );
    }
    Ok(allowed.into())
}

fn cors(allowed: Arc<[HeaderValue]>) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed.iter().cloned()))
        .allow_methods([
            Method::PUT,
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(
            [
                "content-range",
                "content-type",
                "authorization",
                "content-digest",
                "repr-digest",
                // tus and the IETF resumable-upload draft
                "tus-resumable",
                "upload-length",
                "upload-defer-length",
                "upload-metadata",
                "upload-offset",
                "upload-concat",
                "upload-checksum",
                "x-http-method-override",
                "upload-complete",
                "upload-incomplete",
                "upload-draft-interop-version",
            ]
            .map(header::HeaderName::from_static),
        )
        .expose_headers(
            EXPOSED_HEADERS
                .split(',')
                .map(header::HeaderName::from_static)
                .collect::<Vec<_>>(),
        )
        .max_age(Duration::from_secs(3600))
}

/// tower-http's `CorsLayer` answers every `OPTIONS` itself, as a preflight. A
/// tus client's `OPTIONS` (with `Tus-Resumable`, no
/// `Access-Control-Request-Method`) asks the tus server what it offers, so an
/// `OPTIONS` that is not a preflight goes to the routes, and its answer carries
/// the headers of any answer to an allowed origin.
async fn tus_options(
    request: axum::extract::Request,
    next: axum::middleware::Next,
    routes: Router,
    allowed: Arc<[HeaderValue]>,
) -> Response {
    let headers = request.headers();
    if request.method() != Method::OPTIONS
        || headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return next.run(request).await;
    }
    let origin = headers
        .get(header::ORIGIN)
        .filter(|origin| allowed.contains(origin))
        .cloned();
    let Ok(mut response) = tower::ServiceExt::oneshot(routes, request).await;
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    response
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
    let routes = Router::new()
        .route("/", get(page))
        .merge(json_routes)
        .fallback_service(uploads)
        .with_state(layer.signer());
    let origins = allowed_origins(&public_url, &args.allow_origins)?;
    let app = routes
        .clone()
        .layer(cors(origins.clone()))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                tus_options(request, next, routes.clone(), Arc::clone(&origins))
            },
        ))
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
    limits
        .server()
        .serve(listener, app, shutdown_signal())
        .await;
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
/// INFO (`RUST_LOG=server=info`): one `upload completed` line per file, with
/// its id, public URL and size in bytes.
fn log_completion<B>(request: axum::http::Request<B>) -> axum::http::Request<B> {
    if let Some(file) = request.extensions().get::<UploadedFile>() {
        tracing::info!(id = %file.id, url = %file.url, size = file.filesize, "upload completed");
    }
    request
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

//! The benchmarks' baseline: a bare hyper 1 server that streams the body of
//! every `PUT` to a file and answers `201`, with no signature, no checks and no
//! `fsync`, the way nginx's WebDAV `PUT` does (a temporary file, renamed into
//! place at the end). Not an example to copy: it trusts every request.
//!
//! ```sh
//! cargo run --release --example baseline -- 127.0.0.1:18083 /tmp/baseline-store
//! ```
//!
//! `scripts/bench.sh` compares the example server with it: the difference is
//! what signing, the checks and durability cost.

use std::convert::Infallible;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// Pieces of a body queued for the writer thread before the reader waits.
const QUEUE: usize = 16;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn answer(status: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    response
}

/// Writes what arrives on `pieces` to `temp`, then renames it to `target`.
/// Returns false if the body failed (the temporary file is removed).
fn writer(
    temp: PathBuf,
    target: PathBuf,
    mut pieces: tokio::sync::mpsc::Receiver<Option<Bytes>>,
) -> std::io::Result<bool> {
    let mut file = std::fs::File::create(&temp)?;
    loop {
        match pieces.blocking_recv() {
            Some(Some(piece)) => file.write_all(&piece)?,
            Some(None) => break,
            None => {
                drop(file);
                let _ = std::fs::remove_file(&temp);
                return Ok(false);
            }
        }
    }
    drop(file);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(&temp, &target)?;
    Ok(true)
}

async fn put(root: &Path, request: Request<Incoming>) -> StatusCode {
    let rel = request.uri().path().trim_start_matches('/');
    if rel.is_empty()
        || rel
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return StatusCode::BAD_REQUEST;
    }
    let target = root.join(rel);
    let temp = root.join(".tmp").join(format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let (send, receive) = tokio::sync::mpsc::channel(QUEUE);
    let write = tokio::task::spawn_blocking(move || writer(temp, target, receive));
    let mut body = request.into_body();
    let mut complete = true;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    // A bounded queue: the reader waits when the disk falls behind.
                    if send.send(Some(data)).await.is_err() {
                        complete = false;
                        break;
                    }
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    if complete {
        let _ = send.send(None).await;
    }
    drop(send);
    match write.await {
        Ok(Ok(true)) => StatusCode::CREATED,
        Ok(Ok(false)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18083".into());
    let root: Arc<Path> = Arc::from(PathBuf::from(
        args.next().unwrap_or_else(|| "./baseline-store".into()),
    ));
    std::fs::create_dir_all(root.join(".tmp"))?;
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let root = Arc::clone(&root);
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let root = Arc::clone(&root);
                async move {
                    let status = if request.method() == Method::PUT {
                        put(&root, request).await
                    } else {
                        StatusCode::METHOD_NOT_ALLOWED
                    };
                    Ok::<_, Infallible>(answer(status))
                }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

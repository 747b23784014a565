//! A command-line uploader: sends a file to a signed URL in parallel
//! `Content-Range` chunks, retries failed chunks, resumes interrupted uploads.
//! Speaks https (rustls, trusting the system's certificate store) and http.
//!
//! ```sh
//! cargo run --example upload -- FILE SIGNED_URL [--chunk-size BYTES] [--parallel 4]
//! # a server whose certificate is signed by a CA of your own:
//! cargo run --example upload -- FILE SIGNED_URL --ca-cert my-ca.pem
//! ```

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use futures::{stream, StreamExt, TryStreamExt};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressStyle};
use rustls::pki_types::{pem::PemObject, CertificateDer};
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;

#[derive(Parser, Debug)]
#[command(about = "Upload a file to a signed URL in parallel, resumable chunks")]
struct Args {
    /// The file to send.
    file: PathBuf,
    /// The signed PUT URL (https or http).
    url: String,
    /// Bytes per chunk.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    chunk_size: u64,
    /// Chunks in flight at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Tries per chunk before giving up.
    #[arg(long, default_value_t = 6)]
    tries: u32,
    /// Also trust the CA certificates in this PEM file (repeatable), besides
    /// the system's store: for a server with a private or self-signed CA.
    #[arg(long, value_name = "PATH")]
    ca_cert: Vec<PathBuf>,
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for https and http URLs. Trusts the system's certificate store
/// and the certificates of `--ca-cert`; https needs at least one of them.
fn client(args: &Args) -> Result<HttpClient, String> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    // Certificates of the system's store that rustls cannot parse are left out.
    roots.add_parsable_certificates(native.certs);
    for path in &args.ca_cert {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("{}: not a CA certificate: {e}", path.display()))?;
        }
    }
    if roots.is_empty() && args.url.starts_with("https:") {
        let why = native
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(format!(
            "no trusted certificate: the system's store is empty or unreadable{why}; pass --ca-cert"
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// An error and its sources, `outer: inner: …`: the client's own message
/// ("client error (Connect)") hides why, such as an untrusted certificate.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

struct Answer {
    status: StatusCode,
    body: Value,
}

async fn put(client: &HttpClient, url: &str, range: &str, body: Bytes) -> Result<Answer, String> {
    let request = Request::put(url)
        .header("content-range", range)
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| causes(&e))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(Answer { status, body })
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

fn failure(answer: &Answer) -> String {
    let error = &answer.body["error"];
    format!(
        "{} {}: {}",
        answer.status,
        error["code"].as_str().unwrap_or("?"),
        error["message"].as_str().unwrap_or("")
    )
}

/// Sends one chunk, retrying with exponential backoff. Returns the File object
/// if this chunk's answer carries one (201, or 200 when already complete).
async fn send_chunk(
    client: &HttpClient,
    args: &Args,
    file: &std::fs::File,
    first: u64,
    last: u64,
    total: u64,
) -> Result<Option<Value>, String> {
    let mut data = vec![0u8; (last - first + 1) as usize];
    file.read_exact_at(&mut data, first)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    let data = Bytes::from(data);
    let range = format!("bytes {first}-{last}/{total}");
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=args.tries {
        match put(client, &args.url, &range, data.clone()).await {
            Ok(answer) if answer.status == StatusCode::ACCEPTED => return Ok(None),
            Ok(answer) if answer.status.is_success() => {
                return Ok(Some(answer.body["data"].clone()))
            }
            Ok(answer) if !retryable(answer.status) || attempt == args.tries => {
                return Err(failure(&answer))
            }
            Err(error) if attempt == args.tries => return Err(error),
            _ => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(16));
    }
    Err("out of tries".into())
}

/// The ranges still missing, from the status query's upload object.
fn missing(stored: &[Value], total: u64, chunk: u64) -> Vec<(u64, u64)> {
    let mut gaps = Vec::new();
    let mut next = 0;
    for range in stored {
        let (Some(first), Some(last)) = (range[0].as_u64(), range[1].as_u64()) else {
            continue;
        };
        if first > next {
            gaps.push((next, first - 1));
        }
        next = next.max(last + 1);
    }
    if next < total {
        gaps.push((next, total - 1));
    }
    gaps.into_iter()
        .flat_map(|(first, last)| {
            (first..=last)
                .step_by(chunk as usize)
                .map(move |start| (start, (start + chunk - 1).min(last)))
        })
        .collect()
}

async fn run(args: Args) -> Result<Value, String> {
    let file = std::fs::File::open(&args.file)
        .map_err(|e| format!("cannot open {}: {e}", args.file.display()))?;
    let total = file.metadata().map_err(|e| e.to_string())?.len();
    let client = client(&args)?;
    if total == 0 {
        let request = Request::put(&args.url)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let response = client.request(request).await.map_err(|e| causes(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let answer = Answer {
            status,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        };
        return if status.is_success() {
            Ok(answer.body["data"].clone())
        } else {
            Err(failure(&answer))
        };
    }

    let status = put(
        &client,
        &args.url,
        &format!("bytes */{total}"),
        Bytes::new(),
    )
    .await?;
    let stored = match status.status {
        StatusCode::OK => return Ok(status.body["data"].clone()),
        StatusCode::PERMANENT_REDIRECT => status.body["data"]["ranges"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        _ => return Err(failure(&status)),
    };
    let chunks = missing(&stored, total, args.chunk_size.max(1));
    let done: u64 = total - chunks.iter().map(|(f, l)| l - f + 1).sum::<u64>();
    if done > 0 {
        eprintln!("resuming: {done} of {total} bytes already stored");
    }
    let bar = ProgressBar::new(total).with_position(done);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("a valid template"),
    );
    let file = Arc::new(file);
    let results: Vec<Option<Value>> = stream::iter(chunks)
        .map(|(first, last)| {
            let (client, args, file, bar) = (&client, &args, Arc::clone(&file), bar.clone());
            async move {
                let file_object = send_chunk(client, args, &file, first, last, total).await?;
                bar.inc(last - first + 1);
                Ok::<_, String>(file_object)
            }
        })
        .buffer_unordered(args.parallel.max(1))
        .try_collect()
        .await?;
    bar.finish();
    if let Some(file_object) = results.into_iter().flatten().next() {
        return Ok(file_object);
    }
    // Every chunk was stored but another client completed the file: ask.
    let status = put(
        &client,
        &args.url,
        &format!("bytes */{total}"),
        Bytes::new(),
    )
    .await?;
    match status.status {
        StatusCode::OK => Ok(status.body["data"].clone()),
        _ => Err(failure(&status)),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(file) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&file).unwrap_or_default()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("upload failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

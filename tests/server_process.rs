//! The example server (`examples/server.rs`) as users run it: every route
//! (`GET /`, `POST /upload-url`, `POST /signatures`, signed URLs) over HTTP against the real process, its key variables, CORS, and
//! shutdown on SIGTERM.
#![cfg(all(feature = "fs", unix))]

mod common;
#[path = "common/process.rs"]
mod process;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures::{SinkExt, StreamExt};
use http::{Method, Request};
use http_body_util::Full;
use process::*;
use serde_json::{json, Value};
use tower_signed_upload::{SignedMethod, Signer, SigningKey, UploadPath};

/// The allowed extra origin the CORS tests start the server with.
const ORIGIN: &str = "http://localhost:5173";

/// A URL for `path` on `server`, signed with `secret` for an hour.
fn signed(server: &ServerProcess, secret: &str, path: &str, method: SignedMethod) -> String {
    let signer = Signer::new(SigningKey::new(secret).unwrap());
    let url = signer.sign(
        &UploadPath::new(path).unwrap(),
        method,
        Duration::from_secs(3600),
    );
    server.url(url.path_and_query())
}

fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body.into())).unwrap()
}

fn post_json(url: &str, headers: &[(&str, &str)], body: &Value) -> Request<Full<Bytes>> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request(Method::POST, url, &all, serde_json::to_vec(body).unwrap())
}

/// Checks the File object of a committed PNG of `width` x `height`.
fn assert_png_file(
    file: &Value,
    server: &ServerProcess,
    path: &str,
    size: usize,
    (width, height): (u32, u32),
) {
    assert_eq!(file["object"], "source", "{file}");
    assert_eq!(file["type"], "image/png", "{file}");
    assert_eq!(file["kind"], "image", "{file}");
    assert_eq!(file["width"], width, "{file}");
    assert_eq!(file["height"], height, "{file}");
    assert_eq!(file["filesize"], size, "{file}");
    assert_eq!(file["status"], "ready", "{file}");
    assert_eq!(
        file["url"],
        format!("http://{}/{path}", server.addr),
        "{file}"
    );
    let (folder, filename) = path
        .rsplit_once('/')
        .map_or((None, path), |(f, n)| (Some(f), n));
    assert_eq!(file["filename"], filename, "{file}");
    match folder {
        Some(folder) => assert_eq!(file["folder"], folder, "{file}"),
        None => assert!(
            file.get("folder").is_none_or(|f| f.is_null() || f == ""),
            "{file}"
        ),
    }
    assert!(
        file["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("file_")),
        "{file}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_line_names_the_real_port_and_the_root_page_is_the_uploader() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path()).start();
    assert_eq!(
        server.ready_line,
        format!("listening on http://{}", server.addr)
    );
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(server.addr.port(), 0, "the ready line shows the real port");
    assert!(
        server.stdout_before_ready.is_empty(),
        "{:?}",
        server.stdout_before_ready
    );

    let page = send(
        &client(),
        request(Method::GET, &server.url("/"), &[], Bytes::new()),
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("tower-signed-upload"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_url_mints_put_urls_that_take_a_png_with_and_without_folder() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path()).start();
    let http = client();
    let png = png(300, 200, 5000);
    for (body, path) in [
        (json!({"filename": "a.png"}), "a.png"),
        (
            json!({"filename": "a.png", "folder": "pics/2025"}),
            "pics/2025/a.png",
        ),
        (
            json!({"filename": "b.png", "folder": "/pics/"}),
            "pics/b.png",
        ),
    ] {
        let minted = send(&http, post_json(&server.url("/upload-url"), &[], &body)).await;
        assert_eq!(minted.status, 200, "{body}: {:?}", minted.body);
        let url = minted.json()["signedUrl"].as_str().unwrap().to_owned();
        let prefix = format!("http://{}/{path}?expiry=", server.addr);
        assert!(url.starts_with(&prefix), "{url} for {body}");
        assert!(url.contains("&method=put&signature="), "{url}");

        let answer = send(
            &http,
            put(&url, &[("content-type", "image/png")], png.clone()),
        )
        .await;
        assert_eq!(answer.status, 201, "{path}: {:?}", answer.body);
        assert_png_file(&answer.json()["data"], &server, path, png.len(), (300, 200));
        assert!(answer.header("etag").is_some());
        assert_eq!(
            answer.header("location"),
            Some(&*format!("http://{}/{path}", server.addr))
        );
        assert_eq!(std::fs::read(dir.path().join(path)).unwrap(), png);
    }
    let bad = send(
        &http,
        post_json(&server.url("/upload-url"), &[], &json!({"name": 1})),
    )
    .await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    let escape = send(
        &http,
        post_json(
            &server.url("/upload-url"),
            &[],
            &json!({"filename": "../x.png"}),
        ),
    )
    .await;
    assert_eq!(escape.status, 400, "{:?}", escape.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_mint_put_and_get_urls_and_downloads_honour_range_and_etag() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path()).start();
    let http = client();
    let endpoint = server.url("/signatures");
    let bearer = [("authorization", "Bearer secret")];
    let png = png(64, 48, 2000);

    let minted = send(
        &http,
        post_json(
            &endpoint,
            &bearer,
            &json!({"filename": "p.png", "folder": "shots", "method": "put"}),
        ),
    )
    .await;
    assert_eq!(minted.status, 200, "{:?}", minted.body);
    let envelope = minted.json();
    assert!(envelope["error"].is_null(), "{envelope}");
    assert_eq!(envelope["meta"]["status"], 200, "{envelope}");
    let data = &envelope["data"];
    assert_eq!(data["method"], "put", "{envelope}");
    assert_eq!(data["path"], "shots/p.png", "{envelope}");
    let expiry = data["expiry"].as_u64().unwrap();
    assert!(
        (unix_now() + 3000..=unix_now() + 3700).contains(&expiry),
        "{envelope}"
    );
    let put_url = data["url"].as_str().unwrap();
    assert!(
        put_url.starts_with(&format!(
            "http://{}/shots/p.png?expiry={expiry}&method=put&signature=",
            server.addr
        )),
        "{put_url}"
    );
    let created = send(&http, put(put_url, &[], png.clone())).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_png_file(
        &created.json()["data"],
        &server,
        "shots/p.png",
        png.len(),
        (64, 48),
    );
    let etag = created.header("etag").unwrap().to_owned();

    let minted = send(
        &http,
        post_json(
            &endpoint,
            &bearer,
            &json!({"filename": "p.png", "folder": "shots", "method": "get"}),
        ),
    )
    .await;
    assert_eq!(minted.status, 200, "{:?}", minted.body);
    let data = minted.json()["data"].clone();
    assert_eq!(data["method"], "get");
    assert_eq!(data["path"], "shots/p.png");
    let get_url = data["url"].as_str().unwrap().to_owned();
    assert!(get_url.contains("&method=get&signature="), "{get_url}");

    let got = send(&http, request(Method::GET, &get_url, &[], Bytes::new())).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(got.header("content-length"), Some(&*png.len().to_string()));
    assert_eq!(
        got.header("etag"),
        Some(&*etag),
        "the ETag given at completion"
    );
    assert_eq!(got.body, png);

    let head = send(&http, request(Method::HEAD, &get_url, &[], Bytes::new())).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("image/png"));
    assert_eq!(head.header("content-length"), Some(&*png.len().to_string()));
    assert_eq!(head.header("etag"), Some(&*etag));
    assert!(head.body.is_empty());

    let part = send(
        &http,
        request(
            Method::GET,
            &get_url,
            &[("range", "bytes=0-9")],
            Bytes::new(),
        ),
    )
    .await;
    assert_eq!(part.status, 206, "{:?}", part.body);
    assert_eq!(
        part.header("content-range"),
        Some(&*format!("bytes 0-9/{}", png.len()))
    );
    assert_eq!(part.header("content-length"), Some("10"));
    assert_eq!(part.body, png[..10]);

    let past = send(
        &http,
        request(
            Method::GET,
            &get_url,
            &[("range", "bytes=999999999-")],
            Bytes::new(),
        ),
    )
    .await;
    assert_eq!(past.status, 416, "{:?}", past.body);
    assert_eq!(
        past.header("content-range"),
        Some(&*format!("bytes */{}", png.len()))
    );

    let cached = send(
        &http,
        request(
            Method::GET,
            &get_url,
            &[("if-none-match", &etag)],
            Bytes::new(),
        ),
    )
    .await;
    assert_eq!(cached.status, 304, "{:?}", cached.body);
    assert!(cached.body.is_empty());
    assert_eq!(cached.header("etag"), Some(&*etag));

    // A get URL grants no PUT, a put URL no GET.
    let refused = send(&http, put(&get_url, &[], png.clone())).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(refused.code(), "method_not_signed");
    let refused = send(&http, request(Method::GET, put_url, &[], Bytes::new())).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(refused.code(), "method_not_signed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_without_a_valid_bearer_is_a_401_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path()).start();
    let http = client();
    let body = json!({"filename": "a.png", "method": "put"});
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong")],
        vec![("authorization", "Bearer secretx")],
        vec![("authorization", "Basic c2VjcmV0")],
        vec![("authorization", "secret")],
    ] {
        let answer = send(
            &http,
            post_json(&server.url("/signatures"), &headers, &body),
        )
        .await;
        assert_rejected(&answer, 401, "unauthorized", "POST", "/signatures");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_without_content_length_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path()).start();
    let url = signed(&server, KEY, "stream/chunked.bin", SignedMethod::Put);
    let data = bytes(300_000, 3);
    let pieces: Vec<Vec<u8>> = data.chunks(7000).map(<[u8]>::to_vec).collect();
    let request = stream_put(&url, &[], chunked_body(pieces));
    assert!(request.headers().get("content-length").is_none());
    let answer = send_stream(&stream_client(), request).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(answer.json()["data"]["filesize"], data.len());
    assert_eq!(
        std::fs::read(dir.path().join("stream/chunked.bin")).unwrap(),
        data
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_style_two_chunk_upload_then_status_query() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path()).start();
    let http = client();
    let url = signed(&server, KEY, "two/chunks.txt", SignedMethod::Put);
    let first = send(
        &http,
        put(
            &url,
            &[("content-range", "bytes 0-4/10")],
            b"hello".to_vec(),
        ),
    )
    .await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    assert_eq!(first.header("range"), Some("bytes=0-4"));
    assert_eq!(first.json()["data"]["object"], "upload");
    let status = send(
        &http,
        put(&url, &[("content-range", "bytes */10")], Vec::new()),
    )
    .await;
    assert_eq!(status.status, 308, "{:?}", status.body);
    assert_eq!(status.header("range"), Some("bytes=0-4"));
    let second = send(
        &http,
        put(
            &url,
            &[("content-range", "bytes=5-9/10")],
            b"world".to_vec(),
        ),
    )
    .await;
    assert_eq!(second.status, 201, "{:?}", second.body);
    let file = second.json()["data"].clone();
    assert_eq!(file["filesize"], 10);
    assert_eq!(file["type"], "text/plain", "extension fallback: {file}");
    assert!(second.header("etag").is_some());
    let done = send(
        &http,
        put(&url, &[("content-range", "bytes */10")], Vec::new()),
    )
    .await;
    assert_eq!(done.status, 200, "{:?}", done.body);
    assert_eq!(done.json()["data"], file);
    assert_eq!(done.header("etag"), second.header("etag"));
    assert_eq!(
        std::fs::read(dir.path().join("two/chunks.txt")).unwrap(),
        b"helloworld"
    );
}

fn header_list(answer: &Answer, name: &str) -> Vec<String> {
    answer
        .headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_answers_allowed_origins_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path())
        .arg("--allow-origin")
        .arg(ORIGIN)
        .start();
    let http = client();
    let own = format!("http://{}", server.addr);
    let upload = signed(&server, KEY, "cors/a.png", SignedMethod::Put);
    for origin in [ORIGIN, own.as_str()] {
        let preflight = send(
            &http,
            request(
                Method::OPTIONS,
                &upload,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "PUT"),
                    ("access-control-request-headers", "content-range"),
                ],
                Bytes::new(),
            ),
        )
        .await;
        assert!(
            preflight.status.is_success(),
            "{origin}: {:?}",
            preflight.status
        );
        assert_eq!(
            preflight.header("access-control-allow-origin"),
            Some(origin),
            "{:?}",
            preflight.headers
        );
        assert!(header_list(&preflight, "access-control-allow-methods").contains(&"put".into()));
        assert!(
            header_list(&preflight, "access-control-allow-headers")
                .contains(&"content-range".into()),
            "{:?}",
            preflight.headers
        );
    }
    let post = send(
        &http,
        request(
            Method::OPTIONS,
            &server.url("/signatures"),
            &[
                ("origin", ORIGIN),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization,content-type",
                ),
            ],
            Bytes::new(),
        ),
    )
    .await;
    assert_eq!(post.header("access-control-allow-origin"), Some(ORIGIN));
    let allowed = header_list(&post, "access-control-allow-headers");
    assert!(
        allowed.contains(&"authorization".into()) && allowed.contains(&"content-type".into()),
        "{allowed:?}"
    );

    let evil = send(
        &http,
        request(
            Method::OPTIONS,
            &upload,
            &[
                ("origin", "http://evil.example"),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "content-range"),
            ],
            Bytes::new(),
        ),
    )
    .await;
    assert!(
        evil.header("access-control-allow-origin").is_none(),
        "{:?}",
        evil.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_an_allowed_origin_carry_cors_headers_errors_included() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path())
        .arg("--allow-origin")
        .arg(ORIGIN)
        .start();
    let http = client();
    let good = signed(&server, KEY, "cors/b.txt", SignedMethod::Put);
    let forged = signed(&server, "not the key", "cors/b.txt", SignedMethod::Put);
    let origin = [("origin", ORIGIN)];

    let refused = send(&http, put(&forged, &origin, b"hello".to_vec())).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(refused.code(), "signature_invalid");
    let created = send(&http, put(&good, &origin, b"hello".to_vec())).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let no_auth = send(
        &http,
        post_json(
            &server.url("/signatures"),
            &origin,
            &json!({"filename": "x"}),
        ),
    )
    .await;
    assert_eq!(no_auth.status, 401);
    for answer in [&refused, &created, &no_auth] {
        assert_eq!(
            answer.header("access-control-allow-origin"),
            Some(ORIGIN),
            "{}: {:?}",
            answer.status,
            answer.headers
        );
        let exposed = header_list(answer, "access-control-expose-headers");
        for name in ["etag", "location", "range"] {
            assert!(
                exposed.contains(&name.into()),
                "{}: {name} not in {exposed:?}",
                answer.status
            );
        }
    }
    let evil = send(
        &http,
        put(
            &forged,
            &[("origin", "http://evil.example")],
            b"hello".to_vec(),
        ),
    )
    .await;
    assert_eq!(evil.status, 403);
    assert!(evil.header("access-control-allow-origin").is_none());
}

/// A tus client's `OPTIONS` (not a preflight) reaches the layer and gets its
/// tus answer, with the CORS headers of an allowed origin; a preflight for it
/// stays with CORS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_options_reaches_the_tus_server_and_its_preflight_stays_with_cors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path())
        .arg("--allow-origin")
        .arg(ORIGIN)
        .start();
    let http = client();
    let upload = signed(&server, KEY, "tus/options.bin", SignedMethod::Put);
    for origin in [Some(ORIGIN), None] {
        let mut headers = vec![("tus-resumable", "1.0.0")];
        headers.extend(origin.map(|origin| ("origin", origin)));
        let answer = send(
            &http,
            request(Method::OPTIONS, &upload, &headers, Bytes::new()),
        )
        .await;
        assert!(answer.status.is_success(), "{:?}", answer.status);
        assert_eq!(
            answer.header("tus-version"),
            Some("1.0.0"),
            "{:?}",
            answer.headers
        );
        assert!(
            header_list(&answer, "tus-extension").contains(&"creation".into()),
            "{:?}",
            answer.headers
        );
        assert_eq!(answer.header("access-control-allow-origin"), origin);
        if origin.is_some() {
            assert!(header_list(&answer, "access-control-expose-headers")
                .contains(&"tus-extension".into()));
        }
    }
    let preflight = send(
        &http,
        request(
            Method::OPTIONS,
            &upload,
            &[
                ("origin", ORIGIN),
                ("access-control-request-method", "OPTIONS"),
                ("access-control-request-headers", "tus-resumable"),
            ],
            Bytes::new(),
        ),
    )
    .await;
    assert!(preflight.status.is_success(), "{:?}", preflight.status);
    assert!(
        preflight.header("tus-version").is_none(),
        "{:?}",
        preflight.headers
    );
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(ORIGIN)
    );
    assert!(header_list(&preflight, "access-control-allow-methods").contains(&"options".into()));
    let evil = send(
        &http,
        request(
            Method::OPTIONS,
            &upload,
            &[
                ("tus-resumable", "1.0.0"),
                ("origin", "http://evil.example"),
            ],
            Bytes::new(),
        ),
    )
    .await;
    assert_eq!(evil.header("tus-version"), Some("1.0.0"));
    assert!(evil.header("access-control-allow-origin").is_none());
}

#[test]
fn both_key_variables_set_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) = Launch::new(dir.path())
        .env("SIGNED_UPLOAD_KEYS", Some("k1:s1"))
        .run_to_exit(Duration::from_secs(20));
    assert!(!status.success(), "{status}");
    assert!(status.code().is_some(), "exits, not killed: {status}");
    assert!(
        stderr.contains("SIGNED_UPLOAD_KEY") && stderr.contains("SIGNED_UPLOAD_KEYS"),
        "a message naming both: {stderr}"
    );
    assert!(!stdout.contains("listening on"), "{stdout}");
}

#[test]
fn malformed_key_lists_are_startup_errors() {
    let dir = tempfile::tempdir().unwrap();
    for keys in ["nocolon", "k1:", ":secret", "k 1:s", "k1:s1,,k2:s2"] {
        let (status, stdout, stderr) = Launch::new(dir.path())
            .env("SIGNED_UPLOAD_KEY", None)
            .env("SIGNED_UPLOAD_KEYS", Some(keys))
            .run_to_exit(Duration::from_secs(20));
        assert!(!status.success(), "{keys}: {status}");
        assert!(stderr.contains("SIGNED_UPLOAD_KEYS"), "{keys}: {stderr}");
        assert!(!stdout.contains("listening on"), "{keys}: {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_the_server_prints_a_random_one_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path())
        .env("SIGNED_UPLOAD_KEY", None)
        .start();
    assert_eq!(
        server.stdout_before_ready.len(),
        1,
        "{:?}",
        server.stdout_before_ready
    );
    let line = &server.stdout_before_ready[0];
    let key = line
        .rsplit_once("SIGNED_UPLOAD_KEY=")
        .map(|(_, key)| key.trim())
        .unwrap_or_else(|| panic!("no key in {line:?}"));
    assert!(key.len() >= 32, "{key}");
    let http = client();
    let url = signed(&server, key, "random/key.txt", SignedMethod::Put);
    let answer = send(&http, put(&url, &[], b"hi".to_vec())).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let wrong = signed(&server, "secret", "random/key.txt", SignedMethod::Put);
    let answer = send(&http, put(&wrong, &[], b"hi".to_vec())).await;
    assert_eq!(answer.status, 403, "{:?}", answer.body);

    let other = Launch::new(dir.path())
        .env("SIGNED_UPLOAD_KEY", None)
        .start();
    assert_ne!(
        other.stdout_before_ready, server.stdout_before_ready,
        "a fresh key per run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_of_signed_upload_keys_verifies_and_the_first_is_the_bearer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path())
        .env("SIGNED_UPLOAD_KEY", None)
        .env("SIGNED_UPLOAD_KEYS", Some("k1:s1,k2:s2:with-colon"))
        .start();
    let http = client();
    for (secret, path) in [("s1", "keys/one.txt"), ("s2:with-colon", "keys/two.txt")] {
        let url = signed(&server, secret, path, SignedMethod::Put);
        let answer = send(&http, put(&url, &[], secret.as_bytes().to_vec())).await;
        assert_eq!(answer.status, 201, "{secret}: {:?}", answer.body);
    }
    for secret in ["k1:s1", "s2", "secret"] {
        let url = signed(&server, secret, "keys/bad.txt", SignedMethod::Put);
        let answer = send(&http, put(&url, &[], b"x".to_vec())).await;
        assert_eq!(answer.status, 403, "{secret}: {:?}", answer.body);
    }
    // The first key's secret is the bearer, and it signs the URLs minted.
    let minted = send(
        &http,
        post_json(
            &server.url("/signatures"),
            &[("authorization", "Bearer s1")],
            &json!({"filename": "keys/three.txt"}),
        ),
    )
    .await;
    assert_eq!(minted.status, 200, "{:?}", minted.body);
    let url = minted.json()["data"]["url"].as_str().unwrap().to_owned();
    assert!(!url.contains("kid="), "{url}");
    let expected = signed(&server, "s1", "keys/three.txt", SignedMethod::Put);
    let signature = |u: &str| u.rsplit_once("&signature=").map(|(_, s)| s.to_owned());
    let expiry = |u: &str| {
        u.split("expiry=")
            .nth(1)
            .and_then(|s| s.split('&').next())
            .map(str::to_owned)
    };
    if expiry(&url) == expiry(&expected) {
        assert_eq!(signature(&url), signature(&expected), "signed with s1");
    }
    let answer = send(&http, put(&url, &[], b"3".to_vec())).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let denied = send(
        &http,
        post_json(
            &server.url("/signatures"),
            &[("authorization", "Bearer s2:with-colon")],
            &json!({"filename": "x"}),
        ),
    )
    .await;
    assert_eq!(
        denied.status, 401,
        "only the first key's secret is the bearer"
    );
}

/// Starts a simple PUT of `total` bytes (declared in `Content-Length`) whose
/// body the returned sender feeds.
fn slow_put(
    url: &str,
    total: usize,
) -> (
    futures::channel::mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<Result<Answer, String>>,
) {
    let (sender, receiver) = futures::channel::mpsc::channel::<Bytes>(0);
    let frames = receiver.map(|piece| Ok(http_body::Frame::data(piece)));
    let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(frames));
    let request = stream_put(url, &[("content-length", &total.to_string())], body);
    let http = stream_client();
    let task = tokio::spawn(async move {
        let response = http.request(request).await.map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = http_body_util::BodyExt::collect(body)
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    });
    (sender, task)
}

async fn feed(sender: &mut futures::channel::mpsc::Sender<Bytes>, data: &[u8]) {
    for piece in data.chunks(64 * 1024) {
        tokio::time::timeout(
            Duration::from_secs(10),
            sender.send(Bytes::copy_from_slice(piece)),
        )
        .await
        .expect("the client takes the body")
        .expect("the request is still running");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_upload_the_client_abandons_exits_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut server = Launch::new(root).start();
    let url = signed(&server, KEY, "term/abandoned.bin", SignedMethod::Put);
    let data = bytes(4 * 1024 * 1024, 9);
    let (mut sender, task) = slow_put(&url, data.len());
    feed(&mut sender, &data[..data.len() / 2]).await;
    let tmp = root.join(".uploads/tmp");
    assert!(
        eventually_async(Duration::from_secs(10), || !entries(&tmp).is_empty()).await,
        "the upload never streamed into a temporary file"
    );

    server.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !task.is_finished(),
        "the in-flight upload was cut at SIGTERM"
    );
    // The client gives up: its body ends short of Content-Length.
    drop(sender);
    let outcome = tokio::time::timeout(Duration::from_secs(10), task).await;
    assert!(
        !matches!(outcome, Ok(Ok(Ok(ref answer))) if answer.status.is_success()),
        "a short body succeeded: {outcome:?}"
    );

    let started = Instant::now();
    let status = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(35)));
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running 35 s after SIGTERM; stderr: {}",
            server.stderr()
        )
    });
    println!(
        "exited {:?} after the client left: {status}",
        started.elapsed()
    );
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.success() || status.signal().is_some(),
        "{status}; stderr: {}",
        server.stderr()
    );
    assert!(
        !root.join("term/abandoned.bin").exists(),
        "a half upload was committed"
    );
    assert!(
        entries(&tmp).is_empty(),
        "temporaries left: {:?}",
        entries(&tmp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_upload_finish_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut server = Launch::new(root).start();
    let url = signed(&server, KEY, "term/finished.bin", SignedMethod::Put);
    let data = bytes(4 * 1024 * 1024, 10);
    let (mut sender, task) = slow_put(&url, data.len());
    feed(&mut sender, &data[..data.len() / 2]).await;
    let tmp = root.join(".uploads/tmp");
    assert!(
        eventually_async(Duration::from_secs(10), || !entries(&tmp).is_empty()).await,
        "the upload never streamed into a temporary file"
    );

    server.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    feed(&mut sender, &data[data.len() / 2..]).await;
    drop(sender);
    let answer = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("an answer after SIGTERM")
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(answer.status, 201, "{:?}", answer.body);

    let status = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(35)));
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running 35 s after SIGTERM; stderr: {}",
            server.stderr()
        )
    });
    assert!(status.success(), "{status}; stderr: {}", server.stderr());
    assert_eq!(std::fs::read(root.join("term/finished.bin")).unwrap(), data);
    assert!(
        entries(&tmp).is_empty(),
        "temporaries left: {:?}",
        entries(&tmp)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_idle_keep_alive_connections_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Launch::new(dir.path()).start();
    let http = client();
    let url = signed(&server, KEY, "idle/a.txt", SignedMethod::Put);
    let answer = send(&http, put(&url, &[], b"a".to_vec())).await;
    assert_eq!(answer.status, 201);
    let page = send(
        &http,
        request(Method::GET, &server.url("/"), &[], Bytes::new()),
    )
    .await;
    assert_eq!(page.status, 200);
    // The client keeps its connection open in its pool, as browsers do.
    server.terminate();
    let started = Instant::now();
    let status = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(35)));
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running 35 s after SIGTERM; stderr: {}",
            server.stderr()
        )
    });
    println!(
        "exited {:?} after SIGTERM with an idle connection: {status}",
        started.elapsed()
    );
    assert!(status.success(), "{status}; stderr: {}", server.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "idle connections held shutdown for {:?}",
        started.elapsed()
    );
    drop(http);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_url_names_minted_urls_file_urls_and_the_own_origin() {
    let dir = tempfile::tempdir().unwrap();
    let public = "http://files.example:8080";
    let server = Launch::new(dir.path())
        .arg("--public-url")
        .arg(public)
        .start();
    let http = client();
    let minted = send(
        &http,
        post_json(
            &server.url("/upload-url"),
            &[],
            &json!({"filename": "pub.txt", "folder": "f"}),
        ),
    )
    .await;
    let url = minted.json()["signedUrl"].as_str().unwrap().to_owned();
    let path_and_query = url
        .strip_prefix(public)
        .unwrap_or_else(|| panic!("{url} starts with {public}"));
    assert!(path_and_query.starts_with("/f/pub.txt?expiry="), "{url}");
    let answer = send(
        &http,
        put(
            &server.url(path_and_query),
            &[("origin", public)],
            b"public".to_vec(),
        ),
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(answer.json()["data"]["url"], format!("{public}/f/pub.txt"));
    assert_eq!(
        answer.header("location"),
        Some(&*format!("{public}/f/pub.txt"))
    );
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some(public),
        "the server's own origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_size_flag_limits_simple_and_resumable_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path())
        .arg("--max-size")
        .arg("1000")
        .start();
    let http = client();
    let url = signed(&server, KEY, "limit/a.bin", SignedMethod::Put);
    let exact = send(&http, put(&url, &[], bytes(1000, 1))).await;
    assert_eq!(exact.status, 201, "{:?}", exact.body);
    let over = send(&http, put(&url, &[], bytes(1001, 1))).await;
    assert_eq!(over.status, 413, "{:?}", over.body);
    assert_eq!(over.code(), "too_large");
    let streamed = send_stream(
        &stream_client(),
        stream_put(&url, &[], chunked_body(vec![bytes(600, 2), bytes(600, 3)])),
    )
    .await;
    assert_eq!(streamed.status, 413, "{:?}", streamed.body);
    let chunk = send(
        &http,
        put(&url, &[("content-range", "bytes 0-9/1001")], bytes(10, 4)),
    )
    .await;
    assert_eq!(chunk.status, 413, "{:?}", chunk.body);
    assert_eq!(chunk.code(), "too_large");
    assert_eq!(
        std::fs::read(dir.path().join("limit/a.bin")).unwrap(),
        bytes(1000, 1)
    );
    assert!(entries(&dir.path().join(".uploads/tmp")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_budget_flags_at_their_minimum_still_store_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path())
        .arg("--read-budget")
        .arg("65536")
        .arg("--buffer-budget")
        .arg("65536")
        .start();
    let http = client();
    // Eight 1 MiB uploads at once, and a file in two chunks beside them: far
    // past both budgets, so reads are small and batches are written as read.
    let simple = (0..8u64).map(|n| {
        let url = signed(&server, KEY, &format!("budget/{n}.bin"), SignedMethod::Put);
        let http = http.clone();
        async move { send(&http, put(&url, &[], bytes(1 << 20, n))).await }
    });
    let url = signed(&server, KEY, "budget/chunked.bin", SignedMethod::Put);
    let whole = bytes(3 << 20, 9);
    let (half, rest) = whole.split_at(3 << 19);
    let chunks = async {
        let first = send(
            &http,
            put(
                &url,
                &[("content-range", "bytes 0-1572863/3145728")],
                half.to_vec(),
            ),
        )
        .await;
        assert_eq!(first.status, 202, "{:?}", first.body);
        send(
            &http,
            put(
                &url,
                &[("content-range", "bytes 1572864-3145727/3145728")],
                rest.to_vec(),
            ),
        )
        .await
    };
    let (answers, last) = tokio::join!(futures::future::join_all(simple), chunks);
    for (n, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, 201, "{n}: {:?}", answer.body);
        assert_eq!(
            std::fs::read(dir.path().join(format!("budget/{n}.bin"))).unwrap(),
            bytes(1 << 20, n as u64)
        );
    }
    assert_eq!(last.status, 201, "{:?}", last.body);
    assert_eq!(
        std::fs::read(dir.path().join("budget/chunked.bin")).unwrap(),
        whole
    );
}

#[test]
fn memory_budget_flags_below_their_minimum_are_startup_errors() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--read-budget", "--buffer-budget"] {
        for value in ["0", "65535", "lots"] {
            let (status, stdout, stderr) = Launch::new(dir.path())
                .arg(flag)
                .arg(value)
                .run_to_exit(Duration::from_secs(20));
            assert!(!status.success(), "{flag} {value}: {status}");
            assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
            assert!(!stdout.contains("listening on"), "{flag} {value}: {stdout}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pending_flag_refuses_uploads_past_the_quota_and_counts_sessions_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch::new(dir.path()).arg("--max-pending").arg("1000");
    let mut server = launch.start();
    let http = client();
    let session = signed(&server, KEY, "quota/session.bin", SignedMethod::Put);
    let first = send(
        &http,
        put(
            &session,
            &[("content-range", "bytes 0-599/2000")],
            bytes(600, 1),
        ),
    )
    .await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let simple = signed(&server, KEY, "quota/simple.bin", SignedMethod::Put);
    let over = send(&http, put(&simple, &[], bytes(500, 2))).await;
    assert_eq!(
        (over.status.as_u16(), over.code()),
        (507, "storage_full".into())
    );
    let fits = send(&http, put(&simple, &[], bytes(400, 2))).await;
    assert_eq!(fits.status, 201, "{:?}", fits.body);
    assert!(entries(&dir.path().join(".uploads/tmp")).is_empty());
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(10)).is_some(), "exits");
    drop(server);

    // A new process on the folder counts the session's 600 bytes.
    let server = launch.start();
    let simple = signed(&server, KEY, "quota/again.bin", SignedMethod::Put);
    let over = send(&http, put(&simple, &[], bytes(401, 3))).await;
    assert_eq!(
        (over.status.as_u16(), over.code()),
        (507, "storage_full".into())
    );
    let fits = send(&http, put(&simple, &[], bytes(400, 3))).await;
    assert_eq!(fits.status, 201, "{:?}", fits.body);

    // `--help` names the flag and its default of 8 GiB.
    let (status, stdout, _) = Launch::new(dir.path())
        .arg("--help")
        .run_to_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}");
    assert!(
        stdout.contains("--max-pending") && stdout.contains("8589934592"),
        "{stdout}"
    );
}

/// Waits at most `within` for the server to close `stream`, writing one byte
/// of `trickle` (if any) every 300 ms meanwhile; returns how long it took, or
/// `None` if the connection was still open. Answers the server writes first
/// are read and skipped.
async fn closed_within(
    stream: &mut tokio::net::TcpStream,
    within: Duration,
    trickle: &[u8],
) -> Option<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut next = trickle.iter();
    let mut sink = [0u8; 4096];
    while started.elapsed() < within {
        if let Some(byte) = next.next() {
            if stream.write_all(&[*byte]).await.is_err() {
                return Some(started.elapsed());
            }
        }
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut sink)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            return Some(started.elapsed());
        }
    }
    None
}

async fn connect(server: &ServerProcess) -> tokio::net::TcpStream {
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(server.addr),
    )
    .await
    .expect("connects in time")
    .expect("connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_stalling_connections_are_closed_by_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path())
        .arg("--header-timeout")
        .arg("1")
        .start();
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(connect(&server).await);
    }
    // A byte of the HTTP/2 preface, then of an HTTP/1 head, every 300 ms.
    let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let h1 = b"GET / HTTP/1.1\r\nhost: localhost\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let tricklers = [h2.as_slice(), h1.as_slice()].map(|trickle| {
        let addr = server.addr;
        tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            closed_within(&mut stream, Duration::from_secs(10), trickle).await
        })
    });
    let started = Instant::now();
    for (index, stream) in silent.iter_mut().enumerate() {
        let left = Duration::from_secs(6).saturating_sub(started.elapsed());
        assert!(
            closed_within(stream, left, b"").await.is_some(),
            "silent connection {index} still open after {:?}",
            started.elapsed()
        );
    }
    for (trickler, name) in tricklers.into_iter().zip(["HTTP/2 preface", "HTTP/1 head"]) {
        let closed = trickler.await.unwrap();
        assert!(
            closed.is_some_and(|after| after < Duration::from_secs(4)),
            "a {name} sent a byte every 300 ms was held: {closed:?}"
        );
    }
    // Ordinary requests are still served.
    let page = send(
        &client(),
        request(Method::GET, &server.url("/"), &[], Bytes::new()),
    )
    .await;
    assert_eq!(page.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http1_keep_alive_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path())
        .arg("--idle-timeout")
        .arg("1")
        .start();
    let mut stream = connect(&server).await;
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(&raw_head("GET", "/missing-path", &[]))
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
                .await
                .expect("an answer")
                .unwrap();
            assert_eq!(read, 1, "closed before an answer");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 "), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
    }
    let closed = closed_within(&mut stream, Duration::from_secs(8), b"").await;
    assert!(
        closed.is_some_and(|after| after < Duration::from_secs(4)),
        "an idle keep-alive connection was held: {closed:?}"
    );
}

/// The HTTP/2 client preface with an empty SETTINGS frame.
fn h2_client_preface() -> Vec<u8> {
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_get_keep_alive_pings() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path())
        .arg("--ping-interval")
        .arg("1")
        .start();
    let mut stream = connect(&server).await;
    stream.write_all(&h2_client_preface()).await.unwrap();
    let mut frames = Vec::new();
    let pinged = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let mut header = [0u8; 9];
            stream.read_exact(&mut header).await.unwrap();
            let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; length];
            stream.read_exact(&mut payload).await.unwrap();
            frames.push((header[3], header[4]));
            // PING (type 6) without ACK: the server asks.
            if header[3] == 0x6 && header[4] & 0x1 == 0 {
                return;
            }
        }
    })
    .await;
    assert!(pinged.is_ok(), "no PING within 5 s; frames: {frames:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path())
        .arg("--idle-timeout")
        .arg("1")
        .start();
    let stream = connect(&server).await;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        sender.send_request(request(Method::GET, &server.url("/"), &[], Bytes::new())),
    )
    .await
    .expect("an answer in time")
    .expect("an answer");
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    assert!(!body.to_bytes().is_empty());
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(8), connection).await;
    assert!(
        ended.is_ok() && started.elapsed() < Duration::from_secs(4),
        "an idle HTTP/2 connection was held for {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_caps_open_connections_and_accepts_again_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path())
        .arg("--max-connections")
        .arg("3")
        .start();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&server).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = server.addr;
    let waiting = tokio::spawn(async move {
        raw_exchange(addr, &raw_head("GET", "/", &[]), Duration::from_secs(10)).await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "a fourth connection was served past --max-connections 3"
    );
    drop(held.pop());
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert_eq!(answer.status, 200);
}

/// Connections to `port` the kernel has completed on the listening side
/// (ESTABLISHED in /proc/net/tcp and tcp6), accepted or still queued for
/// `accept`; `None` where there is no `/proc` to tell.
fn established_at(port: u16) -> Option<usize> {
    let mut count = 0;
    let mut found = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        found = true;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1).and_then(|address| address.rsplit_once(':'));
            let local_port = local.and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port) && fields.get(3) == Some(&"01") {
                count += 1;
            }
        }
    }
    found.then_some(count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_in_the_listen_queue_not_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path())
        .arg("--max-connections")
        .arg("1")
        .start();
    let held = connect(&server).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 400 connections past the cap at once: each must be completed and queued
    // by the kernel, not dropped from a queue of the usual 128.
    let addr = server.addr;
    let waiting: Vec<_> = (0..400)
        .map(|_| {
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
                    .await
            })
        })
        .collect();
    let mut queued = Vec::new();
    for connection in waiting {
        if let Ok(Ok(stream)) = connection.await.unwrap() {
            queued.push(stream);
        }
    }
    let Some(_) = established_at(addr.port()) else {
        println!("no /proc: the listen queue is not checked");
        return;
    };
    let complete = eventually_async(Duration::from_secs(5), || {
        established_at(addr.port()).is_some_and(|count| count > 400)
    })
    .await;
    assert!(
        complete,
        "{} of 401 connections reached the server's side",
        established_at(addr.port()).unwrap_or(0)
    );
    drop((held, queued));
}

/// CPU time (user + system, in clock ticks) the process has used so far;
/// `None` where there is no `/proc` to tell.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    Some(fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_server_backs_off_and_serves_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Launch::new(dir.path())
        .fd_limit(64)
        .arg("--header-timeout")
        .arg("2")
        .arg("--max-connections")
        .arg("1000")
        .start();
    let mut silent = Vec::new();
    for _ in 0..100 {
        silent.push(connect(&server).await);
    }
    assert!(
        eventually_async(Duration::from_secs(5), || server
            .stderr()
            .contains("accept failed"))
        .await,
        "accept never ran out of descriptors; stderr: {}",
        server.stderr()
    );
    // Out of descriptors, the accept loop backs off instead of spinning.
    let before = cpu_ticks(server.pid());
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let (Some(before), Some(after)) = (before, cpu_ticks(server.pid())) {
        let spent = after - before;
        assert!(spent < 30, "{spent} ticks of CPU in 1 s out of descriptors");
    } else {
        println!("no /proc: the CPU use out of descriptors is not checked");
    }

    let url = signed(&server, KEY, "fd/after.txt", SignedMethod::Put);
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        send(&client(), put(&url, &[], b"after".to_vec())),
    )
    .await
    .expect("an upload is served once the silent connections time out");
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "the server exited; stderr: {}",
        server.stderr()
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_routes_time_out_missing_bodies_and_refuse_bodies_over_64_kib() {
    let dir = tempfile::tempdir().unwrap();
    let server = Launch::new(dir.path())
        .arg("--header-timeout")
        .arg("1")
        .start();
    for route in ["/upload-url", "/signatures"] {
        let head = raw_head(
            "POST",
            route,
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer secret"),
                ("content-length", "1000"),
            ],
        );
        let started = Instant::now();
        let answer = raw_exchange(server.addr, &head, Duration::from_secs(5)).await;
        assert_eq!(answer.status, 408, "{route}: {:?}", answer.body);
        assert!(started.elapsed() < Duration::from_secs(4), "{route}");

        let big = format!(
            r#"{{"filename": "a.png", "pad": "{}"}}"#,
            "x".repeat(70_000)
        );
        let over = send(
            &client(),
            request(
                Method::POST,
                &server.url(route),
                &[
                    ("content-type", "application/json"),
                    ("authorization", "Bearer secret"),
                ],
                big,
            ),
        )
        .await;
        assert_eq!(over.status, 413, "{route}: {:?}", over.body);
        // Without Content-Length, the limit holds as the body streams in.
        let mut chunked = stream_put(
            &server.url(route),
            &[("authorization", "Bearer secret")],
            chunked_body(vec![vec![b' '; 40_000], vec![b' '; 40_000]]),
        );
        *chunked.method_mut() = Method::POST;
        let streamed = send_stream(&stream_client(), chunked).await;
        assert_eq!(streamed.status, 413, "{route}: {:?}", streamed.body);
    }
}

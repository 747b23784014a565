//! The status table of the wire contract (docs/protocol.md#status-codes), over real HTTP:
//! every rejection's status, `error.code` and envelope, and that a rejected
//! request stores nothing.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use tower_signed_upload::{Error, SignedMethod, SigningKey};

/// The raw path of a URL, as `meta.path` reports it.
fn path_of(url: &str) -> &str {
    target(url).split('?').next().unwrap()
}

/// The URL without its query, and its `expiry=`, `method=`, `signature=` parameters.
fn split(url: &str) -> (&str, String, String, String) {
    let (base, query) = url.split_once('?').unwrap();
    let params: Vec<&str> = query.split('&').collect();
    assert!(params[0].starts_with("expiry=") && params[1] == "method=put");
    assert!(params[2].starts_with("signature="));
    (
        base,
        params[0].to_owned(),
        params[1].to_owned(),
        params[2].to_owned(),
    )
}

/// No file at `path`, no session, and the inner service never called.
fn assert_nothing_stored(server: &TestServer, path: &str) {
    assert_eq!(server.storage.file(path), None, "a file was stored");
    assert_eq!(server.storage.session_count(), 0, "a session was stored");
    assert_eq!(server.calls(), 0, "the inner service was called");
}

fn request(method: Method, url: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// `Range`-less status query answer: what the session holds.
async fn session_ranges(client: &HttpClient, url: &str) -> serde_json::Value {
    let answer = send(client, put(url, &[("content-range", "bytes */*")], "")).await;
    assert_eq!(answer.status, 308, "{:?}", answer.body);
    answer.json()["data"]["ranges"].clone()
}

#[test]
fn every_error_has_its_status_and_code() {
    let table: &[(Error, u16, &str)] = &[
        (Error::SignatureMissing, 401, "signature_missing"),
        (Error::SignatureInvalid, 403, "signature_invalid"),
        (Error::UrlExpired, 403, "url_expired"),
        (Error::ExpiryTooFar, 403, "expiry_too_far"),
        (Error::MethodNotSigned, 403, "method_not_signed"),
        (Error::MethodNotAllowed, 405, "method_not_allowed"),
        (Error::PathInvalid, 400, "path_invalid"),
        (Error::QueryInvalid, 400, "query_invalid"),
        (Error::ContentRangeInvalid, 400, "content_range_invalid"),
        (Error::ContentRangeMismatch, 400, "content_range_mismatch"),
        (Error::TotalMismatch, 409, "total_mismatch"),
        (Error::RangeNotSatisfiable, 416, "range_not_satisfiable"),
        (Error::TooLarge, 413, "too_large"),
        (Error::TooManyRanges, 400, "too_many_ranges"),
        (Error::BodyTimeout, 408, "body_timeout"),
        (Error::BodyIncomplete, 400, "body_incomplete"),
        (Error::StorageFull, 507, "storage_full"),
        (Error::StorageError, 500, "storage_error"),
        (Error::StorageUnavailable, 503, "storage_error"),
        (Error::NotFound, 404, "not_found"),
    ];
    for &(error, status, code) in table {
        assert_eq!(error.status().as_u16(), status, "{error:?}");
        assert_eq!(error.code(), code, "{error:?}");
        assert!(!error.to_string().is_empty(), "{error:?}");
    }
}

// --- Signed URLs -------------------------------------------------------------

#[tokio::test]
async fn url_minted_like_the_node_snippet_is_accepted() {
    // Fixed vector from the contract's Node.js snippet, key "secret".
    const SIGNATURE: &str = "SCJ6n4i8eEsGyqRVRW01qiiy2NjqfT7UtGmWBfy5FNQ";
    const EXPIRY: u64 = 1_735_689_600;
    assert_eq!(
        raw_signature(KEY, &format!("image.png?expiry={EXPIRY}&method=put")),
        SIGNATURE
    );
    let server = TestServer::start().await;
    server.clock.set(EXPIRY - 60);
    let minted = server.url_expiring_at("image.png", SignedMethod::Put, EXPIRY);
    let expected = format!(
        "http://{}/image.png?expiry={EXPIRY}&method=put&signature={SIGNATURE}",
        server.addr
    );
    assert_eq!(minted, expected);
    let answer = send(&client(), put(&expected, &[], "png?")).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(server.storage.file("image.png").unwrap(), "png?");
}

#[tokio::test]
async fn padded_standard_and_percent_encoded_signatures_verify() {
    // Fixed Node.js vector whose base64url form holds `-`.
    const SIGNATURE: &str = "n6l90i9-B32PshV1josBY-yI9x3bbvQ17tanPHMaZdA";
    const EXPIRY: u64 = 1_735_689_600;
    let path = "nested/folders/image.png";
    assert_eq!(
        raw_signature(KEY, &format!("{path}?expiry={EXPIRY}&method=put")),
        SIGNATURE
    );
    let server = TestServer::start().await;
    server.clock.set(EXPIRY - 60);
    let client = client();
    let standard = SIGNATURE.replace('-', "+");
    for form in [
        SIGNATURE.to_owned(),
        format!("{SIGNATURE}="),
        format!("{SIGNATURE}%3D"),
        standard.replace('+', "%2B"),
        format!("{}%3d", standard.replace('+', "%2b")),
    ] {
        let url = format!(
            "http://{}/{path}?expiry={EXPIRY}&method=put&signature={form}",
            server.addr
        );
        let answer = send(&client, put(&url, &[], form.clone())).await;
        assert_eq!(answer.status, 201, "{form}: {:?}", answer.body);
        assert_eq!(server.storage.file(path).unwrap(), form);
    }
}

#[tokio::test]
async fn old_key_still_verifies_after_rotation() {
    let server = TestServer::with(|layer| layer.verify_key(SigningKey::new("old").unwrap())).await;
    let signed = format!("a.txt?expiry={}&method=put", NOW + 60);
    let url = format!(
        "http://{}/{signed}&signature={}",
        server.addr,
        raw_signature("old", &signed)
    );
    let answer = send(&client(), put(&url, &[], "rotated")).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(server.storage.file("a.txt").unwrap(), "rotated");
}

// --- 401 signature_missing ---------------------------------------------------

#[tokio::test]
async fn url_without_signature_expiry_or_method_is_401() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.txt");
    let (base, expiry, method, signature) = split(&url);
    for url in [
        base.to_owned(),
        format!("{base}?"),
        format!("{base}?{expiry}&{method}"),
        format!("{base}?{method}&{signature}"),
        format!("{base}?{expiry}&{signature}"),
        format!("{base}?{expiry}&{method}&signature="),
        format!("{base}?expiry=&{method}&{signature}"),
    ] {
        let answer = send(&client, put(&url, &[], "data")).await;
        assert_rejected(&answer, 401, "signature_missing", "PUT", "/a.txt");
    }
    let (base, ..) = split(&url);
    let get = send(&client, request(Method::GET, base, "")).await;
    assert_rejected(&get, 401, "signature_missing", "GET", "/a.txt");
    assert_nothing_stored(&server, "a.txt");
}

// --- 403 signature_invalid ---------------------------------------------------

#[tokio::test]
async fn tampered_url_is_403_signature_invalid() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.txt");
    let (base, expiry, method, signature) = split(&url);
    let value = signature.strip_prefix("signature=").unwrap();
    let first = if value.starts_with('A') { "B" } else { "A" };
    let changed_signature = format!("{base}?{expiry}&{method}&signature={first}{}", &value[1..]);
    let later: u64 = expiry.strip_prefix("expiry=").unwrap().parse().unwrap();
    let cases = [
        changed_signature,
        format!("{base}?expiry={}&{method}&{signature}", later - 1),
        format!("{base}?{expiry}&method=get&{signature}"),
        format!("{base}?{expiry}&{method}&signature=short"),
        format!("{base}?{method}&{expiry}&{signature}"),
    ];
    for url in &cases {
        let answer = send(&client, put(url, &[], "data")).await;
        assert_rejected(&answer, 403, "signature_invalid", "PUT", "/a.txt");
    }
    let moved = url.replacen("/a.txt?", "/b.txt?", 1);
    let answer = send(&client, put(&moved, &[], "data")).await;
    assert_rejected(&answer, 403, "signature_invalid", "PUT", "/b.txt");
    assert_nothing_stored(&server, "a.txt");
    assert_eq!(server.storage.file("b.txt"), None);
}

#[tokio::test]
async fn url_signed_with_an_unknown_key_is_403() {
    let server = TestServer::start().await;
    let signed = format!("a.txt?expiry={}&method=put", NOW + 60);
    let url = format!(
        "http://{}/{signed}&signature={}",
        server.addr,
        raw_signature("not configured", &signed)
    );
    let answer = send(&client(), put(&url, &[], "data")).await;
    assert_rejected(&answer, 403, "signature_invalid", "PUT", "/a.txt");
    assert_nothing_stored(&server, "a.txt");
}

// --- 403 url_expired / expiry_too_far ----------------------------------------

#[tokio::test]
async fn expired_url_is_403() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.url_expiring_at("a.txt", SignedMethod::Put, NOW + 10);
    server.clock.set(NOW + 11);
    let answer = send(&client, put(&url, &[], "data")).await;
    assert_rejected(&answer, 403, "url_expired", "PUT", "/a.txt");
    let get = server.url_expiring_at("a.txt", SignedMethod::Get, NOW + 10);
    let answer = send(&client, request(Method::GET, &get, "")).await;
    assert_rejected(&answer, 403, "url_expired", "GET", "/a.txt");
    assert_nothing_stored(&server, "a.txt");
}

#[tokio::test]
async fn url_works_through_its_expiry_second() {
    let server = TestServer::start().await;
    let url = server.url_expiring_at("a.txt", SignedMethod::Put, NOW + 10);
    server.clock.set(NOW + 10);
    let answer = send(&client(), put(&url, &[], "data")).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(server.storage.file("a.txt").unwrap(), "data");
}

#[tokio::test]
async fn expiry_past_the_default_lifetime_is_403() {
    let server = TestServer::start().await;
    let client = client();
    let week = 7 * 24 * 3600;
    let url = server.url_expiring_at("a.txt", SignedMethod::Put, NOW + week + 1);
    let answer = send(&client, put(&url, &[], "data")).await;
    assert_rejected(&answer, 403, "expiry_too_far", "PUT", "/a.txt");
    assert_nothing_stored(&server, "a.txt");

    let url = server.url_expiring_at("a.txt", SignedMethod::Put, NOW + week);
    let answer = send(&client, put(&url, &[], "data")).await;
    assert_eq!(
        answer.status, 201,
        "a URL of exactly the maximum lifetime works"
    );
}

#[tokio::test]
async fn expiry_past_a_configured_lifetime_is_403() {
    let server = TestServer::with(|layer| layer.max_lifetime(Duration::from_secs(60))).await;
    let client = client();
    let url = server.url_expiring_at("a.txt", SignedMethod::Put, NOW + 61);
    let answer = send(&client, put(&url, &[], "data")).await;
    assert_rejected(&answer, 403, "expiry_too_far", "PUT", "/a.txt");
    assert_nothing_stored(&server, "a.txt");
    let url = server.url_expiring_at("a.txt", SignedMethod::Put, NOW + 60);
    assert_eq!(send(&client, put(&url, &[], "data")).await.status, 201);
}

// --- 403 method_not_signed ---------------------------------------------------

#[tokio::test]
async fn get_url_used_for_put_is_403() {
    let server = TestServer::start().await;
    let url = server.get_url("a.txt");
    let answer = send(&client(), put(&url, &[], "data")).await;
    assert_rejected(&answer, 403, "method_not_signed", "PUT", "/a.txt");
    assert_nothing_stored(&server, "a.txt");
}

#[tokio::test]
async fn put_url_used_for_get_or_head_is_403() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.txt");
    let answer = send(&client, request(Method::GET, &url, "")).await;
    assert_rejected(&answer, 403, "method_not_signed", "GET", "/a.txt");
    let answer = send(&client, request(Method::HEAD, &url, "")).await;
    assert_eq!(answer.status, 403);
    assert_nothing_stored(&server, "a.txt");
}

// --- 405 method_not_allowed --------------------------------------------------

#[tokio::test]
async fn unserved_methods_are_405_with_allow_before_any_signature_check() {
    let server = TestServer::start().await;
    let client = client();
    let signed = server.put_url("a.txt");
    let unsigned = format!("http://{}/a.txt", server.addr);
    let garbage = format!("http://{}/a.txt?signature=nonsense&x", server.addr);
    for method in [Method::POST, Method::DELETE, Method::PATCH, Method::OPTIONS] {
        for url in [&signed, &unsigned, &garbage] {
            let answer = send(&client, request(method.clone(), url, "data")).await;
            assert_rejected(
                &answer,
                405,
                "method_not_allowed",
                method.as_str(),
                "/a.txt",
            );
            let mut allow: Vec<&str> = answer
                .header("allow")
                .expect("a 405 names the allowed methods")
                .split(',')
                .map(str::trim)
                .collect();
            allow.sort_unstable();
            assert_eq!(allow, ["GET", "HEAD", "PUT"]);
        }
    }
    assert_nothing_stored(&server, "a.txt");
}

// --- 400 path_invalid --------------------------------------------------------

#[tokio::test]
async fn paths_over_the_length_limits_are_400_at_the_first_chunk() {
    use tower_signed_upload::UploadPath;
    let server = TestServer::start().await;
    let client = client();
    let segment = "a".repeat(UploadPath::MAX_SEGMENT_LEN);
    let over = format!("{segment}b");
    // 256 bytes once decoded, from 128 escaped `é`.
    let escaped = "%C3%A9".repeat(128);
    let long = format!("{segment}/{segment}/{segment}/{segment}/{segment}");
    for raw in [over.as_str(), &format!("x/{over}/y.bin"), &escaped, &long] {
        let url = raw_url(server.addr, raw, NOW + 60, "put");
        let chunk = put(&url, &[("content-range", "bytes 0-3/8")], "data");
        let answer = send(&client, chunk).await;
        assert_rejected(&answer, 400, "path_invalid", "PUT", &format!("/{raw}"));
        let answer = send(&client, put(&url, &[], "data")).await;
        assert_rejected(&answer, 400, "path_invalid", "PUT", &format!("/{raw}"));
        let url = raw_url(server.addr, raw, NOW + 60, "get");
        let answer = send(&client, request(Method::GET, &url, "")).await;
        assert_rejected(&answer, 400, "path_invalid", "GET", &format!("/{raw}"));
    }
    assert_eq!(server.storage.session_count(), 0, "a session was stored");
    assert_eq!(server.calls(), 0, "the inner service was called");

    // At the limits, the same uploads go through.
    let short = "b".repeat(UploadPath::MAX_SEGMENT_LEN - 1);
    let longest = format!("{segment}/{segment}/{segment}/{short}/c");
    assert_eq!(longest.len(), UploadPath::MAX_LEN);
    for raw in [segment.as_str(), &longest] {
        let url = raw_url(server.addr, raw, NOW + 60, "put");
        let chunk = put(&url, &[("content-range", "bytes 0-3/4")], "data");
        assert_eq!(send(&client, chunk).await.status, 201);
        assert_eq!(server.storage.file(raw).unwrap(), "data");
    }
}

#[tokio::test]
async fn unsafe_paths_are_400_even_when_signed() {
    let server = TestServer::start().await;
    let client = client();
    // The raw signing of this test is right: a safe path signed the same way works.
    let control = raw_url(server.addr, "ok/my%20file.txt", NOW + 60, "put");
    let answer = send(&client, put(&control, &[], "fine")).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(server.storage.file("ok/my file.txt").unwrap(), "fine");

    let before = server.storage.session_count();
    for raw in [
        "a/../b",
        "../b",
        "%2e%2e/x",
        "a/%2E%2e/b",
        "a%2f..%2fb",
        "/x",
        "a//b",
        "a/",
        "./a",
        "a/.",
        "a%00b",
        "a%0ab",
        "a%7f",
        "a%5cb",
        "%ff.txt",
        "a%2",
        "a%zz",
    ] {
        let url = raw_url(server.addr, raw, NOW + 60, "put");
        let answer = send(&client, put(&url, &[], "data")).await;
        assert_rejected(&answer, 400, "path_invalid", "PUT", &format!("/{raw}"));
        let url = raw_url(server.addr, raw, NOW + 60, "get");
        let answer = send(&client, request(Method::GET, &url, "")).await;
        assert_rejected(&answer, 400, "path_invalid", "GET", &format!("/{raw}"));
    }
    assert_eq!(server.storage.session_count(), before);
    assert_eq!(
        server.calls(),
        1,
        "only the control upload reached the inner service"
    );
    assert_eq!(server.storage.file("b"), None);
    assert_eq!(server.storage.file("x"), None);
}

// --- 400 query_invalid -------------------------------------------------------

#[tokio::test]
async fn malformed_query_is_400() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.txt");
    let (base, expiry, method, signature) = split(&url);
    for url in [
        format!("{base}?{expiry}&{method}&foo=1&{signature}"),
        format!("{base}?foo=1&{expiry}&{method}&{signature}"),
        format!("{base}?{expiry}&{expiry}&{method}&{signature}"),
        format!("{base}?{expiry}&{method}&{method}&{signature}"),
        format!("{base}?{expiry}&{method}&{signature}&{signature}"),
        format!("{base}?{expiry}&{method}&{signature}&x=1"),
        format!("{base}?{expiry}&{method}&{signature}&"),
        format!("{base}?{expiry}&{method}&flag&{signature}"),
        format!("{base}?expiry=12a&{method}&{signature}"),
        format!("{base}?expiry=-1&{method}&{signature}"),
        format!("{base}?expiry=+1750000100&{method}&{signature}"),
        format!("{base}?expiry=123456789012345678901&{method}&{signature}"),
        format!("{base}?{expiry}&method=post&{signature}"),
        format!("{base}?{expiry}&method=PUT&{signature}"),
        format!("{base}?{expiry}&{method}&max_size=1e3&{signature}"),
        format!("{base}?{expiry}&{method}&max_size=1&max_size=1&{signature}"),
        format!("{base}?{expiry}&{method}&type=image&{signature}"),
        format!("{base}?{expiry}&{method}&type=*/png&{signature}"),
        format!("{base}?{expiry}&{method}&kid=a%20b&{signature}"),
    ] {
        let answer = send(&client, put(&url, &[], "data")).await;
        assert_rejected(&answer, 400, "query_invalid", "PUT", "/a.txt");
    }
    assert_nothing_stored(&server, "a.txt");
}

#[tokio::test]
async fn policy_parameters_added_to_a_signed_url_are_403() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.txt");
    let (base, expiry, method, signature) = split(&url);
    for policy in ["max_size=100", "type=image%2Fpng", "kid=k1"] {
        let url = format!("{base}?{expiry}&{method}&{policy}&{signature}");
        let answer = send(&client, put(&url, &[], "data")).await;
        assert_rejected(&answer, 403, "signature_invalid", "PUT", "/a.txt");
    }
    assert_nothing_stored(&server, "a.txt");
}

// --- 400 content_range_invalid -----------------------------------------------

#[tokio::test]
async fn malformed_content_range_is_400() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    for header in [
        "",
        "bytes 0-9",
        "bits 0-9/10",
        "Bytes 0-9/10",
        "bytes0-9/10",
        "bytes 9-0/10",
        "bytes -9/10",
        "bytes 0-/10",
        "bytes 0-9/",
        "bytes 0-9/ten",
        "bytes 0-*/10",
        "bytes */",
        "bytes 0-9/10, bytes 10-19/20",
        "bytes 0-99999999999999999999/*",
    ] {
        let answer = send(
            &client,
            put(&url, &[("content-range", header)], "0123456789"),
        )
        .await;
        assert_rejected(&answer, 400, "content_range_invalid", "PUT", "/a.bin");
    }
    let twice = put(
        &url,
        &[
            ("content-range", "bytes 0-9/10"),
            ("content-range", "bytes 0-9/10"),
        ],
        "0123456789",
    );
    let answer = send(&client, twice).await;
    assert_rejected(&answer, 400, "content_range_invalid", "PUT", "/a.bin");
    assert_nothing_stored(&server, "a.bin");
}

// --- 400 content_range_mismatch ----------------------------------------------

#[tokio::test]
async fn content_length_differing_from_the_range_is_400() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    let range = [("content-range", "bytes 0-19/40")];
    for body in [&b"short body"[..], &[7u8; 30][..], &[][..]] {
        let answer = send(&client, put(&url, &range, body.to_vec())).await;
        assert_rejected(&answer, 400, "content_range_mismatch", "PUT", "/a.bin");
    }
    let status_with_body = put(&url, &[("content-range", "bytes */40")], "xyz");
    let answer = send(&client, status_with_body).await;
    assert_rejected(&answer, 400, "content_range_mismatch", "PUT", "/a.bin");
    assert_nothing_stored(&server, "a.bin");
}

#[tokio::test]
async fn status_query_with_a_chunked_body_is_400() {
    let server = TestServer::start().await;
    let url = server.put_url("a.bin");
    let body = chunked_body(vec![b"xyz".to_vec()]);
    let answer = send_stream(
        &stream_client(),
        stream_put(&url, &[("content-range", "bytes */40")], body),
    )
    .await;
    assert_rejected(&answer, 400, "content_range_mismatch", "PUT", "/a.bin");
    assert_nothing_stored(&server, "a.bin");
}

#[tokio::test]
async fn chunked_body_shorter_than_its_range_is_400_and_counts_for_nothing() {
    let server = TestServer::start().await;
    let client = stream_client();
    let url = server.put_url("a.bin");
    let body = chunked_body(vec![vec![1; 5], vec![2; 5]]);
    let answer = send_stream(
        &client,
        stream_put(&url, &[("content-range", "bytes 0-19/40")], body),
    )
    .await;
    assert_rejected(&answer, 400, "content_range_mismatch", "PUT", "/a.bin");
    assert_nothing_stored(&server, "a.bin");
}

#[tokio::test]
async fn chunked_body_longer_than_its_range_is_400_and_counts_for_nothing() {
    let server = TestServer::start().await;
    let client = stream_client();
    let url = server.put_url("a.bin");
    let body = chunked_body(vec![vec![1; 15], vec![2; 15]]);
    let answer = send_stream(
        &client,
        stream_put(&url, &[("content-range", "bytes 0-19/40")], body),
    )
    .await;
    assert_rejected(&answer, 400, "content_range_mismatch", "PUT", "/a.bin");
    assert_nothing_stored(&server, "a.bin");
}

// --- 409 total_mismatch ------------------------------------------------------

#[tokio::test]
async fn chunk_naming_another_total_is_409() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    let data = bytes(40, 1);
    let first = put(
        &url,
        &[("content-range", "bytes 0-9/40")],
        data[..10].to_vec(),
    );
    assert_eq!(send(&client, first).await.status, 202);
    let other = put(
        &url,
        &[("content-range", "bytes 10-19/50")],
        data[10..20].to_vec(),
    );
    let answer = send(&client, other).await;
    assert_rejected(&answer, 409, "total_mismatch", "PUT", "/a.bin");
    assert_eq!(
        session_ranges(&client, &url).await,
        serde_json::json!([[0, 9]])
    );
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn status_query_naming_another_total_is_409() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    let first = put(&url, &[("content-range", "bytes 0-9/40")], bytes(10, 1));
    assert_eq!(send(&client, first).await.status, 202);
    let answer = send(&client, put(&url, &[("content-range", "bytes */41")], "")).await;
    assert_rejected(&answer, 409, "total_mismatch", "PUT", "/a.bin");
    let answer = send(&client, put(&url, &[("content-range", "bytes */40")], "")).await;
    assert_eq!(answer.status, 308, "the right total still answers");
}

// --- 416 range_not_satisfiable -----------------------------------------------

#[tokio::test]
async fn range_past_its_total_is_416() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    for header in ["bytes 0-20/20", "bytes 20-20/20", "bytes 0-0/0"] {
        let len = {
            let range = header[6..].split('/').next().unwrap();
            let (first, last) = range.split_once('-').unwrap();
            last.parse::<usize>().unwrap() - first.parse::<usize>().unwrap() + 1
        };
        let answer = send(
            &client,
            put(&url, &[("content-range", header)], vec![0; len]),
        )
        .await;
        assert_rejected(&answer, 416, "range_not_satisfiable", "PUT", "/a.bin");
    }
    assert_nothing_stored(&server, "a.bin");
}

#[tokio::test]
async fn open_total_chunk_past_the_known_total_is_416() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    let first = put(&url, &[("content-range", "bytes 0-9/20")], bytes(10, 1));
    assert_eq!(send(&client, first).await.status, 202);
    let past = put(&url, &[("content-range", "bytes 15-24/*")], bytes(10, 2));
    let answer = send(&client, past).await;
    assert_rejected(&answer, 416, "range_not_satisfiable", "PUT", "/a.bin");
    assert_eq!(
        session_ranges(&client, &url).await,
        serde_json::json!([[0, 9]])
    );
}

// --- 413 too_large -----------------------------------------------------------

#[tokio::test]
async fn declared_length_over_the_limit_is_413_before_the_body_is_read() {
    let server = TestServer::with(|layer| layer.max_size(100)).await;
    let url = server.put_url("a.bin");
    // The head promises 101 bytes and not one is sent: the answer cannot wait for them.
    let head = raw_head("PUT", target(&url), &[("content-length", "101")]);
    let answer = raw_exchange(server.addr, &head, Duration::from_secs(5)).await;
    assert_rejected(&answer, 413, "too_large", "PUT", "/a.bin");
    assert_nothing_stored(&server, "a.bin");
}

#[tokio::test]
async fn declared_length_over_the_limit_is_413_without_100_continue() {
    let server = TestServer::with(|layer| layer.max_size(100)).await;
    let url = server.put_url("a.bin");
    let head = raw_head(
        "PUT",
        target(&url),
        &[("content-length", "101"), ("expect", "100-continue")],
    );
    // The first status line is the refusal: the server never invites the body.
    let answer = raw_exchange(server.addr, &head, Duration::from_secs(5)).await;
    assert_rejected(&answer, 413, "too_large", "PUT", "/a.bin");
    assert_nothing_stored(&server, "a.bin");
}

#[tokio::test]
async fn chunked_simple_upload_passing_the_limit_is_413() {
    let server = TestServer::with(|layer| layer.max_size(100)).await;
    let url = server.put_url("a.bin");
    let body = chunked_body(vec![vec![1; 60], vec![2; 60]]);
    let answer = send_stream(&stream_client(), stream_put(&url, &[], body)).await;
    assert_rejected(&answer, 413, "too_large", "PUT", "/a.bin");
    assert_nothing_stored(&server, "a.bin");
}

#[tokio::test]
async fn upload_of_exactly_the_limit_is_accepted() {
    let server = TestServer::with(|layer| layer.max_size(100)).await;
    let client = client();
    let answer = send(&client, put(&server.put_url("a.bin"), &[], vec![1; 100])).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let body = chunked_body(vec![vec![2; 50], vec![3; 50]]);
    let answer = send_stream(
        &stream_client(),
        stream_put(&server.put_url("b.bin"), &[], body),
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let chunk = put(
        &server.put_url("c.bin"),
        &[("content-range", "bytes 0-99/100")],
        vec![4; 100],
    );
    assert_eq!(send(&client, chunk).await.status, 201);
}

#[tokio::test]
async fn chunk_whose_total_or_end_passes_the_limit_is_413() {
    let server = TestServer::with(|layer| layer.max_size(100)).await;
    let client = client();
    let url = server.put_url("a.bin");
    for (header, len) in [("bytes 0-9/101", 10), ("bytes 95-104/*", 10)] {
        let answer = send(
            &client,
            put(&url, &[("content-range", header)], vec![0; len]),
        )
        .await;
        assert_rejected(&answer, 413, "too_large", "PUT", "/a.bin");
    }
    assert_nothing_stored(&server, "a.bin");
}

// --- 400 too_many_ranges -----------------------------------------------------

#[tokio::test]
async fn chunk_splitting_the_session_past_max_ranges_is_400() {
    let server = TestServer::with(|layer| layer.max_ranges(2)).await;
    let client = client();
    let url = server.put_url("a.bin");
    let data = bytes(60, 3);
    let chunk = |first: usize, last: usize| {
        put(
            &url,
            &[("content-range", &format!("bytes {first}-{last}/60"))],
            data[first..=last].to_vec(),
        )
    };
    assert_eq!(send(&client, chunk(0, 9)).await.status, 202);
    assert_eq!(send(&client, chunk(20, 29)).await.status, 202);
    let answer = send(&client, chunk(40, 49)).await;
    assert_rejected(&answer, 400, "too_many_ranges", "PUT", "/a.bin");
    assert_eq!(
        session_ranges(&client, &url).await,
        serde_json::json!([[0, 9], [20, 29]])
    );
    // Filling a gap merges ranges, so it is accepted, and then there is room again.
    let answer = send(&client, chunk(10, 19)).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(
        answer.json()["data"]["ranges"],
        serde_json::json!([[0, 29]])
    );
    assert_eq!(send(&client, chunk(40, 49)).await.status, 202);
    assert_eq!(send(&client, chunk(50, 59)).await.status, 202);
    assert_eq!(send(&client, chunk(30, 39)).await.status, 201);
    assert_eq!(server.storage.file("a.bin").unwrap(), data);
}

// --- 408 body_timeout (real time, bounded) -----------------------------------

#[tokio::test]
async fn stalled_simple_upload_is_408_and_stores_nothing() {
    let server = TestServer::with(|layer| layer.body_timeout(Duration::from_millis(200))).await;
    let url = server.put_url("a.bin");
    let mut request = raw_head("PUT", target(&url), &[("content-length", "100")]);
    request.extend_from_slice(&[7; 10]);
    let answer = raw_exchange(server.addr, &request, Duration::from_secs(10)).await;
    assert_rejected(&answer, 408, "body_timeout", "PUT", "/a.bin");
    assert_nothing_stored(&server, "a.bin");
}

#[tokio::test]
async fn stalled_chunk_is_408_and_counts_for_nothing() {
    let server = TestServer::with(|layer| layer.body_timeout(Duration::from_millis(200))).await;
    let url = server.put_url("a.bin");
    let mut request = raw_head(
        "PUT",
        target(&url),
        &[
            ("content-length", "100"),
            ("content-range", "bytes 0-99/200"),
        ],
    );
    request.extend_from_slice(&[7; 10]);
    let answer = raw_exchange(server.addr, &request, Duration::from_secs(10)).await;
    assert_rejected(&answer, 408, "body_timeout", "PUT", "/a.bin");
    assert_nothing_stored(&server, "a.bin");
}

// --- envelope of a refusal once the path is known ----------------------------

#[tokio::test]
async fn refusal_after_verification_links_the_file() {
    let server = TestServer::start().await;
    let url = server.put_url("nested/a.bin");
    let answer = send(
        &client(),
        put(&url, &[("content-range", "bytes 0-9")], "0123456789"),
    )
    .await;
    assert_rejected(&answer, 400, "content_range_invalid", "PUT", path_of(&url));
    assert_eq!(
        answer.json()["links"]["self"],
        format!("{PUBLIC_BASE}/nested/a.bin")
    );
}

#[tokio::test]
async fn parameters_verify_in_the_order_they_were_signed() {
    let server = TestServer::start().await;
    let signed = format!("a.txt?method=put&expiry={}", NOW + 60);
    let url = format!(
        "http://{}/{signed}&signature={}",
        server.addr,
        raw_signature(KEY, &signed)
    );
    let answer = send(&client(), put(&url, &[], "reordered")).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(server.storage.file("a.txt").unwrap(), "reordered");
}

#[test]
fn defaults_match_the_contract() {
    use tower_signed_upload::{DEFAULT_MAX_LIFETIME, DEFAULT_MAX_RANGES};
    assert_eq!(DEFAULT_MAX_LIFETIME, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(DEFAULT_MAX_RANGES, 10_000);
}

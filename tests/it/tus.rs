//! tus 1.0.0 on the signed URL (docs/protocol.md#tus), over real HTTP on
//! 127.0.0.1, on every backend: each row of the contract and its errors.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use sha1::Digest as _;

use crate::common::*;
use tower_signed_upload::{SignedMethod, UrlOptions};

pub(crate) const TUS: (&str, &str) = ("tus-resumable", "1.0.0");
pub(crate) const STREAM: (&str, &str) = ("content-type", "application/offset+octet-stream");

pub(crate) fn tus(
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

/// The `Location` tus answers with: the signed URL itself, on the public base.
pub(crate) fn location_of(url: &str) -> String {
    format!("{PUBLIC_BASE}{}", target(url))
}

pub(crate) async fn create(url: &str, length: usize) -> Answer {
    let length = length.to_string();
    send(
        &client(),
        tus(
            Method::POST,
            url,
            &[TUS, ("upload-length", &length)],
            Bytes::new(),
        ),
    )
    .await
}

pub(crate) async fn patch(url: &str, offset: u64, body: &[u8], extra: &[(&str, &str)]) -> Answer {
    let offset = offset.to_string();
    let mut headers = vec![TUS, STREAM, ("upload-offset", offset.as_str())];
    headers.extend_from_slice(extra);
    send(
        &client(),
        tus(Method::PATCH, url, &headers, Bytes::copy_from_slice(body)),
    )
    .await
}

pub(crate) async fn head(url: &str) -> Answer {
    send(&client(), tus(Method::HEAD, url, &[TUS], Bytes::new())).await
}

pub(crate) fn assert_tus(answer: &Answer, status: u16) {
    assert_eq!(answer.status.as_u16(), status, "{answer:?}");
    assert_eq!(answer.header("tus-resumable"), Some("1.0.0"), "{answer:?}");
}

pub(crate) fn offset(answer: &Answer) -> u64 {
    answer
        .header("upload-offset")
        .unwrap_or_else(|| panic!("no Upload-Offset: {answer:?}"))
        .parse()
        .unwrap()
}

async fn options_advertise_the_extensions(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer.max_size(5000)).await;
    let url = server.put_url("t/options.bin", &UrlOptions::new());
    let answer = send(&client(), tus(Method::OPTIONS, &url, &[TUS], Bytes::new())).await;
    assert_tus(&answer, 204);
    assert_eq!(answer.header("tus-version"), Some("1.0.0"));
    assert_eq!(answer.header("tus-max-size"), Some("5000"));
    assert_eq!(
        answer.header("tus-checksum-algorithm"),
        Some("sha1,sha256,sha512")
    );
    let extensions: Vec<&str> = answer.header("tus-extension").unwrap().split(',').collect();
    for wanted in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "expiration",
        "checksum",
        "termination",
        "concatenation",
    ] {
        assert!(extensions.contains(&wanted), "{extensions:?}");
    }
}

async fn create_head_and_patch_complete_once(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("t/whole.bin", &UrlOptions::new());
    let data = bytes(10_000, 1);
    let created = send(
        &client(),
        tus(
            Method::POST,
            &url,
            &[
                TUS,
                ("upload-length", "10000"),
                ("upload-metadata", "filename d2hvbGUuYmlu"),
            ],
            Bytes::new(),
        ),
    )
    .await;
    assert_tus(&created, 201);
    assert_eq!(created.header("location"), Some(location_of(&url).as_str()));
    let expires = created.header("upload-expires").expect("Upload-Expires");
    assert!(httpdate::parse_http_date(expires).is_ok(), "{expires}");

    let before = head(&url).await;
    assert_tus(&before, 200);
    assert_eq!(offset(&before), 0);
    assert_eq!(before.header("upload-length"), Some("10000"));
    assert_eq!(
        before.header("upload-metadata"),
        Some("filename d2hvbGUuYmlu")
    );
    assert_eq!(before.header("cache-control"), Some("no-store"));

    let first = patch(&url, 0, &data[..4000], &[]).await;
    assert_tus(&first, 204);
    assert_eq!(offset(&first), 4000);
    assert!(first.header("upload-expires").is_some());
    assert_eq!(server.calls(), 0);

    // The completing append is the inner service's answer, with tus's headers.
    let last = patch(&url, 4000, &data[4000..], &[]).await;
    assert_tus(&last, 201);
    assert_eq!(offset(&last), 10_000);
    assert!(last.header("etag").is_some());
    assert_eq!(last.json()["data"]["filesize"], 10_000);
    assert_eq!(server.calls(), 1);
    assert_eq!(server.file("t/whole.bin").await.as_deref(), Some(&data[..]));

    // Afterwards: the final offset, nothing stored, no second completion.
    let after = head(&url).await;
    assert_tus(&after, 200);
    assert_eq!(offset(&after), 10_000);
    assert_eq!(after.header("upload-length"), Some("10000"));
    let again = patch(&url, 4000, &data[4000..], &[]).await;
    assert_tus(&again, 204);
    assert_eq!(offset(&again), 10_000);
    assert_eq!(server.calls(), 1);
}

async fn wrong_offsets_are_409_with_the_current_offset(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("t/offset.bin", &UrlOptions::new());
    let data = bytes(300, 2);
    assert_tus(&create(&url, 300).await, 201);
    assert_tus(&patch(&url, 0, &data[..100], &[]).await, 204);
    for wrong in [0, 50, 101, 200] {
        let answer = patch(&url, wrong, &data[100..200], &[]).await;
        assert_tus(&answer, 409);
        assert_eq!(answer.code(), "offset_mismatch");
        assert_eq!(offset(&answer), 100);
    }
    assert_tus(&patch(&url, 100, &data[100..], &[]).await, 201);
    assert_eq!(
        server.file("t/offset.bin").await.as_deref(),
        Some(&data[..])
    );
}

async fn requests_on_an_upload_never_created(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("t/never.bin", &UrlOptions::new());
    for answer in [
        head(&url).await,
        patch(&url, 0, b"abc", &[]).await,
        send(&client(), tus(Method::DELETE, &url, &[TUS], Bytes::new())).await,
    ] {
        assert_tus(&answer, 404);
    }
    let answer = patch(&url, 0, b"abc", &[]).await;
    assert_eq!(answer.code(), "upload_not_found");
    assert_eq!(server.file("t/never.bin").await, None);
}

async fn refusals_carry_tus_headers(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("t/refused.bin", &UrlOptions::new());
    let old = send(
        &client(),
        tus(
            Method::POST,
            &url,
            &[("tus-resumable", "0.2.2"), ("upload-length", "3")],
            Bytes::new(),
        ),
    )
    .await;
    assert_tus(&old, 412);
    assert_eq!(old.header("tus-version"), Some("1.0.0"));
    assert_eq!(old.code(), "version_unsupported");

    assert_tus(&create(&url, 3).await, 201);
    let untyped = send(
        &client(),
        tus(
            Method::PATCH,
            &url,
            &[TUS, ("upload-offset", "0")],
            Bytes::from_static(b"abc"),
        ),
    )
    .await;
    assert_tus(&untyped, 415);
    assert_eq!(untyped.code(), "content_type_invalid");

    let unsigned = format!("http://{}/t/refused.bin", server.addr);
    let answer = send(
        &client(),
        tus(Method::HEAD, &unsigned, &[TUS], Bytes::new()),
    )
    .await;
    assert_tus(&answer, 401);
    let get_url = server.url("t/refused.bin", SignedMethod::Get, &UrlOptions::new());
    let answer = send(
        &client(),
        tus(
            Method::POST,
            &get_url,
            &[TUS, ("upload-length", "3")],
            Bytes::new(),
        ),
    )
    .await;
    assert_tus(&answer, 403);
    assert_eq!(answer.code(), "method_not_signed");
    let missing = send(&client(), tus(Method::POST, &url, &[TUS], Bytes::new())).await;
    assert_tus(&missing, 400);
    assert_eq!(missing.code(), "header_invalid");
    let too_large = send(
        &client(),
        tus(
            Method::POST,
            &url,
            &[TUS, ("upload-length", "99999999999999")],
            Bytes::new(),
        ),
    )
    .await;
    assert_tus(&too_large, 413);
}

async fn creation_with_upload_stores_from_offset_zero(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let data = bytes(5000, 3);
    let url = server.put_url("t/with-upload.bin", &UrlOptions::new());
    let partial = send(
        &client(),
        tus(
            Method::POST,
            &url,
            &[TUS, STREAM, ("upload-length", "5000")],
            Bytes::copy_from_slice(&data[..2000]),
        ),
    )
    .await;
    assert_tus(&partial, 201);
    assert_eq!(offset(&partial), 2000);
    assert_eq!(partial.header("location"), Some(location_of(&url).as_str()));
    assert_tus(&patch(&url, 2000, &data[2000..], &[]).await, 201);

    // A creation that carries the whole file completes it; its Location is
    // still the upload URL (clients adopt it), the File names the file's URL.
    let url = server.put_url("t/whole-in-creation.bin", &UrlOptions::new());
    let whole = send(
        &client(),
        tus(
            Method::POST,
            &url,
            &[TUS, STREAM, ("upload-length", "5000")],
            Bytes::copy_from_slice(&data),
        ),
    )
    .await;
    assert_tus(&whole, 201);
    assert_eq!(offset(&whole), 5000);
    assert_eq!(whole.header("location"), Some(location_of(&url).as_str()));
    assert_eq!(
        whole.json()["data"]["url"],
        format!("{PUBLIC_BASE}/t/whole-in-creation.bin")
    );
    assert_eq!(
        server.file("t/whole-in-creation.bin").await.as_deref(),
        Some(&data[..])
    );
    assert_eq!(server.calls(), 2);

    let url = server.put_url("t/untyped-creation.bin", &UrlOptions::new());
    let untyped = send(
        &client(),
        tus(
            Method::POST,
            &url,
            &[TUS, ("upload-length", "5")],
            Bytes::from_static(b"hello"),
        ),
    )
    .await;
    assert_tus(&untyped, 415);
}

async fn an_empty_file_completes_at_its_creation(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("t/empty.bin", &UrlOptions::new());
    let created = create(&url, 0).await;
    assert_tus(&created, 201);
    assert_eq!(offset(&created), 0);
    assert_eq!(created.header("location"), Some(location_of(&url).as_str()));
    assert_eq!(created.json()["data"]["filesize"], 0);
    assert_eq!(server.calls(), 1);
    assert_eq!(server.file("t/empty.bin").await.as_deref(), Some(&b""[..]));
    // A repeated creation replays it.
    let again = create(&url, 0).await;
    assert_tus(&again, 201);
    assert_eq!(server.calls(), 1);
}

async fn a_deferred_length_arrives_with_the_last_append(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("t/deferred.bin", &UrlOptions::new());
    let data = bytes(900, 4);
    let created = send(
        &client(),
        tus(
            Method::POST,
            &url,
            &[TUS, ("upload-defer-length", "1")],
            Bytes::new(),
        ),
    )
    .await;
    assert_tus(&created, 201);
    let state = head(&url).await;
    assert_eq!(state.header("upload-defer-length"), Some("1"));
    assert_eq!(state.header("upload-length"), None);
    assert_tus(&patch(&url, 0, &data[..500], &[]).await, 204);
    let last = patch(&url, 500, &data[500..], &[("upload-length", "900")]).await;
    assert_tus(&last, 201);
    assert_eq!(
        server.file("t/deferred.bin").await.as_deref(),
        Some(&data[..])
    );

    // The length may also come with an empty append after the last bytes.
    let url = server.put_url("t/deferred-empty-last.bin", &UrlOptions::new());
    let created = send(
        &client(),
        tus(
            Method::POST,
            &url,
            &[TUS, ("upload-defer-length", "1")],
            Bytes::new(),
        ),
    )
    .await;
    assert_tus(&created, 201);
    assert_tus(&patch(&url, 0, &data, &[]).await, 204);
    let declared = patch(&url, 900, b"", &[("upload-length", "900")]).await;
    assert_tus(&declared, 201);
    assert_eq!(offset(&declared), 900);
    assert_eq!(
        server.file("t/deferred-empty-last.bin").await.as_deref(),
        Some(&data[..])
    );
    // A length below what is stored is refused: the append reaches past it.
    let url = server.put_url("t/deferred-short.bin", &UrlOptions::new());
    let created = send(
        &client(),
        tus(
            Method::POST,
            &url,
            &[TUS, ("upload-defer-length", "1")],
            Bytes::new(),
        ),
    )
    .await;
    assert_tus(&created, 201);
    assert_tus(&patch(&url, 0, &data[..100], &[]).await, 204);
    let short = patch(&url, 100, b"", &[("upload-length", "50")]).await;
    assert_tus(&short, 416);
    assert_eq!(short.code(), "range_not_satisfiable");
}

fn checksum(algorithm: &str, data: &[u8]) -> String {
    let digest = match algorithm {
        "sha1" => sha1::Sha1::digest(data).to_vec(),
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        _ => sha2::Sha512::digest(data).to_vec(),
    };
    format!(
        "{algorithm} {}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

async fn checksums_are_judged_before_the_bytes_count(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("t/checksum.bin", &UrlOptions::new());
    let data = bytes(3000, 5);
    assert_tus(&create(&url, 3000).await, 201);
    let wrong = checksum("sha1", &data[..1000]);
    let refused = patch(&url, 0, &data[1000..2000], &[("upload-checksum", &wrong)]).await;
    assert_tus(&refused, 460);
    assert_eq!(refused.code(), "checksum_mismatch");
    assert_eq!(
        offset(&head(&url).await),
        0,
        "the refused bytes count for nothing"
    );
    let unknown = patch(
        &url,
        0,
        &data[..1000],
        &[("upload-checksum", "md5 AAAAAAAAAAAAAAAAAAAAAA==")],
    )
    .await;
    assert_tus(&unknown, 400);
    assert_eq!(unknown.code(), "checksum_invalid");
    for (at, algorithm) in [(0, "sha1"), (1000, "sha256"), (2000, "sha512")] {
        let sum = checksum(algorithm, &data[at..at + 1000]);
        let answer = patch(
            &url,
            at as u64,
            &data[at..at + 1000],
            &[("upload-checksum", &sum)],
        )
        .await;
        assert!(answer.status.is_success(), "{algorithm}: {answer:?}");
    }
    assert_eq!(
        server.file("t/checksum.bin").await.as_deref(),
        Some(&data[..])
    );
}

async fn termination_removes_an_unfinished_upload_only(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("t/terminated.bin", &UrlOptions::new());
    assert_tus(&create(&url, 10).await, 201);
    assert_tus(&patch(&url, 0, b"12345", &[]).await, 204);
    let deleted = send(&client(), tus(Method::DELETE, &url, &[TUS], Bytes::new())).await;
    assert_tus(&deleted, 204);
    assert_tus(&head(&url).await, 404);
    // Created again, it starts afresh.
    assert_tus(&create(&url, 10).await, 201);
    assert_eq!(offset(&head(&url).await), 0);
    assert_tus(&patch(&url, 0, b"0123456789", &[]).await, 201);
    let refused = send(&client(), tus(Method::DELETE, &url, &[TUS], Bytes::new())).await;
    assert_tus(&refused, 409);
    assert_eq!(refused.code(), "upload_complete");
    assert_eq!(
        server.file("t/terminated.bin").await.as_deref(),
        Some(&b"0123456789"[..])
    );
}

async fn the_method_override_stands_for_the_method(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("t/override.bin", &UrlOptions::new());
    assert_tus(&create(&url, 6).await, 201);
    let append = send(
        &client(),
        tus(
            Method::POST,
            &url,
            &[
                TUS,
                STREAM,
                ("upload-offset", "0"),
                ("x-http-method-override", "PATCH"),
            ],
            Bytes::from_static(b"abc"),
        ),
    )
    .await;
    assert_tus(&append, 204);
    assert_eq!(offset(&append), 3);
    let delete = send(
        &client(),
        tus(
            Method::POST,
            &url,
            &[TUS, ("x-http-method-override", "DELETE")],
            Bytes::new(),
        ),
    )
    .await;
    assert_tus(&delete, 204);
    assert_tus(&head(&url).await, 404);
}

async fn repeated_creations_keep_the_upload(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("t/repeated.bin", &UrlOptions::new());
    assert_tus(&create(&url, 8).await, 201);
    assert_tus(&patch(&url, 0, b"abcd", &[]).await, 204);
    let again = create(&url, 8).await;
    assert_tus(&again, 201);
    assert_eq!(again.header("location"), Some(location_of(&url).as_str()));
    assert_eq!(offset(&head(&url).await), 4);
    let other = create(&url, 9).await;
    assert_tus(&other, 409);
    assert_eq!(other.code(), "total_mismatch");
    // The client that re-created it resumes from the offset it is told.
    let stale = patch(&url, 0, b"abcd", &[]).await;
    assert_eq!(offset(&stale), 4);
    assert_tus(&patch(&url, 4, b"efgh", &[]).await, 201);
}

async fn a_cut_off_append_keeps_its_whole_pieces(storage: Store) {
    let server =
        StorageServer::start(storage, |layer| layer.body_timeout(Duration::from_secs(5))).await;
    let url = server.put_url("t/cut.bin", &UrlOptions::new());
    let mib = 1024 * 1024;
    assert_tus(&create(&url, 20 * mib).await, 201);
    // A chunked append (no Content-Length) of 9 MiB, cut off before its end:
    // its pieces of 4 MiB that arrived whole stay.
    let mut raw = raw_head(
        "PATCH",
        target(&url),
        &[
            TUS,
            STREAM,
            ("upload-offset", "0"),
            ("transfer-encoding", "chunked"),
        ],
    );
    let data = bytes(9 * mib, 6);
    for piece in data.chunks(256 * 1024) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw_cut_off(server.addr, &raw).await;
    let mut stored = 0;
    for _ in 0..50 {
        stored = offset(&head(&url).await);
        if stored == 8 * mib as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored, 8 * mib as u64);
    assert_tus(&patch(&url, stored, &bytes(12 * mib, 7), &[]).await, 201);
}

async fn the_signed_type_holds_for_tus(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let options = UrlOptions::new().types("image/png").unwrap();
    let url = server.put_url("t/typed.png", &options);
    let text = bytes(20_000, 8);
    let length = text.len().to_string();
    assert_tus(
        &send(
            &client(),
            tus(
                Method::POST,
                &url,
                &[TUS, ("upload-length", &length)],
                Bytes::new(),
            ),
        )
        .await,
        201,
    );
    let refused = patch(&url, 0, &text, &[]).await;
    assert_tus(&refused, 415);
    assert_eq!(refused.code(), "type_not_allowed");
    assert_eq!(server.file("t/typed.png").await, None);
    assert_eq!(server.calls(), 0);
}

/// A creation with `Upload-Defer-Length: 1` names no length to bound its
/// body: the limit does, from `Content-Length`, before a byte is stored.
async fn a_deferred_creation_body_past_the_limit_is_413(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer.max_size(1000)).await;
    let url = server.put_url("t/deferred-large.bin", &UrlOptions::new());
    let deferred = |body: Vec<u8>| {
        tus(
            Method::POST,
            &url,
            &[TUS, STREAM, ("upload-defer-length", "1")],
            body,
        )
    };
    let refused = send(&client(), deferred(bytes(1001, 9))).await;
    assert_tus(&refused, 413);
    assert_eq!(refused.code(), "too_large");
    assert_tus(&head(&url).await, 404);

    // The signed limit holds the same way.
    let options = UrlOptions::new().max_size(300);
    let signed = server.put_url("t/deferred-signed.bin", &options);
    let refused = send(
        &client(),
        tus(
            Method::POST,
            &signed,
            &[TUS, STREAM, ("upload-defer-length", "1")],
            bytes(301, 9),
        ),
    )
    .await;
    assert_tus(&refused, 413);
    assert_eq!(refused.code(), "too_large");

    // Exactly the limit is allowed; the length declared later completes it.
    let data = bytes(1000, 9);
    let created = send(&client(), deferred(data.clone())).await;
    assert_tus(&created, 201);
    assert_eq!(offset(&created), 1000);
    let done = patch(&url, 1000, &[], &[("upload-length", "1000")]).await;
    assert_tus(&done, 201);
    assert_eq!(
        server.file("t/deferred-large.bin").await.as_deref(),
        Some(&data[..])
    );
    assert_eq!(server.calls(), 1);
}

on_every_backend! {
    a_deferred_creation_body_past_the_limit_is_413 => a_deferred_creation_body_past_the_limit_is_413,
    options_advertise_the_extensions => options_advertise_the_extensions,
    create_head_and_patch_complete_once => create_head_and_patch_complete_once,
    wrong_offsets_are_409_with_the_current_offset => wrong_offsets_are_409_with_the_current_offset,
    requests_on_an_upload_never_created => requests_on_an_upload_never_created,
    refusals_carry_tus_headers => refusals_carry_tus_headers,
    creation_with_upload_stores_from_offset_zero => creation_with_upload_stores_from_offset_zero,
    an_empty_file_completes_at_its_creation => an_empty_file_completes_at_its_creation,
    a_deferred_length_arrives_with_the_last_append => a_deferred_length_arrives_with_the_last_append,
    checksums_are_judged_before_the_bytes_count => checksums_are_judged_before_the_bytes_count,
    termination_removes_an_unfinished_upload_only => termination_removes_an_unfinished_upload_only,
    the_method_override_stands_for_the_method => the_method_override_stands_for_the_method,
    repeated_creations_keep_the_upload => repeated_creations_keep_the_upload,
    a_cut_off_append_keeps_its_whole_pieces => a_cut_off_append_keeps_its_whole_pieces,
    the_signed_type_holds_for_tus => the_signed_type_holds_for_tus,
}

/// The inner service sees a tus completion as a `PUT` of the path, with the
/// File and how it came in the extensions.
#[tokio::test]
async fn the_inner_service_sees_a_put_with_the_protocol() {
    use tower_signed_upload::UploadProtocol;
    let (signer, addr, seen) = serve_recording_inner().await;
    let url = sign(&signer, addr, "t/inner.bin", SignedMethod::Put);
    assert_tus(&create(&url, 3).await, 201);
    let done = send(
        &client(),
        tus(
            Method::POST,
            &url,
            &[
                TUS,
                STREAM,
                ("upload-offset", "0"),
                ("x-http-method-override", "PATCH"),
            ],
            Bytes::from_static(b"abc"),
        ),
    )
    .await;
    assert_tus(&done, 200);
    assert_eq!(offset(&done), 3);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (method, via, size) = &seen[0];
    assert_eq!(method, Method::PUT);
    let via = via.clone().expect("UploadVia in the extensions");
    assert_eq!(
        (via.protocol, via.method),
        (UploadProtocol::Tus, Method::PATCH)
    );
    assert_eq!(*size, Some(3));
}

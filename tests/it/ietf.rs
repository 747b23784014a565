//! The IETF resumable uploads draft on the signed URL
//! (docs/protocol.md#ietf-resumable-uploads), over real HTTP on 127.0.0.1, on
//! every backend: each row of the contract and its errors, at each interop
//! version the layer speaks.

use std::time::Duration;

use bytes::Bytes;
use http::Method;

use crate::common::*;
use crate::tus::{location_of, tus as request};
use tower_signed_upload::UrlOptions;

const PARTIAL: (&str, &str) = ("content-type", "application/partial-upload");

fn version(interop: u8) -> (&'static str, &'static str) {
    let value = match interop {
        3 => "3",
        5 => "5",
        6 => "6",
        7 => "7",
        8 => "8",
        _ => "4",
    };
    ("upload-draft-interop-version", value)
}

fn flag(set: bool) -> &'static str {
    if set {
        "?1"
    } else {
        "?0"
    }
}

/// The completion header in the words of `interop`.
fn complete(interop: u8, done: bool) -> (&'static str, &'static str) {
    if interop == 3 {
        ("upload-incomplete", flag(!done))
    } else {
        ("upload-complete", flag(done))
    }
}

/// Whether an answer says the upload is complete, in the words of `interop`.
fn says_complete(answer: &Answer, interop: u8) -> bool {
    if interop == 3 {
        answer.header("upload-incomplete") == Some("?0")
    } else {
        match answer.header("upload-complete") {
            Some("?1") => true,
            Some("?0") => false,
            other => panic!("Upload-Complete {other:?}: {answer:?}"),
        }
    }
}

fn offset(answer: &Answer) -> u64 {
    answer
        .header("upload-offset")
        .unwrap_or_else(|| panic!("no Upload-Offset: {answer:?}"))
        .parse()
        .unwrap()
}

async fn create(url: &str, interop: u8, length: Option<usize>, done: bool, body: &[u8]) -> Answer {
    let length = length.map(|length| length.to_string());
    let mut headers = vec![version(interop), complete(interop, done)];
    if let Some(length) = &length {
        headers.push(("upload-length", length));
    }
    send(
        &client(),
        request(Method::POST, url, &headers, Bytes::copy_from_slice(body)),
    )
    .await
}

async fn append(url: &str, interop: u8, at: u64, done: bool, body: &[u8]) -> Answer {
    let at = at.to_string();
    let mut headers = vec![
        version(interop),
        complete(interop, done),
        ("upload-offset", at.as_str()),
    ];
    if interop >= 6 {
        headers.push(PARTIAL);
    }
    send(
        &client(),
        request(Method::PATCH, url, &headers, Bytes::copy_from_slice(body)),
    )
    .await
}

async fn offset_of(url: &str, interop: u8) -> Answer {
    send(
        &client(),
        request(Method::HEAD, url, &[version(interop)], Bytes::new()),
    )
    .await
}

fn problem(answer: &Answer, status: u16, kind: &str) -> serde_json::Value {
    assert_eq!(answer.status.as_u16(), status, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json"),
        "{answer:?}"
    );
    let json = answer.json();
    assert_eq!(
        json["type"],
        format!("https://iana.org/assignments/http-problem-types#{kind}")
    );
    assert_eq!(json["status"], status);
    json
}

/// What tus-js-client sends with `protocol: 'ietf-draft-03'` (version 5) and
/// `'ietf-draft-05'` (version 6), then an offset, at every version.
async fn empty_creation_then_appends_complete_once(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer.max_size(500_000)).await;
    for interop in [3, 5, 6, 7, 8] {
        let path = format!("d/v{interop}.bin");
        let url = server.put_url(&path, &UrlOptions::new());
        let data = bytes(100_000, u64::from(interop));
        let calls = server.calls();

        let created = create(&url, interop, Some(100_000), false, b"").await;
        assert_eq!(created.status.as_u16(), 201, "{created:?}");
        assert_eq!(created.header("location"), Some(location_of(&url).as_str()));
        assert_eq!(offset(&created), 0);
        assert!(!says_complete(&created, interop));
        assert!(created.header("tus-resumable").is_none());
        // Limits from version 6, with its draft's name for the lifetime.
        match interop {
            3 | 5 => assert_eq!(created.header("upload-limit"), None),
            6 => assert!(created
                .header("upload-limit")
                .is_some_and(|limit| limit.starts_with("max-size=500000, min-size=0, expires="))),
            _ => assert!(created
                .header("upload-limit")
                .is_some_and(|limit| limit.starts_with("max-size=500000, min-size=0, max-age="))),
        }

        let first = append(&url, interop, 0, false, &data[..65_536]).await;
        // 201 in the drafts before -06, 204 after.
        let progress = if interop >= 7 { 204 } else { 201 };
        assert_eq!(first.status.as_u16(), progress, "{first:?}");
        assert_eq!(offset(&first), 65_536);
        assert!(!says_complete(&first, interop));

        let before = offset_of(&url, interop).await;
        assert_eq!(before.status.as_u16(), 204, "{before:?}");
        assert_eq!(offset(&before), 65_536);
        assert!(!says_complete(&before, interop));
        assert_eq!(before.header("cache-control"), Some("no-store"));
        assert_eq!(server.calls(), calls);

        // The completing append is the inner service's answer, with the
        // draft's headers: tus-js-client reads the offset from it.
        let last = append(&url, interop, 65_536, true, &data[65_536..]).await;
        assert_eq!(last.status.as_u16(), 201, "{last:?}");
        assert_eq!(offset(&last), 100_000);
        assert!(says_complete(&last, interop));
        assert_eq!(last.json()["data"]["filesize"], 100_000);
        assert_eq!(server.calls(), calls + 1);
        assert_eq!(server.file(&path).await, Some(data));

        let after = offset_of(&url, interop).await;
        assert_eq!(after.status.as_u16(), 204, "{after:?}");
        assert_eq!(offset(&after), 100_000);
        assert!(says_complete(&after, interop));
        assert_eq!(server.calls(), calls + 1);
    }
}

/// A creation that carries the whole file is the completion.
async fn a_creation_with_the_whole_file_completes(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    for (interop, method) in [(5, Method::POST), (6, Method::PUT), (8, Method::PUT)] {
        let path = format!("d/whole{interop}.bin");
        let url = server.put_url(&path, &UrlOptions::new());
        let data = bytes(30_000, 3);
        let answer = send(
            &client(),
            request(
                method,
                &url,
                &[version(interop), complete(interop, true)],
                Bytes::from(data.clone()),
            ),
        )
        .await;
        assert_eq!(answer.status.as_u16(), 201, "{answer:?}");
        assert!(says_complete(&answer, interop));
        assert_eq!(offset(&answer), 30_000);
        assert_eq!(server.file(&path).await, Some(data));
    }
    // Before version 7, an append that does not say otherwise completes the
    // upload (draft -01's example, in version 3's words).
    for interop in [3, 5, 6] {
        let path = format!("d/unsaid{interop}.bin");
        let url = server.put_url(&path, &UrlOptions::new());
        assert_eq!(
            create(&url, interop, None, false, b"abc")
                .await
                .status
                .as_u16(),
            201
        );
        let mut headers = vec![version(interop), ("upload-offset", "3")];
        if interop >= 6 {
            headers.push(PARTIAL);
        }
        let last = send(
            &client(),
            request(Method::PATCH, &url, &headers, Bytes::from_static(b"def")),
        )
        .await;
        assert_eq!(last.status.as_u16(), 201, "{last:?}");
        assert!(says_complete(&last, interop));
        assert_eq!(server.file(&path).await, Some(b"abcdef".to_vec()));
    }
    // A complete body of unknown length (chunked): its length is what arrived.
    let url = server.put_url("d/chunked.bin", &UrlOptions::new());
    let data = bytes(5_000_000, 5);
    let mut raw = raw_head(
        "PUT",
        target(&url),
        &[
            version(7),
            complete(7, true),
            ("transfer-encoding", "chunked"),
        ],
    );
    for piece in data.chunks(300_000) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(server.addr, &raw, Duration::from_secs(10)).await;
    assert_eq!(answer.status.as_u16(), 201, "{answer:?}");
    assert!(says_complete(&answer, 7));
    assert_eq!(offset(&answer), 5_000_000);
    assert_eq!(server.file("d/chunked.bin").await, Some(data));
    // An empty file, complete at its creation.
    let url = server.put_url("d/empty.bin", &UrlOptions::new());
    let answer = create(&url, 6, None, true, b"").await;
    assert_eq!(answer.status.as_u16(), 201, "{answer:?}");
    assert!(says_complete(&answer, 6));
    assert_eq!(server.file("d/empty.bin").await, Some(Vec::new()));
}

async fn wrong_offsets_are_409_with_the_offset(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    for interop in [5, 6, 8] {
        let url = server.put_url(&format!("d/offset{interop}.bin"), &UrlOptions::new());
        assert_eq!(
            create(&url, interop, Some(100), false, &bytes(10, 1))
                .await
                .status
                .as_u16(),
            201
        );
        let wrong = append(&url, interop, 20, false, &bytes(10, 1)).await;
        assert_eq!(wrong.status.as_u16(), 409, "{wrong:?}");
        assert_eq!(offset(&wrong), 10);
        if interop >= 6 {
            let json = problem(&wrong, 409, "mismatching-upload-offset");
            assert_eq!(json["expected-offset"], 10);
            assert_eq!(json["provided-offset"], 20);
            assert_eq!(json["code"], "offset_mismatch");
        } else {
            assert_eq!(wrong.code(), "offset_mismatch");
        }
        assert_eq!(offset(&offset_of(&url, interop).await), 10);
    }
}

async fn inconsistent_lengths_are_400(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    for interop in [6, 7] {
        let check = |answer: &Answer| {
            if interop >= 7 {
                let json = problem(answer, 400, "inconsistent-upload-length");
                assert_eq!(json["code"], "total_mismatch");
            } else {
                assert_eq!(answer.status.as_u16(), 400, "{answer:?}");
                assert_eq!(answer.code(), "total_mismatch");
            }
        };
        let url = server.put_url(&format!("d/length{interop}.bin"), &UrlOptions::new());
        // Upload-Length against a complete body.
        check(&create(&url, interop, Some(100), true, &bytes(50, 1)).await);
        assert_eq!(
            create(&url, interop, Some(100), false, b"")
                .await
                .status
                .as_u16(),
            201
        );
        // An append past the length, one that says it completes short of
        // it, and another length.
        check(&append(&url, interop, 0, false, &bytes(101, 1)).await);
        check(&append(&url, interop, 0, true, &bytes(50, 1)).await);
        let other = send(
            &client(),
            request(
                Method::PATCH,
                &url,
                &[
                    version(interop),
                    complete(interop, false),
                    PARTIAL,
                    ("upload-offset", "0"),
                    ("upload-length", "90"),
                ],
                Bytes::from(bytes(10, 1)),
            ),
        )
        .await;
        check(&other);
        assert_eq!(offset(&offset_of(&url, interop).await), 0);
    }
}

async fn appending_to_a_completed_upload_is_refused(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    for interop in [5, 6] {
        let path = format!("d/done{interop}.bin");
        let url = server.put_url(&path, &UrlOptions::new());
        let data = bytes(20, 4);
        assert_eq!(
            create(&url, interop, None, true, &data)
                .await
                .status
                .as_u16(),
            201
        );
        let again = append(&url, interop, 20, false, b"x").await;
        if interop >= 6 {
            let json = problem(&again, 400, "completed-upload");
            assert_eq!(json["code"], "upload_complete");
        } else {
            assert_eq!(again.code(), "upload_complete");
        }
        assert_eq!(server.file(&path).await, Some(data));
    }
    // Drafts -10 and -11 (version 8): bytes for a completed upload are an
    // inconsistent length; the empty completing append sent again is 410.
    let url = server.put_url("d/done8.bin", &UrlOptions::new());
    assert_eq!(
        create(&url, 8, None, true, b"abc").await.status.as_u16(),
        201
    );
    let json = problem(
        &append(&url, 8, 3, false, b"x").await,
        400,
        "inconsistent-upload-length",
    );
    assert_eq!(json["code"], "upload_complete");
    let json = problem(
        &append(&url, 8, 3, true, b"").await,
        410,
        "completed-upload",
    );
    assert_eq!(json["code"], "upload_complete");
    assert_eq!(server.file("d/done8.bin").await, Some(b"abc".to_vec()));
}

async fn lengths_past_the_limit_are_413(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer.max_size(1000)).await;
    let url = server.put_url("d/large.bin", &UrlOptions::new());
    assert_eq!(
        create(&url, 6, Some(1001), false, b"")
            .await
            .status
            .as_u16(),
        413
    );
    assert_eq!(create(&url, 6, None, false, b"").await.status.as_u16(), 201);
    let past = append(&url, 6, 0, false, &bytes(1001, 1)).await;
    assert_eq!(past.status.as_u16(), 413, "{past:?}");
    assert_eq!(past.code(), "too_large");
    assert_eq!(offset(&offset_of(&url, 6).await), 0);
}

async fn refusals_of_malformed_requests(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("d/refused.bin", &UrlOptions::new());
    let unknown = create(&url, 4, None, false, b"").await;
    assert_eq!(unknown.status.as_u16(), 412, "{unknown:?}");
    assert_eq!(unknown.code(), "version_unsupported");
    let no_flag = send(
        &client(),
        request(Method::POST, &url, &[version(6)], Bytes::new()),
    )
    .await;
    assert_eq!(no_flag.status.as_u16(), 400, "{no_flag:?}");
    // Never created: offsets and appends are 404.
    assert_eq!(offset_of(&url, 6).await.status.as_u16(), 404);
    assert_eq!(append(&url, 6, 0, false, b"x").await.status.as_u16(), 404);
    assert_eq!(create(&url, 6, None, false, b"").await.status.as_u16(), 201);
    // Version 6 appends need their media type; version 5 ones do not.
    let plain = send(
        &client(),
        request(
            Method::PATCH,
            &url,
            &[version(6), complete(6, false), ("upload-offset", "0")],
            Bytes::from_static(b"abc"),
        ),
    )
    .await;
    assert_eq!(plain.status.as_u16(), 415, "{plain:?}");
    assert_eq!(append(&url, 5, 0, false, b"abc").await.status.as_u16(), 201);
    // From version 7 an append says whether it completes the upload.
    let unsaid = send(
        &client(),
        request(
            Method::PATCH,
            &url,
            &[version(7), PARTIAL, ("upload-offset", "3")],
            Bytes::from_static(b"def"),
        ),
    )
    .await;
    assert_eq!(unsaid.status.as_u16(), 400, "{unsaid:?}");
    assert_eq!(offset(&offset_of(&url, 7).await), 3);
    // A get URL does not take draft requests.
    let get = server.url(
        "d/refused.bin",
        tower_signed_upload::SignedMethod::Get,
        &UrlOptions::new(),
    );
    assert_eq!(offset_of(&get, 6).await.status.as_u16(), 403);
}

async fn options_announce_the_limits(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer.max_size(5000)).await;
    let url = server.put_url("d/options.bin", &UrlOptions::new());
    for interop in [5, 6, 7, 8] {
        let answer = send(
            &client(),
            request(Method::OPTIONS, &url, &[version(interop)], Bytes::new()),
        )
        .await;
        assert_eq!(answer.status.as_u16(), 204, "{answer:?}");
        let limit = answer.header("upload-limit");
        match interop {
            5 => assert_eq!(limit, None),
            6 => {
                assert!(limit.is_some_and(|l| l.starts_with("max-size=5000, min-size=0, expires=")))
            }
            _ => {
                assert!(limit.is_some_and(|l| l.starts_with("max-size=5000, min-size=0, max-age=")))
            }
        }
        let accept = answer.header("accept-patch");
        assert_eq!(
            accept,
            (interop >= 8).then_some("application/partial-upload")
        );
    }
}

async fn cancellation_removes_an_unfinished_upload_only(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("d/cancel.bin", &UrlOptions::new());
    let delete = |url: String| async move {
        send(
            &client(),
            request(Method::DELETE, &url, &[version(6)], Bytes::new()),
        )
        .await
    };
    assert_eq!(
        create(&url, 6, Some(100), false, &bytes(10, 1))
            .await
            .status
            .as_u16(),
        201
    );
    assert_eq!(delete(url.clone()).await.status.as_u16(), 204);
    assert_eq!(offset_of(&url, 6).await.status.as_u16(), 404);
    let done = server.put_url("d/kept.bin", &UrlOptions::new());
    assert_eq!(
        create(&done, 6, None, true, b"abc").await.status.as_u16(),
        201
    );
    assert_eq!(delete(done).await.status.as_u16(), 409);
    assert_eq!(server.file("d/kept.bin").await, Some(b"abc".to_vec()));
}

/// A creation cut off midway keeps what arrived in whole pieces, as a tus
/// append does; the client resumes from the offset.
async fn a_cut_off_creation_keeps_its_whole_pieces(storage: Store) {
    let server =
        StorageServer::start(storage, |layer| layer.body_timeout(Duration::from_secs(5))).await;
    let url = server.put_url("d/cut.bin", &UrlOptions::new());
    let mib = 1024 * 1024;
    let mut raw = raw_head(
        "POST",
        target(&url),
        &[
            version(6),
            complete(6, false),
            ("upload-length", "20971520"),
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
        let answer = offset_of(&url, 6).await;
        if answer.status.as_u16() == 204 {
            stored = offset(&answer);
            if stored == 8 * mib as u64 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored, 8 * mib as u64);
    let last = append(&url, 6, stored, true, &bytes(12 * mib, 7)).await;
    assert_eq!(last.status.as_u16(), 201, "{last:?}");
    assert!(says_complete(&last, 6));
}

/// The URL's signed `type` is judged on the first bytes, whichever request
/// brings them.
async fn the_signed_type_holds_for_the_draft(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let options = UrlOptions::new().types("image/png").unwrap();
    let url = server.put_url("d/typed.png", &options);
    let text = bytes(20_000, 8);
    assert_eq!(
        create(&url, 6, Some(20_000), false, b"")
            .await
            .status
            .as_u16(),
        201
    );
    let refused = append(&url, 6, 0, true, &text).await;
    assert_eq!(refused.status.as_u16(), 415, "{refused:?}");
    assert_eq!(refused.code(), "type_not_allowed");
    let whole = server.put_url("d/whole.png", &options);
    let refused = create(&whole, 7, None, true, &text).await;
    assert_eq!(refused.status.as_u16(), 415, "{refused:?}");
    assert_eq!(server.file("d/typed.png").await, None);
    assert_eq!(server.file("d/whole.png").await, None);
    assert_eq!(server.calls(), 0);
    let png = png_image(40, 30);
    let length = png.len();
    let kept = server.put_url("d/kept.png", &options);
    let answer = create(&kept, 8, Some(length), true, &png).await;
    assert_eq!(answer.status.as_u16(), 201, "{answer:?}");
    assert_eq!(server.file("d/kept.png").await, Some(png));
}

on_every_backend! {
    the_signed_type_holds_for_the_draft => the_signed_type_holds_for_the_draft,
    empty_creation_then_appends_complete_once => empty_creation_then_appends_complete_once,
    a_creation_with_the_whole_file_completes => a_creation_with_the_whole_file_completes,
    wrong_offsets_are_409_with_the_offset => wrong_offsets_are_409_with_the_offset,
    inconsistent_lengths_are_400 => inconsistent_lengths_are_400,
    appending_to_a_completed_upload_is_refused => appending_to_a_completed_upload_is_refused,
    lengths_past_the_limit_are_413 => lengths_past_the_limit_are_413,
    refusals_of_malformed_requests => refusals_of_malformed_requests,
    options_announce_the_limits => options_announce_the_limits,
    cancellation_removes_an_unfinished_upload_only => cancellation_removes_an_unfinished_upload_only,
    a_cut_off_creation_keeps_its_whole_pieces => a_cut_off_creation_keeps_its_whole_pieces,
}

/// The inner service sees a draft completion as a `PUT` of the path, with
/// the File and the interop version in the extensions.
#[tokio::test]
async fn the_inner_service_sees_a_put_with_the_interop_version() {
    use std::sync::{Arc, Mutex};
    use tower_layer::Layer;
    use tower_signed_upload::{RequestBody, SignedMethod, UploadProtocol, UploadVia, UploadedFile};
    type Seen = Vec<(Method, Option<UploadVia>, Option<u64>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let inner = {
        let seen = Arc::clone(&seen);
        tower::service_fn(
            move |request: http::Request<RequestBody<hyper::body::Incoming>>| {
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
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(Bytes::new()),
                    ))
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
    let url = sign(&signer, addr, "d/inner.bin", SignedMethod::Put);
    assert_eq!(create(&url, 6, None, false, b"").await.status.as_u16(), 201);
    let done = append(&url, 6, 0, true, b"abc").await;
    assert_eq!(done.status.as_u16(), 200, "{done:?}");
    assert_eq!(offset(&done), 3);
    assert!(says_complete(&done, 6));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let (method, via, size) = &seen[0];
    assert_eq!(method, Method::PUT);
    let via = via.clone().expect("UploadVia in the extensions");
    assert_eq!(
        (via.protocol, via.method),
        (
            UploadProtocol::IetfDraft { interop_version: 6 },
            Method::PATCH
        )
    );
    assert_eq!(*size, Some(3));
}

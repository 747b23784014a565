//! Signed upload policy (docs/protocol.md#signed-policy) over real HTTP: `max_size`, `type`
//! and `kid`, each case on MemoryStorage and on FsStorage.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use http::Request;
use tower_signed_upload::{Error, SignedMethod, SigningKey, UrlOptions};

on_every_backend! {
    simple_upload_of_exactly_max_size_is_accepted => case_exactly_max_size,
    declared_length_over_max_size_is_413_before_the_body => case_declared_length_over_max_size,
    chunked_body_passing_max_size_is_413_and_keeps_the_old_file => case_chunked_body_over_max_size,
    chunk_whose_total_passes_max_size_is_413_and_the_session_goes_on => case_chunk_total_over_max_size,
    server_limit_still_applies_under_a_larger_signed_max_size => case_server_limit_wins,
    policy_on_a_get_url_is_400 => case_policy_on_get_url,
    malformed_or_repeated_policy_parameters_are_400 => case_malformed_policy,
    png_signed_for_images_is_accepted_as_an_image => case_png_for_images,
    zip_sent_as_image_png_is_415_and_keeps_the_old_file => case_zip_as_png,
    type_list_allows_each_listed_type_only => case_type_list,
    any_type_pattern_allows_anything => case_any_type,
    extension_does_not_count_for_the_signed_type => case_extension_does_not_count,
    chunks_before_offset_zero_wait_for_the_type_check => case_chunks_wait_for_offset_zero,
    zip_offset_zero_chunk_is_415_and_discards_the_session => case_zip_chunk_discards_session,
    tiny_offset_zero_chunk_waits_for_the_commit => case_tiny_first_chunk,
    type_is_judged_again_at_commit => case_type_judged_at_commit,
    named_key_verifies => case_kid_named_key_verifies,
    named_key_is_the_only_one_tried => case_kid_only_named_key,
    unknown_key_id_is_403 => case_kid_unknown,
    url_without_key_id_tries_every_key => case_kid_absent_tries_every_key,
    key_id_on_a_get_url_verifies => case_kid_on_get_url,
    retired_key_no_longer_verifies => case_kid_rotation,
}

const EXPIRY: u64 = NOW + 3600;

fn types(patterns: &str) -> UrlOptions {
    UrlOptions::new().types(patterns).unwrap()
}

/// A chunked (no `Content-Length`) `PUT` of `data` in pieces of `piece` bytes.
async fn put_chunked(url: &str, data: &[u8], piece: usize) -> Answer {
    let pieces = data.chunks(piece).map(<[u8]>::to_vec).collect();
    send_stream(&stream_client(), stream_put(url, &[], chunked_body(pieces))).await
}

/// Checks a `201` answer carrying the File object of `len` bytes; returns `data`.
fn created(answer: &Answer, path: &str, len: usize) -> serde_json::Value {
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let json = answer.json();
    assert_meta(&json, 201, "PUT", &format!("/{path}"));
    assert!(json["error"].is_null(), "{json}");
    let data = json["data"].clone();
    assert_eq!(data["object"], "source", "{json}");
    assert_eq!(data["filesize"], len, "{json}");
    assert_eq!(data["url"], format!("{PUBLIC_BASE}/{path}"), "{json}");
    data
}

/// Checks a `202` or `308` progress answer; returns `(ranges, received)`.
fn progress(answer: &Answer, status: u16) -> (serde_json::Value, u64) {
    assert_eq!(answer.status.as_u16(), status, "{:?}", answer.body);
    let json = answer.json();
    assert!(json["error"].is_null(), "{json}");
    assert_eq!(json["data"]["object"], "upload", "{json}");
    (
        json["data"]["ranges"].clone(),
        json["data"]["received"].as_u64().unwrap(),
    )
}

/// A session nothing is stored for: `308`, no total, no ranges.
async fn assert_session_empty(client: &HttpClient, url: &str) {
    let answer = status_query(client, url).await;
    assert_eq!(answer.status, 308, "{:?}", answer.body);
    let data = &answer.json()["data"];
    assert_eq!(data["received"], 0, "{data}");
    assert_eq!(data["ranges"], serde_json::json!([]), "{data}");
    assert!(data["filesize"].is_null(), "{data}");
    assert_eq!(answer.header("range"), None);
}

// --- max_size ----------------------------------------------------------------

async fn case_exactly_max_size(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let png = png_of_len(200);
    let options = UrlOptions::new().max_size(200).types("image/*").unwrap();
    let url = server.put_url("a.png", &options);
    assert!(
        url.contains("&max_size=200&type=image/*&signature="),
        "{url}"
    );

    let data = created(
        &send(&client, put(&url, &[], png.clone())).await,
        "a.png",
        200,
    );
    assert_eq!(data["kind"], "image");
    assert_eq!(server.file("a.png").await.as_deref(), Some(&png[..]));

    // Without Content-Length, the limit counts the streamed bytes: exactly 200 passes.
    let url = server.put_url("b.png", &options);
    created(&put_chunked(&url, &png, 64).await, "b.png", 200);
    assert_eq!(server.file("b.png").await.as_deref(), Some(&png[..]));

    // A session of exactly max_size bytes.
    let url = server.put_url("c.png", &options);
    let answer = send(&client, range_put(&url, &png, 0, 99, Some(200), &[])).await;
    progress(&answer, 202);
    let answer = send(&client, range_put(&url, &png, 100, 199, Some(200), &[])).await;
    created(&answer, "c.png", 200);
    assert_eq!(server.file("c.png").await.as_deref(), Some(&png[..]));
    assert_eq!(server.calls(), 3);
}

async fn case_declared_length_over_max_size(storage: Store) {
    // The server's own limit (5 GiB by default) is far above the signed one.
    let server = StorageServer::start(storage, |layer| layer).await;
    let url = server.put_url("a.bin", &UrlOptions::new().max_size(100));
    // The head promises 101 bytes and none is sent: the answer comes from the header.
    let head = raw_head("PUT", target(&url), &[("content-length", "101")]);
    let answer = raw_exchange(server.addr, &head, Duration::from_secs(5)).await;
    assert_rejected(&answer, 413, "too_large", "PUT", "/a.bin");
    let head = raw_head(
        "PUT",
        target(&url),
        &[("content-length", "101"), ("expect", "100-continue")],
    );
    let answer = raw_exchange(server.addr, &head, Duration::from_secs(5)).await;
    assert_rejected(&answer, 413, "too_large", "PUT", "/a.bin");
    assert_eq!(server.file("a.bin").await, None);
    assert_eq!(server.calls(), 0);
}

async fn case_chunked_body_over_max_size(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let old = png_image(3, 3);
    let answer = send(
        &client,
        put(
            &server.put_url("a.png", &UrlOptions::new()),
            &[],
            old.clone(),
        ),
    )
    .await;
    created(&answer, "a.png", old.len());

    let url = server.put_url("a.png", &UrlOptions::new().max_size(200));
    let answer = put_chunked(&url, &png_of_len(300), 150).await;
    assert_rejected(&answer, 413, "too_large", "PUT", "/a.png");
    assert_eq!(server.file("a.png").await, Some(old), "the old file stays");
    assert_eq!(server.calls(), 1);
}

async fn case_chunk_total_over_max_size(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let url = server.put_url("a.bin", &UrlOptions::new().max_size(100));
    let data = bytes(100, 1);
    let over = bytes(120, 2);

    // Refused before anything is stored: the session stays empty.
    let answer = send(&client, range_put(&url, &over, 0, 9, Some(101), &[])).await;
    assert_rejected(&answer, 413, "too_large", "PUT", "/a.bin");
    assert_session_empty(&client, &url).await;

    let answer = send(&client, range_put(&url, &data, 0, 49, Some(100), &[])).await;
    assert_eq!(progress(&answer, 202).0, serde_json::json!([[0, 49]]));
    // A total past the limit, and an open-total chunk ending past it.
    let answer = send(&client, range_put(&url, &over, 50, 100, Some(101), &[])).await;
    assert_rejected(&answer, 413, "too_large", "PUT", "/a.bin");
    let answer = send(&client, range_put(&url, &over, 90, 109, None, &[])).await;
    assert_rejected(&answer, 413, "too_large", "PUT", "/a.bin");
    // The refused chunks count for nothing and the session goes on.
    let (ranges, received) = session_progress(&client, &url).await;
    assert_eq!((ranges, received), (serde_json::json!([[0, 49]]), 50));
    let answer = send(&client, range_put(&url, &data, 50, 99, Some(100), &[])).await;
    created(&answer, "a.bin", 100);
    assert_eq!(server.file("a.bin").await, Some(data));
    assert_eq!(server.calls(), 1);
}

async fn case_server_limit_wins(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer.max_size(50)).await;
    let client = client();
    let url = server.put_url("a.bin", &UrlOptions::new().max_size(100));
    let answer = send(&client, put(&url, &[], bytes(51, 1))).await;
    assert_rejected(&answer, 413, "too_large", "PUT", "/a.bin");
    let answer = put_chunked(&url, &bytes(60, 1), 30).await;
    assert_rejected(&answer, 413, "too_large", "PUT", "/a.bin");
    let answer = send(&client, range_put(&url, &bytes(60, 1), 0, 9, Some(60), &[])).await;
    assert_rejected(&answer, 413, "too_large", "PUT", "/a.bin");
    assert_session_empty(&client, &url).await;
    assert_eq!(server.file("a.bin").await, None);

    let answer = send(&client, put(&url, &[], bytes(50, 1))).await;
    created(&answer, "a.bin", 50);
    assert_eq!(server.file("a.bin").await, Some(bytes(50, 1)));
}

async fn case_policy_on_get_url(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    // The signer refuses to mint them; signed by hand, the server refuses them.
    let refused = server.signer.sign_with(
        &tower_signed_upload::UploadPath::new("a.png").unwrap(),
        SignedMethod::Get,
        Duration::from_secs(60),
        &UrlOptions::new().max_size(10),
    );
    assert_eq!(
        refused.unwrap_err(),
        tower_signed_upload::ConfigError::PolicyOnGet
    );
    for policy in ["max_size=10", "type=image/*", "max_size=10&type=image/png"] {
        let url = server.hand_signed(
            KEY,
            "a.png",
            &format!("expiry={EXPIRY}&method=get&{policy}"),
        );
        for method in [http::Method::GET, http::Method::HEAD] {
            let request = Request::builder()
                .method(method.clone())
                .uri(&url)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let answer = send(&client, request).await;
            if method == http::Method::HEAD {
                assert_eq!(answer.status, 400, "{policy}");
            } else {
                assert_rejected(&answer, 400, "query_invalid", "GET", "/a.png");
            }
        }
    }
    assert_eq!(server.calls(), 0);
}

async fn case_malformed_policy(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    for policy in [
        "max_size=",
        "max_size=-1",
        "max_size=1e3",
        "max_size=0x10",
        "max_size=99999999999999999999999",
        "max_size=10&max_size=10",
        "type=",
        "type=image",
        "type=*/png",
        "type=image/png,",
        "type=image/*&type=image/*",
        "kid=",
        "kid=a%20b",
        "kid=k1&kid=k1",
    ] {
        let url = server.hand_signed(
            KEY,
            "a.png",
            &format!("expiry={EXPIRY}&method=put&{policy}"),
        );
        let answer = send(&client, put(&url, &[], png_image(1, 1))).await;
        assert_eq!(answer.status, 400, "{policy}: {:?}", answer.body);
        assert_rejected(&answer, 400, "query_invalid", "PUT", "/a.png");
    }
    assert_eq!(server.file("a.png").await, None);
    // Well-formed, hand-signed policy parameters verify and are enforced.
    let url = server.hand_signed(
        KEY,
        "a.png",
        &format!("expiry={EXPIRY}&method=put&type=image%2Fpng&max_size=1000"),
    );
    let png = png_image(2, 2);
    created(
        &send(&client, put(&url, &[], png.clone())).await,
        "a.png",
        png.len(),
    );
    let answer = send(&client, put(&url, &[], gif_image(2, 2))).await;
    assert_rejected(&answer, 415, "type_not_allowed", "PUT", "/a.png");
    assert_eq!(server.file("a.png").await, Some(png));
}

// --- type --------------------------------------------------------------------

async fn case_png_for_images(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let png = png_image(3, 2);
    let url = server.put_url("pics/a.png", &types("image/*"));
    let data = created(
        &send(&client, put(&url, &[], png.clone())).await,
        "pics/a.png",
        png.len(),
    );
    assert_eq!(data["kind"], "image");
    assert_eq!(data["type"], "image/png");
    assert_eq!(
        (data["width"].as_u64(), data["height"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(server.file("pics/a.png").await, Some(png));

    // Larger than the streaming sniff window, sent chunked in small pieces
    // (the head is gathered across pieces) and named without an extension.
    let big = png_image(64, 64);
    assert!(big.len() > 8192);
    let url = server.put_url("pics/big", &types("image/*"));
    let data = created(&put_chunked(&url, &big, 1000).await, "pics/big", big.len());
    assert_eq!(data["type"], "image/png");
    assert_eq!(
        (data["width"].as_u64(), data["height"].as_u64()),
        (Some(64), Some(64))
    );
    assert_eq!(server.file("pics/big").await, Some(big));
}

async fn case_zip_as_png(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let old = png_image(2, 2);
    let url = server.put_url("a.png", &types("image/*"));
    created(
        &send(&client, put(&url, &[], old.clone())).await,
        "a.png",
        old.len(),
    );

    let zip = zip_file("notes.txt", &bytes(200, 7));
    let url = server.put_url("a.png", &types("image/*"));
    let answer = send(&client, put(&url, &[("content-type", "image/png")], zip)).await;
    assert_rejected(&answer, 415, "type_not_allowed", "PUT", "/a.png");
    // A ZIP larger than the sniff window, streamed without Content-Length.
    let big_zip = zip_file("notes.txt", &bytes(20_000, 8));
    let answer = send_stream(
        &stream_client(),
        stream_put(
            &url,
            &[("content-type", "image/png")],
            chunked_body(big_zip.chunks(1000).map(<[u8]>::to_vec).collect()),
        ),
    )
    .await;
    assert_rejected(&answer, 415, "type_not_allowed", "PUT", "/a.png");
    assert_eq!(server.file("a.png").await, Some(old), "the old file stays");
    assert_eq!(server.calls(), 1);
}

async fn case_type_list(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let options = types("image/png,image/jpeg");
    let url = server.put_url("a.png", &options);
    assert!(
        url.contains("&type=image/png,image/jpeg&signature="),
        "{url}"
    );
    let png = png_image(4, 4);
    let data = created(
        &send(&client, put(&url, &[], png.clone())).await,
        "a.png",
        png.len(),
    );
    assert_eq!(data["type"], "image/png");

    let jpeg = jpeg_image(640, 480);
    let url = server.put_url("b.jpg", &options);
    let data = created(
        &send(&client, put(&url, &[], jpeg.clone())).await,
        "b.jpg",
        jpeg.len(),
    );
    assert_eq!(data["type"], "image/jpeg");
    assert_eq!(data["kind"], "image");
    assert_eq!(
        (data["width"].as_u64(), data["height"].as_u64()),
        (Some(640), Some(480))
    );
    assert_eq!(server.file("b.jpg").await, Some(jpeg));

    let url = server.put_url("c.gif", &options);
    let answer = send(
        &client,
        put(&url, &[("content-type", "image/png")], gif_image(1, 1)),
    )
    .await;
    assert_rejected(&answer, 415, "type_not_allowed", "PUT", "/c.gif");
    assert_eq!(server.file("c.gif").await, None);
    assert_eq!(server.calls(), 2);
}

async fn case_any_type(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let zip = zip_file("a.txt", b"hello");
    let url = server.put_url("a.zip", &types("*/*"));
    let data = created(
        &send(&client, put(&url, &[], zip.clone())).await,
        "a.zip",
        zip.len(),
    );
    assert_eq!(data["type"], "application/zip");
    assert_eq!(data["kind"], "other");
    assert_eq!(server.file("a.zip").await, Some(zip));

    let text = b"plain words, no signature".to_vec();
    let url = server.put_url("b", &types("*/*"));
    let data = created(
        &send(&client, put(&url, &[], text.clone())).await,
        "b",
        text.len(),
    );
    assert_eq!(data["type"], "application/octet-stream");
    assert_eq!(server.file("b").await, Some(text));
}

async fn case_extension_does_not_count(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let text = b"plain words, no signature".repeat(4);
    let url = server.put_url("photo.png", &types("image/*"));
    let answer = send(
        &client,
        put(&url, &[("content-type", "image/png")], text.clone()),
    )
    .await;
    assert_rejected(&answer, 415, "type_not_allowed", "PUT", "/photo.png");
    assert_eq!(server.file("photo.png").await, None);
    // Unsigned for a type, the same bytes are described by their extension.
    let url = server.put_url("photo.png", &UrlOptions::new());
    let data = created(
        &send(&client, put(&url, &[], text.clone())).await,
        "photo.png",
        text.len(),
    );
    assert_eq!(data["type"], "image/png");
    assert_eq!(server.file("photo.png").await, Some(text));
}

async fn case_chunks_wait_for_offset_zero(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let png = png_image(8, 8);
    let total = png.len();
    let url = server.put_url("a.png", &types("image/*"));
    let answer = send(
        &client,
        range_put(&url, &png, 100, total - 1, Some(total), &[]),
    )
    .await;
    assert_eq!(
        progress(&answer, 202).0,
        serde_json::json!([[100, total - 1]])
    );
    let answer = send(&client, range_put(&url, &png, 40, 99, Some(total), &[])).await;
    assert_eq!(
        progress(&answer, 202).0,
        serde_json::json!([[40, total - 1]])
    );
    let answer = send(&client, range_put(&url, &png, 0, 39, Some(total), &[])).await;
    let data = created(&answer, "a.png", total);
    assert_eq!(data["type"], "image/png");
    assert_eq!(
        (data["width"].as_u64(), data["height"].as_u64()),
        (Some(8), Some(8))
    );
    assert_eq!(server.file("a.png").await, Some(png));
}

async fn case_zip_chunk_discards_session(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let zip = zip_file("notes.txt", &bytes(300, 3));
    let total = zip.len();
    let url = server.put_url("a.png", &types("image/*"));
    let answer = send(
        &client,
        range_put(&url, &zip, 100, total - 1, Some(total), &[]),
    )
    .await;
    progress(&answer, 202);
    let answer = send(&client, range_put(&url, &zip, 50, 99, Some(total), &[])).await;
    assert_eq!(progress(&answer, 202).1, (total - 50) as u64);
    let answer = send(
        &client,
        range_put(
            &url,
            &zip,
            0,
            49,
            Some(total),
            &[("content-type", "image/png")],
        ),
    )
    .await;
    assert_rejected(&answer, 415, "type_not_allowed", "PUT", "/a.png");
    // The refusal removed the session's bytes: nothing received, no total.
    assert_session_empty(&client, &url).await;
    assert_eq!(server.file("a.png").await, None);

    // The same URL starts afresh: a PNG of another total completes.
    let png = png_image(5, 5);
    assert_ne!(png.len(), total);
    let answer = send(
        &client,
        range_put(&url, &png, 30, png.len() - 1, Some(png.len()), &[]),
    )
    .await;
    progress(&answer, 202);
    let answer = send(&client, range_put(&url, &png, 0, 29, Some(png.len()), &[])).await;
    assert_eq!(created(&answer, "a.png", png.len())["type"], "image/png");
    assert_eq!(server.file("a.png").await, Some(png));
    assert_eq!(server.calls(), 1);
}

/// An offset-0 chunk too short to judge (`\x89PN`, three bytes of a PNG, less
/// than 8 KiB and not the whole file) is stored; the type is judged on the
/// assembled file at commit.
async fn case_tiny_first_chunk(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let png = png_image(2, 2);
    let total = png.len();
    let url = server.put_url("a.png", &types("image/*"));
    let answer = send(
        &client,
        range_put(&url, &png, 10, total - 1, Some(total), &[]),
    )
    .await;
    progress(&answer, 202);
    // Three bytes are too few to judge: the type waits for the commit.
    let answer = send(&client, range_put(&url, &png, 0, 2, Some(total), &[])).await;
    assert_eq!(
        progress(&answer, 202).0,
        serde_json::json!([[0, 2], [10, total as u64 - 1]])
    );
    let answer = send(&client, range_put(&url, &png, 0, 3, Some(total), &[])).await;
    assert_eq!(
        progress(&answer, 202).0,
        serde_json::json!([[0, 3], [10, total as u64 - 1]])
    );
    let answer = send(
        &client,
        range_put(&url, &png, 4, total - 1, Some(total), &[]),
    )
    .await;
    assert_eq!(created(&answer, "a.png", total)["type"], "image/png");
    assert_eq!(server.file("a.png").await, Some(png));
}

/// A first chunk whose three bytes sniff as `application/octet-stream` passes a
/// URL signed for that type; the assembled file is a PNG, so the commit refuses
/// it and discards the session.
async fn case_type_judged_at_commit(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let png = png_image(2, 2);
    let total = png.len();
    let url = server.put_url("a.bin", &types("application/octet-stream"));
    let answer = send(&client, range_put(&url, &png, 0, 2, Some(total), &[])).await;
    assert_eq!(progress(&answer, 202).0, serde_json::json!([[0, 2]]));
    let answer = send(
        &client,
        range_put(&url, &png, 3, total - 1, Some(total), &[]),
    )
    .await;
    assert_rejected(&answer, 415, "type_not_allowed", "PUT", "/a.bin");
    assert_session_empty(&client, &url).await;
    assert_eq!(server.file("a.bin").await, None);
    assert_eq!(server.calls(), 0);
    // Bytes that really are octet-stream complete on the same URL.
    let text = b"no signature here".repeat(3);
    let answer = send(
        &client,
        range_put(&url, &text, 0, text.len() - 1, Some(text.len()), &[]),
    )
    .await;
    created(&answer, "a.bin", text.len());
    assert_eq!(server.file("a.bin").await, Some(text));
}

// --- kid ---------------------------------------------------------------------

/// A server whose first key is `new` (id `k2`, signs) and which also verifies
/// with `old` (id `k1`).
async fn rotating(storage: Store) -> StorageServer {
    let layer = layer_over(
        storage,
        SigningKey::new("new").unwrap().with_id("k2").unwrap(),
    )
    .verify_key(SigningKey::new("old").unwrap().with_id("k1").unwrap());
    StorageServer::serve(layer).await
}

async fn upload(client: &HttpClient, url: &str) -> Answer {
    send(client, put(url, &[], png_image(1, 1))).await
}

async fn case_kid_named_key_verifies(storage: Store) {
    let server = rotating(storage).await;
    let client = client();
    let url = server.put_url("a.png", &UrlOptions::new().key_id());
    assert!(url.contains("&method=put&kid=k2&signature="), "{url}");
    created(&upload(&client, &url).await, "a.png", png_image(1, 1).len());
    let url = server.put_url(
        "b.png",
        &UrlOptions::new()
            .max_size(1000)
            .types("image/*")
            .unwrap()
            .key_id(),
    );
    assert!(
        url.contains("&max_size=1000&type=image/*&kid=k2&signature="),
        "{url}"
    );
    created(&upload(&client, &url).await, "b.png", png_image(1, 1).len());
    // The retiring key, named by its own id.
    let url = server.hand_signed(
        "old",
        "c.png",
        &format!("expiry={EXPIRY}&method=put&kid=k1"),
    );
    created(&upload(&client, &url).await, "c.png", png_image(1, 1).len());
    assert_eq!(server.calls(), 3);
}

async fn case_kid_only_named_key(storage: Store) {
    let server = rotating(storage).await;
    let client = client();
    for (key, kid) in [("old", "k2"), ("new", "k1")] {
        let url = server.hand_signed(
            key,
            "a.png",
            &format!("expiry={EXPIRY}&method=put&kid={kid}"),
        );
        let answer = upload(&client, &url).await;
        assert_rejected(&answer, 403, "signature_invalid", "PUT", "/a.png");
    }
    assert_eq!(server.file("a.png").await, None);
    assert_eq!(server.calls(), 0);
}

async fn case_kid_unknown(storage: Store) {
    let server = rotating(storage).await;
    let client = client();
    for key in ["new", "old"] {
        let url = server.hand_signed(
            key,
            "a.png",
            &format!("expiry={EXPIRY}&method=put&kid=nope"),
        );
        let answer = upload(&client, &url).await;
        assert_rejected(&answer, 403, "signature_invalid", "PUT", "/a.png");
    }
    assert_eq!(server.file("a.png").await, None);
}

async fn case_kid_absent_tries_every_key(storage: Store) {
    let server = rotating(storage).await;
    let client = client();
    let url = server.put_url("a.png", &UrlOptions::new());
    assert!(!url.contains("kid="), "{url}");
    created(&upload(&client, &url).await, "a.png", png_image(1, 1).len());
    let query = format!("expiry={EXPIRY}&method=put");
    for (key, path) in [("new", "b.png"), ("old", "c.png")] {
        let url = server.hand_signed(key, path, &query);
        created(&upload(&client, &url).await, path, png_image(1, 1).len());
    }
    let url = server.hand_signed("unknown", "d.png", &query);
    assert_rejected(
        &upload(&client, &url).await,
        403,
        "signature_invalid",
        "PUT",
        "/d.png",
    );
    assert_eq!(server.calls(), 3);
}

async fn case_kid_on_get_url(storage: Store) {
    let server = rotating(storage).await;
    let client = client();
    created(
        &upload(
            &client,
            &server.put_url("a.png", &UrlOptions::new().key_id()),
        )
        .await,
        "a.png",
        png_image(1, 1).len(),
    );
    // `kid` is allowed on get URLs: verification passes and the request reaches
    // the inner service (the default one answers downloads 404).
    let url = server.url("a.png", SignedMethod::Get, &UrlOptions::new().key_id());
    assert!(url.contains("&method=get&kid=k2&signature="), "{url}");
    let get = |url: &str| {
        Request::get(url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let answer = send(&client, get(&url)).await;
    assert_eq!(answer.status, 404, "{:?}", answer.body);
    assert_eq!(answer.code(), "not_found");
    let url = server.hand_signed(
        "old",
        "a.png",
        &format!("expiry={EXPIRY}&method=get&kid=k2"),
    );
    let answer = send(&client, get(&url)).await;
    assert_rejected(&answer, 403, "signature_invalid", "GET", "/a.png");
}

async fn case_kid_rotation(storage: Store) {
    // Step 1: the new key signs, the old one still verifies.
    let both = rotating(Arc::clone(&storage)).await;
    // Step 2, after the longest URL lifetime: the old key is removed.
    let new_only = StorageServer::serve(layer_over(
        Arc::clone(&storage),
        SigningKey::new("new").unwrap().with_id("k2").unwrap(),
    ))
    .await;
    let client = client();
    let query = format!("expiry={EXPIRY}&method=put");
    let old_urls = [("old", format!("{query}&kid=k1")), ("old", query.clone())];
    for (key, query) in &old_urls {
        let url = both.hand_signed(key, "old.png", query);
        created(
            &upload(&client, &url).await,
            "old.png",
            png_image(1, 1).len(),
        );
        let url = new_only.hand_signed(key, "old.png", query);
        let answer = upload(&client, &url).await;
        assert_rejected(&answer, 403, "signature_invalid", "PUT", "/old.png");
    }
    for query in [format!("{query}&kid=k2"), query.clone()] {
        let url = new_only.hand_signed("new", "new.png", &query);
        created(
            &upload(&client, &url).await,
            "new.png",
            png_image(1, 1).len(),
        );
    }
    assert_eq!(both.calls(), 2);
    assert_eq!(new_only.calls(), 2);
}

// --- The status table --------------------------------------------------------

#[test]
fn policy_and_integrity_errors_have_their_status_and_code() {
    let table: &[(Error, u16, &str)] = &[
        (Error::TypeNotAllowed, 415, "type_not_allowed"),
        (Error::DigestMismatch, 400, "digest_mismatch"),
        (Error::DigestInvalid, 400, "digest_invalid"),
        (Error::DigestConflict, 409, "digest_conflict"),
        (Error::RangeConflict, 409, "range_conflict"),
    ];
    for &(error, status, code) in table {
        assert_eq!(error.status().as_u16(), status, "{error:?}");
        assert_eq!(error.code(), code, "{error:?}");
        assert!(!error.to_string().is_empty(), "{error:?}");
    }
}

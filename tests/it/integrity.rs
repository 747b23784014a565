//! Integrity (docs/protocol.md#integrity) over real HTTP: `Content-Digest`,
//! `Repr-Digest`, the File object's `sha256`, and chunks resent with other
//! bytes, each case on MemoryStorage and on FsStorage.

use crate::common::*;
use serde_json::{json, Value};
use tower_signed_upload::UrlOptions;

on_every_backend! {
    content_digest_sha256_and_sha512_are_accepted => case_content_digest_accepted,
    wrong_content_digest_on_a_simple_upload_is_400_and_keeps_the_old_file => case_content_digest_wrong_simple,
    wrong_content_digest_on_a_chunk_is_400_and_counts_for_nothing => case_content_digest_wrong_chunk,
    malformed_digest_headers_are_400_digest_invalid => case_digest_invalid,
    digest_of_unknown_algorithms_only_is_400_digest_invalid => case_unknown_algorithm_only,
    unknown_algorithm_beside_a_known_one_is_ignored => case_unknown_algorithm_beside,
    repr_digest_of_a_simple_upload_gives_its_sha256 => case_repr_digest_simple,
    wrong_repr_digest_on_a_simple_upload_is_400_and_stores_nothing => case_repr_digest_wrong_simple,
    repr_digest_on_every_chunk_gives_the_file_its_sha256 => case_repr_digest_session,
    repr_digest_kept_from_an_earlier_chunk_is_checked_at_completion => case_repr_digest_kept,
    other_repr_digest_within_a_session_is_409 => case_repr_digest_conflict,
    wrong_repr_digest_at_completion_discards_the_session => case_repr_digest_wrong_session,
    sha512_repr_digest_of_a_session => case_repr_digest_sha512_session,
    compute_sha256_gives_every_file_its_sha256 => case_compute_sha256,
    without_digests_files_have_no_sha256 => case_no_sha256_by_default,
    identical_resend_is_accepted_before_and_after_completion => case_identical_resend,
    resend_with_other_bytes_is_409_and_keeps_the_stored_bytes => case_conflicting_resend,
    partial_overlap_is_compared_byte_by_byte => case_partial_overlap,
}

// Status queries and simple uploads: every request that sends a digest is held to it.

#[tokio::test]
async fn status_query_with_another_repr_digest_is_409_on_memory() {
    case_status_query_repr_digest_conflict(memory_storage()).await;
}

#[tokio::test]
async fn status_query_with_another_repr_digest_is_409_on_fs() {
    let (_dir, storage) = fs_storage();
    case_status_query_repr_digest_conflict(storage).await;
}

#[tokio::test]
async fn content_digest_of_a_simple_upload_gives_its_sha256_on_memory() {
    case_content_digest_gives_sha256(memory_storage()).await;
}

#[tokio::test]
async fn content_digest_of_a_simple_upload_gives_its_sha256_on_fs() {
    let (_dir, storage) = fs_storage();
    case_content_digest_gives_sha256(storage).await;
}

/// Checks a `201` (or `200` replay) answer with the File object of `len`
/// bytes; returns `data`.
fn file_answer(answer: &Answer, status: u16, path: &str, len: usize) -> Value {
    assert_eq!(answer.status.as_u16(), status, "{:?}", answer.body);
    let json = answer.json();
    assert_meta(&json, status, "PUT", &format!("/{path}"));
    assert!(json["error"].is_null(), "{json}");
    let data = json["data"].clone();
    assert_eq!(data["object"], "source", "{json}");
    assert_eq!(data["filesize"], len, "{json}");
    data
}

fn created(answer: &Answer, path: &str, len: usize) -> Value {
    file_answer(answer, 201, path, len)
}

/// Checks a `202` answer; returns its `ranges`.
fn accepted(answer: &Answer) -> Value {
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let json = answer.json();
    assert!(json["error"].is_null(), "{json}");
    assert_eq!(json["data"]["object"], "upload", "{json}");
    json["data"]["ranges"].clone()
}

/// The File object's `sha256`, or `None` when the key is absent.
fn sha256_of(data: &Value) -> Option<&str> {
    let object = data.as_object().expect("a File object");
    object.get("sha256").map(|v| v.as_str().expect("a string"))
}

/// A session nothing is stored for: `308`, no total, no ranges.
async fn assert_session_empty(client: &HttpClient, url: &str) {
    let answer = status_query(client, url).await;
    assert_eq!(answer.status, 308, "{:?}", answer.body);
    let data = &answer.json()["data"];
    assert_eq!(data["received"], 0, "{data}");
    assert_eq!(data["ranges"], json!([]), "{data}");
    assert!(data["filesize"].is_null(), "{data}");
}

fn plain() -> UrlOptions {
    UrlOptions::new()
}

// --- Content-Digest ----------------------------------------------------------

async fn case_content_digest_accepted(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(5000, 1);
    for (path, field) in [
        ("a.bin", sha256_field(&data)),
        ("b.bin", sha512_field(&data)),
    ] {
        let url = server.put_url(path, &plain());
        let answer = send(
            &client,
            put(&url, &[("content-digest", &field)], data.clone()),
        )
        .await;
        created(&answer, path, data.len());
        assert_eq!(server.file(path).await.as_deref(), Some(&data[..]));
    }
    // Several members: the strongest supported one is checked, others ignored.
    let both = format!("{}, {}", sha256_field(&data), sha512_field(&data));
    let url = server.put_url("c.bin", &plain());
    created(
        &send(
            &client,
            put(&url, &[("content-digest", &both)], data.clone()),
        )
        .await,
        "c.bin",
        5000,
    );

    let url = server.put_url("d.bin", &plain());
    let first = sha256_field(&data[..2000]);
    let answer = send(
        &client,
        range_put(
            &url,
            &data,
            0,
            1999,
            Some(5000),
            &[("content-digest", &first)],
        ),
    )
    .await;
    assert_eq!(accepted(&answer), json!([[0, 1999]]));
    let last = sha512_field(&data[2000..]);
    let answer = send(
        &client,
        range_put(
            &url,
            &data,
            2000,
            4999,
            Some(5000),
            &[("content-digest", &last)],
        ),
    )
    .await;
    created(&answer, "d.bin", 5000);
    assert_eq!(server.file("d.bin").await, Some(data));
    assert_eq!(server.calls(), 4);
}

async fn case_content_digest_wrong_simple(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let old = bytes(300, 1);
    created(
        &send(
            &client,
            put(&server.put_url("a.bin", &plain()), &[], old.clone()),
        )
        .await,
        "a.bin",
        300,
    );

    let new = bytes(300, 2);
    for field in [sha256_field(&old), sha512_field(&old)] {
        let url = server.put_url("a.bin", &plain());
        let answer = send(
            &client,
            put(&url, &[("content-digest", &field)], new.clone()),
        )
        .await;
        assert_rejected(&answer, 400, "digest_mismatch", "PUT", "/a.bin");
        // Streamed without Content-Length, too.
        let body = chunked_body(new.chunks(100).map(<[u8]>::to_vec).collect());
        let answer = send_stream(
            &stream_client(),
            stream_put(&url, &[("content-digest", &field)], body),
        )
        .await;
        assert_rejected(&answer, 400, "digest_mismatch", "PUT", "/a.bin");
    }
    assert_eq!(server.file("a.bin").await, Some(old), "the old file stays");
    assert_eq!(server.calls(), 1);
}

async fn case_content_digest_wrong_chunk(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(100, 1);
    let other = bytes(100, 2);
    let url = server.put_url("a.bin", &plain());
    let field = sha256_field(&data[..50]);
    let answer = send(
        &client,
        range_put(&url, &data, 0, 49, Some(100), &[("content-digest", &field)]),
    )
    .await;
    assert_eq!(accepted(&answer), json!([[0, 49]]));

    // The digest names other bytes than the chunk carries.
    let wrong = sha256_field(&data[50..]);
    let answer = send(
        &client,
        range_put(
            &url,
            &other,
            50,
            99,
            Some(100),
            &[("content-digest", &wrong)],
        ),
    )
    .await;
    assert_rejected(&answer, 400, "digest_mismatch", "PUT", "/a.bin");
    let (ranges, received) = session_progress(&client, &url).await;
    assert_eq!((ranges, received), (json!([[0, 49]]), 50));
    // Nothing of the refused chunk was kept: other bytes for the same range
    // are no conflict, and they are what the file holds.
    let right = sha512_field(&other[50..]);
    let answer = send(
        &client,
        range_put(
            &url,
            &other,
            50,
            99,
            Some(100),
            &[("content-digest", &right)],
        ),
    )
    .await;
    created(&answer, "a.bin", 100);
    let mut expected = data[..50].to_vec();
    expected.extend_from_slice(&other[50..]);
    assert_eq!(server.file("a.bin").await, Some(expected));
    assert_eq!(server.calls(), 1);
}

async fn case_digest_invalid(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(64, 1);
    let sha512_len = sha512_field(&data);
    let right = sha256_field(&data);
    let thirty_two_for_512 = right.replace("sha-256", "sha-512");
    let malformed: Vec<&str> = vec![
        "sha-256=abc",
        "sha-256=:abc",
        "sha-256=:!!!!:",
        "sha-256=:AAAA:",
        &thirty_two_for_512,
        "SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        "sha-256",
        "",
    ];
    let url = server.put_url("a.bin", &plain());
    for header in ["content-digest", "repr-digest"] {
        for value in &malformed {
            let answer = send(&client, put(&url, &[(header, value)], data.clone())).await;
            assert_eq!(answer.status, 400, "{header}: {value}: {:?}", answer.body);
            assert_rejected(&answer, 400, "digest_invalid", "PUT", "/a.bin");
            let answer = send(
                &client,
                range_put(&url, &data, 0, 31, Some(64), &[(header, value)]),
            )
            .await;
            assert_rejected(&answer, 400, "digest_invalid", "PUT", "/a.bin");
        }
        // The header twice is no digest either, even when each value is right.
        let request = http::Request::put(&url)
            .header(header, &right)
            .header(header, &sha512_len)
            .body(http_body_util::Full::new(bytes::Bytes::from(data.clone())))
            .unwrap();
        assert_rejected(
            &send(&client, request).await,
            400,
            "digest_invalid",
            "PUT",
            "/a.bin",
        );
    }
    assert_eq!(server.file("a.bin").await, None);
    assert_session_empty(&client, &url).await;
    assert_eq!(server.calls(), 0);
}

async fn case_unknown_algorithm_only(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(64, 1);
    // A header that names no algorithm the layer checks would check nothing.
    for value in [
        "md5=:AAAAAAAAAAAAAAAAAAAAAA==:",
        "md5=:AAAAAAAAAAAAAAAAAAAAAA==:, unixsum=:AAAA:",
    ] {
        for header in ["content-digest", "repr-digest"] {
            let url = server.put_url("a.bin", &plain());
            let answer = send(&client, put(&url, &[(header, value)], data.clone())).await;
            assert_rejected(&answer, 400, "digest_invalid", "PUT", "/a.bin");
            let answer = send(
                &client,
                range_put(&url, &data, 0, 31, Some(64), &[(header, value)]),
            )
            .await;
            assert_rejected(&answer, 400, "digest_invalid", "PUT", "/a.bin");
            assert_session_empty(&client, &url).await;
        }
    }
    assert_eq!(server.file("a.bin").await, None);
    assert_eq!(server.calls(), 0);
}

async fn case_unknown_algorithm_beside(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(64, 1);
    // md5 of nothing at all: it would not match, but it is not checked.
    let md5 = "md5=:AAAAAAAAAAAAAAAAAAAAAA==:";
    for header in ["content-digest", "repr-digest"] {
        let with = |digest: String| format!("{md5}, {digest}");
        let url = server.put_url(&format!("{header}.bin"), &plain());
        let answer = send(
            &client,
            put(&url, &[(header, &with(sha256_field(&data)))], data.clone()),
        )
        .await;
        let file = created(&answer, &format!("{header}.bin"), 64);
        assert_eq!(sha256_of(&file), Some(sha256_hex(&data).as_str()), "{file}");
        // The known member is checked.
        let url = server.put_url(&format!("{header}-wrong.bin"), &plain());
        let answer = send(
            &client,
            put(
                &url,
                &[(header, &with(sha256_field(b"other")))],
                data.clone(),
            ),
        )
        .await;
        assert_rejected(
            &answer,
            400,
            "digest_mismatch",
            "PUT",
            &format!("/{header}-wrong.bin"),
        );
        assert_eq!(server.file(&format!("{header}-wrong.bin")).await, None);

        let url = server.put_url(&format!("{header}-chunks.bin"), &plain());
        let field = match header {
            "content-digest" => sha256_field(&data[..32]),
            _ => sha256_field(&data),
        };
        let answer = send(
            &client,
            range_put(&url, &data, 0, 31, Some(64), &[(header, &with(field))]),
        )
        .await;
        assert_eq!(accepted(&answer), json!([[0, 31]]));
        let answer = send(&client, range_put(&url, &data, 32, 63, Some(64), &[])).await;
        created(&answer, &format!("{header}-chunks.bin"), 64);
        assert_eq!(
            server.file(&format!("{header}-chunks.bin")).await,
            Some(data.clone())
        );
    }
}

// --- Repr-Digest -------------------------------------------------------------

async fn case_repr_digest_simple(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(3000, 1);
    for (path, field) in [
        ("a.bin", sha256_field(&data)),
        ("b.bin", sha512_field(&data)),
    ] {
        let url = server.put_url(path, &plain());
        let answer = send(&client, put(&url, &[("repr-digest", &field)], data.clone())).await;
        let file = created(&answer, path, data.len());
        assert_eq!(sha256_of(&file), Some(sha256_hex(&data).as_str()), "{path}");
        assert_eq!(server.file(path).await.as_deref(), Some(&data[..]));
    }
}

async fn case_repr_digest_wrong_simple(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(3000, 1);
    let other = bytes(3000, 2);
    for field in [sha256_field(&other), sha512_field(&other)] {
        let url = server.put_url("a.bin", &plain());
        let answer = send(&client, put(&url, &[("repr-digest", &field)], data.clone())).await;
        assert_rejected(&answer, 400, "digest_mismatch", "PUT", "/a.bin");
    }
    assert_eq!(server.file("a.bin").await, None);
    assert_eq!(server.calls(), 0);
}

async fn case_repr_digest_session(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(3000, 1);
    let field = sha256_field(&data);
    let header = [("repr-digest", field.as_str())];
    let url = server.put_url("a.bin", &plain());
    accepted(
        &send(
            &client,
            range_put(&url, &data, 1000, 2999, Some(3000), &header),
        )
        .await,
    );
    let answer = send(&client, range_put(&url, &data, 0, 999, Some(3000), &header)).await;
    let file = created(&answer, "a.bin", 3000);
    assert_eq!(sha256_of(&file), Some(sha256_hex(&data).as_str()));
    assert_eq!(server.file("a.bin").await, Some(data.clone()));
    // A replay carries the same File.
    let answer = send(&client, range_put(&url, &data, 0, 999, Some(3000), &header)).await;
    assert_eq!(file_answer(&answer, 200, "a.bin", 3000), file);
    assert_eq!(server.calls(), 1);
}

async fn case_repr_digest_kept(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(3000, 1);
    // Only the first chunk announces the digest; the session keeps it.
    let field = sha256_field(&data);
    let url = server.put_url("a.bin", &plain());
    accepted(
        &send(
            &client,
            range_put(&url, &data, 0, 999, Some(3000), &[("repr-digest", &field)]),
        )
        .await,
    );
    let answer = send(&client, range_put(&url, &data, 1000, 2999, Some(3000), &[])).await;
    let file = created(&answer, "a.bin", 3000);
    assert_eq!(sha256_of(&file), Some(sha256_hex(&data).as_str()));

    // A wrong digest announced by an earlier chunk fails the completing one.
    let other = sha256_field(&bytes(3000, 2));
    let url = server.put_url("b.bin", &plain());
    accepted(
        &send(
            &client,
            range_put(&url, &data, 0, 999, Some(3000), &[("repr-digest", &other)]),
        )
        .await,
    );
    let answer = send(&client, range_put(&url, &data, 1000, 2999, Some(3000), &[])).await;
    assert_rejected(&answer, 400, "digest_mismatch", "PUT", "/b.bin");
    assert_session_empty(&client, &url).await;
    assert_eq!(server.file("b.bin").await, None);
    assert_eq!(server.calls(), 1);
}

async fn case_repr_digest_conflict(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(3000, 1);
    let field = sha256_field(&data);
    let url = server.put_url("a.bin", &plain());
    let answer = send(
        &client,
        range_put(&url, &data, 0, 999, Some(3000), &[("repr-digest", &field)]),
    )
    .await;
    assert_eq!(accepted(&answer), json!([[0, 999]]));
    for other in [sha256_field(&bytes(3000, 2)), sha512_field(&data)] {
        let answer = send(
            &client,
            range_put(
                &url,
                &data,
                1000,
                1999,
                Some(3000),
                &[("repr-digest", &other)],
            ),
        )
        .await;
        assert_rejected(&answer, 409, "digest_conflict", "PUT", "/a.bin");
    }
    // The refused chunk counts for nothing; the session goes on.
    let (ranges, received) = session_progress(&client, &url).await;
    assert_eq!((ranges, received), (json!([[0, 999]]), 1000));
    let answer = send(
        &client,
        range_put(
            &url,
            &data,
            1000,
            2999,
            Some(3000),
            &[("repr-digest", &field)],
        ),
    )
    .await;
    let file = created(&answer, "a.bin", 3000);
    assert_eq!(sha256_of(&file), Some(sha256_hex(&data).as_str()));
    assert_eq!(server.file("a.bin").await, Some(data));
}

/// docs/protocol.md#integrity: every request of a session that sends a `Repr-Digest`
/// must agree with the session's (409 `digest_conflict`); a status query is
/// a request of the session.
async fn case_status_query_repr_digest_conflict(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(3000, 1);
    let url = server.put_url("a.bin", &plain());
    let field = sha256_field(&data);
    accepted(
        &send(
            &client,
            range_put(&url, &data, 0, 999, Some(3000), &[("repr-digest", &field)]),
        )
        .await,
    );
    let same = send(
        &client,
        put(
            &url,
            &[("content-range", "bytes */3000"), ("repr-digest", &field)],
            "",
        ),
    )
    .await;
    assert_eq!(same.status, 308, "{:?}", same.body);
    let other = sha256_field(&bytes(3000, 2));
    let answer = send(
        &client,
        put(
            &url,
            &[("content-range", "bytes */3000"), ("repr-digest", &other)],
            "",
        ),
    )
    .await;
    assert_rejected(&answer, 409, "digest_conflict", "PUT", "/a.bin");
}

/// docs/protocol.md#integrity: the File object gains `sha256` whenever the whole
/// file's digest is known; a simple upload's verified sha-256
/// `Content-Digest` is exactly that.
async fn case_content_digest_gives_sha256(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(3000, 1);
    let url = server.put_url("a.bin", &plain());
    let answer = send(
        &client,
        put(
            &url,
            &[("content-digest", &sha256_field(&data))],
            data.clone(),
        ),
    )
    .await;
    let file = created(&answer, "a.bin", 3000);
    assert_eq!(sha256_of(&file), Some(sha256_hex(&data).as_str()), "{file}");
}

async fn case_repr_digest_wrong_session(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(3000, 1);
    let wrong = sha256_field(&bytes(3000, 2));
    let url = server.put_url("a.bin", &plain());
    accepted(
        &send(
            &client,
            range_put(&url, &data, 0, 1499, Some(3000), &[("repr-digest", &wrong)]),
        )
        .await,
    );
    let answer = send(
        &client,
        range_put(
            &url,
            &data,
            1500,
            2999,
            Some(3000),
            &[("repr-digest", &wrong)],
        ),
    )
    .await;
    assert_rejected(&answer, 400, "digest_mismatch", "PUT", "/a.bin");
    // Nothing committed, the session discarded.
    assert_eq!(server.file("a.bin").await, None);
    assert_session_empty(&client, &url).await;
    assert_eq!(server.calls(), 0);
    // The same URL starts afresh (another digest is no conflict now) and completes.
    let right = sha256_field(&data);
    let answer = send(
        &client,
        range_put(
            &url,
            &data,
            1500,
            2999,
            Some(3000),
            &[("repr-digest", &right)],
        ),
    )
    .await;
    assert_eq!(accepted(&answer), json!([[1500, 2999]]));
    let answer = send(
        &client,
        range_put(&url, &data, 0, 1499, Some(3000), &[("repr-digest", &right)]),
    )
    .await;
    let file = created(&answer, "a.bin", 3000);
    assert_eq!(sha256_of(&file), Some(sha256_hex(&data).as_str()));
    assert_eq!(server.file("a.bin").await, Some(data));
    assert_eq!(server.calls(), 1);
}

async fn case_repr_digest_sha512_session(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(3000, 1);
    let field = sha512_field(&data);
    let header = [("repr-digest", field.as_str())];
    let url = server.put_url("a.bin", &plain());
    accepted(
        &send(
            &client,
            range_put(&url, &data, 0, 1499, Some(3000), &header),
        )
        .await,
    );
    let answer = send(
        &client,
        range_put(&url, &data, 1500, 2999, Some(3000), &header),
    )
    .await;
    let file = created(&answer, "a.bin", 3000);
    assert_eq!(sha256_of(&file), Some(sha256_hex(&data).as_str()));
    assert_eq!(server.file("a.bin").await, Some(data.clone()));

    let wrong = sha512_field(&bytes(3000, 2));
    let url = server.put_url("b.bin", &plain());
    accepted(
        &send(
            &client,
            range_put(&url, &data, 0, 1499, Some(3000), &[("repr-digest", &wrong)]),
        )
        .await,
    );
    let answer = send(
        &client,
        range_put(
            &url,
            &data,
            1500,
            2999,
            Some(3000),
            &[("repr-digest", &wrong)],
        ),
    )
    .await;
    assert_rejected(&answer, 400, "digest_mismatch", "PUT", "/b.bin");
    assert_session_empty(&client, &url).await;
    assert_eq!(server.file("b.bin").await, None);
}

// --- The File object's sha256 ------------------------------------------------

async fn case_compute_sha256(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer.compute_sha256(true)).await;
    let client = client();
    let data = bytes(20_000, 1);
    let hex = sha256_hex(&data);
    let answer = send(
        &client,
        put(&server.put_url("a.bin", &plain()), &[], data.clone()),
    )
    .await;
    assert_eq!(
        sha256_of(&created(&answer, "a.bin", 20_000)),
        Some(hex.as_str())
    );

    let body = chunked_body(data.chunks(3000).map(<[u8]>::to_vec).collect());
    let answer = send_stream(
        &stream_client(),
        stream_put(&server.put_url("b.bin", &plain()), &[], body),
    )
    .await;
    assert_eq!(
        sha256_of(&created(&answer, "b.bin", 20_000)),
        Some(hex.as_str())
    );

    let url = server.put_url("c.bin", &plain());
    accepted(
        &send(
            &client,
            range_put(&url, &data, 7000, 19_999, Some(20_000), &[]),
        )
        .await,
    );
    let answer = send(&client, range_put(&url, &data, 0, 6999, Some(20_000), &[])).await;
    let file = created(&answer, "c.bin", 20_000);
    assert_eq!(sha256_of(&file), Some(hex.as_str()));
    // The replay keeps it.
    let answer = status_query(&client, &url).await;
    assert_eq!(file_answer(&answer, 200, "c.bin", 20_000), file);
}

async fn case_no_sha256_by_default(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(2000, 1);
    let answer = send(
        &client,
        put(&server.put_url("a.bin", &plain()), &[], data.clone()),
    )
    .await;
    assert_eq!(sha256_of(&created(&answer, "a.bin", 2000)), None);
    let url = server.put_url("b.bin", &plain());
    accepted(&send(&client, range_put(&url, &data, 0, 999, Some(2000), &[])).await);
    let answer = send(&client, range_put(&url, &data, 1000, 1999, Some(2000), &[])).await;
    assert_eq!(sha256_of(&created(&answer, "b.bin", 2000)), None);
}

// --- range_conflict ----------------------------------------------------------

async fn case_identical_resend(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(300, 1);
    let url = server.put_url("a.bin", &plain());
    assert_eq!(
        accepted(&send(&client, range_put(&url, &data, 0, 99, Some(300), &[])).await),
        json!([[0, 99]])
    );
    assert_eq!(
        accepted(&send(&client, range_put(&url, &data, 0, 99, Some(300), &[])).await),
        json!([[0, 99]])
    );
    assert_eq!(
        accepted(&send(&client, range_put(&url, &data, 200, 299, Some(300), &[])).await),
        json!([[0, 99], [200, 299]])
    );
    assert_eq!(
        accepted(&send(&client, range_put(&url, &data, 200, 299, Some(300), &[])).await),
        json!([[0, 99], [200, 299]])
    );
    let answer = send(&client, range_put(&url, &data, 100, 199, Some(300), &[])).await;
    let file = created(&answer, "a.bin", 300);
    for (first, last) in [(100, 199), (0, 99), (0, 299)] {
        let answer = send(&client, range_put(&url, &data, first, last, Some(300), &[])).await;
        assert_eq!(file_answer(&answer, 200, "a.bin", 300), file);
    }
    assert_eq!(server.file("a.bin").await, Some(data));
    assert_eq!(server.calls(), 1);
}

async fn case_conflicting_resend(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(300, 1);
    let other = bytes(300, 2);
    let url = server.put_url("a.bin", &plain());
    accepted(&send(&client, range_put(&url, &data, 0, 99, Some(300), &[])).await);
    accepted(&send(&client, range_put(&url, &data, 200, 299, Some(300), &[])).await);
    for (first, last) in [(0, 99), (200, 299)] {
        let answer = send(
            &client,
            range_put(&url, &other, first, last, Some(300), &[]),
        )
        .await;
        assert_rejected(&answer, 409, "range_conflict", "PUT", "/a.bin");
    }
    // One changed byte is enough.
    let mut one_off = data.clone();
    one_off[250] ^= 1;
    let answer = send(&client, range_put(&url, &one_off, 200, 299, Some(300), &[])).await;
    assert_rejected(&answer, 409, "range_conflict", "PUT", "/a.bin");
    let (ranges, received) = session_progress(&client, &url).await;
    assert_eq!((ranges, received), (json!([[0, 99], [200, 299]]), 200));
    let answer = send(&client, range_put(&url, &data, 100, 199, Some(300), &[])).await;
    created(&answer, "a.bin", 300);
    assert_eq!(server.file("a.bin").await, Some(data), "the original bytes");
    assert_eq!(server.calls(), 1);
}

async fn case_partial_overlap(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(300, 1);
    let url = server.put_url("a.bin", &plain());
    accepted(&send(&client, range_put(&url, &data, 0, 49, Some(300), &[])).await);
    accepted(&send(&client, range_put(&url, &data, 100, 149, Some(300), &[])).await);

    // Overlapping the end of [0, 49] with one byte changed inside it.
    let mut changed = data.clone();
    changed[45] ^= 0xff;
    let answer = send(&client, range_put(&url, &changed, 40, 59, Some(300), &[])).await;
    assert_rejected(&answer, 409, "range_conflict", "PUT", "/a.bin");
    // Spanning both ranges, changed only inside the second one.
    let mut changed = data.clone();
    changed[120] ^= 0xff;
    let answer = send(&client, range_put(&url, &changed, 30, 139, Some(300), &[])).await;
    assert_rejected(&answer, 409, "range_conflict", "PUT", "/a.bin");
    let (ranges, _) = session_progress(&client, &url).await;
    assert_eq!(
        ranges,
        json!([[0, 49], [100, 149]]),
        "nothing of the refused chunks kept"
    );

    // Equal bytes where they overlap: accepted, whatever lies in between.
    let mut gap_differs = data.clone();
    gap_differs[70] ^= 0xff;
    let answer = send(
        &client,
        range_put(&url, &gap_differs, 40, 109, Some(300), &[]),
    )
    .await;
    assert_eq!(accepted(&answer), json!([[0, 149]]));
    let answer = send(&client, range_put(&url, &data, 140, 299, Some(300), &[])).await;
    created(&answer, "a.bin", 300);
    let mut expected = data.clone();
    expected[70] ^= 0xff;
    assert_eq!(server.file("a.bin").await, Some(expected));
}

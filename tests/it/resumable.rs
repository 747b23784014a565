//! Resumable uploads (docs/protocol.md#resumable-uploads) over real HTTP: chunks in any order,
//! in parallel, retried and overlapping; status queries; completion exactly once.

use std::sync::Arc;

use crate::common::*;
use serde_json::{json, Value};
use tower_signed_upload::SignedMethod;

/// A `Content-Range` chunk of `data` for `first..=last` of `total` (`None`: `*`).
fn chunk(url: &str, data: &[u8], first: usize, last: usize, total: Option<usize>) -> Request {
    let total = total.map_or("*".to_owned(), |total| total.to_string());
    put(
        url,
        &[("content-range", &format!("bytes {first}-{last}/{total}"))],
        data[first..=last].to_vec(),
    )
}

type Request = http::Request<http_body_util::Full<bytes::Bytes>>;

/// Checks a progress answer (`202` or `308`): the envelope, the upload object,
/// and the `Range` header exactly when byte 0 is stored. Returns the ranges.
fn progress(answer: &Answer, status: u16, path: &str, total: Option<u64>) -> Vec<[u64; 2]> {
    assert_eq!(answer.status.as_u16(), status, "{:?}", answer.body);
    let json = answer.json();
    assert_eq!(json["meta"]["status"], status);
    assert_eq!(json["meta"]["method"], "PUT");
    assert!(json["error"].is_null());
    let data = &json["data"];
    assert_eq!(data["object"], "upload", "{json}");
    assert_eq!(data["path"], path, "{json}");
    assert_eq!(
        data["filesize"],
        total.map_or(Value::Null, Value::from),
        "{json}"
    );
    let ranges: Vec<[u64; 2]> = serde_json::from_value(data["ranges"].clone()).unwrap();
    for pair in ranges.windows(2) {
        assert!(
            pair[0][1] + 1 < pair[1][0],
            "ranges sorted and disjoint: {ranges:?}"
        );
    }
    let received: u64 = ranges.iter().map(|r| r[1] - r[0] + 1).sum();
    assert_eq!(data["received"], received, "{json}");
    let expected_range = ranges
        .first()
        .filter(|r| r[0] == 0)
        .map(|r| format!("bytes=0-{}", r[1]));
    assert_eq!(
        answer.header("range").map(str::to_owned),
        expected_range,
        "Range header for {ranges:?}"
    );
    ranges
}

/// Checks a completion answer (`201` or a `200` replay); returns the File id.
fn completed(answer: &Answer, status: u16, path: &str, size: usize) -> Value {
    assert_eq!(answer.status.as_u16(), status, "{:?}", answer.body);
    let json = answer.json();
    assert_eq!(json["meta"]["status"], status);
    assert_eq!(json["data"]["object"], "source", "{json}");
    assert_eq!(json["data"]["filesize"], size, "{json}");
    let url = format!("{PUBLIC_BASE}/{path}");
    assert_eq!(json["data"]["url"], url.as_str());
    assert_eq!(
        json["data"]["created"], "2025-06-15T15:06:40Z",
        "the fixed clock"
    );
    let id = json["data"]["id"].as_str().unwrap();
    assert!(
        id.strip_prefix("file_").is_some_and(|hex| hex.len() == 24
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())),
        "{id}"
    );
    let etag = answer.header("etag").expect("ETag on completion");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(answer.header("location"), Some(url.as_str()));
    json["data"]["id"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mebibyte_in_shuffled_parallel_chunks_assembles() {
    const SIZE: usize = 1 << 20;
    const CHUNK: usize = SIZE / 16;
    let server = TestServer::start().await;
    let url = server.put_url("big/file.bin");
    let data = Arc::new(bytes(SIZE, 42));
    // A fixed shuffle of the 16 chunks, dealt to 4 tasks that each send theirs in turn.
    let order = [11, 3, 14, 7, 0, 9, 5, 15, 2, 12, 8, 1, 6, 13, 4, 10];
    let client = client();
    let mut tasks = Vec::new();
    for lane in order.chunks(4) {
        let (client, url, data) = (client.clone(), url.clone(), Arc::clone(&data));
        let lane = lane.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for index in lane {
                let first = index * CHUNK;
                let request = chunk(&url, &data, first, first + CHUNK - 1, Some(SIZE));
                answers.push((first, send(&client, request).await));
            }
            answers
        }));
    }
    let mut created = Vec::new();
    for task in tasks {
        for (first, answer) in task.await.unwrap() {
            if answer.status == 201 {
                created.push(completed(&answer, 201, "big/file.bin", SIZE));
                continue;
            }
            let ranges = progress(&answer, 202, "big/file.bin", Some(SIZE as u64));
            let (first, last) = (first as u64, (first + CHUNK - 1) as u64);
            assert!(
                ranges.iter().any(|r| r[0] <= first && last <= r[1]),
                "an accepted chunk is among the stored ranges: {ranges:?}"
            );
        }
    }
    assert_eq!(created.len(), 1, "exactly one chunk completes the file");
    assert_eq!(
        server.storage.file("big/file.bin").unwrap(),
        data.as_slice()
    );
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn range_header_only_when_byte_zero_is_stored() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    let data = bytes(100, 1);
    let answer = send(&client, chunk(&url, &data, 50, 99, Some(100))).await;
    assert_eq!(progress(&answer, 202, "a.bin", Some(100)), [[50, 99]]);
    assert_eq!(answer.header("range"), None);
    let answer = send(&client, chunk(&url, &data, 0, 9, Some(100))).await;
    assert_eq!(
        progress(&answer, 202, "a.bin", Some(100)),
        [[0, 9], [50, 99]]
    );
    assert_eq!(answer.header("range"), Some("bytes=0-9"));
}

#[tokio::test]
async fn bytes_equals_form_of_content_range_is_accepted() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    let data = bytes(20, 2);
    let first = put(
        &url,
        &[("content-range", "bytes=0-9/20")],
        data[..10].to_vec(),
    );
    progress(&send(&client, first).await, 202, "a.bin", Some(20));
    let last = put(
        &url,
        &[("content-range", "bytes=10-19/20")],
        data[10..].to_vec(),
    );
    completed(&send(&client, last).await, 201, "a.bin", 20);
    assert_eq!(server.storage.file("a.bin").unwrap(), data);
}

#[tokio::test]
async fn overlapping_chunks_assemble() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    let data = bytes(200, 3);
    let answer = send(&client, chunk(&url, &data, 0, 99, Some(200))).await;
    assert_eq!(progress(&answer, 202, "a.bin", Some(200)), [[0, 99]]);
    let answer = send(&client, chunk(&url, &data, 50, 149, Some(200))).await;
    assert_eq!(progress(&answer, 202, "a.bin", Some(200)), [[0, 149]]);
    let answer = send(&client, chunk(&url, &data, 100, 199, Some(200))).await;
    completed(&answer, 201, "a.bin", 200);
    assert_eq!(server.storage.file("a.bin").unwrap(), data);
}

#[tokio::test]
async fn open_total_is_named_by_the_last_chunk() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    let data = bytes(250, 4);
    let answer = send(&client, chunk(&url, &data, 100, 199, None)).await;
    assert_eq!(progress(&answer, 202, "a.bin", None), [[100, 199]]);
    let answer = send(&client, chunk(&url, &data, 0, 99, None)).await;
    assert_eq!(progress(&answer, 202, "a.bin", None), [[0, 199]]);
    let answer = send(&client, put(&url, &[("content-range", "bytes */*")], "")).await;
    progress(&answer, 308, "a.bin", None);
    let answer = send(&client, chunk(&url, &data, 200, 249, Some(250))).await;
    completed(&answer, 201, "a.bin", 250);
    assert_eq!(server.storage.file("a.bin").unwrap(), data);
}

#[tokio::test]
async fn retried_chunk_is_accepted_and_counted_once() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    let data = bytes(100, 5);
    for _ in 0..2 {
        let answer = send(&client, chunk(&url, &data, 0, 49, Some(100))).await;
        assert_eq!(progress(&answer, 202, "a.bin", Some(100)), [[0, 49]]);
        assert_eq!(answer.json()["data"]["received"], 50);
    }
    completed(
        &send(&client, chunk(&url, &data, 50, 99, Some(100))).await,
        201,
        "a.bin",
        100,
    );
    assert_eq!(server.storage.file("a.bin").unwrap(), data);
}

#[tokio::test]
async fn status_query_before_any_chunk_is_308_with_nothing() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    for header in ["bytes */*", "bytes */100"] {
        let answer = send(&client, put(&url, &[("content-range", header)], "")).await;
        assert_eq!(answer.status, 308, "{:?}", answer.body);
        let json = answer.json();
        assert_eq!(json["data"]["object"], "upload");
        assert_eq!(json["data"]["received"], 0);
        assert_eq!(json["data"]["ranges"], json!([]));
        assert_eq!(answer.header("range"), None);
    }
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn status_query_midway_is_308_with_the_stored_prefix() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    let data = bytes(100, 6);
    send(&client, chunk(&url, &data, 0, 29, Some(100))).await;
    send(&client, chunk(&url, &data, 60, 79, Some(100))).await;
    for header in ["bytes */100", "bytes=*/100", "bytes */*"] {
        let answer = send(&client, put(&url, &[("content-range", header)], "")).await;
        assert_eq!(
            progress(&answer, 308, "a.bin", Some(100)),
            [[0, 29], [60, 79]]
        );
        assert_eq!(answer.header("range"), Some("bytes=0-29"));
        assert_eq!(answer.json()["data"]["received"], 50);
    }
}

#[tokio::test]
async fn status_query_after_completion_is_200_with_the_same_file() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    let data = bytes(100, 7);
    send(&client, chunk(&url, &data, 0, 49, Some(100))).await;
    let done = send(&client, chunk(&url, &data, 50, 99, Some(100))).await;
    let id = completed(&done, 201, "a.bin", 100);
    for header in ["bytes */100", "bytes */*"] {
        let answer = send(&client, put(&url, &[("content-range", header)], "")).await;
        assert_eq!(completed(&answer, 200, "a.bin", 100), id);
        assert_eq!(answer.header("etag"), done.header("etag"));
        assert_eq!(answer.json()["data"], done.json()["data"]);
    }
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn chunk_retried_after_completion_is_200_without_calling_inner_again() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    let data = bytes(100, 8);
    send(&client, chunk(&url, &data, 0, 49, Some(100))).await;
    let done = send(&client, chunk(&url, &data, 50, 99, Some(100))).await;
    let id = completed(&done, 201, "a.bin", 100);
    assert_eq!(server.calls(), 1);
    for (first, last) in [(50, 99), (0, 49), (0, 99)] {
        let answer = send(&client, chunk(&url, &data, first, last, Some(100))).await;
        assert_eq!(completed(&answer, 200, "a.bin", 100), id);
        assert_eq!(answer.json()["data"], done.json()["data"]);
    }
    assert_eq!(
        server.calls(),
        1,
        "the inner service is called once per session"
    );
    assert_eq!(server.storage.file("a.bin").unwrap(), data);
}

#[tokio::test]
async fn two_urls_for_one_path_are_two_sessions() {
    let server = TestServer::start().await;
    let client = client();
    let url_a = server.url_expiring_at("a.bin", SignedMethod::Put, NOW + 3600);
    let url_b = server.url_expiring_at("a.bin", SignedMethod::Put, NOW + 3601);
    let (data_a, data_b) = (bytes(100, 10), bytes(100, 11));
    let answer = send(&client, chunk(&url_a, &data_a, 0, 49, Some(100))).await;
    assert_eq!(progress(&answer, 202, "a.bin", Some(100)), [[0, 49]]);
    let answer = send(&client, chunk(&url_b, &data_b, 50, 99, Some(100))).await;
    assert_eq!(
        progress(&answer, 202, "a.bin", Some(100)),
        [[50, 99]],
        "B does not see A's bytes"
    );
    let id_b = completed(
        &send(&client, chunk(&url_b, &data_b, 0, 49, Some(100))).await,
        201,
        "a.bin",
        100,
    );
    assert_eq!(server.storage.file("a.bin").unwrap(), data_b);
    let id_a = completed(
        &send(&client, chunk(&url_a, &data_a, 50, 99, Some(100))).await,
        201,
        "a.bin",
        100,
    );
    assert_ne!(id_a, id_b);
    assert_eq!(
        server.storage.file("a.bin").unwrap(),
        data_a,
        "the session completed last is the file"
    );
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn cut_off_chunk_after_an_accepted_one_counts_for_nothing() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("a.bin");
    let data = bytes(100, 12);
    let answer = send(&client, chunk(&url, &data, 0, 49, Some(100))).await;
    assert_eq!(progress(&answer, 202, "a.bin", Some(100)), [[0, 49]]);

    let mut request = raw_head(
        "PUT",
        target(&url),
        &[
            ("content-range", "bytes 50-99/100"),
            ("content-length", "50"),
        ],
    );
    request.extend_from_slice(&data[50..70]);
    raw_cut_off(server.addr, &request).await;

    let answer = send(&client, put(&url, &[("content-range", "bytes */100")], "")).await;
    assert_eq!(progress(&answer, 308, "a.bin", Some(100)), [[0, 49]]);
    assert_eq!(server.storage.file("a.bin"), None);
    assert_eq!(server.calls(), 0);
    let answer = send(&client, chunk(&url, &data, 50, 99, Some(100))).await;
    completed(&answer, 201, "a.bin", 100);
    assert_eq!(server.storage.file("a.bin").unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_last_chunks_complete_exactly_once() {
    const CHUNK: usize = 1024;
    const CHUNKS: usize = 16;
    const SIZE: usize = CHUNK * CHUNKS;
    let server = TestServer::start().await;
    let client = client();
    for round in 0..20u64 {
        let path = format!("race/{round}.bin");
        let url = server.url_expiring_at(&path, SignedMethod::Put, NOW + 3600 + round);
        let data = Arc::new(bytes(SIZE, 100 + round));
        for index in 0..CHUNKS - 8 {
            let first = index * CHUNK;
            let answer = send(
                &client,
                chunk(&url, &data, first, first + CHUNK - 1, Some(SIZE)),
            )
            .await;
            progress(&answer, 202, &path, Some(SIZE as u64));
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let mut tasks = Vec::new();
        for index in (CHUNKS - 8..CHUNKS).flat_map(|index| [index, index]) {
            let (client, url, data) = (client.clone(), url.clone(), Arc::clone(&data));
            let barrier = Arc::clone(&barrier);
            tasks.push(tokio::spawn(async move {
                let first = index * CHUNK;
                let request = chunk(&url, &data, first, first + CHUNK - 1, Some(SIZE));
                barrier.wait().await;
                send(&client, request).await
            }));
        }
        let mut ids = Vec::new();
        let mut created = 0;
        for task in tasks {
            let answer = task.await.unwrap();
            match answer.status.as_u16() {
                201 => {
                    created += 1;
                    ids.push(completed(&answer, 201, &path, SIZE));
                }
                200 => ids.push(completed(&answer, 200, &path, SIZE)),
                _ => {
                    progress(&answer, 202, &path, Some(SIZE as u64));
                }
            }
        }
        assert_eq!(created, 1, "round {round}: exactly one 201");
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "one File per session");
        assert_eq!(server.calls(), round as usize + 1, "round {round}");
        assert_eq!(server.storage.file(&path).unwrap(), data.as_slice());
    }
}

#[tokio::test]
async fn cleanup_removes_incomplete_sessions_once_their_url_expired() {
    use std::time::{Duration, UNIX_EPOCH};
    use tower_signed_upload::storage::Storage;
    let server = TestServer::start().await;
    let client = client();
    let soon = server.url_expiring_at("soon.bin", SignedMethod::Put, NOW + 60);
    let later = server.url_expiring_at("later.bin", SignedMethod::Put, NOW + 7200);
    let data = bytes(100, 13);
    for url in [&soon, &later] {
        let answer = send(&client, chunk(url, &data, 0, 49, Some(100))).await;
        assert_eq!(answer.status, 202);
    }
    assert_eq!(server.storage.session_count(), 2);
    // MemoryStorage keeps a session for an hour past its URL's expiry.
    let report = server
        .storage
        .purge_expired(UNIX_EPOCH + Duration::from_secs(NOW + 60 + 3600 + 1))
        .await
        .unwrap();
    assert_eq!(report.sessions, 1);
    assert_eq!(server.storage.session_count(), 1);
    let answer = send(&client, chunk(&later, &data, 50, 99, Some(100))).await;
    assert_eq!(answer.status, 201, "the unexpired session survives cleanup");
}

#[tokio::test]
async fn empty_status_query_completes_a_zero_byte_file_then_replays() {
    let server = TestServer::start().await;
    let client = client();
    let url = server.put_url("empty.txt");
    let query = || put(&url, &[("content-range", "bytes */0")], "");
    let answer = send(&client, query()).await;
    let id = completed(&answer, 201, "empty.txt", 0);
    let file = answer.json()["data"].clone();
    assert_eq!(server.calls(), 1);
    assert_eq!(server.storage.file("empty.txt").unwrap().len(), 0);
    for _ in 0..2 {
        let answer = send(&client, query()).await;
        assert_eq!(completed(&answer, 200, "empty.txt", 0), id);
        assert_eq!(answer.json()["data"], file);
    }
    assert_eq!(server.calls(), 1, "the inner service is called once");

    // A session that stored bytes has a total other than 0.
    let url = server.put_url("not-empty.txt");
    let data = bytes(10, 7);
    let answer = send(&client, chunk(&url, &data, 0, 4, None)).await;
    progress(&answer, 202, "not-empty.txt", None);
    let answer = send(&client, put(&url, &[("content-range", "bytes */0")], "")).await;
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    assert_eq!(answer.json()["error"]["code"], "total_mismatch");
}

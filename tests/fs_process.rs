//! `FsStorage` behind the real example server process: chunks answered `202`
//! survive `kill -9`, a concatenation cut by `kill -9` leaves the parts for a
//! retry, two processes share one root, aborted uploads leave nothing, paths
//! never escape the root, expired sessions are purged.
#![cfg(all(feature = "fs", unix))]

mod common;
#[path = "common/process.rs"]
mod process;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use futures::{SinkExt, StreamExt};
use process::*;
use serde_json::Value;
use tower_layer::Layer;
use tower_signed_upload::storage::{FsStorage, Storage};
use tower_signed_upload::{SignedMethod, SignedUploadLayer, Signer, SigningKey, UploadPath};

const MIB: usize = 1 << 20;

/// A `put` URL's path and query for `path`, signed with `secret` for an hour.
fn signed_put(path: &str) -> String {
    let signer = Signer::new(SigningKey::new(KEY).unwrap());
    signer
        .sign(
            &UploadPath::new(path).unwrap(),
            SignedMethod::Put,
            Duration::from_secs(3600),
        )
        .path_and_query()
        .to_owned()
}

/// The signed string of a path-and-query: everything before `&signature=`,
/// without the leading `/`.
fn signed_string(path_and_query: &str) -> &str {
    let end = path_and_query.find("&signature=").unwrap();
    &path_and_query[1..end]
}

/// A chunk `first..=last` of `data`, total `data.len()`.
fn chunk(
    url: &str,
    data: &[u8],
    first: usize,
    last: usize,
) -> http::Request<http_body_util::Full<Bytes>> {
    put(
        url,
        &[(
            "content-range",
            &format!("bytes {first}-{last}/{}", data.len()),
        )],
        data[first..=last].to_vec(),
    )
}

/// The status query of a session of `total` bytes.
fn status_query(url: &str, total: usize) -> http::Request<http_body_util::Full<Bytes>> {
    put(
        url,
        &[("content-range", &format!("bytes */{total}"))],
        Vec::new(),
    )
}

fn ranges(answer: &Answer) -> Vec<[u64; 2]> {
    serde_json::from_value(answer.json()["data"]["ranges"].clone())
        .unwrap_or_else(|e| panic!("no ranges ({e}): {:?}", answer.body))
}

fn file_sha(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// A request whose body the test feeds piece by piece through the returned sender.
fn streamed_put(
    url: &str,
    headers: &[(&str, &str)],
) -> (
    futures::channel::mpsc::Sender<Bytes>,
    http::Request<StreamBody>,
) {
    let (sender, receiver) = futures::channel::mpsc::channel::<Bytes>(0);
    let frames = receiver.map(|piece| Ok(http_body::Frame::data(piece)));
    let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(frames));
    (sender, stream_put(url, headers, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_answered_202_survive_kill_9_and_a_half_sent_chunk_does_not() {
    const TOTAL: usize = 24 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = Arc::new(bytes(TOTAL, 24));
    let path_and_query = signed_put("big/file.bin");

    let mut a = Launch::new(root).start();
    let url_a = a.url(&path_and_query);
    let http = client();
    let answered: Vec<usize> = (0..11).chain([15, 20]).collect();
    for &index in &answered {
        let first = index * MIB;
        let answer = send(&http, chunk(&url_a, &data, first, first + MIB - 1)).await;
        assert_eq!(answer.status, 202, "chunk {index}: {:?}", answer.body);
    }

    // One more chunk, 11..15 MiB, goes out slowly and with other bytes than
    // the file's: a little over half of it, then the process dies.
    let first = 11 * MIB;
    let stray = bytes(4 * MIB, 99);
    let (mut pieces, request) = streamed_put(
        &url_a,
        &[
            (
                "content-range",
                &format!("bytes {first}-{}/{TOTAL}", first + stray.len() - 1),
            ),
            ("content-length", &stray.len().to_string()),
        ],
    );
    let streaming = stream_client();
    let in_flight = tokio::spawn(async move { streaming.request(request).await });
    for piece in stray[..5 * MIB / 2].chunks(64 * 1024) {
        tokio::time::timeout(
            Duration::from_secs(10),
            pieces.send(Bytes::copy_from_slice(piece)),
        )
        .await
        .expect("the client takes the body")
        .unwrap();
    }
    // Wait until the server has written some of those bytes at their offset
    // in the session's data file: the chunk is mid-flight on the server.
    let data_file = root
        .join(".uploads")
        .join(session_id(signed_string(&path_and_query)))
        .join("data");
    let written = eventually_async(Duration::from_secs(10), || {
        use std::os::unix::fs::FileExt;
        let mut buffer = vec![0; MIB];
        std::fs::File::open(&data_file)
            .and_then(|file| file.read_exact_at(&mut buffer, first as u64))
            .is_ok_and(|()| buffer == stray[..MIB])
    })
    .await;
    assert!(
        written,
        "the stray chunk never reached {}",
        data_file.display()
    );
    assert!(!in_flight.is_finished(), "the half-sent chunk was answered");
    a.kill_hard();
    let outcome = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the client notices the dead server")
        .unwrap();
    assert!(
        outcome.is_err(),
        "a killed server answered the half chunk: {outcome:?}"
    );
    drop(pieces);

    let b = Launch::new(root).start();
    let url_b = b.url(&path_and_query);
    let http = client();
    let status = send(&http, status_query(&url_b, TOTAL)).await;
    assert_eq!(status.status, 308, "{:?}", status.body);
    let mib = MIB as u64;
    assert_eq!(
        ranges(&status),
        vec![
            [0, 11 * mib - 1],
            [15 * mib, 16 * mib - 1],
            [20 * mib, 21 * mib - 1]
        ],
        "every chunk answered 202, and nothing of the half-sent one"
    );
    assert_eq!(
        status.header("range"),
        Some(&*format!("bytes=0-{}", 11 * mib - 1))
    );
    assert_eq!(status.json()["data"]["received"], 13 * mib);

    // The missing chunks, four at a time: the stray bytes of the chunk that
    // died count for nothing, so the right ones are no conflict.
    let missing: Vec<usize> = (11..15).chain(16..20).chain(21..24).collect();
    let mut statuses = Vec::new();
    for group in missing.chunks(4) {
        let tasks: Vec<_> = group
            .iter()
            .map(|&index| {
                let (http, url, data) = (http.clone(), url_b.clone(), Arc::clone(&data));
                tokio::spawn(async move {
                    let first = index * MIB;
                    send(&http, chunk(&url, &data, first, first + MIB - 1)).await
                })
            })
            .collect();
        for task in tasks {
            let answer = task.await.unwrap();
            statuses.push(answer.status.as_u16());
            if answer.status == 201 {
                assert_eq!(
                    answer.json()["data"]["filesize"],
                    TOTAL,
                    "{:?}",
                    answer.body
                );
            }
        }
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 201 || s == 202),
        "{statuses:?}"
    );
    assert_eq!(file_sha(&root.join("big/file.bin")), sha256_hex(&data));
    let after = send(&http, status_query(&url_b, TOTAL)).await;
    assert_eq!(after.status, 200, "{:?}", after.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_root_serve_one_session_alternately() {
    const TOTAL: usize = 8 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = Arc::new(bytes(TOTAL, 8));
    let path_and_query = signed_put("shared/video.bin");
    let a = logging_server(root);
    let b = logging_server(root);
    let urls = [a.url(&path_and_query), b.url(&path_and_query)];
    let http = client();

    let mut answers = Vec::new();
    // Chunks 0..4 one after another, alternating A, B, A, B.
    for index in 0..4 {
        let first = index * MIB;
        let answer = send(
            &http,
            chunk(&urls[index % 2], &data, first, first + MIB - 1),
        )
        .await;
        assert_eq!(answer.status, 202, "chunk {index}: {:?}", answer.body);
        answers.push((index % 2, answer));
    }
    // Chunks 4..8 at once, alternating, plus a duplicate of the last at the other server.
    let tasks: Vec<_> = (4..8)
        .map(|index| (index, index % 2))
        .chain([(7, 0)])
        .map(|(index, server)| {
            let (http, url, data) = (http.clone(), urls[server].clone(), Arc::clone(&data));
            tokio::spawn(async move {
                let first = index * MIB;
                (
                    server,
                    send(&http, chunk(&url, &data, first, first + MIB - 1)).await,
                )
            })
        })
        .collect();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let statuses: Vec<u16> = answers.iter().map(|(_, a)| a.status.as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| matches!(s, 200..=202)),
        "{statuses:?}"
    );
    let (completer, created) = answers.iter().find(|(_, a)| a.status == 201).unwrap();
    let file: Value = created.json()["data"].clone();
    assert_eq!(file["filesize"], TOTAL);
    assert_eq!(file_sha(&root.join("shared/video.bin")), sha256_hex(&data));
    assert_eq!(
        completions_of([&a, &b], "shared/video.bin").await,
        1,
        "files handed to the inner services: A {:?}, B {:?}",
        completions(&a),
        completions(&b)
    );

    // A retried chunk at the server that did not complete: 200, the same File.
    let other = 1 - completer;
    let replay = send(&http, chunk(&urls[other], &data, 0, MIB - 1)).await;
    assert_eq!(replay.status, 200, "{:?}", replay.body);
    assert_eq!(replay.json()["data"]["id"], file["id"]);
    assert_eq!(replay.json()["data"], file, "the same File object");
    assert_eq!(replay.header("etag"), created.header("etag"));
    let status = send(&http, status_query(&urls[other], TOTAL)).await;
    assert_eq!(status.status, 200, "{:?}", status.body);
    assert_eq!(status.json()["data"]["id"], file["id"]);
    // The replays reached neither inner service.
    assert_eq!(completions(&a).len() + completions(&b).len(), 1);
}

/// A server on `root` that logs each file it hands to its inner service.
fn logging_server(root: &Path) -> ServerProcess {
    Launch::new(root)
        .env("RUST_LOG", Some("warn,server=info"))
        .env("NO_COLOR", Some("1"))
        .start()
}

/// The paths of the files `server` handed to its inner service so far, from
/// its `upload completed … url=http://ADDR/PATH` lines.
fn completions(server: &ServerProcess) -> Vec<String> {
    server
        .stderr()
        .lines()
        .filter(|line| line.contains("upload completed"))
        .map(|line| {
            let url = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("url="))
                .unwrap_or_else(|| panic!("no url in `{line}`"));
            let after_scheme = url.strip_prefix("http://").unwrap_or(url);
            let path = after_scheme.split_once('/').map_or("", |(_, path)| path);
            path.to_owned()
        })
        .collect()
}

/// The inner-service calls for `path` in both servers, once the count stops
/// growing: logs reach the test through a pipe, a moment after the answer.
async fn completions_of(servers: [&ServerProcess; 2], path: &str) -> usize {
    let count = || {
        servers
            .iter()
            .map(|server| completions(server).iter().filter(|p| *p == path).count())
            .sum::<usize>()
    };
    eventually_async(Duration::from_secs(10), || count() >= 1).await;
    count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_chunks_racing_across_two_processes_complete_exactly_once() {
    const ROUNDS: usize = 20;
    const RACERS: usize = 16;
    const TOTAL: usize = 4096;
    const CHUNK: usize = TOTAL / 16;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let a = logging_server(root);
    let b = logging_server(root);
    let http = client();
    let streaming = stream_client();
    let mut raced = 0;
    for round in 0..ROUNDS {
        let path = format!("race/{round}.bin");
        let path_and_query = signed_put(&path);
        let urls = [a.url(&path_and_query), b.url(&path_and_query)];
        let data = Arc::new(bytes(TOTAL, round as u64));
        for index in 0..8 {
            let first = index * CHUNK;
            let answer = send(
                &http,
                chunk(&urls[index % 2], &data, first, first + CHUNK - 1),
            )
            .await;
            assert_eq!(answer.status, 202, "round {round} chunk {index}");
        }
        // Each of the last 8 chunks goes to both servers. Every racer sends its
        // headers and all but the last byte, then waits for the others: the
        // last bytes go out together.
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|task| {
                let server = task % 2;
                let first = (8 + task / 2) * CHUNK;
                let piece = Bytes::copy_from_slice(&data[first..first + CHUNK]);
                let (mut pieces, request) = streamed_put(
                    &urls[server],
                    &[
                        (
                            "content-range",
                            &format!("bytes {first}-{}/{TOTAL}", first + CHUNK - 1),
                        ),
                        ("content-length", &CHUNK.to_string()),
                    ],
                );
                let (streaming, barrier) = (streaming.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    let answer =
                        tokio::spawn(async move { send_stream(&streaming, request).await });
                    pieces.send(piece.slice(..CHUNK - 1)).await.unwrap();
                    barrier.wait().await;
                    let released = Instant::now();
                    pieces.send(piece.slice(CHUNK - 1..)).await.unwrap();
                    drop(pieces);
                    let answer = answer.await.unwrap();
                    (server, released, Instant::now(), answer.status.as_u16())
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        let statuses: Vec<u16> = answers.iter().map(|&(.., status)| status).collect();
        assert_eq!(
            statuses.iter().filter(|&&s| s == 201).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|&s| matches!(s, 200..=202)),
            "round {round}: {statuses:?}"
        );
        assert_eq!(
            std::fs::read(root.join(&path)).unwrap(),
            *data,
            "round {round}"
        );
        // Exactly one inner-service call, in one of the two processes.
        assert_eq!(
            completions_of([&a, &b], &path).await,
            1,
            "round {round}: files handed to the inner services: A {:?}, B {:?}",
            completions(&a),
            completions(&b)
        );
        // The round raced when, while one server was completing the file, the
        // other was receiving the last byte of a chunk it then found complete.
        let &(winner, won_from, won_at, _) = answers.iter().find(|a| a.3 == 201).unwrap();
        if answers.iter().any(|&(server, released, answered, status)| {
            server != winner && status == 200 && released < won_at && won_from < answered
        }) {
            raced += 1;
        }
    }
    eprintln!("{raced} of {ROUNDS} rounds raced across the two processes");
    assert!(raced > 0, "no round raced across the two processes");
    // No late call either: one per round in all.
    let all = completions(&a).len() + completions(&b).len();
    assert_eq!(
        all,
        ROUNDS,
        "A {:?}, B {:?}",
        completions(&a),
        completions(&b)
    );
}

/// A layer over `FsStorage` at `root`, at the fixed clock, served in-process.
async fn serve_fs(
    root: &Path,
    clock: TestClock,
) -> (std::net::SocketAddr, Signer, CountingInner, FsStorage) {
    let storage = FsStorage::new(root).unwrap().grace_period(Duration::ZERO);
    let layer = SignedUploadLayer::new(SigningKey::new(KEY).unwrap(), storage.clone())
        .clock(clock)
        .public_base(PUBLIC_BASE)
        .unwrap();
    let signer = layer.signer();
    let inner = CountingInner::default();
    let addr = serve(layer.layer(inner.clone())).await;
    (addr, signer, inner, storage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_last_chunks_complete_exactly_once_on_fs_storage() {
    const ROUNDS: usize = 100;
    const TOTAL: usize = 4096;
    const CHUNK: usize = TOTAL / 16;
    let dir = tempfile::tempdir().unwrap();
    let (addr, signer, inner, _storage) = serve_fs(dir.path(), TestClock::at(NOW)).await;
    let http = client();
    for round in 0..ROUNDS {
        let path = format!("race/{round}.bin");
        let url = sign(&signer, addr, &path, SignedMethod::Put);
        let data = Arc::new(bytes(TOTAL, round as u64));
        for index in 0..8 {
            let first = index * CHUNK;
            let answer = send(&http, chunk(&url, &data, first, first + CHUNK - 1)).await;
            assert_eq!(answer.status, 202, "round {round} chunk {index}");
        }
        let tasks: Vec<_> = (0..32)
            .map(|task| {
                let (http, url, data) = (http.clone(), url.clone(), Arc::clone(&data));
                tokio::spawn(async move {
                    let first = (8 + task % 8) * CHUNK;
                    send(&http, chunk(&url, &data, first, first + CHUNK - 1)).await
                })
            })
            .collect();
        let mut statuses = Vec::new();
        let mut ids = Vec::new();
        for task in tasks {
            let answer = task.await.unwrap();
            if matches!(answer.status.as_u16(), 200 | 201) {
                ids.push(answer.json()["data"]["id"].clone());
            }
            statuses.push(answer.status.as_u16());
        }
        assert_eq!(
            statuses.iter().filter(|&&s| s == 201).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|&s| matches!(s, 200..=202)),
            "round {round}: {statuses:?}"
        );
        assert!(
            ids.windows(2).all(|w| w[0] == w[1]),
            "round {round}: {ids:?}"
        );
        assert_eq!(
            std::fs::read(dir.path().join(&path)).unwrap(),
            *data,
            "round {round}"
        );
        assert_eq!(
            inner.calls.load(std::sync::atomic::Ordering::SeqCst),
            round + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_simple_upload_leaves_no_file_and_no_temporary() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let server = Launch::new(root).start();
    let url = server.url(&signed_put("cut/off.bin"));
    let tmp = root.join(".uploads/tmp");

    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = raw_head("PUT", target(&url), &[("content-length", "10000000")]);
    tokio::time::timeout(Duration::from_secs(10), async {
        stream.write_all(&head).await.unwrap();
        stream.write_all(&bytes(1_000_000, 4)).await.unwrap();
        stream.flush().await.unwrap();
    })
    .await
    .expect("the server reads the body");
    assert!(
        eventually_async(Duration::from_secs(10), || !entries(&tmp).is_empty()).await,
        "the upload never streamed into a temporary file"
    );
    drop(stream);

    assert!(
        eventually_async(Duration::from_secs(5), || entries(&tmp).is_empty()).await,
        "temporary files left after the client went away: {:?}",
        entries(&tmp)
    );
    assert!(
        !root.join("cut/off.bin").exists(),
        "a cut-off body was committed"
    );
    assert!(!root.join("cut").join("off.bin").exists());
    // The server is still fine.
    let again = send(&client(), put(&url, &[], b"whole".to_vec())).await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert_eq!(std::fs::read(root.join("cut/off.bin")).unwrap(), b"whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_simple_upload_commits_nothing_and_purge_removes_the_temporary() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut server = Launch::new(root).start();
    let url = server.url(&signed_put("crash/simple.bin"));
    let tmp = root.join(".uploads/tmp");

    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = raw_head("PUT", target(&url), &[("content-length", "10000000")]);
    tokio::time::timeout(Duration::from_secs(10), async {
        stream.write_all(&head).await.unwrap();
        stream.write_all(&bytes(3_000_000, 5)).await.unwrap();
    })
    .await
    .expect("the server reads the body");
    assert!(
        eventually_async(Duration::from_secs(10), || !entries(&tmp).is_empty()).await,
        "the upload never streamed into a temporary file"
    );
    server.kill_hard();
    drop(stream);
    assert!(
        !root.join("crash/simple.bin").exists(),
        "a cut-off body was committed"
    );
    assert_eq!(entries(&tmp).len(), 1, "the crash leaves its temporary");

    // Cleanup removes temporaries older than the grace period.
    let storage = FsStorage::new(root).unwrap().grace_period(Duration::ZERO);
    let report = storage
        .purge_expired(std::time::SystemTime::now() + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(report.temporaries, 1, "{report:?}");
    assert!(entries(&tmp).is_empty(), "{:?}", entries(&tmp));

    // A restarted server takes the same URL.
    let again = Launch::new(root).start();
    let answer = send(
        &client(),
        put(&again.url(target(&url)), &[], b"whole".to_vec()),
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(
        std::fs::read(root.join("crash/simple.bin")).unwrap(),
        b"whole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_escape_the_root_are_refused_and_write_nothing() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    let other = base.path().join("other");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    std::os::unix::fs::symlink(&other, root.join("link")).unwrap();
    let server = Launch::new(&root).start();
    let expiry = unix_now() + 3600;
    let within = Duration::from_secs(10);

    // Dot segments, plain and percent-encoded, signed over the raw path.
    for raw_path in [
        "../x",
        "%2e%2e/x",
        "%2E%2E/x",
        "a/%2E%2E/%2e%2e/x",
        "a/../../x",
        "a/./x",
        ".uploads/x",
        ".UPLOADS/x",
        "%2euploads/x",
        ".uploads/tmp/x",
        "a%2F..%2F..%2Fx",
        "..%2Fx",
        "%2e%2e%2fx",
        "..%5Cx",
        "a/%00/x",
        "%2Fetc/x",
        "a//x",
    ] {
        let url = raw_url(server.addr, raw_path, expiry, "put");
        for range in [None, Some("bytes 0-4/5")] {
            let mut headers = vec![("content-length", "5")];
            if let Some(range) = range {
                headers.push(("content-range", range));
            }
            let mut request = raw_head("PUT", target(&url), &headers);
            request.extend_from_slice(b"hello");
            let answer = raw_exchange(server.addr, &request, within).await;
            assert_eq!(
                answer.status, 400,
                "{raw_path} ({range:?}): {:?}",
                answer.body
            );
            assert_eq!(answer.code(), "path_invalid", "{raw_path} ({range:?})");
        }
    }

    // A path through a symbolic link inside the root, properly signed.
    let http = client();
    for path in ["link/x.txt", "link/sub/x.txt"] {
        let url = server.url(&signed_put(path));
        let simple = send(&http, put(&url, &[], b"hello".to_vec())).await;
        assert_eq!(simple.status, 400, "{path}: {:?}", simple.body);
        assert_eq!(simple.code(), "path_invalid", "{path}");
        let chunked = send(
            &http,
            put(&url, &[("content-range", "bytes 0-4/5")], b"hello".to_vec()),
        )
        .await;
        assert_eq!(
            chunked.status, 400,
            "{path} (Content-Range): {:?}",
            chunked.body
        );
        assert_eq!(chunked.code(), "path_invalid", "{path} (Content-Range)");
    }

    assert_eq!(
        files_below(&other),
        Vec::<std::path::PathBuf>::new(),
        "written through the link"
    );
    let outside: Vec<_> = entries(base.path());
    assert_eq!(
        {
            let mut outside = outside;
            outside.sort();
            outside
        },
        ["other", "root"],
        "something written next to the root"
    );
    let inside: Vec<_> = files_below(&root)
        .into_iter()
        .filter(|p| !p.starts_with(".uploads"))
        .collect();
    assert_eq!(inside, [Path::new("link")], "files in the root");
    assert!(entries(&root.join(".uploads/tmp")).is_empty());
    assert!(!root.join(".uploads/x").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_the_expired_session_and_keeps_the_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let clock = TestClock::at(NOW);
    let (addr, signer, _inner, storage) = serve_fs(root, clock.clone()).await;
    let http = client();
    let data = bytes(1000, 6);
    let at = |seconds: u64| {
        signer.sign(
            &UploadPath::new("sessions/file.bin").unwrap(),
            SignedMethod::Put,
            tower_signed_upload::Expiry::At(UNIX_EPOCH + Duration::from_secs(seconds)),
        )
    };
    let short = at(NOW + 100);
    let long = at(NOW + 10_000);
    let short_url = format!("http://{addr}{}", short.path_and_query());
    let long_url = format!("http://{addr}{}", long.path_and_query());
    for url in [&short_url, &long_url] {
        let answer = send(&http, chunk(url, &data, 0, 99)).await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
    }
    let uploads = root.join(".uploads");
    let short_dir = uploads.join(session_id(signed_string(short.path_and_query())));
    let long_dir = uploads.join(session_id(signed_string(long.path_and_query())));
    assert!(
        short_dir.is_dir(),
        "session folders named as documented: {:?}",
        entries(&uploads)
    );
    assert!(long_dir.is_dir(), "{:?}", entries(&uploads));

    // Before the expiry nothing goes.
    let early = storage
        .purge_expired(UNIX_EPOCH + Duration::from_secs(NOW + 100))
        .await
        .unwrap();
    assert_eq!(early.sessions, 0, "{early:?}");
    assert!(short_dir.is_dir());

    let later = NOW + 101;
    let report = storage
        .purge_expired(UNIX_EPOCH + Duration::from_secs(later))
        .await
        .unwrap();
    assert_eq!(report.sessions, 1, "{report:?}");
    assert!(
        !short_dir.exists(),
        "the expired session stays: {:?}",
        entries(&uploads)
    );
    assert!(long_dir.is_dir(), "the live session was removed");

    clock.set(later);
    let status = send(&http, status_query(&long_url, 1000)).await;
    assert_eq!(status.status, 308, "{:?}", status.body);
    assert_eq!(ranges(&status), vec![[0, 99]]);
    assert_eq!(status.header("range"), Some("bytes=0-99"));
    // The live session still completes.
    let rest = send(&http, chunk(&long_url, &data, 100, 999)).await;
    assert_eq!(rest.status, 201, "{:?}", rest.body);
    assert_eq!(std::fs::read(root.join("sessions/file.bin")).unwrap(), data);
}

/// Prints how long the completing chunk's answer takes on `FsStorage`, for a
/// 64 MiB and a 1 GiB session in 16 MiB chunks (median of 5), next to a chunk
/// that does not complete. Figures only; nothing is asserted about time.
///
/// ```sh
/// cargo test --release --test fs_process completion_latency_report -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it with --ignored --nocapture"]
async fn completion_latency_report() {
    const CHUNK: usize = 16 * MIB;
    const RUNS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let (addr, signer, _inner, _storage) = serve_fs(dir.path(), TestClock::at(NOW)).await;
    let http = client();
    let piece = Bytes::from(bytes(CHUNK, 16));
    let median = |mut times: Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    for total in [64 * MIB, 1024 * MIB] {
        let chunks = total / CHUNK;
        let mut completing = Vec::new();
        let mut ordinary = Vec::new();
        for run in 0..RUNS {
            let path = format!("latency/{}-{run}.bin", total / MIB);
            let url = sign(&signer, addr, &path, SignedMethod::Put);
            for index in 0..chunks {
                let first = index * CHUNK;
                let request = put(
                    &url,
                    &[(
                        "content-range",
                        &format!("bytes {first}-{}/{total}", first + CHUNK - 1),
                    )],
                    piece.clone(),
                );
                let started = Instant::now();
                let answer = send(&http, request).await;
                let took = started.elapsed();
                if index + 1 == chunks {
                    assert_eq!(answer.status, 201, "{:?}", answer.body);
                    completing.push(took);
                } else {
                    assert_eq!(answer.status, 202, "{:?}", answer.body);
                    ordinary.push(took);
                }
            }
            std::fs::remove_file(dir.path().join(&path)).unwrap();
        }
        println!(
            "{:>5} MiB in 16 MiB chunks: completing chunk median {:?} (runs: {:?}); other chunks median {:?}",
            total / MIB,
            median(completing.clone()),
            completing,
            median(ordinary),
        );
    }
}

/// A tus request on `url` with `headers` and `body`.
fn tus_request(
    method: http::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> http::Request<http_body_util::Full<Bytes>> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(url)
        .header("tus-resumable", "1.0.0");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(http_body_util::Full::new(Bytes::from(body)))
        .unwrap()
}

/// A concatenation (tus `Upload-Concat: final`) cut by `kill -9` while the
/// parts are copied leaves the final upload with no byte counted or all of
/// them, the parts whole, and a retry on a new process makes the file.
#[tokio::test]
async fn a_concatenation_cut_by_kill_9_leaves_the_parts_for_a_retry() {
    const PART: usize = 24 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = bytes(4 * PART, 44);
    let path_and_query = signed_put("cat/joined.bin");

    let mut a = Launch::new(root).start();
    let http = client();
    let mut parts = Vec::new();
    for piece in data.chunks(PART) {
        let created = send(
            &http,
            tus_request(
                http::Method::POST,
                &a.url(&path_and_query),
                &[
                    ("upload-concat", "partial"),
                    ("upload-length", &PART.to_string()),
                ],
                Vec::new(),
            ),
        )
        .await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        let location = created.header("location").expect("a part URL");
        let part = target(location).to_owned();
        let stored = send(
            &http,
            tus_request(
                http::Method::PATCH,
                &a.url(&part),
                &[
                    ("upload-offset", "0"),
                    ("content-type", "application/offset+octet-stream"),
                ],
                piece.to_vec(),
            ),
        )
        .await;
        assert_eq!(stored.status, 204, "{:?}", stored.body);
        parts.push(part);
    }
    let concat = format!("final;{}", parts.join(" "));
    let final_upload = |url: String| {
        tus_request(
            http::Method::POST,
            &url,
            &[("upload-concat", &concat)],
            Vec::new(),
        )
    };

    // The final upload; the process dies once the copy has begun.
    let tmp = root.join(".uploads").join("tmp");
    let request = final_upload(a.url(&path_and_query));
    let in_flight = tokio::spawn({
        let http = http.clone();
        async move { http.request(request).await }
    });
    let copying = eventually_async(Duration::from_secs(20), || {
        std::fs::read_dir(&tmp).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|entry| entry.file_name().to_string_lossy().starts_with("concat-"))
        }) || in_flight.is_finished()
    })
    .await;
    assert!(copying, "the concatenation never started");
    a.kill_hard();
    let _ = tokio::time::timeout(Duration::from_secs(10), in_flight).await;

    let b = Launch::new(root).start();
    let http = client();
    // The final upload: nothing counted, or every byte (or already complete).
    let head = send(
        &http,
        tus_request(http::Method::HEAD, &b.url(&path_and_query), &[], Vec::new()),
    )
    .await;
    if head.status == 200 {
        let offset = head.header("upload-offset").expect("an offset");
        assert!(
            offset == "0" || offset == (4 * PART).to_string(),
            "a part of the file counted: {head:?}"
        );
    }
    // Every part is whole.
    for part in &parts {
        let head = send(
            &http,
            tus_request(http::Method::HEAD, &b.url(part), &[], Vec::new()),
        )
        .await;
        assert_eq!(head.status, 200, "{head:?}");
        assert_eq!(
            head.header("upload-offset"),
            Some(PART.to_string().as_str())
        );
    }
    // The retry makes the file.
    let done = send(&http, final_upload(b.url(&path_and_query))).await;
    assert!(done.status.is_success(), "{done:?}");
    assert_eq!(
        done.header("upload-offset"),
        Some((4 * PART).to_string().as_str())
    );
    assert_eq!(
        std::fs::read(root.join("cat/joined.bin")).expect("the file"),
        data
    );
}

//! `ObjectStoreStorage` over a real S3 API: moto's server on loopback, started
//! by these tests on a free port (one server per test binary, a fresh bucket
//! per test). Without `moto_server` the tests skip with a printed reason, except
//! under `CI=true` or `SIGNED_UPLOAD_REQUIRE_ALL=1`, where that is a failure.
#![cfg(feature = "object-store")]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::Service;
use tower_layer::Layer;
use tower_signed_upload::storage::{ObjectStoreStorage, Storage};
use tower_signed_upload::{Expiry, SignedMethod, SignedUploadLayer, SigningKey, UploadPath};

use common::{
    bytes, client, missing_prerequisite, put, send, Answer, CountingInner, TestClock, KEY, NOW,
    PUBLIC_BASE,
};

const MIB: usize = 1024 * 1024;
const PREFIX: &str = "site";

// ---------------------------------------------------------------------------
// moto

/// The moto server of this test binary: its port, and the shell that watches
/// it. The shell kills moto when its standard input closes, which happens when
/// this process exits, however it exits (statics are never dropped).
static MOTO: OnceLock<Option<(u16, Mutex<Child>)>> = OnceLock::new();

fn find_moto() -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.is_file())
}

/// One HTTP/1.1 request without a body on a fresh connection: status and body.
fn http(port: u16, method: &str, target: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {answer:.80}")))?;
    Ok((status, answer))
}

/// Starts moto on a free port and waits until it answers; `None` if it is not
/// installed.
fn start_moto() -> Option<(u16, Mutex<Child>)> {
    let program = find_moto()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("sh")
        .args([
            "-c",
            r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & pid=$!; read -r _; kill "$pid""#,
        ])
        .arg(program)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .spawn()
        .expect("the moto watchdog starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(port, "GET", "/").ok().map(|(status, _)| status) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some((port, Mutex::new(child)))
}

/// moto's port; `None` (skip, with a printed reason) when it is not
/// installed, unless prerequisites are required.
fn moto_port() -> Option<u16> {
    let port = MOTO.get_or_init(start_moto).as_ref().map(|(port, _)| *port);
    if port.is_none() {
        missing_prerequisite(
            "moto_server is not on PATH (pip install 'moto[server]'): no S3 API to test against",
        );
    }
    port
}

/// An S3 client of `bucket` on moto.
fn s3(port: u16, bucket: &str) -> Arc<dyn ObjectStore> {
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .expect("S3 client");
    Arc::new(store)
}

/// A fresh bucket on moto, or `None` (skip) without moto.
fn bucket(name: &str) -> Option<(u16, String)> {
    let port = moto_port()?;
    let (status, answer) = http(port, "PUT", &format!("/{name}")).expect("create bucket");
    assert_eq!(status, 200, "{answer}");
    Some((port, name.to_owned()))
}

/// Multipart uploads in progress in the bucket (moto answers unsigned requests).
fn multipart_uploads(port: u16, bucket: &str) -> usize {
    let (status, answer) = http(port, "GET", &format!("/{bucket}?uploads")).expect("list uploads");
    assert_eq!(status, 200, "{answer}");
    answer.matches("<UploadId>").count()
}

async fn keys(store: &dyn ObjectStore, under: &str) -> Vec<String> {
    let prefix = Path::from(under);
    let mut keys: Vec<String> = store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .expect("list");
    keys.sort();
    keys
}

// ---------------------------------------------------------------------------
// Instances: one layer over its own ObjectStoreStorage, served until killed

struct Instance {
    addr: SocketAddr,
    layer: SignedUploadLayer,
    storage: ObjectStoreStorage,
    inner: CountingInner,
    server: JoinHandle<()>,
}

impl Instance {
    /// A new instance with its own S3 client of the bucket.
    async fn start(port: u16, bucket: &str) -> Instance {
        // S3's smallest part, so that chunks of a few MiB already go in parts.
        let storage = ObjectStoreStorage::new(s3(port, bucket), PREFIX).part_size(5 * MIB);
        let layer = SignedUploadLayer::new(SigningKey::new(KEY).unwrap(), storage.clone())
            .clock(TestClock::at(NOW))
            .public_base(PUBLIC_BASE)
            .unwrap();
        let inner = CountingInner::default();
        let (addr, server) = serve(layer.layer(inner.clone())).await;
        Instance {
            addr,
            layer,
            storage,
            inner,
            server,
        }
    }

    /// The `put` URL of a session for `path`, as this instance's address.
    fn url(&self, session: &Session) -> String {
        format!("http://{}{}", self.addr, session.0)
    }

    fn calls(&self) -> usize {
        self.inner.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops serving at once: the listener and every connection, with the
    /// requests they were in, are dropped, as when the process is killed.
    fn kill(&self) {
        self.server.abort();
    }
}

/// One signed URL (path and query): one session, whichever instance gets it.
struct Session(String);

fn session(instance: &Instance, path: &str) -> Session {
    let url = instance.layer.signer().sign(
        &UploadPath::new(path).unwrap(),
        SignedMethod::Put,
        Expiry::At(UNIX_EPOCH + Duration::from_secs(NOW + 3600)),
    );
    Session(url.path_and_query().to_owned())
}

/// Serves `service` until the returned task is aborted, which also drops every
/// connection it accepted.
async fn serve<S, B>(service: S) -> (SocketAddr, JoinHandle<()>)
where
    S: Service<Request<hyper::body::Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = service.clone();
            connections.spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| service.clone().call(request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
            while connections.try_join_next().is_some() {}
        }
    });
    (addr, server)
}

fn content_range(first: usize, last: usize, total: usize) -> String {
    format!("bytes {first}-{last}/{total}")
}

async fn send_chunk(url: &str, data: &[u8], first: usize, last: usize) -> Answer {
    let range = content_range(first, last, data.len());
    send(
        &client(),
        put(
            url,
            &[("content-range", &range)],
            data[first..=last].to_vec(),
        ),
    )
    .await
}

async fn status_query(url: &str, total: usize) -> Answer {
    let range = format!("bytes */{total}");
    send(
        &client(),
        put(url, &[("content-range", &range)], Bytes::new()),
    )
    .await
}

/// The chunks of a file of `len` bytes, `size` bytes each: `(first, last)`.
fn chunks(len: usize, size: usize) -> Vec<(usize, usize)> {
    (0..len)
        .step_by(size)
        .map(|first| (first, (first + size).min(len) - 1))
        .collect()
}

/// A deterministic shuffle.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        items.swap(i, (seed >> 33) as usize % (i + 1));
    }
}

async fn stored(storage: &ObjectStoreStorage, path: &str) -> Vec<u8> {
    let read = storage
        .read(&UploadPath::new(path).unwrap(), None)
        .await
        .expect("the file reads");
    let pieces: Vec<Bytes> = read.body.try_collect().await.expect("the body reads");
    pieces.concat()
}

// ---------------------------------------------------------------------------
// Cases

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_upload_lands_at_its_key() {
    let Some((port, bucket)) = bucket("simple") else {
        return;
    };
    let instance = Instance::start(port, &bucket).await;
    let data = bytes(3 * MIB + 17, 1);
    let url = instance.url(&session(&instance, "docs/report.bin"));
    let answer = send(&client(), put(&url, &[], data.clone())).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    assert_eq!(instance.calls(), 1);

    let store = s3(port, &bucket);
    let object = store
        .get(&Path::from("site/docs/report.bin"))
        .await
        .expect("the object exists")
        .bytes()
        .await
        .expect("reads");
    assert_eq!(object.as_ref(), data.as_slice());
    let meta = instance
        .storage
        .head(&UploadPath::new("docs/report.bin").unwrap())
        .await
        .expect("head");
    assert_eq!(
        answer.header("etag"),
        Some(format!("\"{}\"", meta.etag).as_str())
    );
    assert!(keys(store.as_ref(), "site/.uploads").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumable_upload_in_shuffled_parallel_chunks() {
    let Some((port, bucket)) = bucket("parallel") else {
        return;
    };
    let instance = Instance::start(port, &bucket).await;
    let data = bytes(11 * MIB + 5, 2);
    let url = instance.url(&session(&instance, "videos/clip.mp4"));
    let mut order = chunks(data.len(), MIB);
    shuffle(&mut order, 7);
    let answers: Vec<Answer> = futures::stream::iter(order)
        .map(|(first, last)| send_chunk(&url, &data, first, last))
        .buffer_unordered(4)
        .collect()
        .await;
    // A chunk whose bytes the completing request already used may see the
    // completion when it looks again: 200, the replay.
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 201, 202].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(instance.calls(), 1);
    assert_eq!(stored(&instance.storage, "videos/clip.mp4").await, data);

    let replay = status_query(&url, data.len()).await;
    assert_eq!(replay.status, StatusCode::OK);
    let store = s3(port, &bucket);
    let left = keys(store.as_ref(), "site/.uploads").await;
    assert!(
        left.iter()
            .all(|key| key.ends_with("/manifest") || key.ends_with("/record")),
        "chunk objects remain: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_alternate_chunks_with_one_201() {
    let Some((port, bucket)) = bucket("alternate") else {
        return;
    };
    let instances = [
        Instance::start(port, &bucket).await,
        Instance::start(port, &bucket).await,
    ];
    let data = bytes(6 * 256 * 1024 + 99, 3);
    let upload = session(&instances[0], "shared/file.bin");
    let mut statuses = Vec::new();
    for (index, (first, last)) in chunks(data.len(), 256 * 1024).into_iter().enumerate() {
        let instance = &instances[index % 2];
        let answer = send_chunk(&instance.url(&upload), &data, first, last).await;
        statuses.push(answer.status.as_u16());
    }
    assert_eq!(statuses, [202, 202, 202, 202, 202, 202, 201]);
    assert_eq!(instances[0].calls() + instances[1].calls(), 1);

    // Either instance replays the completion, without calling its service.
    let first = status_query(&instances[0].url(&upload), data.len()).await;
    let second = status_query(&instances[1].url(&upload), data.len()).await;
    assert_eq!(
        (first.status, second.status),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(first.json()["data"], second.json()["data"]);
    assert_eq!(instances[0].calls() + instances[1].calls(), 1);
    assert_eq!(stored(&instances[1].storage, "shared/file.bin").await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_chunks_keep_the_session_small() {
    let Some((port, bucket)) = bucket("tiny") else {
        return;
    };
    let instances = [
        Instance::start(port, &bucket).await,
        Instance::start(port, &bucket).await,
    ];
    let data = bytes(300, 9);
    let upload = session(&instances[0], "tiny/bytes.bin");
    let store = s3(port, &bucket);
    let hidden = format!("{PREFIX}/.uploads");
    let mut most = 0;
    for at in 0..data.len() {
        let answer = send_chunk(&instances[at % 2].url(&upload), &data, at, at).await;
        let expected = if at + 1 == data.len() { 201 } else { 202 };
        assert_eq!(answer.status.as_u16(), expected, "byte {at}");
        if at % 10 == 9 && at + 1 < data.len() {
            // The manifest and the chunk objects: pieces are merged as the
            // session grows, and the merged ones deleted.
            most = most.max(keys(store.as_ref(), &hidden).await.len());
        }
    }
    // One range: at most 33 pieces, plus the manifest.
    assert!(most <= 34, "{most} session objects");
    assert_eq!(instances[0].calls() + instances[1].calls(), 1);
    assert_eq!(stored(&instances[0].storage, "tiny/bytes.bin").await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_last_chunks_complete_once() {
    let Some((port, bucket)) = bucket("race") else {
        return;
    };
    let instances = [
        Instance::start(port, &bucket).await,
        Instance::start(port, &bucket).await,
    ];
    for round in 0..10u64 {
        let path = format!("race/{round}.bin");
        let data = bytes(4 * 64 * 1024, round);
        let upload = session(&instances[0], &path);
        let pieces = chunks(data.len(), 64 * 1024);
        for &(first, last) in &pieces[..2] {
            let answer = send_chunk(&instances[0].url(&upload), &data, first, last).await;
            assert_eq!(answer.status, StatusCode::ACCEPTED);
        }
        // The last two chunks, each sent to both instances at once.
        let before = instances[0].calls() + instances[1].calls();
        let sends = [(0, 2), (1, 3), (1, 2), (0, 3)].map(|(instance, piece)| {
            let url = instances[instance].url(&upload);
            let (first, last) = pieces[piece];
            let data = &data;
            async move { send_chunk(&url, data, first, last).await }
        });
        let answers = futures::future::join_all(sends).await;
        let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
        assert_eq!(
            statuses.iter().filter(|&&s| s == 201).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| [200, 201, 202].contains(s)),
            "round {round}: {statuses:?}"
        );
        assert_eq!(instances[0].calls() + instances[1].calls(), before + 1);
        let replay = status_query(&instances[1].url(&upload), data.len()).await;
        assert_eq!(replay.status, StatusCode::OK, "round {round}");
        assert_eq!(
            stored(&instances[0].storage, &path).await,
            data,
            "round {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_expired_sessions() {
    let Some((port, bucket)) = bucket("cleanup") else {
        return;
    };
    let instance = Instance::start(port, &bucket).await;
    let storage = instance
        .storage
        .clone()
        .grace_period(Duration::from_secs(60));
    let data = bytes(1000, 4);
    let signer = instance.layer.signer();
    let url_until = |path: &str, expiry: u64| {
        let url = signer.sign(
            &UploadPath::new(path).unwrap(),
            SignedMethod::Put,
            Expiry::At(UNIX_EPOCH + Duration::from_secs(expiry)),
        );
        format!("http://{}{}", instance.addr, url.path_and_query())
    };
    let soon = url_until("cleanup/abandoned.bin", NOW + 600);
    let later = url_until("cleanup/live.bin", NOW + 6 * 3600);
    let done = url_until("cleanup/done.bin", NOW + 600);
    assert_eq!(
        send_chunk(&soon, &data, 0, 499).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        send_chunk(&later, &data, 0, 499).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        send_chunk(&done, &data, 0, 999).await.status,
        StatusCode::CREATED
    );

    let at = |seconds: u64| UNIX_EPOCH + Duration::from_secs(seconds);
    let report = storage.purge_expired(at(NOW + 600)).await.expect("purge");
    assert_eq!(
        (report.sessions, report.records),
        (0, 0),
        "within the grace period"
    );
    let report = storage.purge_expired(at(NOW + 3600)).await.expect("purge");
    assert_eq!((report.sessions, report.records), (1, 1), "{report:?}");

    let store = s3(port, &bucket);
    let left = keys(store.as_ref(), "site/.uploads").await;
    assert_eq!(
        left.len(),
        2,
        "only the live session's manifest and chunk: {left:?}"
    );
    assert_eq!(
        stored(&storage, "cleanup/done.bin").await,
        data,
        "committed files stay"
    );
    let live = status_query(&later, data.len()).await;
    assert_eq!(live.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(live.json()["data"]["received"], 500);
    let gone = status_query(&soon, data.len()).await;
    assert_eq!(gone.json()["data"]["received"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_killed_mid_chunk_loses_only_that_chunk() {
    let Some((port, bucket)) = bucket("killed") else {
        return;
    };
    let doomed = Instance::start(port, &bucket).await;
    let survivor = Instance::start(port, &bucket).await;
    let chunk = 8 * MIB;
    let data = bytes(3 * chunk, 5);
    let upload = session(&doomed, "killed/big.bin");

    let answer = send_chunk(&doomed.url(&upload), &data, 0, chunk - 1).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);

    // The second chunk streams to the doomed instance; more than a part of it
    // arrives (so a multipart upload of the chunk object is under way), then
    // the instance dies.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let body = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|piece| (Ok::<_, Infallible>(http_body::Frame::data(piece)), rx))
    }));
    let request = Request::put(doomed.url(&upload))
        .header(
            "content-range",
            content_range(chunk, 2 * chunk - 1, data.len()),
        )
        .header("content-length", chunk.to_string())
        .body(http_body_util::StreamBody::new(body))
        .unwrap();
    let sender = tokio::spawn(async move {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        client.request(request).await
    });
    for piece in data[chunk..chunk + 6 * MIB].chunks(256 * 1024) {
        tx.send(Bytes::copy_from_slice(piece))
            .await
            .expect("the body streams");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while multipart_uploads(port, &bucket) == 0 {
        assert!(Instant::now() < deadline, "no multipart upload started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    doomed.kill();
    drop(tx);
    let _ = sender.await;
    // The abandoned multipart upload is aborted, not left to the lifecycle rule.
    let deadline = Instant::now() + Duration::from_secs(30);
    while multipart_uploads(port, &bucket) != 0 {
        assert!(
            Instant::now() < deadline,
            "the multipart upload was not aborted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The survivor sees the first chunk only, and finishes the upload.
    let url = survivor.url(&upload);
    let status = status_query(&url, data.len()).await;
    assert_eq!(status.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        status.json()["data"]["ranges"],
        serde_json::json!([[0, chunk - 1]])
    );
    assert_eq!(
        send_chunk(&url, &data, 2 * chunk, 3 * chunk - 1)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let done = send_chunk(&url, &data, chunk, 2 * chunk - 1).await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    assert_eq!(doomed.calls() + survivor.calls(), 1);
    assert_eq!(stored(&survivor.storage, "killed/big.bin").await, data);
}

// ---------------------------------------------------------------------------
// Measurement: `cargo test --release --all-features --test object_store -- --ignored --nocapture`

#[cfg(all(feature = "fs", unix))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: 256 MiB through moto and through the disk, three times each"]
async fn measure_256_mib_resumable_upload() {
    use tower_signed_upload::storage::FsStorage;

    let Some((port, bucket)) = bucket("measure") else {
        return;
    };
    let data = Arc::new(bytes(256 * MIB, 6));
    let folder = tempfile::tempdir().expect("temp dir");

    async fn upload(storage: Arc<dyn Storage>, data: Arc<Vec<u8>>, path: &str) -> Duration {
        let layer = SignedUploadLayer::with_storage(SigningKey::new(KEY).unwrap(), storage)
            .clock(TestClock::at(NOW))
            .public_base(PUBLIC_BASE)
            .unwrap();
        let url = layer.signer().sign(
            &UploadPath::new(path).unwrap(),
            SignedMethod::Put,
            Duration::from_secs(3600),
        );
        let (addr, server) = serve(layer.layer(CountingInner::default())).await;
        let url = format!("http://{addr}{}", url.path_and_query());
        let started = Instant::now();
        let answers: Vec<Answer> = futures::stream::iter(chunks(data.len(), 16 * MIB))
            .map(|(first, last)| {
                let (url, data) = (url.clone(), Arc::clone(&data));
                async move { send_chunk(&url, &data, first, last).await }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        let elapsed = started.elapsed();
        server.abort();
        assert_eq!(
            answers
                .iter()
                .filter(|a| a.status == StatusCode::CREATED)
                .count(),
            1
        );
        elapsed
    }

    let median = |mut times: Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let mut on_s3 = Vec::new();
    let mut on_disk = Vec::new();
    for run in 0..3 {
        let s3_storage: Arc<dyn Storage> =
            Arc::new(ObjectStoreStorage::new(s3(port, &bucket), PREFIX));
        on_s3.push(upload(s3_storage, Arc::clone(&data), &format!("m/{run}.bin")).await);
        let fs_storage: Arc<dyn Storage> =
            Arc::new(FsStorage::new(folder.path()).expect("fs storage"));
        on_disk.push(upload(fs_storage, Arc::clone(&data), &format!("m/{run}.bin")).await);
        println!("run {run}: moto {:?}, disk {:?}", on_s3[run], on_disk[run]);
    }
    let (s3_median, disk_median) = (median(on_s3), median(on_disk));
    let rate = |time: Duration| 256.0 / time.as_secs_f64();
    println!(
        "256 MiB resumable (16 MiB chunks, 4 in flight), median of 3: ObjectStoreStorage on moto {s3_median:?} ({:.0} MiB/s), FsStorage {disk_median:?} ({:.0} MiB/s)",
        rate(s3_median),
        rate(disk_median)
    );
}

/// The public conformance suite against a real S3 API, run as a third-party
/// backend runs it.
#[cfg(feature = "conformance")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_storage_passes_conformance_on_s3() {
    let Some((port, bucket)) = bucket("conformance") else {
        return;
    };
    let storage = ObjectStoreStorage::new(s3(port, &bucket), "prefix");
    tower_signed_upload::storage::conformance::run(&storage).await;
}

//! Tests of the backend as a whole: its layout, the conformance suite in
//! memory and against a real S3 API (moto's server on loopback), and the
//! helpers the tests of each part share.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ::object_store::memory::InMemory;
use ::object_store::path::Path;
use ::object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use futures_util::stream::BoxStream;
use futures_util::TryStreamExt;
use tokio::sync::watch;

use super::claim::ClaimBody;
use super::store::{put_options, to_json, version_of};
use super::ObjectStoreStorage;
use crate::storage::conformance::{body, chunk, complete_default, live_session, path, read_all};
use crate::storage::{ChunkOptions, Session, Storage, StorageError};

pub(super) fn memory() -> (Arc<InMemory>, ObjectStoreStorage) {
    let store = Arc::new(InMemory::new());
    let storage = ObjectStoreStorage::new(store.clone(), "/site//uploads/");
    (store, storage)
}

pub(super) async fn keys(store: &InMemory, under: &str) -> Vec<String> {
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

/// Writes a claim as another instance would, renewed `renewals` times.
pub(super) async fn plant_claim(
    store: &InMemory,
    storage: &ObjectStoreStorage,
    session: &Session,
    renewals: u64,
    released: bool,
) {
    let dir = storage.session_dir(session).expect("dir");
    let claim = ClaimBody {
        owner: "someone else".into(),
        renewals,
        released,
        at: 0,
    };
    store
        .put(&dir.claim(), to_json(&claim))
        .await
        .expect("claim");
}

/// What a [`Stalling`] store does with a request, by kind (`"get"`, `"put"`,
/// `"copy"`) and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cue {
    Pass,
    /// Stop the whole instance here, as a long pause or a lost network
    /// would: this request and every later one wait until thawed. Once.
    Freeze,
    /// This request takes that long.
    Delay(Duration),
}

type Cues = Box<dyn Fn(&str, &Path) -> Cue + Send + Sync>;

/// One instance's view of a shared store, stalling on cue.
pub(super) struct Stalling {
    inner: Arc<dyn ObjectStore>,
    cues: Cues,
    fired: AtomicBool,
    frozen: watch::Sender<bool>,
}

impl Stalling {
    pub(super) fn new(
        inner: Arc<dyn ObjectStore>,
        cues: impl Fn(&str, &Path) -> Cue + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Stalling {
            inner,
            cues: Box::new(cues),
            fired: AtomicBool::new(false),
            frozen: watch::Sender::new(false),
        })
    }

    /// Returns once the instance froze.
    pub(super) async fn frozen(&self) {
        let mut frozen = self.frozen.subscribe();
        let _ = frozen.wait_for(|frozen| *frozen).await;
    }

    pub(super) fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    async fn gate(&self, kind: &str, location: &Path) {
        match (self.cues)(kind, location) {
            Cue::Freeze if !self.fired.swap(true, Ordering::SeqCst) => {
                self.frozen.send_replace(true);
            }
            Cue::Delay(pause) => tokio::time::sleep(pause).await,
            _ => {}
        }
        let mut frozen = self.frozen.subscribe();
        let _ = frozen.wait_for(|frozen| !*frozen).await;
    }
}

impl fmt::Debug for Stalling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stalling").finish_non_exhaustive()
    }
}

impl fmt::Display for Stalling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stalling({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Stalling {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        options: PutOptions,
    ) -> ::object_store::Result<PutResult> {
        self.gate("put", location).await;
        self.inner.put_opts(location, payload, options).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        options: PutMultipartOptions,
    ) -> ::object_store::Result<Box<dyn MultipartUpload>> {
        self.gate("put", location).await;
        self.inner.put_multipart_opts(location, options).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> ::object_store::Result<GetResult> {
        self.gate("get", location).await;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, ::object_store::Result<Path>>,
    ) -> BoxStream<'static, ::object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> BoxStream<'static, ::object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> ::object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> ::object_store::Result<()> {
        self.gate("copy", to).await;
        self.inner.copy_opts(from, to, options).await
    }
}

/// An instance of the backend over `shared`, stalling on `cues`, with a
/// one-second lease.
pub(super) fn instance(
    shared: &Arc<InMemory>,
    cues: impl Fn(&str, &Path) -> Cue + Send + Sync + 'static,
) -> (Arc<Stalling>, ObjectStoreStorage) {
    let store = Stalling::new(shared.clone(), cues);
    let storage = ObjectStoreStorage::new(store.clone(), "/site//uploads/")
        .completion_lease(Duration::from_secs(1));
    (store, storage)
}

#[test]
fn object_store_storage_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + fmt::Debug + 'static>() {}
    check::<ObjectStoreStorage>();
}

#[tokio::test]
async fn layout_keeps_sessions_under_the_hidden_prefix() {
    let (store, storage) = memory();
    storage
        .put(&path("a/b/simple.txt"), body(&[b"simple"]))
        .await
        .expect("put");
    assert_eq!(keys(&store, "site").await, ["site/uploads/a/b/simple.txt"]);

    let session = live_session(1, "a/chunked.bin");
    storage
        .write_chunk(
            &session,
            chunk(3, 5, Some(6)),
            &ChunkOptions::new(10),
            body(&[b"def"]),
        )
        .await
        .expect("chunk");
    let hidden = format!("site/uploads/.uploads/{}", session.id());
    let found = keys(&store, &hidden).await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[1], format!("{hidden}/manifest"));
    let name = found[0]
        .strip_prefix(&format!("{hidden}/chunks/"))
        .expect("a chunk object");
    assert!(
        name.starts_with("00000000000000000003-00000000000000000005-"),
        "{name}"
    );

    storage
        .write_chunk(
            &session,
            chunk(0, 2, None),
            &ChunkOptions::new(10),
            body(&[b"abc"]),
        )
        .await
        .expect("chunk");
    let completion = complete_default(&storage, &session).await;
    assert!(completion.fresh);
    assert_eq!(
        keys(&store, &hidden).await,
        [format!("{hidden}/manifest"), format!("{hidden}/record")],
        "chunks and claim removed, record kept"
    );
    assert_eq!(
        read_all(&storage, "a/chunked.bin").await.expect("file"),
        b"abcdef"
    );
    assert_eq!(
        storage
            .head(&path("a/chunked.bin"))
            .await
            .expect("head")
            .etag,
        completion.etag
    );
}

#[tokio::test]
async fn hidden_folder_and_bad_session_ids_are_refused() {
    let (_, storage) = memory();
    for hidden in [".uploads/x", ".UPLOADS/x"] {
        let result = storage.put(&path(hidden), body(&[b"x"])).await;
        assert!(
            matches!(result, Err(StorageError::InvalidPath)),
            "{result:?}"
        );
    }
    let session = Session::new("../x".into(), path("a"), SystemTime::now());
    let result = storage.status(&session).await;
    assert!(
        matches!(result, Err(StorageError::InvalidPath)),
        "{result:?}"
    );
}

// -----------------------------------------------------------------------
// The conformance suite against a real S3 API: moto's server on loopback.

/// A `moto_server` child, killed when dropped.
struct Moto {
    child: std::process::Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_moto() -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.is_file())
}

/// One HTTP/1.1 request on a fresh connection; the status code.
fn http(port: u16, method: &str, target: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {answer:.80}")))
}

fn start_moto() -> Option<Moto> {
    let Some(program) = find_moto() else {
        let required = std::env::var("CI").as_deref() == Ok("true")
            || std::env::var("SIGNED_UPLOAD_REQUIRE_ALL").as_deref() == Ok("1");
        assert!(
            !required,
            "moto_server is not on PATH (pip install 'moto[server]'); required under CI=true or SIGNED_UPLOAD_REQUIRE_ALL=1"
        );
        eprintln!("skipping: moto_server is not installed (pip install 'moto[server]')");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = std::process::Command::new(program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while http(port, "GET", "/").ok() != Some(200) {
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

/// The backend's exactly-once guarantees rest on these; a server that
/// ignored the headers would pass most tests by luck.
async fn assert_conditional_puts(store: &dyn ObjectStore) {
    let key = Path::from("conditional/probe");
    let first = store
        .put_opts(
            &key,
            PutPayload::from_static(b"1"),
            put_options(PutMode::Create),
        )
        .await
        .expect("create");
    let again = store
        .put_opts(
            &key,
            PutPayload::from_static(b"2"),
            put_options(PutMode::Create),
        )
        .await;
    assert!(
        matches!(again, Err(::object_store::Error::AlreadyExists { .. })),
        "{again:?}"
    );
    let second = store
        .put_opts(
            &key,
            PutPayload::from_static(b"3"),
            put_options(PutMode::Update(version_of(&first))),
        )
        .await
        .expect("update on the current version");
    let stale = store
        .put_opts(
            &key,
            PutPayload::from_static(b"4"),
            put_options(PutMode::Update(version_of(&first))),
        )
        .await;
    assert!(
        matches!(stale, Err(::object_store::Error::Precondition { .. })),
        "{stale:?}"
    );
    assert_ne!(first.e_tag, second.e_tag);
    store.delete(&key).await.expect("delete");
}

#[tokio::test]
async fn in_memory_store_honours_conditional_puts() {
    assert_conditional_puts(&InMemory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_api_honours_conditional_puts() {
    let Some(moto) = start_moto() else {
        return;
    };
    assert_eq!(http(moto.port, "PUT", "/conformance").expect("bucket"), 200);
    let store = ::object_store::aws::AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{}", moto.port))
        .with_allow_http(true)
        .with_bucket_name("conformance")
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .expect("S3 client");
    let store: Arc<dyn ObjectStore> = Arc::new(store);
    assert_conditional_puts(store.as_ref()).await;
}

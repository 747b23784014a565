//! What the inner service receives and answers: `GET`/`HEAD` with a `get` URL
//! reach it with the verified path; the `PUT` that commits a file reaches it
//! with the File object; its response is the client's.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::common::*;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use tower::Service;
use tower_layer::Layer;
use tower_signed_upload::{
    storage::MemoryStorage, RequestId, SignedMethod, SignedUploadLayer, SigningKey, UploadPath,
    UploadedFile,
};

/// What the inner service saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: Option<UploadPath>,
    request_id: Option<RequestId>,
    file: Option<UploadedFile>,
    body_is_empty: bool,
}

/// An inner service that records each request and serves stored files.
#[derive(Clone)]
struct Recorder {
    storage: MemoryStorage,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Headers it sets on its own answers.
    own_headers: Vec<(&'static str, &'static str)>,
}

impl<B: Body> Service<Request<B>> for Recorder {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let extensions = request.extensions();
        let seen = Seen {
            method: request.method().clone(),
            path: extensions.get::<UploadPath>().cloned(),
            request_id: extensions.get::<RequestId>().cloned(),
            file: extensions.get::<UploadedFile>().cloned(),
            body_is_empty: request.body().is_end_stream(),
        };
        let mut response = match (&seen.file, &seen.path) {
            (Some(file), _) => Response::builder()
                .status(StatusCode::OK)
                .body(Full::new(Bytes::from(format!("got {}", file.id)))),
            (None, Some(path)) => Response::builder().status(StatusCode::OK).body(Full::new(
                self.storage.file(path.as_str()).unwrap_or_default(),
            )),
            (None, None) => Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .body(Full::new(Bytes::new())),
        }
        .unwrap();
        for (name, value) in &self.own_headers {
            response
                .headers_mut()
                .insert(*name, http::HeaderValue::from_static(value));
        }
        self.seen.lock().unwrap().push(seen);
        ready(Ok(response))
    }
}

struct Setup {
    server: std::net::SocketAddr,
    storage: MemoryStorage,
    signer: tower_signed_upload::Signer,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn setup(own_headers: Vec<(&'static str, &'static str)>) -> Setup {
    let storage = MemoryStorage::new();
    let layer = SignedUploadLayer::new(SigningKey::new(KEY).unwrap(), storage.clone())
        .clock(TestClock::at(NOW))
        .public_base(PUBLIC_BASE)
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder {
        storage: storage.clone(),
        seen: Arc::clone(&seen),
        own_headers,
    };
    let signer = layer.signer();
    let server = serve(layer.layer(recorder)).await;
    Setup {
        server,
        storage,
        signer,
        seen,
    }
}

fn get(method: Method, url: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn get_with_a_get_url_reaches_the_inner_service_with_the_verified_path() {
    let setup = setup(Vec::new()).await;
    let client = client();
    let upload = sign(
        &setup.signer,
        setup.server,
        "my photos/été.txt",
        SignedMethod::Put,
    );
    assert_eq!(send(&client, put(&upload, &[], "stored")).await.status, 200);
    setup.seen.lock().unwrap().clear();

    let url = sign(
        &setup.signer,
        setup.server,
        "my photos/été.txt",
        SignedMethod::Get,
    );
    let answer = send(&client, get(Method::GET, &url)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "stored");
    let seen = setup.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::GET);
    assert_eq!(
        seen[0].path,
        Some(UploadPath::new("my photos/été.txt").unwrap())
    );
    let id = seen[0].request_id.as_ref().expect("a RequestId");
    assert!(id.as_str().starts_with("req_"), "{id:?}");
    assert!(seen[0].file.is_none());
    assert_eq!(setup.storage.file("my photos/été.txt").unwrap(), "stored");
}

#[tokio::test]
async fn head_with_a_get_url_reaches_the_inner_service() {
    let setup = setup(Vec::new()).await;
    let url = sign(&setup.signer, setup.server, "a/b.txt", SignedMethod::Get);
    let answer = send(&client(), get(Method::HEAD, &url)).await;
    assert_eq!(answer.status, 200);
    let seen = setup.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::HEAD);
    assert_eq!(seen[0].path, Some(UploadPath::new("a/b.txt").unwrap()));
    assert!(seen[0].request_id.is_some());
}

#[tokio::test]
async fn get_with_a_put_url_is_403_and_never_reaches_the_inner_service() {
    let setup = setup(Vec::new()).await;
    let url = sign(&setup.signer, setup.server, "a.txt", SignedMethod::Put);
    let answer = send(&client(), get(Method::GET, &url)).await;
    assert_rejected(&answer, 403, "method_not_signed", "GET", "/a.txt");
    assert!(setup.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn committing_put_reaches_the_inner_service_with_the_file_and_no_body() {
    let setup = setup(Vec::new()).await;
    let client = client();
    let url = sign(&setup.signer, setup.server, "docs/a.txt", SignedMethod::Put);
    let first = put(&url, &[("content-range", "bytes 0-4/10")], "hello");
    let answer = send(&client, first).await;
    assert_eq!(answer.status, 202);
    assert!(
        setup.seen.lock().unwrap().is_empty(),
        "a 202 chunk stays in the layer"
    );

    let last = put(&url, &[("content-range", "bytes 5-9/10")], "world");
    let answer = send(&client, last).await;
    let seen = setup.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let file = seen[0]
        .file
        .clone()
        .expect("the File object in the extensions");
    assert_eq!(
        answer.status, 200,
        "the inner service's status is the client's"
    );
    assert_eq!(answer.body, format!("got {}", file.id));
    assert_eq!(file.filesize, 10);
    assert_eq!(file.folder, "docs");
    assert_eq!(file.filename, "a.txt");
    assert_eq!(file.url, format!("{PUBLIC_BASE}/docs/a.txt"));
    assert_eq!(seen[0].method, Method::PUT);
    assert_eq!(seen[0].path, Some(UploadPath::new("docs/a.txt").unwrap()));
    assert!(seen[0].request_id.is_some());
    assert!(
        seen[0].body_is_empty,
        "the bytes are in storage, not in the body"
    );
    assert!(answer
        .header("etag")
        .is_some_and(|etag| etag.starts_with('"')));
    assert_eq!(
        answer.header("location"),
        Some(format!("{PUBLIC_BASE}/docs/a.txt").as_str())
    );
    assert_eq!(setup.storage.file("docs/a.txt").unwrap(), "helloworld");
}

#[tokio::test]
async fn completion_headers_set_by_the_inner_service_are_kept() {
    let setup = setup(vec![("etag", "\"mine\""), ("location", "/elsewhere")]).await;
    let url = sign(&setup.signer, setup.server, "a.txt", SignedMethod::Put);
    let answer = send(&client(), put(&url, &[], "data")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("etag"), Some("\"mine\""));
    assert_eq!(answer.header("location"), Some("/elsewhere"));
    assert_eq!(answer.headers.get_all("etag").iter().count(), 1);
}

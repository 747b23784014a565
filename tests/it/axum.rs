//! The layer inside an axum 0.8 `Router`, served with `axum::serve`: the handler
//! takes the committed file as `Extension<UploadedFile>`.

use std::sync::{Arc, Mutex};

use crate::common::*;
use axum::routing::put as put_route;
use axum::{Extension, Router};
use http::StatusCode;
use tower_signed_upload::{
    storage::MemoryStorage, SignedMethod, SignedUploadLayer, SigningKey, UploadedFile,
};

struct App {
    addr: std::net::SocketAddr,
    storage: MemoryStorage,
    signer: tower_signed_upload::Signer,
    files: Arc<Mutex<Vec<UploadedFile>>>,
}

async fn app() -> App {
    let storage = MemoryStorage::new();
    let layer = SignedUploadLayer::new(SigningKey::new(KEY).unwrap(), storage.clone())
        .clock(TestClock::at(NOW))
        .public_base(PUBLIC_BASE)
        .unwrap();
    let signer = layer.signer();
    let files = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let files = Arc::clone(&files);
        move |Extension(file): Extension<UploadedFile>| async move {
            let id = file.id.clone();
            files.lock().unwrap().push(file);
            (StatusCode::CREATED, format!("stored {id}"))
        }
    };
    let router = Router::new()
        .route("/{*path}", put_route(handler))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    App {
        addr,
        storage,
        signer,
        files,
    }
}

#[tokio::test]
async fn axum_handler_receives_the_uploaded_file() {
    let app = app().await;
    let url = sign(&app.signer, app.addr, "avatars/me.png", SignedMethod::Put);
    let data = png(64, 32, 100);
    let answer = send(&client(), put(&url, &[], data.clone())).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let files = app.files.lock().unwrap().clone();
    assert_eq!(files.len(), 1);
    let file = &files[0];
    assert_eq!(answer.body, format!("stored {}", file.id));
    assert_eq!(file.mime_type, "image/png");
    assert_eq!((file.width, file.height), (Some(64), Some(32)));
    assert_eq!(file.filesize, data.len() as u64);
    assert_eq!(file.url, format!("{PUBLIC_BASE}/avatars/me.png"));
    assert!(answer.header("etag").is_some());
    assert_eq!(
        answer.header("location"),
        Some(format!("{PUBLIC_BASE}/avatars/me.png").as_str())
    );
    assert_eq!(app.storage.file("avatars/me.png").unwrap(), data);
}

#[tokio::test]
async fn axum_handler_is_not_called_for_an_intermediate_chunk() {
    let app = app().await;
    let client = client();
    let url = sign(&app.signer, app.addr, "a.bin", SignedMethod::Put);
    let data = bytes(100, 1);
    let first = put(
        &url,
        &[("content-range", "bytes 0-49/100")],
        data[..50].to_vec(),
    );
    let answer = send(&client, first).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.json()["data"]["object"], "upload");
    assert!(app.files.lock().unwrap().is_empty());

    let last = put(
        &url,
        &[("content-range", "bytes 50-99/100")],
        data[50..].to_vec(),
    );
    let answer = send(&client, last).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(app.files.lock().unwrap().len(), 1);
    assert_eq!(app.storage.file("a.bin").unwrap(), data);
}

#[tokio::test]
async fn axum_route_refusals_are_envelopes() {
    let app = app().await;
    let url = sign(&app.signer, app.addr, "a.bin", SignedMethod::Put);
    let tampered = url.replacen("/a.bin?", "/b.bin?", 1);
    let answer = send(&client(), put(&tampered, &[], "x")).await;
    assert_rejected(&answer, 403, "signature_invalid", "PUT", "/b.bin");
    assert!(app.files.lock().unwrap().is_empty());
}

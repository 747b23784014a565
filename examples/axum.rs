//! The smallest axum app that takes signed uploads into a local folder and
//! keeps the File object of each.
//!
//! ```sh
//! SIGNED_UPLOAD_KEY=secret cargo run --example axum
//! ```
//!
//! It prints a signed URL; `curl -T somefile 'URL'` uploads to it, and
//! `curl http://127.0.0.1:3002/files` lists what was kept.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use tower_signed_upload::serve::Server;
use tower_signed_upload::storage::FsStorage;
use tower_signed_upload::{SignedMethod, SignedUploadLayer, SigningKey, UploadPath, UploadedFile};

type Files = Arc<Mutex<Vec<UploadedFile>>>;

/// Called once per committed upload: a real app writes `file` to its database.
async fn keep(
    State(files): State<Files>,
    Extension(file): Extension<UploadedFile>,
) -> (StatusCode, Json<UploadedFile>) {
    files
        .lock()
        .expect("no panics while locked")
        .push(file.clone());
    (StatusCode::CREATED, Json(file))
}

async fn list(State(files): State<Files>) -> Json<Vec<UploadedFile>> {
    Json(files.lock().expect("no panics while locked").clone())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key =
        SigningKey::new(std::env::var("SIGNED_UPLOAD_KEY").unwrap_or_else(|_| "secret".into()))?;
    let dir = std::env::var("UPLOAD_DIR").unwrap_or_else(|_| "./uploads".into());
    let listener = tokio::net::TcpListener::bind(
        std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3002".into()),
    )
    .await?;
    let addr = listener.local_addr()?;
    let uploads =
        SignedUploadLayer::new(key, FsStorage::new(dir)?).public_base(&format!("http://{addr}"))?;

    let url = uploads.signer().sign(
        &UploadPath::new("hello.txt").expect("valid"),
        SignedMethod::Put,
        Duration::from_secs(3600),
    );
    println!("listening on http://{addr}");
    println!("upload with: curl -T somefile '{url}'");

    let app = Router::new()
        .route("/{*path}", put(keep).layer(uploads))
        .route("/files", get(list))
        .with_state(Files::default());
    // Like axum::serve, with the connection limits a server open to anyone
    // needs (silent, trickling and idle connections closed, a cap on them).
    Server::new()
        .serve(listener, app, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}

//! The layer around a plain hyper 1 service, served with hyper-util.
//!
//! ```sh
//! SIGNED_UPLOAD_KEY=secret cargo run --example hyper
//! ```
//!
//! It prints a signed URL; `curl -T somefile 'URL'` uploads to it.

use std::convert::Infallible;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_layer::Layer;
use tower_signed_upload::storage::MemoryStorage;
use tower_signed_upload::{
    RequestBody, SignedMethod, SignedUploadLayer, SigningKey, UploadPath, UploadedFile,
};

/// The host's own handler: called once per committed upload.
async fn on_upload(
    request: http::Request<RequestBody<Incoming>>,
) -> Result<http::Response<String>, Infallible> {
    let Some(file) = request.extensions().get::<UploadedFile>() else {
        return Ok(http::Response::builder()
            .status(404)
            .body(String::new())
            .expect("valid response"));
    };
    println!(
        "stored {} ({} bytes, {})",
        file.url, file.filesize, file.mime_type
    );
    let body = serde_json::to_string(file).expect("a File object serializes");
    Ok(http::Response::builder()
        .status(201)
        .header("content-type", "application/json")
        .body(body)
        .expect("valid response"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key =
        SigningKey::new(std::env::var("SIGNED_UPLOAD_KEY").unwrap_or_else(|_| "secret".into()))?;
    let listener =
        TcpListener::bind(std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into()))
            .await?;
    let addr = listener.local_addr()?;
    let layer =
        SignedUploadLayer::new(key, MemoryStorage::new()).public_base(&format!("http://{addr}"))?;

    let path = UploadPath::new("hello.txt").expect("a valid path");
    let url = layer
        .signer()
        .sign(&path, SignedMethod::Put, Duration::from_secs(3600));
    println!("listening on http://{addr}");
    println!("upload with: curl -T somefile '{url}'");

    let service = layer.layer(tower::service_fn(on_upload));
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

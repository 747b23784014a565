//! The layer around a plain service function, served by hyper 1 through
//! hyper-util (no framework).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use crate::common::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower_layer::Layer;
use tower_signed_upload::{
    storage::MemoryStorage, RequestBody, SignedMethod, SignedUploadLayer, SigningKey, UploadedFile,
};

#[tokio::test]
async fn hyper_service_behind_the_layer_gets_a_simple_upload() {
    let storage = MemoryStorage::new();
    let layer = SignedUploadLayer::new(SigningKey::new(KEY).unwrap(), storage.clone())
        .clock(TestClock::at(NOW))
        .public_base(PUBLIC_BASE)
        .unwrap();
    let signer = layer.signer();
    let files = Arc::new(Mutex::new(Vec::<UploadedFile>::new()));
    let inner = {
        let files = Arc::clone(&files);
        tower::service_fn(
            move |request: Request<RequestBody<hyper::body::Incoming>>| {
                let files = Arc::clone(&files);
                async move {
                    let file = request.extensions().get::<UploadedFile>().cloned();
                    let status = match file {
                        Some(file) => {
                            files.lock().unwrap().push(file);
                            StatusCode::CREATED
                        }
                        None => StatusCode::NOT_FOUND,
                    };
                    let mut response = Response::new(Full::new(Bytes::from_static(b"thanks")));
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
                }
            },
        )
    };
    let service = layer.layer(inner);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let url = sign(&signer, addr, "reports/q1.pdf", SignedMethod::Put);
    let data = b"%PDF-1.7\n% a tiny report\n".to_vec();
    let answer = send(&client(), put(&url, &[], data.clone())).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(answer.body, "thanks");
    assert!(answer.header("etag").is_some());
    assert_eq!(
        answer.header("location"),
        Some(format!("{PUBLIC_BASE}/reports/q1.pdf").as_str())
    );
    let files = files.lock().unwrap().clone();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].mime_type, "application/pdf");
    assert_eq!(files[0].filesize, data.len() as u64);
    assert_eq!(storage.file("reports/q1.pdf").unwrap(), data);
}

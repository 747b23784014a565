use crate::common::*;
use tower_layer::Layer;
use tower_signed_upload::{
    services::RespondCreated, storage::MemoryStorage, SignedMethod, SignedUploadLayer, SigningKey,
};

#[tokio::test]
async fn simple_and_chunked_upload_round_trip() {
    let storage = MemoryStorage::new();
    let clock = TestClock::at(NOW);
    let layer = SignedUploadLayer::new(SigningKey::new("secret").unwrap(), storage.clone())
        .clock(clock.clone())
        .public_base("http://files.test")
        .unwrap();
    let signer = layer.signer();
    let service = layer.layer(RespondCreated);
    let addr = serve(service).await;
    let client = client();

    let url = sign(&signer, addr, "a/b.txt", SignedMethod::Put);
    let answer = send(&client, put(&url, &[], "hello")).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(answer.json()["data"]["filesize"], 5);
    assert_eq!(storage.file("a/b.txt").unwrap(), "hello");

    let url = sign(&signer, addr, "c.bin", SignedMethod::Put);
    let data = bytes(100, 1);
    let answer = send(
        &client,
        put(
            &url,
            &[("content-range", "bytes 50-99/100")],
            data[50..].to_vec(),
        ),
    )
    .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let answer = send(&client, put(&url, &[("content-range", "bytes */100")], "")).await;
    assert_eq!(answer.status, 308, "{:?}", answer.body);
    let answer = send(
        &client,
        put(
            &url,
            &[("content-range", "bytes 0-49/100")],
            data[..50].to_vec(),
        ),
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert!(answer.header("etag").is_some());
    assert_eq!(answer.header("location"), Some("http://files.test/c.bin"));
    let id = answer.json()["data"]["id"].clone();
    let answer = send(
        &client,
        put(
            &url,
            &[("content-range", "bytes 0-49/100")],
            data[..50].to_vec(),
        ),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["data"]["id"], id);
    assert_eq!(storage.file("c.bin").unwrap(), data);
}

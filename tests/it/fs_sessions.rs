//! Sessions on `FsStorage` outlive the server that took their chunks
//! (docs/protocol.md#resumable-uploads): a fresh layer over the same folder, as after a restart,
//! or a second server beside the first, carries a session on.

use std::net::SocketAddr;
use std::path::Path;

use crate::common::*;
use tower_layer::Layer;
use tower_signed_upload::storage::FsStorage;
use tower_signed_upload::{
    services::RespondCreated, SignedMethod, SignedUploadLayer, Signer, SigningKey,
};

/// A server over `FsStorage` at `root`, as a freshly started process would build it.
async fn server_on(root: &Path) -> (SocketAddr, Signer) {
    let layer =
        SignedUploadLayer::new(SigningKey::new(KEY).unwrap(), FsStorage::new(root).unwrap())
            .clock(TestClock::at(NOW))
            .public_base(PUBLIC_BASE)
            .unwrap();
    let signer = layer.signer();
    (serve(layer.layer(RespondCreated)).await, signer)
}

fn chunk(
    url: &str,
    data: &[u8],
    first: usize,
    last: usize,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    put(
        url,
        &[(
            "content-range",
            &format!("bytes {first}-{last}/{}", data.len()),
        )],
        data[first..=last].to_vec(),
    )
}

/// The same signed URL, pointed at another server.
fn at(url: &str, addr: SocketAddr) -> String {
    format!("http://{addr}{}", target(url))
}

#[tokio::test]
async fn accepted_chunks_survive_a_new_server_on_the_same_folder() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let data = bytes(3000, 21);
    let (first, signer) = server_on(dir.path()).await;
    let url = sign(&signer, first, "kept/a.bin", SignedMethod::Put);
    assert_eq!(send(&client, chunk(&url, &data, 0, 999)).await.status, 202);
    assert_eq!(
        send(&client, chunk(&url, &data, 2000, 2999)).await.status,
        202
    );

    let (second, _) = server_on(dir.path()).await;
    let url = at(&url, second);
    let answer = send(&client, put(&url, &[("content-range", "bytes */3000")], "")).await;
    assert_eq!(answer.status, 308, "{:?}", answer.body);
    assert_eq!(
        answer.json()["data"]["ranges"],
        serde_json::json!([[0, 999], [2000, 2999]])
    );
    assert_eq!(answer.header("range"), Some("bytes=0-999"));
    let answer = send(&client, chunk(&url, &data, 1000, 1999)).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let stored = std::fs::read(dir.path().join("kept/a.bin")).unwrap();
    assert_eq!(stored, data);
}

#[tokio::test]
async fn two_servers_on_one_folder_serve_one_session_alternately() {
    let dir = tempfile::tempdir().unwrap();
    let client = client();
    let data = bytes(4000, 22);
    let (a, signer) = server_on(dir.path()).await;
    let (b, _) = server_on(dir.path()).await;
    let url = sign(&signer, a, "shared.bin", SignedMethod::Put);
    let mut created = None;
    for (index, addr) in [a, b, a, b].into_iter().enumerate() {
        let first = index * 1000;
        let answer = send(&client, chunk(&at(&url, addr), &data, first, first + 999)).await;
        if index < 3 {
            assert_eq!(answer.status, 202, "{:?}", answer.body);
        } else {
            assert_eq!(answer.status, 201, "{:?}", answer.body);
            created = Some(answer.json()["data"]["id"].clone());
        }
    }
    // The other server replays the completion.
    let answer = send(&client, chunk(&at(&url, a), &data, 0, 999)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(Some(answer.json()["data"]["id"].clone()), created);
    assert_eq!(std::fs::read(dir.path().join("shared.bin")).unwrap(), data);
}

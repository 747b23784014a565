//! A path `FsStorage` cannot hold is refused at the first request
//! (docs/protocol.md#sessions): a symbolic link inside the root, a file where a
//! folder is needed, or a folder where the file goes is `400 path_invalid` on
//! the first chunk and on a simple upload, never a run of `202`s, and leaves
//! no session behind.

use std::net::SocketAddr;
use std::path::Path;

use crate::common::*;
use tower_layer::Layer;
use tower_signed_upload::storage::FsStorage;
use tower_signed_upload::{services::RespondCreated, SignedMethod, SignedUploadLayer, SigningKey};

/// A server over `FsStorage` at `root`; its address and a `put` URL maker.
async fn server_on(root: &Path) -> (SocketAddr, tower_signed_upload::Signer) {
    let layer =
        SignedUploadLayer::new(SigningKey::new(KEY).unwrap(), FsStorage::new(root).unwrap())
            .clock(TestClock::at(NOW))
            .public_base(PUBLIC_BASE)
            .unwrap();
    let signer = layer.signer();
    (serve(layer.layer(RespondCreated)).await, signer)
}

/// The session folders under the hidden folder (its `tmp` aside).
fn sessions(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join(".uploads")) else {
        return Vec::new();
    };
    entries
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "tmp")
        .collect()
}

/// The first chunk and a simple upload for `name` are both `400 path_invalid`.
async fn assert_refused_at_once(
    addr: SocketAddr,
    signer: &tower_signed_upload::Signer,
    name: &str,
) {
    let client = client();
    let url = sign(signer, addr, name, SignedMethod::Put);
    let data = bytes(3000, 31);
    let answer = send(
        &client,
        put(
            &url,
            &[("content-range", "bytes 0-999/3000")],
            data[..1000].to_vec(),
        ),
    )
    .await;
    assert_rejected(&answer, 400, "path_invalid", "PUT", &format!("/{name}"));
    let answer = send(&client, put(&url, &[], data)).await;
    assert_rejected(&answer, 400, "path_invalid", "PUT", &format!("/{name}"));
}

#[tokio::test]
async fn symlink_inside_the_root_is_400_at_the_first_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("real")).unwrap();
    std::os::unix::fs::symlink(root.join("real"), root.join("alias")).unwrap();
    let (addr, signer) = server_on(root).await;
    assert_refused_at_once(addr, &signer, "alias/photo.png").await;
    assert_eq!(sessions(root), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(root.join("real")).unwrap().count(), 0);
}

#[tokio::test]
async fn file_where_a_folder_is_needed_is_400_at_the_first_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("a.txt"), b"text").unwrap();
    std::fs::create_dir(root.join("folder")).unwrap();
    let (addr, signer) = server_on(root).await;
    assert_refused_at_once(addr, &signer, "a.txt/b.png").await;
    assert_refused_at_once(addr, &signer, "folder").await;
    assert_eq!(sessions(root), Vec::<String>::new());
    assert_eq!(std::fs::read(root.join("a.txt")).unwrap(), b"text");
}

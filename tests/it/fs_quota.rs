//! `FsStorage::max_pending` over real HTTP: uploads past the quota of bytes
//! held by unfinished uploads are `507 storage_full`, nothing acknowledged is
//! lost, and every request gives back what it reserved.

use std::path::Path;

use crate::common::*;
use tower_layer::Layer;
use tower_signed_upload::storage::FsStorage;
use tower_signed_upload::{services::RespondCreated, SignedMethod, SignedUploadLayer, SigningKey};

const KIB: usize = 1024;

struct QuotaServer {
    addr: std::net::SocketAddr,
    signer: tower_signed_upload::Signer,
    storage: FsStorage,
}

impl QuotaServer {
    async fn start(root: &Path, quota: u64) -> Self {
        let storage = FsStorage::new(root).unwrap().max_pending(quota);
        let layer = SignedUploadLayer::new(SigningKey::new("key").unwrap(), storage.clone());
        let signer = layer.signer();
        let addr = serve(layer.layer(RespondCreated)).await;
        QuotaServer {
            addr,
            signer,
            storage,
        }
    }

    fn url(&self, path: &str) -> String {
        sign(&self.signer, self.addr, path, SignedMethod::Put)
    }
}

fn range(first: usize, len: usize, total: usize) -> String {
    format!("bytes {first}-{}/{total}", first + len - 1)
}

fn assert_full(answer: &Answer) {
    assert_eq!(
        (answer.status.as_u16(), answer.code()),
        (507, "storage_full".to_owned()),
        "{:?}",
        answer.body
    );
    assert_eq!(answer.json()["meta"]["status"], 507, "{:?}", answer.body);
}

fn temporaries(root: &Path) -> usize {
    std::fs::read_dir(root.join(".uploads/tmp"))
        .unwrap()
        .count()
}

#[tokio::test]
async fn uploads_past_the_quota_are_507_and_acknowledged_chunks_survive() {
    let folder = tempfile::tempdir().unwrap();
    let server = QuotaServer::start(folder.path(), 128 * KIB as u64).await;
    let client = client();

    // Session A stores 60 KiB of 120; session B 30 KiB of 40.
    let a_url = server.url("a.bin");
    let a = bytes(120 * KIB, 1);
    let answer = send(
        &client,
        put(
            &a_url,
            &[("content-range", &range(0, 60 * KIB, 120 * KIB))],
            a[..60 * KIB].to_vec(),
        ),
    )
    .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let b_url = server.url("b.bin");
    let b = bytes(40 * KIB, 2);
    let answer = send(
        &client,
        put(
            &b_url,
            &[("content-range", &range(0, 30 * KIB, 40 * KIB))],
            b[..30 * KIB].to_vec(),
        ),
    )
    .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(server.storage.pending(), 90 * KIB as u64);

    // A's last 60 KiB would pass the quota: refused, A keeps its ranges.
    let last = range(60 * KIB, 60 * KIB, 120 * KIB);
    let refused = send(
        &client,
        put(&a_url, &[("content-range", &last)], a[60 * KIB..].to_vec()),
    )
    .await;
    assert_full(&refused);
    // So is a simple upload whose declared length would pass it.
    let c_url = server.url("c.bin");
    let refused = send(&client, put(&c_url, &[], bytes(50 * KIB, 3))).await;
    assert_full(&refused);
    assert!(!folder.path().join("c.bin").exists());
    assert_eq!(temporaries(folder.path()), 0);
    let status = send(
        &client,
        put(&a_url, &[("content-range", "bytes */122880")], ""),
    )
    .await;
    assert_eq!(status.status, 308, "{:?}", status.body);
    assert_eq!(
        status.json()["data"]["ranges"],
        serde_json::json!([[0, 60 * KIB - 1]])
    );
    assert_eq!(server.storage.pending(), 90 * KIB as u64);

    // B completes and frees its bytes; then A's last chunk fits.
    let answer = send(
        &client,
        put(
            &b_url,
            &[("content-range", &range(30 * KIB, 10 * KIB, 40 * KIB))],
            b[30 * KIB..].to_vec(),
        ),
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(server.storage.pending(), 60 * KIB as u64);
    let answer = send(
        &client,
        put(&a_url, &[("content-range", &last)], a[60 * KIB..].to_vec()),
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(std::fs::read(folder.path().join("a.bin")).unwrap(), a);
    assert_eq!(std::fs::read(folder.path().join("b.bin")).unwrap(), b);
    assert_eq!(server.storage.pending(), 0);
}

#[tokio::test]
async fn a_body_of_unknown_length_is_cut_at_the_quota() {
    let folder = tempfile::tempdir().unwrap();
    let server = QuotaServer::start(folder.path(), 64 * KIB as u64).await;
    let client = stream_client();
    let url = server.url("unknown.bin");
    let pieces = (0..4).map(|seed| bytes(32 * KIB, seed)).collect();
    let answer = send_stream(&client, stream_put(&url, &[], chunked_body(pieces))).await;
    assert_full(&answer);
    assert!(!folder.path().join("unknown.bin").exists());
    assert_eq!(
        temporaries(folder.path()),
        0,
        "the partial upload is removed"
    );
    assert_eq!(server.storage.pending(), 0);

    // Within the quota, a body of unknown length is stored.
    let pieces = (0..2).map(|seed| bytes(32 * KIB, seed)).collect();
    let answer = send_stream(&client, stream_put(&url, &[], chunked_body(pieces))).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
}

#[tokio::test]
async fn uploads_each_under_the_quota_succeed_one_after_another() {
    let folder = tempfile::tempdir().unwrap();
    let server = QuotaServer::start(folder.path(), 100 * KIB as u64).await;
    let client = client();
    // Ten uploads of 60 KiB (600 KiB in all, six times the quota), each
    // released when it ends: simple uploads, sessions, and failures.
    for round in 0..10u64 {
        let data = bytes(60 * KIB, round);
        let url = server.url(&format!("file-{round}.bin"));
        match round % 3 {
            0 => {
                let answer = send(&client, put(&url, &[], data)).await;
                assert_eq!(answer.status, 201, "{round}: {:?}", answer.body);
            }
            1 => {
                for (first, len) in [(0, 20 * KIB), (20 * KIB, 40 * KIB)] {
                    let answer = send(
                        &client,
                        put(
                            &url,
                            &[("content-range", &range(first, len, 60 * KIB))],
                            data[first..first + len].to_vec(),
                        ),
                    )
                    .await;
                    assert!(answer.status.is_success(), "{round}: {:?}", answer.body);
                }
            }
            _ => {
                // A wrong Content-Digest: the upload fails after its body.
                let wrong = "sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:";
                let answer = send(&client, put(&url, &[("content-digest", wrong)], data)).await;
                assert_eq!(
                    answer.status.as_u16() / 100,
                    4,
                    "{round}: {:?}",
                    answer.body
                );
            }
        }
        assert_eq!(server.storage.pending(), 0, "round {round}");
    }
    assert_eq!(temporaries(folder.path()), 0);
}

#[tokio::test]
async fn a_restart_counts_the_sessions_on_disk() {
    let folder = tempfile::tempdir().unwrap();
    let first = QuotaServer::start(folder.path(), 100 * KIB as u64).await;
    let client = client();
    let url = first.url("kept.bin");
    let data = bytes(80 * KIB, 4);
    let answer = send(
        &client,
        put(
            &url,
            &[("content-range", &range(0, 60 * KIB, 80 * KIB))],
            data[..60 * KIB].to_vec(),
        ),
    )
    .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);

    // Another server on the folder: the session's 60 KiB are counted.
    let second = QuotaServer::start(folder.path(), 100 * KIB as u64).await;
    assert_eq!(second.storage.pending(), 60 * KIB as u64);
    let other = second.url("other.bin");
    let refused = send(&client, put(&other, &[], bytes(50 * KIB, 5))).await;
    assert_full(&refused);
    let answer = send(&client, put(&other, &[], bytes(40 * KIB, 5))).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    // The session completes through the second server (same key, same URL).
    let url = url.replace(&first.addr.to_string(), &second.addr.to_string());
    let answer = send(
        &client,
        put(
            &url,
            &[("content-range", &range(60 * KIB, 20 * KIB, 80 * KIB))],
            data[60 * KIB..].to_vec(),
        ),
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(second.storage.pending(), 0);
    assert_eq!(std::fs::read(folder.path().join("kept.bin")).unwrap(), data);
}

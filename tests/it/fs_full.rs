//! A full disk: `507 storage_full`, nothing half-committed. Runs on a 2 MiB
//! tmpfs mounted for the test (needs root; elsewhere it is skipped with a
//! printed reason, and under `CI=true` or `SIGNED_UPLOAD_REQUIRE_ALL=1` that is
//! a failure).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use tower_layer::Layer;
use tower_signed_upload::storage::{FsStorage, Storage};
use tower_signed_upload::{services::RespondCreated, SignedMethod, SignedUploadLayer, SigningKey};

/// A tmpfs of a fixed size, unmounted on drop.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` on a fresh temporary folder; `Err` says why
    /// it could not (not root, no `mount`).
    fn mount(size: &str) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|error| format!("cannot run mount: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(SmallDisk {
            path: dir.path().to_path_buf(),
            _dir: dir,
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// A 2 MiB tmpfs, or `None` (skip, with a printed reason) where it cannot be
/// mounted, unless prerequisites are required.
fn small_disk() -> Option<SmallDisk> {
    match SmallDisk::mount("2m") {
        Ok(disk) => Some(disk),
        Err(why) => {
            missing_prerequisite(&format!("a 2 MiB tmpfs, which needs root: {why}"));
            None
        }
    }
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn full_disk_is_507_and_commits_nothing() {
    let Some(disk) = small_disk() else { return };
    let storage = FsStorage::new(&disk.path).unwrap();
    let layer = SignedUploadLayer::new(SigningKey::new("key").unwrap(), storage.clone());
    let signer = layer.signer();
    let addr = serve(layer.layer(RespondCreated)).await;
    let client = client();

    // A simple upload larger than the disk.
    let url = sign(&signer, addr, "big.bin", SignedMethod::Put);
    let answer = send(&client, put(&url, &[], bytes(3 << 20, 1))).await;
    assert_eq!(
        (answer.status.as_u16(), answer.code()),
        (507, "storage_full".into()),
        "{:?}",
        answer.body
    );
    assert!(
        !answer.body.windows(4).any(|w| w == b"/tmp"),
        "a path leaked"
    );
    assert!(!disk.path.join("big.bin").exists());
    let left: Vec<_> = files(&disk.path)
        .into_iter()
        .filter(|p| p.starts_with(disk.path.join(".uploads/tmp")))
        .collect();
    assert!(left.is_empty(), "temporaries left: {left:?}");

    // A session: a chunk that fits is kept, one that overflows counts for nothing.
    let url = sign(&signer, addr, "session.bin", SignedMethod::Put);
    let total = 3u64 << 20;
    let small = send(
        &client,
        put(
            &url,
            &[("content-range", &format!("bytes 0-1023/{total}"))],
            bytes(1024, 2),
        ),
    )
    .await;
    assert_eq!(small.status, 202, "{:?}", small.body);
    let range = format!("bytes 1024-{}/{total}", total - 1);
    let big = send(
        &client,
        put(
            &url,
            &[("content-range", &range)],
            bytes(total as usize - 1024, 3),
        ),
    )
    .await;
    assert_eq!(
        (big.status.as_u16(), big.code()),
        (507, "storage_full".into()),
        "{:?}",
        big.body
    );
    let status = send(
        &client,
        put(&url, &[("content-range", &format!("bytes */{total}"))], ""),
    )
    .await;
    assert_eq!(status.status, 308);
    assert_eq!(
        status.json()["data"]["ranges"],
        serde_json::json!([[0, 1023]])
    );
    assert!(!disk.path.join("session.bin").exists());

    // The failed chunk's bytes stay in the session's sparse data file until
    // the session completes or cleanup removes it; then the space is back.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(30 * 24 * 3600);
    let purged = storage.purge_expired(later).await.unwrap();
    assert_eq!(purged.sessions, 1, "{purged:?}");
    let url = sign(&signer, addr, "small.txt", SignedMethod::Put);
    let answer = send(&client, put(&url, &[], "still room")).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
}

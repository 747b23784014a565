//! A creation or an append cut off midway keeps the pieces that arrived
//! whole, and the client resumes from the offset `HEAD` tells, at every
//! interop version.

use std::time::Duration;

use super::{upload_offset, url_for, Draft, DRAFTS};
use crate::common::*;

const MIB: usize = 1024 * 1024;

/// Sends `head` and 9 MiB of chunked body, then breaks the connection off.
async fn cut_off(server: &StorageServer, mut raw: Vec<u8>, seed: u64) {
    for piece in bytes(9 * MIB, seed).chunks(256 * 1024) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw_cut_off(server.addr, &raw).await;
}

/// The offset once the server is done with the cut-off request (it settles
/// after the connection closed), within 5 s.
async fn settled_offset(draft: Draft, url: &str, expected: u64) -> u64 {
    let mut stored = 0;
    for _ in 0..50 {
        let answer = draft.head(url).await;
        if answer.status.as_u16() == 204 {
            stored = upload_offset(&answer);
            if stored == expected {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stored
}

async fn cut_off_creations_and_appends_keep_their_whole_pieces(storage: Store) {
    let server =
        StorageServer::start(storage, |layer| layer.body_timeout(Duration::from_secs(5))).await;
    let kept = 8 * MIB as u64;
    for draft in DRAFTS {
        // A creation of a 20 MiB upload, cut off after 9 MiB.
        let url = url_for(&server, draft, "cut.bin");
        let raw = raw_head(
            "POST",
            target(&url),
            &[
                draft.version(),
                draft.complete(false),
                ("upload-length", "20971520"),
                ("transfer-encoding", "chunked"),
            ],
        );
        cut_off(&server, raw, 6).await;
        assert_eq!(settled_offset(draft, &url, kept).await, kept, "{draft:?}");
        let last = draft.append(&url, kept, true, &bytes(12 * MIB, 7)).await;
        draft.check_completed(&last, 20 * MIB as u64);

        // An append cut off the same way.
        let url = url_for(&server, draft, "cut-append.bin");
        let created = draft.post(&url, Some(20 * MIB as u64), false, b"").await;
        assert_eq!(created.status.as_u16(), 201, "{created:?}");
        let mut headers = vec![
            draft.version(),
            draft.complete(false),
            ("upload-offset", "0"),
            ("transfer-encoding", "chunked"),
        ];
        headers.extend(draft.append_type());
        cut_off(&server, raw_head("PATCH", target(&url), &headers), 8).await;
        assert_eq!(settled_offset(draft, &url, kept).await, kept, "{draft:?}");
        let last = draft.append(&url, kept, true, &bytes(12 * MIB, 9)).await;
        draft.check_completed(&last, 20 * MIB as u64);
        let file = server
            .file(&format!("d/v{}/cut-append.bin", draft.0))
            .await
            .expect("the file");
        assert_eq!(&file[..MIB], &bytes(9 * MIB, 8)[..MIB]);
    }
}

on_every_backend! {
    cut_off_creations_and_appends_keep_their_whole_pieces => cut_off_creations_and_appends_keep_their_whole_pieces,
}

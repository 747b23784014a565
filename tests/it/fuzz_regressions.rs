//! Bugs the fuzz targets and their proptest twins found, each pinned over the
//! public API on every backend (the inputs that found them are kept under
//! `fuzz/regressions/<target>/`).

use std::time::Duration;

use crate::common::*;
use http::{Method, Uri};
use tower_signed_upload::storage::MemoryStorage;
use tower_signed_upload::{SignedMethod, SignedUploadLayer, SigningKey, UploadPath, UrlOptions};

on_every_backend! {
    refused_conflicting_chunk_past_the_stored_end_leaves_no_bytes_behind => case_conflict_past_the_end,
}

/// `upload_session` (found by its proptest twin): a chunk with a total of `*`
/// that reaches past every stored byte and is refused with `409
/// range_conflict` must count for nothing. MemoryStorage grew its buffer to
/// the chunk's end before comparing the overlap, so the file committed later
/// (at a smaller total) carried trailing zero bytes no client sent and a
/// `filesize` larger than its total.
async fn case_conflict_past_the_end(storage: Store) {
    let server = StorageServer::start(storage, |layer| layer).await;
    let client = client();
    let data = bytes(6, 1);
    let url = server.put_url("a.bin", &UrlOptions::new());
    let answer = send(&client, range_put(&url, &data, 0, 3, None, &[])).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    // Bytes 2-7, the first of them changed: a conflict over [2, 3], reaching to 7.
    let mut changed = data.clone();
    changed[2] ^= 0xff;
    changed.extend_from_slice(b"xy");
    let answer = send(&client, range_put(&url, &changed, 2, 7, None, &[])).await;
    assert_rejected(&answer, 409, "range_conflict", "PUT", "/a.bin");
    let (ranges, received) = session_progress(&client, &url).await;
    assert_eq!((ranges, received), (serde_json::json!([[0, 3]]), 4));
    let answer = send(&client, range_put(&url, &data, 4, 5, Some(6), &[])).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(answer.json()["data"]["filesize"], 6, "{:?}", answer.body);
    assert_eq!(server.file("a.bin").await, Some(data));
    assert_eq!(server.calls(), 1);
}

/// `signed_url`: MIME names may hold `&` and `#` (RFC 6838), and the signer
/// wrote the `type` value raw, so `image/a&b` ended the parameter and the URL
/// it minted was refused `400 query_invalid` (a `#` would have cut the query).
/// The value is now written with those two percent-encoded, which the
/// verifier decodes back to the same rule.
#[test]
fn a_type_with_ampersand_or_hash_signs_a_url_that_verifies() {
    let layer = SignedUploadLayer::new(SigningKey::new(KEY).unwrap(), MemoryStorage::new())
        .clock(TestClock::at(NOW));
    let path = UploadPath::new("a.bin").unwrap();
    for types in ["e/a&b", "a#b/*", "image/png,x&y/z#w"] {
        let options = UrlOptions::new().types(types).unwrap();
        let url = layer
            .signer()
            .sign_with(&path, SignedMethod::Put, Duration::from_secs(60), &options)
            .unwrap();
        let target = url.path_and_query();
        assert!(!target.contains('#'), "{target}");
        let uri: Uri = target.parse().unwrap();
        assert_eq!(
            layer.verify(&Method::PUT, &uri),
            Ok(path.clone()),
            "{target}"
        );
    }
}

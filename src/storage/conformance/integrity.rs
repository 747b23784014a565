//! Range conflicts, `Repr-Digest`, whole-file digests and refused commits.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future;

use super::*;
use crate::storage::{
    ChunkOptions, ChunkRange, CommitRefused, CompleteOptions, DigestSet, MakeRecord, ReprDigest,
    Session, SessionStatus, Storage, StorageError,
};

/// Runs every check against one store.
async fn write(
    storage: &dyn Storage,
    session: &Session,
    range: ChunkRange,
    options: &ChunkOptions,
    bytes: &[u8],
) -> Result<SessionStatus, StorageError> {
    storage
        .write_chunk(session, range, options, body(&[bytes]))
        .await
}

/// A resent range must carry the stored bytes: identical resends are accepted,
/// changed ones (whole or partly overlapping) are `RangeConflict`, count for
/// nothing, and leave the stored bytes as they were.
pub async fn check_range_conflicts(storage: &dyn Storage) {
    let session = live_session(20, "conformance/conflict/file.bin");
    let options = ChunkOptions::new(100);
    write(storage, &session, chunk(0, 4, Some(15)), &options, b"01234")
        .await
        .expect("first chunk");
    write(storage, &session, chunk(0, 4, Some(15)), &options, b"01234")
        .await
        .expect("identical resend");
    let changed = write(storage, &session, chunk(0, 4, None), &options, b"01x34").await;
    assert!(
        matches!(changed, Err(StorageError::RangeConflict)),
        "{changed:?}"
    );
    // Overlaps the stored [0, 4] with a changed byte at 4, and brings new bytes 5..9.
    let partly = write(storage, &session, chunk(3, 9, None), &options, b"3X56789").await;
    assert!(
        matches!(partly, Err(StorageError::RangeConflict)),
        "{partly:?}"
    );
    assert_eq!(
        progress(&storage.status(&session).await.expect("status")),
        (Some(15), vec![[0, 4]])
    );
    // The same overlap with the right bytes is accepted and stores the new ones.
    write(storage, &session, chunk(3, 9, None), &options, b"3456789")
        .await
        .expect("overlap with equal bytes");
    write(storage, &session, chunk(10, 14, None), &options, b"abcde")
        .await
        .expect("last chunk");
    let calls = Arc::new(AtomicUsize::new(0));
    let status = storage
        .complete(&session, &CompleteOptions::default(), make_record(&calls))
        .await
        .expect("complete");
    assert!(
        matches!(status, SessionStatus::Completed(ref c) if c.fresh),
        "{status:?}"
    );
    assert_eq!(
        read_all(storage, "conformance/conflict/file.bin")
            .await
            .expect("reads"),
        b"0123456789abcde"
    );
}

/// Of overlapping chunks that race with different bytes, the recorded range
/// holds its own bytes, and a loser counts for nothing.
pub async fn check_racing_conflicts_keep_one_version(storage: &dyn Storage) {
    for round in 0..8u64 {
        let file = format!("conformance/conflict/race-{round}.bin");
        let session = live_session(40 + round, &file);
        let options = ChunkOptions::new(100);
        let versions: Vec<Vec<u8>> = (0..4u8).map(|v| vec![b'a' + v; 64 * 1024]).collect();
        let results = future::join_all(versions.iter().map(|bytes| {
            write(
                storage,
                &session,
                chunk(0, bytes.len() as u64 - 1, Some(bytes.len() as u64)),
                &options,
                bytes,
            )
        }))
        .await;
        let stored: Vec<_> = results.iter().filter(|r| r.is_ok()).collect();
        assert!(
            !stored.is_empty(),
            "round {round}: every version failed: {results:?}"
        );
        for result in &results {
            assert!(
                matches!(result, Ok(_) | Err(StorageError::RangeConflict)),
                "round {round}: {result:?}"
            );
        }
        let calls = Arc::new(AtomicUsize::new(0));
        storage
            .complete(&session, &CompleteOptions::default(), make_record(&calls))
            .await
            .expect("complete");
        let bytes = read_all(storage, &file).await.expect("reads");
        let winners: Vec<_> = results
            .iter()
            .zip(&versions)
            .filter(|(result, _)| result.is_ok())
            .map(|(_, version)| version)
            .collect();
        assert!(
            winners.iter().all(|version| **version == bytes),
            "round {round}: the file mixes versions or holds a refused one"
        );
    }
}

/// The first `Repr-Digest` is kept with the session, a different one is
/// `DigestConflict`, and the commit sees the kept one and the digests asked for.
pub async fn check_repr_digest_and_file_digests(storage: &dyn Storage) {
    use sha2::Digest as _;
    let session = live_session(21, "conformance/digest/file.bin");
    let kept = "sha-256=:LCa0a2j/xo/5m0U8HTBBNBNCLXBkg7+g+YpeiGJm564=:";
    write(
        storage,
        &session,
        chunk(0, 2, Some(5)),
        &ChunkOptions::new(100).repr_digest(ReprDigest::parse(kept).expect("a valid digest")),
        b"hel",
    )
    .await
    .expect("first chunk");
    let status = storage.status(&session).await.expect("status");
    assert!(
        matches!(&status, SessionStatus::InProgress { repr_digest: Some(d), .. } if d.to_string() == kept),
        "status reports the kept Repr-Digest: {status:?}"
    );
    let other = "sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:";
    let conflict = write(
        storage,
        &session,
        chunk(3, 4, None),
        &ChunkOptions::new(100).repr_digest(ReprDigest::parse(other).expect("a valid digest")),
        b"lo",
    )
    .await;
    assert!(
        matches!(conflict, Err(StorageError::DigestConflict)),
        "{conflict:?}"
    );
    write(
        storage,
        &session,
        chunk(3, 4, None),
        &ChunkOptions::new(100),
        b"lo",
    )
    .await
    .expect("chunk without Repr-Digest");
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record: MakeRecord = {
        let seen = Arc::clone(&seen);
        Box::new(move |info| {
            *seen.lock().expect("unpoisoned") = Some(info.clone());
            Ok(Bytes::from_static(b"record"))
        })
    };
    let options = CompleteOptions::new(DigestSet {
        sha256: false,
        sha512: true,
    });
    storage
        .complete(&session, &options, record)
        .await
        .expect("complete");
    let info = seen
        .lock()
        .expect("unpoisoned")
        .take()
        .expect("make_record was called");
    assert_eq!(
        info.repr_digest.map(|d| d.to_string()).as_deref(),
        Some(kept)
    );
    // sha-256 because the kept Repr-Digest names it; sha-512 because it was asked for.
    assert_eq!(
        info.digests.sha256.map(|d| d.to_vec()),
        Some(sha2::Sha256::digest(b"hello").to_vec())
    );
    assert_eq!(
        info.digests.sha512,
        Some(sha2::Sha512::digest(b"hello").to_vec())
    );
}

/// A refused commit commits nothing and discards the session; `discard`
/// removes an incomplete session and leaves a completed one.
pub async fn check_refused_commit_and_discard(storage: &dyn Storage) {
    let session = live_session(22, "conformance/refused/file.bin");
    let options = ChunkOptions::new(100);
    write(storage, &session, chunk(0, 3, Some(4)), &options, b"zip!")
        .await
        .expect("chunk");
    let refuse: MakeRecord = Box::new(|_| Err(CommitRefused));
    let result = storage
        .complete(&session, &CompleteOptions::default(), refuse)
        .await;
    assert!(
        matches!(result, Err(StorageError::CommitRefused)),
        "{result:?}"
    );
    assert!(matches!(
        read_all(storage, "conformance/refused/file.bin").await,
        Err(StorageError::NotFound)
    ));
    assert_eq!(
        progress(&storage.status(&session).await.expect("status")),
        (None, vec![])
    );
    // The same URL starts afresh.
    write(storage, &session, chunk(0, 3, Some(4)), &options, b"good")
        .await
        .expect("fresh start");
    storage.discard(&session).await.expect("discard");
    assert_eq!(
        progress(&storage.status(&session).await.expect("status")),
        (None, vec![])
    );
    storage
        .discard(&session)
        .await
        .expect("discarding nothing succeeds");
    write(storage, &session, chunk(0, 3, Some(4)), &options, b"good")
        .await
        .expect("fresh start again");
    let calls = Arc::new(AtomicUsize::new(0));
    storage
        .complete(&session, &CompleteOptions::default(), make_record(&calls))
        .await
        .expect("complete");
    storage
        .discard(&session)
        .await
        .expect("discard after completion");
    let status = storage.status(&session).await.expect("status");
    assert!(matches!(status, SessionStatus::Completed(_)), "{status:?}");
    assert_eq!(
        read_all(storage, "conformance/refused/file.bin")
            .await
            .expect("reads"),
        b"good"
    );
}

//! Concatenation: the bytes of complete parts, in order, made a session's
//! (tus `Upload-Concat: final`).

use super::*;
use crate::storage::{
    ChunkOptions, ConcatOptions, OpenOptions, SessionStatus, Storage, StorageError,
};

/// A part opened with `data.len()` bytes and given them in pieces of at most
/// `piece`, the last piece first.
async fn stored_part(
    storage: &dyn Storage,
    number: u64,
    file: &str,
    data: &[u8],
    piece: usize,
) -> Session {
    let part = live_session(number, file);
    let total = data.len() as u64;
    storage
        .open(&part, &OpenOptions::new().total(total))
        .await
        .expect("opens a part");
    let options = ChunkOptions::new(64);
    let mut starts: Vec<usize> = (0..data.len()).step_by(piece.max(1)).collect();
    starts.reverse();
    for start in starts {
        let end = (start + piece).min(data.len());
        storage
            .write_chunk(
                &part,
                chunk(start as u64, end as u64 - 1, Some(total)),
                &options,
                body(&[&data[start..end]]),
            )
            .await
            .expect("a part's chunk");
    }
    part
}

fn metadata_of(status: &SessionStatus) -> Option<String> {
    match status {
        SessionStatus::InProgress { metadata, .. } => metadata.clone(),
        SessionStatus::Completed(_) => panic!("the session completed: {status:?}"),
    }
}

/// Complete parts, in order, become the session's bytes, with their sum as
/// its total and the options' metadata; nothing is at the path until the
/// session completes, exactly once, however many concatenations and
/// completions race; the parts stay as they were.
pub async fn check_concat_makes_the_parts_the_file(storage: &dyn Storage) {
    let file = "conformance/concat/whole.bin";
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let parts = vec![
        stored_part(storage, 70, file, &data[..20_000], 6_000).await,
        stored_part(storage, 71, file, &data[20_000..20_000], 1).await,
        stored_part(storage, 72, file, &data[20_000..20_001], 1).await,
        stored_part(storage, 73, file, &data[20_001..], 10_000).await,
    ];
    let session = live_session(74, file);
    let options = ConcatOptions::new(64).metadata("filename d2hvbGUuYmlu");
    let statuses =
        futures_util::future::join_all((0..3).map(|_| storage.concat(&session, &parts, &options)))
            .await;
    for status in statuses {
        let status = status.expect("concatenates");
        assert_eq!(progress(&status), (Some(50_000), vec![[0, 49_999]]));
        assert_eq!(
            metadata_of(&status).as_deref(),
            Some("filename d2hvbGUuYmlu")
        );
    }
    assert!(
        matches!(read_all(storage, file).await, Err(StorageError::NotFound)),
        "nothing at the path before the completion"
    );
    for part in &parts[..1] {
        let status = storage.status(part).await.expect("status");
        assert_eq!(
            progress(&status),
            (Some(20_000), vec![[0, 19_999]]),
            "the part stays"
        );
    }

    let calls = Arc::new(AtomicUsize::new(0));
    let completions = futures_util::future::join_all(
        (0..3)
            .map(|_| storage.complete(&session, &CompleteOptions::default(), make_record(&calls))),
    )
    .await;
    let mut fresh = 0;
    for completion in completions {
        if expect_completed(completion).await.fresh {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "one completion commits");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(read_all(storage, file).await.expect("reads"), data);

    let again = storage.concat(&session, &parts, &options).await;
    assert!(
        matches!(&again, Ok(SessionStatus::Completed(done)) if !done.fresh),
        "concatenation after completion: {again:?}"
    );
}

/// A part with bytes missing, no total, or never opened is refused, and the
/// session is left as it was.
pub async fn check_concat_refuses_incomplete_parts(storage: &dyn Storage) {
    let file = "conformance/concat/incomplete.bin";
    let whole = stored_part(storage, 75, file, b"abcd", 4).await;
    let gap = live_session(76, file);
    storage
        .open(&gap, &OpenOptions::new().total(4))
        .await
        .expect("opens");
    storage
        .write_chunk(
            &gap,
            chunk(2, 3, Some(4)),
            &ChunkOptions::new(8),
            body(&[b"cd"]),
        )
        .await
        .expect("a chunk");
    let deferred = live_session(77, file);
    storage
        .open(&deferred, &OpenOptions::new())
        .await
        .expect("opens");
    storage
        .write_chunk(
            &deferred,
            chunk(0, 1, None),
            &ChunkOptions::new(8),
            body(&[b"ab"]),
        )
        .await
        .expect("a chunk");
    let never = live_session(78, file);
    let session = live_session(79, file);
    for bad in [&gap, &deferred, &never] {
        let refused = storage
            .concat(
                &session,
                &[whole.clone(), bad.clone()],
                &ConcatOptions::new(8),
            )
            .await;
        assert!(
            matches!(refused, Err(StorageError::PartIncomplete)),
            "{bad:?}: {refused:?}"
        );
    }
    let status = storage.status(&session).await.expect("status");
    assert!(
        matches!(&status, SessionStatus::InProgress { opened: false, .. }),
        "the session is untouched: {status:?}"
    );
}

/// A session already holding other bytes, or another total, refuses the
/// parts' bytes; parts that are all empty make the empty file.
pub async fn check_concat_conflicts_and_the_empty_file(storage: &dyn Storage) {
    let file = "conformance/concat/conflict.bin";
    let part = stored_part(storage, 80, file, b"abcd", 2).await;
    let written = live_session(81, file);
    storage
        .write_chunk(
            &written,
            chunk(0, 1, Some(4)),
            &ChunkOptions::new(8),
            body(&[b"zz"]),
        )
        .await
        .expect("a chunk");
    let refused = storage
        .concat(
            &written,
            std::slice::from_ref(&part),
            &ConcatOptions::new(8),
        )
        .await;
    assert!(
        matches!(refused, Err(StorageError::RangeConflict)),
        "{refused:?}"
    );
    let sized = live_session(82, file);
    storage
        .open(&sized, &OpenOptions::new().total(5))
        .await
        .expect("opens");
    let refused = storage
        .concat(&sized, std::slice::from_ref(&part), &ConcatOptions::new(8))
        .await;
    assert!(
        matches!(refused, Err(StorageError::TotalMismatch)),
        "{refused:?}"
    );

    let empty_file = "conformance/concat/empty.bin";
    let empty = stored_part(storage, 83, empty_file, b"", 1).await;
    let session = live_session(84, empty_file);
    let status = storage
        .concat(&session, &[empty.clone(), empty], &ConcatOptions::new(8))
        .await
        .expect("concatenates");
    assert_eq!(progress(&status), (Some(0), vec![]));
    complete_default(storage, &session).await;
    assert_eq!(read_all(storage, empty_file).await.expect("reads"), b"");
}

//! Concatenation by the kernel's copy: one journal entry, nothing left in the
//! temporary folder, and a copy that fails or is cut off midway leaves the
//! session without a counted byte and the parts usable for a retry.

use super::*;
use crate::storage::conformance::{chunk, live_session};
use crate::storage::fs::concat::{copy_parts, Concat};
use crate::storage::fs::journal::{read_journal, ENTRY_LEN};
use crate::storage::fs::paths::{DATA, JOURNAL};
use crate::storage::fs::writers::register_writer;
use crate::storage::{ChunkOptions, ConcatOptions, OpenOptions, SessionStatus};

const FILE: &str = "concat/whole.bin";

fn data() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect()
}

/// Two complete parts holding `data[..100_000]` and the rest.
async fn parts(storage: &FsStorage, data: &[u8]) -> Vec<Session> {
    let mut parts = Vec::new();
    for (number, bytes) in [(1, &data[..100_000]), (2, &data[100_000..])] {
        let part = live_session(number, FILE);
        let total = bytes.len() as u64;
        storage
            .open(&part, &OpenOptions::new().total(total))
            .await
            .expect("opens a part");
        storage
            .write_chunk(
                &part,
                chunk(0, total - 1, Some(total)),
                &ChunkOptions::new(64),
                body(&[bytes]),
            )
            .await
            .expect("a part's bytes");
        parts.push(part);
    }
    parts
}

fn received(status: &SessionStatus) -> u64 {
    match status {
        SessionStatus::InProgress { ranges, .. } => ranges.received(),
        SessionStatus::Completed(_) => panic!("completed: {status:?}"),
    }
}

/// The journal's entries: how many, and whether the first carries a digest.
fn entries(dir: &Path) -> (u64, bool) {
    let file = fs::File::open(dir.join(JOURNAL)).expect("journal");
    let journal = read_journal(&file).expect("readable");
    let first = journal.digest_of(chunk(0, 299_999, Some(300_000)));
    (journal.len / ENTRY_LEN as u64, first.is_some())
}

#[tokio::test]
async fn the_parts_become_the_data_file_in_one_entry() {
    let (_folder, storage) = storage();
    let data = data();
    let parts = parts(&storage, &data).await;
    let session = live_session(9, FILE);
    let status = storage
        .concat(&session, &parts, &ConcatOptions::new(64))
        .await
        .expect("concatenates");
    assert_eq!(received(&status), 300_000);
    let dir = session_dir(&storage, &session);
    assert_eq!(fs::read(dir.join(DATA)).expect("data"), data);
    // One entry, recorded without hashing the bytes again.
    assert_eq!(entries(&dir), (1, false));
    assert_eq!(temporaries(&storage), 0);
    // The parts stay as they were.
    for part in &parts {
        let status = storage.status(part).await.expect("a part's status");
        assert!(received(&status) > 0);
    }
    // Again: the session holds the bytes, so they are compared, not copied.
    let again = storage
        .concat(&session, &parts, &ConcatOptions::new(64))
        .await
        .expect("an identical concatenation");
    assert_eq!(received(&again), 300_000);
    assert_eq!(entries(&dir).0, 1);
    storage
        .complete(
            &session,
            &CompleteOptions::default(),
            conformance::make_record(&Default::default()),
        )
        .await
        .expect("completes");
    assert_eq!(fs::read(storage.root().join(FILE)).expect("the file"), data);
}

#[tokio::test]
async fn a_copy_that_fails_midway_counts_nothing_and_a_retry_succeeds() {
    let (_folder, storage) = storage();
    let data = data();
    let parts = parts(&storage, &data).await;
    // The second part's data file lost its end: the copy fails after the
    // first part was copied.
    let second = session_dir(&storage, &parts[1]).join(DATA);
    let whole = fs::read(&second).expect("part data");
    fs::File::options()
        .write(true)
        .open(&second)
        .expect("open")
        .set_len(50_000)
        .expect("truncate");
    let session = live_session(9, FILE);
    let result = storage
        .concat(&session, &parts, &ConcatOptions::new(64))
        .await;
    assert!(
        matches!(result, Err(StorageError::Other { .. })),
        "{result:?}"
    );
    let status = storage.status(&session).await.expect("status");
    assert_eq!(received(&status), 0);
    assert_eq!(temporaries(&storage), 0);
    // The parts were only read: with the second made whole again, a retry
    // assembles the file.
    fs::write(&second, &whole).expect("restore");
    let status = storage
        .concat(&session, &parts, &ConcatOptions::new(64))
        .await
        .expect("the retry");
    assert_eq!(received(&status), 300_000);
    assert_eq!(
        fs::read(session_dir(&storage, &session).join(DATA)).expect("data"),
        data
    );
}

#[tokio::test]
async fn a_concat_cut_off_before_its_entry_counts_nothing_and_a_retry_succeeds() {
    let (_folder, storage) = storage();
    let data = data();
    let parts = parts(&storage, &data).await;
    let session = live_session(9, FILE);
    storage
        .open(&session, &OpenOptions::new().total(300_000))
        .await
        .expect("opens");
    let dir = session_dir(&storage, &session);
    let sources: Vec<_> = parts
        .iter()
        .zip([100_000, 200_000])
        .map(|(part, len)| (session_dir(&storage, part).join(DATA), len))
        .collect();
    let tmp = storage.root().join(HIDDEN).join(TMP);
    // A crash midway through a copy: a partial copy in the temporary
    // folder, nothing in the session.
    fs::write(tmp.join("concat-0123.part"), &data[..1000]).expect("leftover");
    // A crash between the rename and the journal entry: the session's data
    // file holds the bytes, but no entry counts them.
    let copy = copy_parts(&tmp, &sources[..1], 300_000);
    assert!(copy.is_err(), "a copy shorter than the total fails");
    let copy = copy_parts(&tmp, &sources, 300_000).expect("copies");
    fs::rename(tmp.join(copy_path(&tmp)), dir.join(DATA)).expect("rename");
    drop(copy);
    let status = storage.status(&session).await.expect("status");
    assert_eq!(received(&status), 0);
    let status = storage
        .concat(&session, &parts, &ConcatOptions::new(64))
        .await
        .expect("the retry");
    assert_eq!(received(&status), 300_000);
    assert_eq!(fs::read(dir.join(DATA)).expect("data"), data);
    assert_eq!(entries(&dir), (1, false));
}

/// The one copy in `tmp` besides the crash leftover.
fn copy_path(tmp: &Path) -> PathBuf {
    fs::read_dir(tmp)
        .expect("tmp")
        .map(|entry| entry.expect("entry").file_name())
        .find(|name| name != "concat-0123.part")
        .map(PathBuf::from)
        .expect("the copy")
}

#[tokio::test]
async fn a_writer_in_flight_sends_the_concat_the_generic_way() {
    let (_folder, storage) = storage();
    let data = data();
    let parts = parts(&storage, &data).await;
    let session = live_session(9, FILE);
    let dir = session_dir(&storage, &session);
    storage
        .open(&session, &OpenOptions::new().total(300_000))
        .await
        .expect("opens");
    // A chunk writer of the session is streaming (it holds its marker).
    let (marker, _) = register_writer(&dir, chunk(0, 9, Some(300_000))).expect("a writer");
    let fast = crate::storage::fs::concat::concat_files(
        &storage,
        &session,
        &parts,
        &ConcatOptions::new(64),
    )
    .await
    .expect("no failure");
    assert!(matches!(fast, Concat::Generic), "{fast:?}");
    assert_eq!(temporaries(&storage), 0);
    // Through write_chunk: the entry carries the bytes' digest.
    let status = storage
        .concat(&session, &parts, &ConcatOptions::new(64))
        .await
        .expect("concatenates");
    drop(marker);
    assert_eq!(received(&status), 300_000);
    assert_eq!(entries(&dir), (1, true));
    assert_eq!(fs::read(dir.join(DATA)).expect("data"), data);
}

#[test]
fn a_copy_of_several_slices_holds_every_part_in_order() {
    let (folder, _storage) = storage();
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i % 253) as u8).collect();
    let first = folder.path().join("first");
    let second = folder.path().join("second");
    fs::write(&first, &big).expect("first");
    // Longer than its part: only the part's length is copied.
    fs::write(&second, [&big[..], b"tail"].concat()).expect("second");
    let tmp = folder.path().join("copies");
    let len = big.len() as u64;
    let copy = copy_parts(&tmp, &[(first, len), (second, len)], 2 * len).expect("copies");
    let name = fs::read_dir(&tmp)
        .expect("tmp")
        .next()
        .expect("the copy")
        .expect("entry")
        .path();
    assert_eq!(
        fs::read(&name).expect("copy"),
        [&big[..], &big[..]].concat()
    );
    drop(copy);
    assert!(!name.exists(), "a copy never installed is removed");
}

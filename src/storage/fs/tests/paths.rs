//! Where files and sessions go, and the paths that are refused.

use super::*;
use crate::storage::conformance::{chunk, complete_default, live_session, make_record, path};
use crate::storage::fs::file::etag_of;
use crate::storage::fs::journal::ENTRY_LEN;
use crate::storage::fs::paths::{DATA, DATA_LOCK, JOURNAL, LOCK, META, RECORD};
use crate::storage::fs::session::decode_expiry;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_puts_files_at_their_path_and_sessions_in_hidden_folder() {
    let (folder, storage) = storage();
    let root = folder.path();
    storage
        .put(&path("a/b/simple.txt"), body(&[b"simple"]))
        .await
        .expect("put");
    assert_eq!(
        fs::read(root.join("a/b/simple.txt")).expect("file"),
        b"simple"
    );
    assert_eq!(temporaries(&storage), 0);

    let session = live_session(1, "a/chunked.bin");
    let dir = session_dir(&storage, &session);
    assert_eq!(dir, root.join(".uploads").join(session.id()));
    storage
        .write_chunk(
            &session,
            chunk(0, 2, Some(6)),
            &ChunkOptions::new(10),
            body(&[b"abc"]),
        )
        .await
        .expect("chunk");
    for name in [DATA, JOURNAL, LOCK, META, DATA_LOCK] {
        assert!(dir.join(name).exists(), "{name} missing");
    }
    assert_eq!(
        fs::metadata(dir.join(JOURNAL)).expect("journal").len(),
        ENTRY_LEN as u64
    );
    let expiry = fs::read_to_string(dir.join(META)).expect("meta");
    assert_eq!(decode_expiry(&expiry), Some(session.expires()));
    assert!(!root.join("a/chunked.bin").exists());

    storage
        .write_chunk(
            &session,
            chunk(3, 5, None),
            &ChunkOptions::new(10),
            body(&[b"def"]),
        )
        .await
        .expect("chunk");
    let data_inode = fs::metadata(dir.join(DATA)).expect("data").ino();
    let completion = complete_default(&storage, &session).await;
    assert!(completion.fresh);
    assert!(dir.join(RECORD).exists());
    assert!(!dir.join(DATA).exists());
    let committed = fs::metadata(root.join("a/chunked.bin")).expect("committed");
    assert_eq!(committed.ino(), data_inode, "renamed, not copied");
    assert_eq!(etag_of(&committed), completion.etag);
    assert_eq!(
        fs::read(root.join("a/chunked.bin")).expect("file"),
        b"abcdef"
    );
}

#[tokio::test]
async fn reserved_folder_is_refused() {
    let (folder, storage) = storage();
    for name in [".uploads/tmp/x", ".uploads/evil", ".UPLOADS/x", ".uploads"] {
        let reserved = path(name);
        assert!(matches!(
            storage.put(&reserved, body(&[b"x"])).await,
            Err(StorageError::InvalidPath)
        ));
        assert!(matches!(
            storage.read(&reserved, None).await,
            Err(StorageError::InvalidPath)
        ));
        assert!(matches!(
            storage.head(&reserved).await,
            Err(StorageError::InvalidPath)
        ));
        let session = live_session(2, name);
        assert!(matches!(
            storage
                .write_chunk(
                    &session,
                    chunk(0, 0, Some(1)),
                    &ChunkOptions::new(10),
                    body(&[b"x"])
                )
                .await,
            Err(StorageError::InvalidPath)
        ));
        let calls = Arc::new(AtomicUsize::new(0));
        assert!(matches!(
            storage
                .complete(&session, &CompleteOptions::default(), make_record(&calls))
                .await,
            Err(StorageError::InvalidPath)
        ));
    }
    assert!(!folder.path().join(".uploads/evil").exists());
    // Names that merely start like the hidden folder are fine.
    storage
        .put(&path(".uploads2/x"), body(&[b"x"]))
        .await
        .expect("put");
}

#[tokio::test]
async fn unsafe_session_ids_are_refused() {
    let (_folder, storage) = storage();
    for id in ["", "tmp", "../x", "a/b", "a.b"] {
        let session = Session::new(id.to_owned(), path("x"), SystemTime::now());
        assert!(matches!(
            storage.status(&session).await,
            Err(StorageError::InvalidPath)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_escape_is_refused() {
    let (folder, storage) = storage();
    let outside = tempfile::tempdir().expect("outside dir");
    fs::write(outside.path().join("secret"), b"secret").expect("secret");
    std::os::unix::fs::symlink(outside.path(), folder.path().join("link")).expect("link");
    std::os::unix::fs::symlink(
        outside.path().join("secret"),
        folder.path().join("file-link"),
    )
    .expect("file link");

    for name in ["link/x.txt", "link/deeper/x.txt", "file-link"] {
        let result = storage.put(&path(name), body(&[b"pwned"])).await;
        assert!(
            matches!(result, Err(StorageError::InvalidPath)),
            "{name}: {result:?}"
        );
    }
    for name in ["link/secret", "file-link"] {
        assert!(matches!(
            storage.read(&path(name), None).await,
            Err(StorageError::InvalidPath)
        ));
        assert!(matches!(
            storage.head(&path(name)).await,
            Err(StorageError::InvalidPath)
        ));
    }

    let session = live_session(3, "link/chunked.txt");
    storage
        .write_chunk(
            &session,
            chunk(0, 4, Some(5)),
            &ChunkOptions::new(10),
            body(&[b"pwned"]),
        )
        .await
        .expect("chunks are staged inside the root");
    let calls = Arc::new(AtomicUsize::new(0));
    assert!(matches!(
        storage
            .complete(&session, &CompleteOptions::default(), make_record(&calls))
            .await,
        Err(StorageError::InvalidPath)
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let mut names: Vec<_> = fs::read_dir(outside.path())
        .expect("outside")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["secret"]);
    assert_eq!(
        fs::read(outside.path().join("secret")).expect("secret"),
        b"secret"
    );
    assert_eq!(temporaries(&storage), 0);
}

//! Where files and sessions go, and the paths that are refused.

use super::*;
use crate::storage::conformance::{chunk, complete_default, live_session, make_record, path};
use crate::storage::fs::file::etag_of;
use crate::storage::fs::journal::ENTRY_LEN;
use crate::storage::fs::paths::{check_destination, DATA, DATA_LOCK, JOURNAL, LOCK, META, RECORD};
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

    // Refused at the first chunk, before a session exists.
    let session = live_session(3, "link/chunked.txt");
    let result = storage
        .write_chunk(
            &session,
            chunk(0, 4, Some(5)),
            &ChunkOptions::new(10),
            body(&[b"pwned"]),
        )
        .await;
    assert!(
        matches!(result, Err(StorageError::InvalidPath)),
        "{result:?}"
    );
    assert!(!session_dir(&storage, &session).exists());

    // A link that appears after the chunks is refused at completion.
    let session = live_session(4, "later/chunked.txt");
    storage
        .write_chunk(
            &session,
            chunk(0, 4, Some(5)),
            &ChunkOptions::new(10),
            body(&[b"pwned"]),
        )
        .await
        .expect("chunks are staged inside the root");
    std::os::unix::fs::symlink(outside.path(), folder.path().join("later")).expect("link");
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

/// A put and a first chunk for `name`; both must be refused with
/// `InvalidPath`, leaving no session folder and no temporary file.
async fn assert_refused_at_once(storage: &FsStorage, name: &str, seed: u64) {
    let result = storage.put(&path(name), body(&[b"bytes"])).await;
    assert!(
        matches!(result, Err(StorageError::InvalidPath)),
        "put {name}: {result:?}"
    );
    let session = live_session(seed, name);
    let result = storage
        .write_chunk(
            &session,
            chunk(0, 4, Some(10)),
            &ChunkOptions::new(10),
            body(&[b"bytes"]),
        )
        .await;
    assert!(
        matches!(result, Err(StorageError::InvalidPath)),
        "chunk {name}: {result:?}"
    );
    assert!(
        !session_dir(storage, &session).exists(),
        "{name}: a session was left behind"
    );
    assert_eq!(temporaries(storage), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_inside_the_root_is_refused_at_the_first_chunk() {
    let (folder, storage) = storage();
    let root = folder.path();
    fs::create_dir(root.join("real")).expect("real");
    fs::write(root.join("real/file.txt"), b"real").expect("file");
    std::os::unix::fs::symlink(root.join("real"), root.join("alias")).expect("link");
    std::os::unix::fs::symlink(root.join("real/file.txt"), root.join("file-alias"))
        .expect("file link");
    assert_refused_at_once(&storage, "alias/x.png", 10).await;
    assert_refused_at_once(&storage, "alias/deeper/x.png", 11).await;
    assert_refused_at_once(&storage, "file-alias", 12).await;
    assert_eq!(fs::read(root.join("real/file.txt")).expect("file"), b"real");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_where_a_folder_is_needed_is_refused_at_the_first_chunk() {
    let (folder, storage) = storage();
    fs::write(folder.path().join("a.txt"), b"file").expect("a.txt");
    assert_refused_at_once(&storage, "a.txt/b.png", 13).await;
    assert_refused_at_once(&storage, "a.txt/deeper/b.png", 14).await;
    assert_eq!(
        fs::read(folder.path().join("a.txt")).expect("a.txt"),
        b"file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_where_the_file_goes_is_refused_at_the_first_chunk() {
    let (folder, storage) = storage();
    fs::create_dir_all(folder.path().join("photos/2024")).expect("folders");
    assert_refused_at_once(&storage, "photos/2024", 15).await;
    assert_refused_at_once(&storage, "photos", 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_folders_and_files_pass_the_admission_check() {
    let (folder, storage) = storage();
    let root = folder.path();
    fs::create_dir_all(root.join("a/b")).expect("folders");
    fs::write(root.join("a/b/old.txt"), b"old").expect("old");
    for name in ["a/b/old.txt", "a/b/new.txt", "a/b/c/d/new.txt", "top.txt"] {
        check_destination(root, &path(name)).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    storage
        .put(&path("a/b/old.txt"), body(&[b"new"]))
        .await
        .expect("an existing file is replaced");
    assert_eq!(fs::read(root.join("a/b/old.txt")).expect("file"), b"new");
}

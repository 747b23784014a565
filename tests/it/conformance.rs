//! The public storage conformance suite (`storage::conformance`, feature
//! `conformance`), run against the crate's own backends exactly as a
//! third-party backend runs it: one call on a fresh store. The S3 run is in
//! `tests/object_store.rs`, beside the moto server it needs.

use tower_signed_upload::storage::{conformance, MemoryStorage};

#[tokio::test]
async fn memory_storage_passes_conformance() {
    conformance::run(&MemoryStorage::new()).await;
}

#[cfg(all(feature = "fs", unix))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_storage_passes_conformance() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let storage = tower_signed_upload::storage::FsStorage::new(folder.path()).expect("storage");
    conformance::run(&storage).await;
}

#[cfg(feature = "object-store")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_storage_passes_conformance_in_memory() {
    let store = std::sync::Arc::new(object_store::memory::InMemory::new());
    let storage = tower_signed_upload::storage::ObjectStoreStorage::new(store, "site/uploads");
    conformance::run(&storage).await;
}

//! Storage failures as the client sees them (docs/protocol.md#status-codes): `507
//! storage_full`, `500`/`503 storage_error`, with nothing of the backend's
//! error in the answer.

use std::ops::RangeInclusive;
use std::time::SystemTime;

use crate::common::*;
use bytes::Bytes;
use tower_layer::Layer;
use tower_signed_upload::storage::{
    BoxFuture, ByteStream, ChunkOptions, ChunkRange, CompleteOptions, ConcatOptions, FileMeta,
    FileRead, MakeRecord, MemoryStorage, OpenOptions, PurgeReport, Session, SessionStatus, Storage,
    StorageError,
};
use tower_signed_upload::{SignedMethod, SignedUploadLayer, SigningKey, UploadPath};

/// The internal detail a backend error carries; it must never reach a client.
const SECRET_DETAIL: &str = "disk /dev/sdz1 at 10.0.0.7 refused: EACCES";

#[derive(Debug, Clone, Copy)]
enum Failure {
    Full,
    Other,
    Unavailable,
}

impl Failure {
    fn error(self) -> StorageError {
        match self {
            Failure::Full => StorageError::Full,
            Failure::Other => StorageError::Other {
                backend: "test",
                source: SECRET_DETAIL.into(),
            },
            Failure::Unavailable => StorageError::Unavailable {
                backend: "test",
                source: SECRET_DETAIL.into(),
            },
        }
    }
}

/// Memory storage whose writes fail with one error.
#[derive(Debug, Clone)]
struct Failing {
    memory: MemoryStorage,
    failure: Failure,
}

impl Storage for Failing {
    fn write_chunk(
        &self,
        _: &Session,
        _: ChunkRange,
        _: &ChunkOptions,
        _: ByteStream,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let error = self.failure.error();
        Box::pin(async move { Err(error) })
    }

    fn open(
        &self,
        _: &Session,
        _: &OpenOptions,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let error = self.failure.error();
        Box::pin(async move { Err(error) })
    }

    fn concat(
        &self,
        _: &Session,
        _: &[Session],
        _: &ConcatOptions,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        let error = self.failure.error();
        Box::pin(async move { Err(error) })
    }

    fn status(&self, session: &Session) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        self.memory.status(session)
    }

    fn complete(
        &self,
        session: &Session,
        options: &CompleteOptions,
        make_record: MakeRecord,
    ) -> BoxFuture<'_, Result<SessionStatus, StorageError>> {
        self.memory.complete(session, options, make_record)
    }

    fn discard(&self, session: &Session) -> BoxFuture<'_, Result<(), StorageError>> {
        self.memory.discard(session)
    }

    fn put(
        &self,
        _: &UploadPath,
        _: ByteStream,
    ) -> BoxFuture<'_, Result<(FileMeta, Bytes), StorageError>> {
        let error = self.failure.error();
        Box::pin(async move { Err(error) })
    }

    fn read(
        &self,
        path: &UploadPath,
        range: Option<RangeInclusive<u64>>,
    ) -> BoxFuture<'_, Result<FileRead, StorageError>> {
        self.memory.read(path, range)
    }

    fn head(&self, path: &UploadPath) -> BoxFuture<'_, Result<FileMeta, StorageError>> {
        self.memory.head(path)
    }

    fn purge_expired(&self, now: SystemTime) -> BoxFuture<'_, Result<PurgeReport, StorageError>> {
        self.memory.purge_expired(now)
    }
}

async fn check(failure: Failure, status: u16, code: &str) {
    let memory = MemoryStorage::new();
    let layer = SignedUploadLayer::new(
        SigningKey::new(KEY).unwrap(),
        Failing {
            memory: memory.clone(),
            failure,
        },
    )
    .clock(TestClock::at(NOW))
    .public_base(PUBLIC_BASE)
    .unwrap();
    let signer = layer.signer();
    let inner = CountingInner::default();
    let addr = serve(layer.layer(inner.clone())).await;
    let client = client();
    let url = sign(&signer, addr, "a.bin", SignedMethod::Put);
    for request in [
        put(&url, &[], "simple"),
        put(&url, &[("content-range", "bytes 0-4/10")], "chunk"),
    ] {
        let answer = send(&client, request).await;
        assert_rejected(&answer, status, code, "PUT", "/a.bin");
        let text = String::from_utf8_lossy(&answer.body);
        assert!(
            !text.contains("EACCES") && !text.contains("sdz1") && !text.contains("10.0.0.7"),
            "the backend's error leaked: {text}"
        );
    }
    assert_eq!(memory.file("a.bin"), None);
    assert_eq!(memory.session_count(), 0);
    assert_eq!(inner.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn full_storage_is_507() {
    check(Failure::Full, 507, "storage_full").await;
}

#[tokio::test]
async fn failing_storage_is_500_without_internals() {
    check(Failure::Other, 500, "storage_error").await;
}

#[tokio::test]
async fn unavailable_storage_is_503_without_internals() {
    check(Failure::Unavailable, 503, "storage_error").await;
}

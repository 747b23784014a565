//! Compile-time checks: the public types can cross threads, as servers need.

use tower_signed_upload::{
    headers::ContentRange, services::RespondCreated, storage::MemoryStorage, Error, ResponseFuture,
    SignedUpload, SignedUploadLayer, Signer, SigningKey, UploadPath, UploadedFile,
};

fn send<T: Send>() {}
fn send_sync<T: Send + Sync>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<SignedUploadLayer>();
    send_sync::<SignedUpload<RespondCreated>>();
    send_sync::<UploadedFile>();
    send_sync::<UploadPath>();
    send_sync::<Signer>();
    send_sync::<SigningKey>();
    send_sync::<MemoryStorage>();
    send_sync::<ContentRange>();
    send_sync::<Error>();
    send_sync::<tower_signed_upload::ConfigError>();
}

#[test]
fn response_future_is_send() {
    send::<ResponseFuture<RespondCreated, hyper::body::Incoming>>();
    send::<ResponseFuture<RespondCreated, http_body_util::Full<bytes::Bytes>>>();
}

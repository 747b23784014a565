//! Take file uploads at short-lived signed URLs in any tower-based app.
//!
//! A backend mints a URL (`https://host/{path}?expiry=…&method=put&signature=…`,
//! HMAC-SHA256 of the path and query under the project key); the client `PUT`s
//! the file there, whole or as `Content-Range` chunks sent in parallel, in any
//! order, retried after failures. [`SignedUploadLayer`] verifies the URL, streams
//! the bytes into a [`Storage`](storage::Storage) backend, reassembles the
//! chunks, and calls your service once with the [`UploadedFile`].
//!
//! # With axum
//!
//! ```no_run
//! use axum::{http::StatusCode, routing::put, Extension, Json, Router};
//! use tower_signed_upload::{storage::MemoryStorage, SignedUploadLayer, SigningKey, UploadedFile};
//!
//! async fn keep(Extension(file): Extension<UploadedFile>) -> (StatusCode, Json<UploadedFile>) {
//!     // Persist `file` (id, type, size, url…) in your database here.
//!     (StatusCode::CREATED, Json(file))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = SignedUploadLayer::new(SigningKey::new("project key")?, MemoryStorage::new())
//!     .public_base("https://files.example.com")?;
//! let app: Router = Router::new().route("/{*path}", put(keep)).layer(layer);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // axum::serve(listener, app) works too, but closes no silent connection.
//! tower_signed_upload::serve::Server::new()
//!     .serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; })
//!     .await;
//! # Ok(())
//! # }
//! ```
//!
//! # With plain hyper or any tower service
//!
//! The inner service receives `Request<RequestBody<B>>`; [`RespondCreated`](services::RespondCreated) is a
//! ready-made one that answers `201` with the File object in the JSON envelope.
//!
//! ```
//! use tower_layer::Layer;
//! use tower_signed_upload::{services::RespondCreated, storage::MemoryStorage, SignedUploadLayer, SigningKey};
//!
//! let service = SignedUploadLayer::new(SigningKey::new("project key")?, MemoryStorage::new())
//!     .layer(RespondCreated);
//! // Serve `service` with hyper-util's `TowerToHyperService`, as in examples/hyper.rs.
//! # drop(service);
//! # Ok::<(), tower_signed_upload::ConfigError>(())
//! ```
//!
//! # Minting URLs
//!
//! ```
//! use std::time::Duration;
//! use tower_signed_upload::{SignedMethod, Signer, SigningKey, UploadPath};
//!
//! let signer = Signer::new(SigningKey::new("project key")?).public_base("https://files.example.com")?;
//! let url = signer.sign(&UploadPath::new("avatars/me.png").unwrap(), SignedMethod::Put, Duration::from_secs(600));
//! println!("{url}");
//! # Ok::<(), tower_signed_upload::ConfigError>(())
//! ```
//!
//! The signature is byte for byte what the Node.js snippet of the wire contract
//! computes, so a JavaScript backend can mint URLs this layer verifies.
//! [`SignedUploadLayer::signer`] gives a signer that shares the layer's key,
//! public base and clock.
//!
//! # Where the layer sits
//!
//! Put CORS outside the layer, so that preflights and the CORS headers of every
//! answer (errors included) are handled before a signature is checked:
//!
//! ```text
//! ServiceBuilder::new()
//!     .layer(TraceLayer)            // outermost: sees every request
//!     .layer(CorsLayer)             // answers OPTIONS, adds Access-Control-* headers
//!     .layer(SignedUploadLayer)     // verifies, stores, completes
//!     .service(your_handler)        // called once per committed file
//! ```
//!
//! The layer reads the request's raw path, so mount it where the request path
//! is the one that was signed (not under an axum `nest` that strips a prefix).
//! Body timeouts use tokio's timer: run it on a tokio runtime.
//!
//! # The wire contract in short
//!
//! | request | answer |
//! |---|---|
//! | `PUT` without `Content-Range` | the file is committed; your service's answer (`201` from [`RespondCreated`](services::RespondCreated)) |
//! | `PUT` with `Content-Range: bytes F-L/T` (or `bytes=`) | `202` with the upload object and `Range: bytes=0-N`, or the completing answer |
//! | `PUT` with `Content-Range: bytes */T` and no body | `308` with what is stored, or `200` with the File once complete |
//! | any chunk or status query after completion | `200` with the same File; your service is not called again |
//! | `GET`/`HEAD` with a `get` URL | your service, with the [`UploadPath`] in the extensions |
//! | [tus 1.0.0](protocol#tus) or the [IETF resumable-upload draft](protocol#ietf-resumable-uploads) on a `put` URL | the protocol's answers; the completing request reaches your service as a `PUT`, with [`UploadVia`] saying how it came |
//! | anything refused | the status and stable code of [`Error`], in the JSON envelope |
//!
//! Every answer the crate writes (but the draft's problem types, which are
//! `application/problem+json`) is the envelope
//! `{"meta":{…},"data":…,"error":null|{"code","message"},"links":{"self":…}}`.
//! The completing answer carries `ETag` and `Location` unless your service sets
//! its own.
//!
//! The whole protocol, for people who write clients (browser code, mobile
//! apps, `curl` scripts, backends in other languages that mint URLs), is the
//! [`protocol`] page: [signed URLs](protocol#signed-urls),
//! [resumable uploads](protocol#resumable-uploads), every
//! [status code](protocol#status-codes), and a
//! [JavaScript client](protocol#a-chunked-upload-client-in-javascript).
//!
//! # Signed policy and integrity
//!
//! A URL can carry limits its signature covers ([`UrlOptions`], minted with
//! [`Signer::sign_with`]), and any `PUT` can carry digests:
//!
//! | rule | how | refused with |
//! |---|---|---|
//! | `max_size=BYTES` | the file may hold at most BYTES; judged from `Content-Length` or `Content-Range`'s total before the body is read, else as soon as the bytes pass it | `413 too_large` |
//! | `type=image/*,video/mp4` | the type **sniffed from the first bytes** (never the client's `Content-Type`, never the extension) must match; judged when the bytes at offset 0 arrive and again on the assembled file before commit; a refusal discards the session | `415 type_not_allowed` |
//! | `kid=ID` | only the key with that id verifies | `403 signature_invalid` |
//! | `Content-Digest: sha-256=:…:` | this request's bytes, checked while they stream | `400 digest_mismatch` / `digest_invalid` |
//! | `Repr-Digest: sha-256=:…:` | the whole file, checked before commit (streaming for simple uploads; one read by the backend for sessions); a mismatch discards the session | `400 digest_mismatch`, `409 digest_conflict` when a session's requests disagree |
//! | a range resent with other bytes | stored bytes are never overwritten; an identical resend is accepted | `409 range_conflict` |
//!
//! ```
//! use std::time::Duration;
//! use tower_signed_upload::{storage::MemoryStorage, SignedMethod, SignedUploadLayer, SigningKey, UploadPath, UrlOptions};
//!
//! let layer = SignedUploadLayer::new(SigningKey::new("project key")?, MemoryStorage::new());
//! // An avatar: an image of at most 5 MB.
//! let options = UrlOptions::new().max_size(5_000_000).types("image/*")?;
//! let url = layer.signer().sign_with(&UploadPath::new("avatars/me.png").unwrap(), SignedMethod::Put, Duration::from_secs(600), &options)?;
//! assert!(url.as_str().contains("&max_size=5000000&type=image/*&signature="));
//! # Ok::<(), tower_signed_upload::ConfigError>(())
//! ```
//!
//! A File object gets `sha256` (lowercase hex) whenever the client sent a
//! `Repr-Digest`, or always with [`SignedUploadLayer::compute_sha256`].
//!
//! # Key rotation and time
//!
//! [`SignedUploadLayer::verify_key`] adds keys that verify but do not sign. To
//! rotate: add the new key as the first (signing) key and keep the old one as
//! a verify key; every URL minted from then on uses the new key; after the
//! longest URL lifetime ([`SignedUploadLayer::max_lifetime`], 7 days by
//! default) no valid URL names the old key any more, so drop it. Keys may carry
//! ids ([`SigningKey::with_id`]); a URL minted with [`UrlOptions::key_id`]
//! names its key as `kid`, and only that key is tried. Without `kid` every key
//! is tried.
//!
//! The layer reads the time from its [`Clock`]; tests pass a fixed clock and
//! never sleep.
//!
//! # Features
//!
//! | feature | what | default |
//! |---|---|---|
//! | `fs` | `storage::FsStorage`, the durable local-disk backend (Unix only; elsewhere the feature builds nothing) | yes |
//! | `object-store` | `storage::ObjectStoreStorage`, sessions and files in an object store (S3, GCS, Azure…) shared by many instances | no |
//! | `conformance` | [`storage::conformance`](storage), the `Storage` trait's guarantees as checks for your own backend's tests | no |
//!
//! [`storage::MemoryStorage`] is always built.
//!
//! # Where things are
//!
//! The crate root holds what an app needs: the layer ([`SignedUploadLayer`],
//! [`SignedUpload`], [`ResponseFuture`] and their bodies), keys and URLs
//! ([`SigningKey`], [`Signer`], [`SignedUrl`], [`UrlOptions`]), the File
//! ([`UploadedFile`], [`FileKind`], [`UploadPath`]) and the errors ([`Error`],
//! [`ConfigError`]). [`services`] has the ready-made services, [`storage`] the
//! trait, the backends and what a backend author needs, [`headers`] the header
//! parsers, and [`protocol`] the wire protocol for people writing clients.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod envelope;
mod error;
mod file;
pub mod headers;
mod path;
#[doc = include_str!("../docs/protocol.md")]
pub mod protocol {}
mod random;
#[cfg(feature = "serve")]
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub mod serve;
pub mod services;
mod signing;
pub mod storage;
mod upload;

pub use clock::{Clock, SystemClock};
pub use envelope::RequestId;
pub use error::{ConfigError, Error};
pub use file::{FileKind, UploadedFile};
pub use path::UploadPath;
pub use signing::{Expiry, SignedMethod, SignedUrl, Signer, SigningKey, TypeRule, UrlOptions};
pub use upload::{
    EnvelopeBody, RequestBody, ResponseBody, ResponseFuture, SignedUpload, SignedUploadLayer,
    UploadProtocol, UploadVia, DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_RANGES,
    DEFAULT_MAX_SIZE,
};

/// The README's examples compile.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

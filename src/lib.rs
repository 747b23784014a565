//! Take file uploads at short-lived signed URLs in any tower-based app.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod classify;
mod clock;
mod content_range;
mod envelope;
mod error;
mod file;
mod future;
mod layer;
mod path;
mod respond;
mod service;
mod session;
mod signing;
pub mod storage;
mod upload;

pub use body::{EnvelopeBody, RequestBody, ResponseBody};
pub use clock::{Clock, SystemClock};
pub use content_range::{ContentRange, ContentRangeError};
pub use envelope::RequestId;
pub use error::{ConfigError, Error};
pub use file::{FileKind, UploadedFile};
pub use future::ResponseFuture;
pub use layer::{
    SignedUploadLayer, DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_RANGES,
    DEFAULT_MAX_SIZE,
};
pub use path::UploadPath;
pub use respond::RespondCreated;
pub use service::SignedUpload;
pub use session::{ByteRanges, SessionState};
pub use signing::{Expiry, SignedMethod, SignedUrl, Signer, SigningKey};

/// A boxed error, as the storage backends carry their sources.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

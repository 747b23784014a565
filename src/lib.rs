//! Take file uploads at short-lived signed URLs in any tower-based app.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod error;
mod path;
mod session;
pub mod storage;

pub use clock::{Clock, SystemClock};
pub use error::{ConfigError, Error};
pub use path::UploadPath;
pub use session::{ByteRanges, SessionState};

/// A boxed error, as the storage backends carry their sources.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

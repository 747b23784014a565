//! Header parsers: `Content-Range`, the digest fields (`Content-Digest`,
//! `Repr-Digest`) and the decimal numbers inside headers and query values.
//! Pure functions over bytes, no I/O, small `Copy` errors.

mod content_range;
pub(crate) mod digest;
pub(crate) mod number;

pub use content_range::{ContentRange, ContentRangeError};

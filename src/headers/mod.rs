//! Header parsers: `Content-Range`, the digest fields (`Content-Digest`,
//! `Repr-Digest`), tus's `Upload-Metadata`, `Upload-Checksum` and
//! `Upload-Concat`, and the decimal numbers inside headers and query values.
//! Pure functions over bytes, no I/O, small `Copy` errors.

mod content_range;
pub(crate) mod digest;
pub(crate) mod number;
mod tus;

pub use content_range::{ContentRange, ContentRangeError};
pub use tus::{
    ChecksumAlgorithm, TusHeaderError, UploadChecksum, UploadConcat, UploadMetadata,
    MAX_CONCAT_PARTS, MAX_METADATA_PAIRS,
};

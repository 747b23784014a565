//! Request rejections ([`Error`]) and configuration mistakes ([`ConfigError`]).

use std::fmt;

use http::StatusCode;

use crate::storage::StorageError;

/// Why the layer refused a request.
///
/// Each variant is one row of the wire contract's status table: [`Error::status`]
/// is the HTTP status and [`Error::code`] the stable snake_case word sent as
/// `error.code` in the JSON envelope. The layer puts the `Error` it answered with
/// into the response's extensions, so outer layers can inspect it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The query lacks `signature`, `expiry` or `method` (401).
    SignatureMissing,
    /// The signature does not match the signed string under any key (403).
    SignatureInvalid,
    /// The URL's expiry is in the past (403).
    UrlExpired,
    /// The URL's expiry is further ahead than the maximum lifetime (403).
    ExpiryTooFar,
    /// The URL was signed for another method (`get` vs `put`) (403).
    MethodNotSigned,
    /// The HTTP method is not served by the layer (405, with `Allow`).
    MethodNotAllowed,
    /// The path is not a valid upload path (400).
    PathInvalid,
    /// The query is malformed (400).
    QueryInvalid,
    /// The `Content-Range` header is malformed (400).
    ContentRangeInvalid,
    /// The body's length differs from its `Content-Range` (400).
    ContentRangeMismatch,
    /// A chunk names another total than the session already has (409).
    TotalMismatch,
    /// A range reaches past the file's total (416); for downloads, a range
    /// outside the stored file.
    RangeNotSatisfiable,
    /// The file is larger than the size limit (413).
    TooLarge,
    /// The session would be split into more disjoint ranges than allowed (400).
    TooManyRanges,
    /// The body stalled for longer than the idle timeout (408).
    BodyTimeout,
    /// The body broke off before its end (400); nothing of it was kept.
    BodyIncomplete,
    /// The storage has no room left (507).
    StorageFull,
    /// The storage failed (500); nothing about the failure is sent to the client.
    StorageError,
    /// The storage is unavailable for now (503); the client may retry.
    StorageUnavailable,
    /// The stored file does not exist (404).
    NotFound,
    /// The file's sniffed type is outside the URL's signed `type` (415).
    TypeNotAllowed,
    /// A digest does not match the bytes (400).
    DigestMismatch,
    /// A `Content-Digest` or `Repr-Digest` header does not parse (400).
    DigestInvalid,
    /// A `Repr-Digest` differs from the one the session has (409).
    DigestConflict,
    /// A range was resent with other bytes than the stored ones (409).
    RangeConflict,
    /// The request lacks valid credentials (401); the signatures endpoint's answer.
    Unauthorized,
    /// The request body is not the JSON the endpoint takes (400).
    BodyInvalid,
    /// `412 version_unsupported`: a resumable protocol version the layer does
    /// not speak (tus's `Tus-Resumable` other than `1.0.0`).
    VersionUnsupported,
    /// `404 upload_not_found`: a resumable-protocol request on an upload that
    /// was never created (or was terminated).
    UploadNotFound,
    /// `409 offset_mismatch`: an append whose offset is not the upload's.
    OffsetMismatch,
    /// `409 upload_complete`: a termination of a completed upload.
    UploadComplete,
    /// `460 checksum_mismatch`: tus's `Upload-Checksum` does not match the
    /// bytes; they count for nothing.
    ChecksumMismatch,
    /// `400 checksum_invalid`: an `Upload-Checksum` that does not parse or
    /// names an algorithm the layer does not check.
    ChecksumInvalid,
    /// `415 content_type_invalid`: an append whose `Content-Type` is not
    /// `application/offset+octet-stream`.
    ContentTypeInvalid,
    /// `411 length_required`: a request that must state its length does not.
    LengthRequired,
    /// `400 header_invalid`: a protocol header missing, malformed, or in a
    /// combination the protocol forbids.
    HeaderInvalid,
    /// `403 part_url_restricted`: a tus part URL (one the layer minted for
    /// `Upload-Concat: partial`) used for anything but a tus `HEAD`, `PATCH`,
    /// `DELETE` or `OPTIONS` of that part.
    PartUrlRestricted,
    /// `400 concat_part_invalid`: a final upload lists a URL that is not a
    /// part of this upload.
    ConcatPartInvalid,
    /// `400 concat_part_incomplete`: a final upload lists a part whose bytes
    /// have not all arrived.
    ConcatPartIncomplete,
    /// `403 upload_final`: a `PATCH` of a final upload (made of parts).
    UploadFinal,
}

impl Error {
    /// The HTTP status this rejection is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Error::SignatureMissing | Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::SignatureInvalid
            | Error::UrlExpired
            | Error::ExpiryTooFar
            | Error::MethodNotSigned
            | Error::PartUrlRestricted
            | Error::UploadFinal => StatusCode::FORBIDDEN,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::PathInvalid
            | Error::QueryInvalid
            | Error::ContentRangeInvalid
            | Error::ContentRangeMismatch
            | Error::TooManyRanges
            | Error::BodyIncomplete
            | Error::BodyInvalid
            | Error::ChecksumInvalid
            | Error::HeaderInvalid
            | Error::ConcatPartInvalid
            | Error::ConcatPartIncomplete => StatusCode::BAD_REQUEST,
            Error::VersionUnsupported => StatusCode::PRECONDITION_FAILED,
            Error::UploadNotFound => StatusCode::NOT_FOUND,
            Error::OffsetMismatch | Error::UploadComplete => StatusCode::CONFLICT,
            Error::ChecksumMismatch => checksum_mismatch_status(),
            Error::ContentTypeInvalid => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Error::TotalMismatch | Error::DigestConflict | Error::RangeConflict => {
                StatusCode::CONFLICT
            }
            Error::TypeNotAllowed => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::DigestMismatch | Error::DigestInvalid => StatusCode::BAD_REQUEST,
            Error::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Error::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            Error::StorageError => StatusCode::INTERNAL_SERVER_ERROR,
            Error::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Error::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// The stable snake_case code sent as `error.code`.
    pub fn code(self) -> &'static str {
        match self {
            Error::SignatureMissing => "signature_missing",
            Error::SignatureInvalid => "signature_invalid",
            Error::UrlExpired => "url_expired",
            Error::ExpiryTooFar => "expiry_too_far",
            Error::MethodNotSigned => "method_not_signed",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::PathInvalid => "path_invalid",
            Error::QueryInvalid => "query_invalid",
            Error::ContentRangeInvalid => "content_range_invalid",
            Error::ContentRangeMismatch => "content_range_mismatch",
            Error::TotalMismatch => "total_mismatch",
            Error::RangeNotSatisfiable => "range_not_satisfiable",
            Error::TooLarge => "too_large",
            Error::TooManyRanges => "too_many_ranges",
            Error::BodyTimeout => "body_timeout",
            Error::BodyIncomplete => "body_incomplete",
            Error::StorageFull => "storage_full",
            Error::StorageError | Error::StorageUnavailable => "storage_error",
            Error::NotFound => "not_found",
            Error::Unauthorized => "unauthorized",
            Error::TypeNotAllowed => "type_not_allowed",
            Error::DigestMismatch => "digest_mismatch",
            Error::DigestInvalid => "digest_invalid",
            Error::DigestConflict => "digest_conflict",
            Error::RangeConflict => "range_conflict",
            Error::BodyInvalid => "body_invalid",
            Error::VersionUnsupported => "version_unsupported",
            Error::UploadNotFound => "upload_not_found",
            Error::OffsetMismatch => "offset_mismatch",
            Error::UploadComplete => "upload_complete",
            Error::ChecksumMismatch => "checksum_mismatch",
            Error::ChecksumInvalid => "checksum_invalid",
            Error::ContentTypeInvalid => "content_type_invalid",
            Error::LengthRequired => "length_required",
            Error::HeaderInvalid => "header_invalid",
            Error::PartUrlRestricted => "part_url_restricted",
            Error::ConcatPartInvalid => "concat_part_invalid",
            Error::ConcatPartIncomplete => "concat_part_incomplete",
            Error::UploadFinal => "upload_final",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::SignatureMissing => {
                "the URL is not signed: expiry, method and signature are required"
            }
            Error::SignatureInvalid => "the signature does not match this URL",
            Error::UrlExpired => "the signed URL has expired",
            Error::ExpiryTooFar => "the URL's expiry is further ahead than this server allows",
            Error::MethodNotSigned => "the URL was signed for another method",
            Error::MethodNotAllowed => "this method is not served here",
            Error::PathInvalid => "the path is not a valid file path",
            Error::QueryInvalid => "the query string is malformed",
            Error::ContentRangeInvalid => "the Content-Range header is malformed",
            Error::ContentRangeMismatch => "the body's length differs from its Content-Range",
            Error::TotalMismatch => "the total size differs from the one this upload already has",
            Error::RangeNotSatisfiable => "the range reaches past the file's total size",
            Error::TooLarge => "the file is larger than allowed",
            Error::TooManyRanges => "the upload is split into too many separate ranges",
            Error::BodyTimeout => "the request body stalled",
            Error::BodyIncomplete => "the request body broke off before its end",
            Error::StorageFull => "the storage is full",
            Error::StorageError => "the file could not be stored",
            Error::StorageUnavailable => "the storage is unavailable, try again later",
            Error::NotFound => "no file is stored at this path",
            Error::Unauthorized => "a valid `Authorization: Bearer` key is required",
            Error::TypeNotAllowed => "the file's type is not one this URL allows",
            Error::DigestMismatch => "the digest does not match the bytes received",
            Error::DigestInvalid => "the digest header does not parse",
            Error::DigestConflict => "the Repr-Digest differs from the one this upload already has",
            Error::RangeConflict => "this range was already stored with other bytes",
            Error::BodyInvalid => "the request body is not valid JSON of the expected shape",
            Error::VersionUnsupported => "this protocol version is not supported",
            Error::UploadNotFound => "no upload was created at this URL",
            Error::OffsetMismatch => "the offset is not the upload's current offset",
            Error::UploadComplete => "the upload is complete",
            Error::ChecksumMismatch => "the checksum does not match the bytes received",
            Error::ChecksumInvalid => {
                "the checksum header does not parse or names an unsupported algorithm"
            }
            Error::ContentTypeInvalid => {
                "the Content-Type must be application/offset+octet-stream (tus) or application/partial-upload (the IETF draft)"
            }
            Error::LengthRequired => "this request must state its length",
            Error::HeaderInvalid => "a protocol header is missing or malformed",
            Error::PartUrlRestricted => {
                "this URL is a part of a tus upload: only tus HEAD, PATCH and DELETE use it"
            }
            Error::ConcatPartInvalid => "a listed URL is not a part of this upload",
            Error::ConcatPartIncomplete => "a listed part has not received all its bytes",
            Error::UploadFinal => "a final upload is made of its parts and takes no bytes",
        })
    }
}

impl std::error::Error for Error {}

/// tus's `460 Checksum Mismatch`, a status outside the IANA registry.
fn checksum_mismatch_status() -> StatusCode {
    StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Maps a storage failure to the client's answer; internals only go to the log.
pub(crate) fn storage_error(error: StorageError) -> Error {
    match error {
        StorageError::NotFound => Error::NotFound,
        StorageError::TotalMismatch => Error::TotalMismatch,
        StorageError::RangeNotSatisfiable => Error::RangeNotSatisfiable,
        StorageError::TooManyRanges => Error::TooManyRanges,
        StorageError::InvalidPath => Error::PathInvalid,
        StorageError::RangeConflict => Error::RangeConflict,
        StorageError::DigestConflict => Error::DigestConflict,
        StorageError::PartIncomplete => Error::ConcatPartIncomplete,
        // The layer's record builder refused; `settle` knows why.
        StorageError::CommitRefused => Error::StorageError,
        StorageError::Full => Error::StorageFull,
        StorageError::Body(body) => body.0,
        StorageError::Unavailable { backend, source } => {
            tracing::warn!(backend, error = %source, "storage unavailable");
            Error::StorageUnavailable
        }
        StorageError::Other { backend, source } => {
            tracing::error!(backend, error = %source, "storage failed");
            Error::StorageError
        }
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The public base URL is not an absolute `http` or `https` origin.
    PublicBase(&'static str),
    /// A signing key is empty.
    EmptyKey,
    /// A key id is empty, too long, or holds characters other than letters,
    /// digits, `-`, `_`, `.`, `~`; or a URL asked for the id of a key that has none.
    KeyId,
    /// A MIME type pattern is not `type/subtype`, `type/*` or `*/*`.
    TypePattern,
    /// A `get` URL cannot carry an upload policy (`max_size`, `type`).
    PolicyOnGet,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::PublicBase(why) => write!(f, "invalid public base URL: {why}"),
            ConfigError::EmptyKey => f.write_str("a signing key must not be empty"),
            ConfigError::KeyId => f.write_str(
                "a key id holds 1 to 64 ASCII letters, digits, '-', '_', '.' and '~', \
                 and a URL can only name a key that has one",
            ),
            ConfigError::TypePattern => {
                f.write_str("a type pattern is `type/subtype`, `type/*` or `*/*`")
            }
            ConfigError::PolicyOnGet => f.write_str("a get URL carries no upload policy"),
        }
    }
}

impl std::error::Error for ConfigError {}

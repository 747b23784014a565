//! tus 1.0.0 on the signed URL: the signed `put` URL is both the creation
//! endpoint and the upload URL. A tus request is classified here into the
//! resumable flows every protocol shares (open, append, offset, cancel), run by
//! `flows`, and answered with tus's headers and status codes.

mod flows;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::headers::{UploadChecksum, UploadConcat, UploadMetadata};
use crate::upload::fields::{number_header, single};
use crate::Error;

pub(crate) use flows::{run, store, TusRequest};

/// The one tus version the layer speaks.
pub(crate) const VERSION: &str = "1.0.0";

/// The extensions advertised by `OPTIONS`.
pub(crate) const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,expiration,checksum,termination,concatenation";

/// The `Content-Type` of tus bodies.
const OFFSET_STREAM: &str = "application/offset+octet-stream";

pub(crate) const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
pub(crate) const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");
pub(crate) const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
pub(crate) const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
pub(crate) const TUS_CHECKSUM_ALGORITHM: HeaderName =
    HeaderName::from_static("tus-checksum-algorithm");
pub(crate) const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
pub(crate) const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
pub(crate) const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");
pub(crate) const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
pub(crate) const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
const UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
pub(crate) const UPLOAD_CONCAT: HeaderName = HeaderName::from_static("upload-concat");
const METHOD_OVERRIDE: HeaderName = HeaderName::from_static("x-http-method-override");

/// What a tus request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TusAction {
    /// `OPTIONS`: what the server supports.
    Options,
    /// `POST`: create the upload, and with a body, append it from offset 0.
    Create {
        /// `Upload-Length`, or `None` for `Upload-Defer-Length: 1`.
        total: Option<u64>,
        /// `Upload-Metadata` as sent, when it holds a pair.
        metadata: Option<String>,
        /// The body's length if it has one that may hold bytes: `Some(None)`
        /// for a body of unknown length.
        body: Option<Option<u64>>,
        /// `Upload-Concat: partial`: a new part of the upload, not the upload.
        partial: bool,
    },
    /// `POST` with `Upload-Concat: final;…`: the upload made of these parts.
    Final {
        /// The parts' URLs, in order, as sent.
        parts: Vec<String>,
        /// The header's value, normalised (`final;` and the URLs).
        concat: String,
        /// `Upload-Metadata` as sent, when it holds a pair.
        metadata: Option<String>,
    },
    /// `HEAD`: the upload's offset.
    Head,
    /// `PATCH`: bytes from `offset`.
    Append {
        offset: u64,
        /// `Upload-Length` sent with it (a deferred length, declared now).
        total: Option<u64>,
        /// The body's length, if known.
        length: Option<u64>,
        checksum: Option<UploadChecksum>,
    },
    /// `DELETE`: terminate the upload.
    Terminate,
}

impl TusAction {
    /// The method the client means (for the logs and the inner service).
    pub(crate) fn method(&self) -> Method {
        match self {
            TusAction::Options => Method::OPTIONS,
            TusAction::Create { .. } | TusAction::Final { .. } => Method::POST,
            TusAction::Head => Method::HEAD,
            TusAction::Append { .. } => Method::PATCH,
            TusAction::Terminate => Method::DELETE,
        }
    }
}

/// Adds tus's headers to an error answer: `Tus-Resumable`, and `Tus-Version`
/// when the version was refused.
pub(crate) fn decorate_error(response: &mut http::Response<bytes::Bytes>) {
    let refused = response.status() == http::StatusCode::PRECONDITION_FAILED;
    let headers = response.headers_mut();
    headers.insert(TUS_RESUMABLE, HeaderValue::from_static(VERSION));
    if refused {
        headers.insert(TUS_VERSION, HeaderValue::from_static(VERSION));
    }
}

/// Whether a request speaks tus: it carries `Tus-Resumable` (an `OPTIONS`
/// that does asks what the server supports; any other `OPTIONS`, such as a
/// CORS preflight the app's CORS layer did not answer, is not served).
pub(crate) fn is_tus(headers: &HeaderMap) -> bool {
    headers.contains_key(TUS_RESUMABLE)
}

/// The method a tus request stands for: `X-HTTP-Method-Override`, else its own.
fn effective_method(method: &Method, headers: &HeaderMap) -> Result<Method, Error> {
    let mut values = headers.get_all(METHOD_OVERRIDE).iter();
    let Some(value) = values.next() else {
        return Ok(method.clone());
    };
    if values.next().is_some() {
        return Err(Error::HeaderInvalid);
    }
    Method::from_bytes(value.as_bytes()).map_err(|_| Error::HeaderInvalid)
}

/// `Upload-Metadata`, normalised, when it holds a pair.
fn metadata_header(headers: &HeaderMap) -> Result<Option<String>, Error> {
    Ok(match single(headers, &UPLOAD_METADATA)? {
        None => None,
        Some(value) => {
            let parsed =
                UploadMetadata::parse(value.as_bytes()).map_err(|_| Error::HeaderInvalid)?;
            (!parsed.is_empty()).then(|| parsed.to_string())
        }
    })
}

fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case(OFFSET_STREAM))
}

/// Classifies a tus request. `body_len` is the body's length if known (its
/// `Content-Length`); `has_body` whether it may hold bytes.
pub(crate) fn classify(
    method: &Method,
    headers: &HeaderMap,
    body_len: Option<u64>,
    has_body: bool,
    max_size: u64,
) -> Result<TusAction, Error> {
    let method = effective_method(method, headers)?;
    if method == Method::OPTIONS {
        return Ok(TusAction::Options);
    }
    match single(headers, &TUS_RESUMABLE)? {
        Some(version) if version.as_bytes() == VERSION.as_bytes() => {}
        _ => return Err(Error::VersionUnsupported),
    }
    let body = (has_body && body_len != Some(0)).then_some(body_len);
    match method {
        Method::HEAD => Ok(TusAction::Head),
        Method::DELETE => Ok(TusAction::Terminate),
        Method::POST => {
            // Only a creation says what it creates; appends may repeat it.
            let concat = single(headers, &UPLOAD_CONCAT)?
                .map(|value| {
                    UploadConcat::parse(value.as_bytes()).map_err(|_| Error::HeaderInvalid)
                })
                .transpose()?;
            let metadata = metadata_header(headers)?;
            if let Some(UploadConcat::Final(parts)) = concat {
                // The final upload's length is its parts' sum, and its bytes theirs.
                if headers.contains_key(UPLOAD_LENGTH)
                    || headers.contains_key(UPLOAD_DEFER_LENGTH)
                    || body.is_some()
                {
                    return Err(Error::HeaderInvalid);
                }
                let concat = format!("final;{}", parts.join(" "));
                return Ok(TusAction::Final {
                    parts,
                    concat,
                    metadata,
                });
            }
            let total = number_header(headers, &UPLOAD_LENGTH)?;
            let deferred = match single(headers, &UPLOAD_DEFER_LENGTH)? {
                None => false,
                Some(value) if value.as_bytes() == b"1" => true,
                Some(_) => return Err(Error::HeaderInvalid),
            };
            if total.is_some() == deferred {
                return Err(Error::HeaderInvalid);
            }
            if total.is_some_and(|total| total > max_size) {
                return Err(Error::TooLarge);
            }
            if body.is_some() && !is_offset_stream(headers) {
                return Err(Error::ContentTypeInvalid);
            }
            if let (Some(Some(len)), Some(total)) = (body, total) {
                if len > total {
                    return Err(Error::RangeNotSatisfiable);
                }
            }
            // A deferred length bounds nothing: the limit does.
            if body.flatten().is_some_and(|len| len > max_size) {
                return Err(Error::TooLarge);
            }
            Ok(TusAction::Create {
                total,
                metadata,
                body,
                partial: concat.is_some(),
            })
        }
        Method::PATCH => {
            if !is_offset_stream(headers) {
                return Err(Error::ContentTypeInvalid);
            }
            let offset = number_header(headers, &UPLOAD_OFFSET)?.ok_or(Error::HeaderInvalid)?;
            let total = number_header(headers, &UPLOAD_LENGTH)?;
            if total.is_some_and(|total| total > max_size) {
                return Err(Error::TooLarge);
            }
            let checksum = single(headers, &UPLOAD_CHECKSUM)?
                .map(|value| {
                    UploadChecksum::parse(value.as_bytes()).map_err(|_| Error::ChecksumInvalid)
                })
                .transpose()?;
            let length = if has_body { body_len } else { Some(0) };
            if checksum.is_some() && length.is_none() {
                return Err(Error::LengthRequired);
            }
            if let Some(length) = length {
                let end = offset.checked_add(length).ok_or(Error::TooLarge)?;
                if end > max_size {
                    return Err(Error::TooLarge);
                }
                if total.is_some_and(|total| end > total) {
                    return Err(Error::RangeNotSatisfiable);
                }
            }
            Ok(TusAction::Append {
                offset,
                total,
                length,
                checksum,
            })
        }
        _ => Err(Error::MethodNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const MAX: u64 = 1000;

    #[test]
    fn creation_needs_a_length_or_its_deferral() {
        let post = |pairs: &[(&'static str, &'static str)]| {
            classify(&Method::POST, &headers(pairs), Some(0), false, MAX)
        };
        assert_eq!(
            post(&[("tus-resumable", "1.0.0"), ("upload-length", "10")]),
            Ok(TusAction::Create {
                total: Some(10),
                metadata: None,
                body: None,
                partial: false
            })
        );
        assert_eq!(
            post(&[
                ("tus-resumable", "1.0.0"),
                ("upload-defer-length", "1"),
                ("upload-metadata", "")
            ]),
            Ok(TusAction::Create {
                total: None,
                metadata: None,
                body: None,
                partial: false
            })
        );
        for bad in [
            &[("tus-resumable", "1.0.0")][..],
            &[
                ("tus-resumable", "1.0.0"),
                ("upload-length", "1"),
                ("upload-defer-length", "1"),
            ],
            &[("tus-resumable", "1.0.0"), ("upload-defer-length", "2")],
            &[("tus-resumable", "1.0.0"), ("upload-length", "-1")],
            &[
                ("tus-resumable", "1.0.0"),
                ("upload-length", "1"),
                ("upload-metadata", "a b c"),
            ],
            &[
                ("tus-resumable", "1.0.0"),
                ("upload-length", "1"),
                ("upload-concat", "whole"),
            ],
            &[
                ("tus-resumable", "1.0.0"),
                ("upload-length", "1"),
                ("upload-concat", "final;/a?part=1"),
            ],
            &[("tus-resumable", "1.0.0"), ("upload-concat", "final;")],
        ] {
            assert_eq!(post(bad), Err(Error::HeaderInvalid), "{bad:?}");
        }
        assert_eq!(
            post(&[("tus-resumable", "1.0.0"), ("upload-length", "1001")]),
            Err(Error::TooLarge)
        );
        assert_eq!(
            post(&[("tus-resumable", "0.2.2"), ("upload-length", "1")]),
            Err(Error::VersionUnsupported)
        );
    }

    #[test]
    fn concatenation_creates_parts_and_finals() {
        let post = |pairs: &[(&'static str, &'static str)]| {
            classify(&Method::POST, &headers(pairs), Some(0), false, MAX)
        };
        assert_eq!(
            post(&[
                ("tus-resumable", "1.0.0"),
                ("upload-length", "10"),
                ("upload-concat", "partial")
            ]),
            Ok(TusAction::Create {
                total: Some(10),
                metadata: None,
                body: None,
                partial: true
            })
        );
        assert_eq!(
            post(&[
                ("tus-resumable", "1.0.0"),
                ("upload-concat", "final;http://h/a?x=1  /b?y=2"),
                ("upload-metadata", "filename YS5iaW4=")
            ]),
            Ok(TusAction::Final {
                parts: vec!["http://h/a?x=1".into(), "/b?y=2".into()],
                concat: "final;http://h/a?x=1 /b?y=2".into(),
                metadata: Some("filename YS5iaW4=".into()),
            })
        );
        // A final upload has no length of its own, nor a body.
        assert_eq!(
            classify(
                &Method::POST,
                &headers(&[
                    ("tus-resumable", "1.0.0"),
                    ("upload-concat", "final;/a"),
                    ("content-type", "application/offset+octet-stream")
                ]),
                Some(3),
                true,
                MAX
            ),
            Err(Error::HeaderInvalid)
        );
        // Appends and offsets may repeat the header; it changes nothing.
        assert_eq!(
            classify(
                &Method::HEAD,
                &headers(&[("tus-resumable", "1.0.0"), ("upload-concat", "partial")]),
                None,
                false,
                MAX
            ),
            Ok(TusAction::Head)
        );
    }

    #[test]
    fn creation_with_upload_needs_the_offset_stream_type() {
        let h = headers(&[("tus-resumable", "1.0.0"), ("upload-length", "10")]);
        assert_eq!(
            classify(&Method::POST, &h, Some(4), true, MAX),
            Err(Error::ContentTypeInvalid)
        );
        let h = headers(&[
            ("tus-resumable", "1.0.0"),
            ("upload-length", "10"),
            ("content-type", "application/offset+octet-stream"),
        ]);
        assert_eq!(
            classify(&Method::POST, &h, Some(4), true, MAX),
            Ok(TusAction::Create {
                total: Some(10),
                metadata: None,
                body: Some(Some(4)),
                partial: false
            })
        );
        assert_eq!(
            classify(&Method::POST, &h, Some(11), true, MAX),
            Err(Error::RangeNotSatisfiable)
        );
    }

    #[test]
    fn appends_name_their_offset_and_type() {
        let h = headers(&[
            ("tus-resumable", "1.0.0"),
            ("upload-offset", "5"),
            ("content-type", "application/offset+octet-stream"),
        ]);
        assert_eq!(
            classify(&Method::PATCH, &h, Some(3), true, MAX),
            Ok(TusAction::Append {
                offset: 5,
                total: None,
                length: Some(3),
                checksum: None
            })
        );
        assert_eq!(
            classify(&Method::PATCH, &h, Some(996), true, MAX),
            Err(Error::TooLarge)
        );
        let untyped = headers(&[("tus-resumable", "1.0.0"), ("upload-offset", "5")]);
        assert_eq!(
            classify(&Method::PATCH, &untyped, Some(3), true, MAX),
            Err(Error::ContentTypeInvalid)
        );
        let no_offset = headers(&[
            ("tus-resumable", "1.0.0"),
            ("content-type", "application/offset+octet-stream"),
        ]);
        assert_eq!(
            classify(&Method::PATCH, &no_offset, Some(3), true, MAX),
            Err(Error::HeaderInvalid)
        );
        let checksum = headers(&[
            ("tus-resumable", "1.0.0"),
            ("upload-offset", "0"),
            ("content-type", "application/offset+octet-stream"),
            ("upload-checksum", "md5 AAAAAAAAAAAAAAAAAAAAAA=="),
        ]);
        assert_eq!(
            classify(&Method::PATCH, &checksum, Some(3), true, MAX),
            Err(Error::ChecksumInvalid)
        );
    }

    #[test]
    fn the_method_override_is_the_method() {
        let h = headers(&[
            ("tus-resumable", "1.0.0"),
            ("x-http-method-override", "DELETE"),
        ]);
        assert_eq!(
            classify(&Method::POST, &h, None, false, MAX),
            Ok(TusAction::Terminate)
        );
        let h = headers(&[
            ("tus-resumable", "1.0.0"),
            ("x-http-method-override", "HEAD"),
        ]);
        assert_eq!(
            classify(&Method::POST, &h, None, false, MAX),
            Ok(TusAction::Head)
        );
        // Tus-Resumable is ignored on OPTIONS, whatever its version.
        let h = headers(&[("tus-resumable", "0.1")]);
        assert_eq!(
            classify(&Method::OPTIONS, &h, None, false, MAX),
            Ok(TusAction::Options)
        );
        assert!(!is_tus(&HeaderMap::new()));
        let h = headers(&[("tus-resumable", "1.0.0")]);
        assert_eq!(
            classify(&Method::GET, &h, None, false, MAX),
            Err(Error::MethodNotAllowed)
        );
    }
}

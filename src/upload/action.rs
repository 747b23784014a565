//! Classifying a verified request: what kind of upload (or download) it is.

use http::{header, HeaderMap, Method};

use crate::headers::digest::{self, DigestError, ReprDigest};
use crate::headers::ContentRange;
use crate::signing::SignedMethod;
use crate::storage::ChunkRange;
use crate::Error;
use crate::TypeRule;

/// What a request asks for, once its URL is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// `GET`/`HEAD`: the inner service serves the stored file.
    Download,
    /// `PUT` without `Content-Range`: the whole file in one body of at most `max` bytes.
    Simple { max: u64 },
    /// `PUT` with `Content-Range: bytes FIRST-LAST/TOTAL`.
    Chunk(ChunkRange),
    /// `PUT` with `Content-Range: bytes */TOTAL` and no body.
    Status { total: Option<u64> },
    /// A tus request.
    Tus(super::tus::TusAction),
    /// A request of the IETF draft, at its interop version.
    Ietf(super::ietf::Interop, super::ietf::IetfAction),
}

/// The signed method a request needs, or `405` for methods the layer does not serve.
pub(crate) fn signed_method(method: &Method) -> Result<SignedMethod, Error> {
    match *method {
        Method::PUT => Ok(SignedMethod::Put),
        Method::GET | Method::HEAD => Ok(SignedMethod::Get),
        _ => Err(Error::MethodNotAllowed),
    }
}

/// Classifies a request whose URL verified. `body_len` is what the body's size
/// hint promises exactly, if anything.
pub(crate) fn classify(
    method: &Method,
    headers: &HeaderMap,
    body_len: Option<u64>,
    max_size: u64,
) -> Result<Action, Error> {
    if *method != Method::PUT {
        return Ok(Action::Download);
    }
    let declared = declared_length(headers)?.or(body_len);
    let mut ranges = headers.get_all(header::CONTENT_RANGE).iter();
    let Some(value) = ranges.next() else {
        if declared.is_some_and(|len| len > max_size) {
            return Err(Error::TooLarge);
        }
        return Ok(Action::Simple { max: max_size });
    };
    if ranges.next().is_some() {
        return Err(Error::ContentRangeInvalid);
    }
    match ContentRange::parse(value.as_bytes()).map_err(|_| Error::ContentRangeInvalid)? {
        ContentRange::Status { total } => {
            if declared.is_some_and(|len| len > 0) {
                return Err(Error::ContentRangeMismatch);
            }
            Ok(Action::Status { total })
        }
        ContentRange::Bytes { first, last, total } => {
            if total.is_some_and(|total| last >= total) {
                return Err(Error::RangeNotSatisfiable);
            }
            if total.unwrap_or(0) > max_size || last >= max_size {
                return Err(Error::TooLarge);
            }
            if declared.is_some_and(|len| len != last - first + 1) {
                return Err(Error::ContentRangeMismatch);
            }
            Ok(Action::Chunk(ChunkRange { first, last, total }))
        }
    }
}

/// What a `PUT` asks the layer to check besides its range: the signed type
/// rule and the integrity headers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Checks {
    /// The URL's signed `type`.
    pub(crate) types: Option<TypeRule>,
    /// `Content-Digest`: this request's bytes.
    pub(crate) content_digest: Option<ReprDigest>,
    /// `Repr-Digest`: the whole file.
    pub(crate) repr_digest: Option<ReprDigest>,
    /// A tus final upload's `Upload-Concat` (`final;…`), kept with its
    /// completion record.
    pub(crate) concat: Option<String>,
}

/// Reads the integrity headers; one that does not parse, names no algorithm
/// the layer checks (so nothing would be checked), or appears twice, is `400
/// digest_invalid`.
pub(crate) fn checks(headers: &HeaderMap, types: Option<TypeRule>) -> Result<Checks, Error> {
    let digest = |name: &str| -> Result<Option<ReprDigest>, Error> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Error::DigestInvalid);
        }
        match digest::parse(value.as_bytes()) {
            Ok(digest) => Ok(Some(digest)),
            Err(DigestError::Malformed | DigestError::NoKnownAlgorithm) => {
                Err(Error::DigestInvalid)
            }
        }
    };
    Ok(Checks {
        types,
        content_digest: digest("content-digest")?,
        repr_digest: digest("repr-digest")?,
        concat: None,
    })
}

/// The `Content-Length` header, if present; several or a malformed one is `400`.
pub(crate) fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let parse = |value: &http::HeaderValue| {
        let bytes = value.as_bytes();
        if bytes.len() > 20 {
            return Err(Error::ContentRangeMismatch);
        }
        crate::headers::number::number(bytes).map_err(|_| Error::ContentRangeMismatch)
    };
    let length = parse(value)?;
    for other in values {
        if parse(other)? != length {
            return Err(Error::ContentRangeMismatch);
        }
    }
    Ok(Some(length))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn put(headers: &[(&str, &str)]) -> Result<Action, Error> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        classify(&Method::PUT, &map, None, 1000)
    }

    #[test]
    fn put_without_content_range_is_simple() {
        assert_eq!(put(&[]), Ok(Action::Simple { max: 1000 }));
        assert_eq!(
            put(&[("content-length", "1000")]),
            Ok(Action::Simple { max: 1000 })
        );
        assert_eq!(put(&[("content-length", "1001")]), Err(Error::TooLarge));
    }

    #[test]
    fn chunks_are_checked_against_their_headers() {
        let chunk = |first, last, total| Ok(Action::Chunk(ChunkRange { first, last, total }));
        assert_eq!(
            put(&[("content-range", "bytes 0-9/100")]),
            chunk(0, 9, Some(100))
        );
        assert_eq!(
            put(&[("content-range", "bytes=0-9/*"), ("content-length", "10")]),
            chunk(0, 9, None)
        );
        assert_eq!(
            put(&[("content-range", "bytes 0-9/100"), ("content-length", "9")]),
            Err(Error::ContentRangeMismatch)
        );
        assert_eq!(
            put(&[("content-range", "bytes 0-100/100")]),
            Err(Error::RangeNotSatisfiable)
        );
        assert_eq!(
            put(&[("content-range", "bytes 0-9/1001")]),
            Err(Error::TooLarge)
        );
        assert_eq!(
            put(&[("content-range", "bytes 995-1000/*")]),
            Err(Error::TooLarge)
        );
        assert_eq!(
            put(&[("content-range", "bytes 0-9")]),
            Err(Error::ContentRangeInvalid)
        );
        assert_eq!(
            put(&[
                ("content-range", "bytes 0-9/100"),
                ("content-range", "bytes 0-9/100")
            ]),
            Err(Error::ContentRangeInvalid)
        );
        assert_eq!(
            put(&[
                ("content-range", "bytes 0-9/100"),
                ("content-length", "+10")
            ]),
            Err(Error::ContentRangeMismatch)
        );
    }

    #[test]
    fn status_query_has_no_body() {
        assert_eq!(
            put(&[("content-range", "bytes */100")]),
            Ok(Action::Status { total: Some(100) })
        );
        assert_eq!(
            put(&[("content-range", "bytes */*"), ("content-length", "0")]),
            Ok(Action::Status { total: None })
        );
        assert_eq!(
            put(&[("content-range", "bytes */100"), ("content-length", "3")]),
            Err(Error::ContentRangeMismatch)
        );
    }

    #[test]
    fn digest_headers_parse_or_are_400() {
        let mut map = HeaderMap::new();
        assert!(checks(&map, None).unwrap().content_digest.is_none());
        map.insert(
            "content-digest",
            HeaderValue::from_static("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
        );
        assert!(checks(&map, None).unwrap().content_digest.is_some());
        map.append("content-digest", HeaderValue::from_static("sha-256=:AAAA:"));
        assert_eq!(checks(&map, None).unwrap_err(), Error::DigestInvalid);
        let mut map = HeaderMap::new();
        map.insert("repr-digest", HeaderValue::from_static("sha-256=AAAA"));
        assert_eq!(checks(&map, None).unwrap_err(), Error::DigestInvalid);
    }

    #[test]
    fn digest_headers_that_check_nothing_are_400() {
        for name in ["content-digest", "repr-digest"] {
            let mut map = HeaderMap::new();
            map.insert(
                name,
                HeaderValue::from_static("md5=:AAAAAAAAAAAAAAAAAAAAAA==:"),
            );
            assert_eq!(checks(&map, None).unwrap_err(), Error::DigestInvalid);
            // Beside a known algorithm, an unknown one is ignored.
            map.insert(
                name,
                HeaderValue::from_static(
                    "md5=:AAAAAAAAAAAAAAAAAAAAAA==:, sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
                ),
            );
            let checks = checks(&map, None).unwrap();
            let digest = checks.content_digest.or(checks.repr_digest).unwrap();
            assert_eq!(
                digest.to_string(),
                "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
            );
        }
    }

    #[test]
    fn only_put_get_and_head_are_served() {
        assert_eq!(signed_method(&Method::PUT), Ok(SignedMethod::Put));
        assert_eq!(signed_method(&Method::HEAD), Ok(SignedMethod::Get));
        for method in [Method::POST, Method::DELETE, Method::OPTIONS, Method::PATCH] {
            assert_eq!(signed_method(&method), Err(Error::MethodNotAllowed));
        }
    }
}

//! The HTTP working group's resumable uploads
//! (draft-ietf-httpbis-resumable-upload) on the signed URL: the signed `put`
//! URL is the upload resource. A request carrying
//! `Upload-Draft-Interop-Version` is classified here into the resumable flows
//! every protocol shares (open, append, offset, cancel), run by `flows`, and
//! answered with the headers and problem types of the draft its interop
//! version follows (see [`Interop`]).

mod flows;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use crate::envelope::{self, Meta};
use crate::headers::number::number;
use crate::upload::fields::{number_header, single};
use crate::Error;

pub(crate) use flows::run;

pub(crate) const UPLOAD_DRAFT_INTEROP_VERSION: HeaderName =
    HeaderName::from_static("upload-draft-interop-version");
pub(crate) const UPLOAD_COMPLETE: HeaderName = HeaderName::from_static("upload-complete");
pub(crate) const UPLOAD_INCOMPLETE: HeaderName = HeaderName::from_static("upload-incomplete");
pub(crate) const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
pub(crate) const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
pub(crate) const UPLOAD_LIMIT: HeaderName = HeaderName::from_static("upload-limit");

/// The media type of an append's body, required from interop version 6.
const PARTIAL_UPLOAD: &str = "application/partial-upload";

/// The problem types (RFC 9457) the drafts define.
const PROBLEM_MISMATCHING_OFFSET: &str =
    "https://iana.org/assignments/http-problem-types#mismatching-upload-offset";
const PROBLEM_COMPLETED: &str = "https://iana.org/assignments/http-problem-types#completed-upload";
const PROBLEM_INCONSISTENT_LENGTH: &str =
    "https://iana.org/assignments/http-problem-types#inconsistent-upload-length";

/// An interop version the layer speaks, and the rules of the draft text it
/// follows:
///
/// | version | draft text | differs from the one before |
/// |---|---|---|
/// | 3 | -01 | `Upload-Incomplete` (`?1` while incomplete); an append without it completes the upload; an incomplete append is answered `201` |
/// | 5 | -03 | `Upload-Complete` in its place |
/// | 6 | -04, -05 | appends need `application/partial-upload`; `Upload-Limit` (its lifetime key `expires`); problem types for a wrong offset and a completed upload; a `HEAD` with `Upload-Length` is refused |
/// | 7 | -06 to -08 | `Upload-Limit`'s `max-age`; the inconsistent length problem type; appends must carry `Upload-Complete`, and an incomplete one is answered `204` |
/// | 8 | -09 to -11 | `OPTIONS` carries `Accept-Patch`; an append to a completed upload is an inconsistent length, or `410` when empty |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interop(u8);

impl Interop {
    /// The interop versions served.
    pub(crate) const SUPPORTED: [u8; 5] = [3, 5, 6, 7, 8];

    /// The version a request asks for: present once, an integer the layer
    /// speaks (else `412 version_unsupported`).
    pub(crate) fn of(headers: &HeaderMap) -> Result<Interop, Error> {
        let value = single(headers, &UPLOAD_DRAFT_INTEROP_VERSION)?.ok_or(Error::HeaderInvalid)?;
        let version = number(value.as_bytes()).map_err(|_| Error::VersionUnsupported)?;
        Self::SUPPORTED
            .iter()
            .find(|supported| u64::from(**supported) == version)
            .map(|version| Interop(*version))
            .ok_or(Error::VersionUnsupported)
    }

    /// A version taken from [`Interop::number`].
    pub(crate) fn known(version: u8) -> Interop {
        Interop(version)
    }

    /// The version number.
    pub(crate) fn number(self) -> u8 {
        self.0
    }

    /// Version 3 says `Upload-Incomplete`; later ones `Upload-Complete`.
    fn says_incomplete(self) -> bool {
        self.0 == 3
    }

    /// Appends carry `Content-Type: application/partial-upload`.
    fn requires_partial_upload(self) -> bool {
        self.0 >= 6
    }

    /// Answers carry `Upload-Limit` (and offsets `Upload-Length`).
    fn announces_limits(self) -> bool {
        self.0 >= 6
    }

    /// A `HEAD` carrying `Upload-Length` is refused: draft -05 (version 6)
    /// says so, as it does for `Upload-Offset` and `Upload-Complete`, which
    /// every version refuses on a `HEAD`.
    fn head_refuses_length(self) -> bool {
        self.0 >= 6
    }

    /// A wrong offset and a completed upload are problem types.
    fn has_offset_problems(self) -> bool {
        self.0 >= 6
    }

    /// An inconsistent length is a problem type.
    fn has_length_problem(self) -> bool {
        self.0 >= 7
    }

    /// An append must say whether it completes the upload; before version 7
    /// one that does not say completes it.
    fn append_says_completion(self) -> bool {
        self.0 >= 7
    }

    /// The status of an append that leaves the upload incomplete: `201
    /// (Created)` in the drafts before -06, `204 (No Content)` in their examples after.
    fn append_progress(self) -> StatusCode {
        if self.0 >= 7 {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::CREATED
        }
    }

    /// Every refusal of an append carries `Upload-Complete: ?0`.
    fn marks_refused_appends(self) -> bool {
        self.0 >= 7
    }

    /// `OPTIONS` carries `Accept-Patch`.
    fn accepts_patch(self) -> bool {
        self.0 >= 8
    }

    /// `Upload-Limit`'s key for the resource's remaining lifetime.
    fn age_key(self) -> &'static str {
        if self.0 == 6 {
            "expires"
        } else {
            "max-age"
        }
    }

    /// Whether the upload is complete, as the request says it.
    fn complete(self, headers: &HeaderMap) -> Result<Option<bool>, Error> {
        let name = if self.says_incomplete() {
            &UPLOAD_INCOMPLETE
        } else {
            &UPLOAD_COMPLETE
        };
        let Some(value) = single(headers, name)? else {
            return Ok(None);
        };
        let flag = match value.as_bytes() {
            b"?1" => true,
            b"?0" => false,
            _ => return Err(Error::HeaderInvalid),
        };
        Ok(Some(flag != self.says_incomplete()))
    }

    /// The header that tells whether the upload is complete, in this version's words.
    fn completion_header(self, complete: bool) -> (HeaderName, HeaderValue) {
        let flag = |set: bool| HeaderValue::from_static(if set { "?1" } else { "?0" });
        if self.says_incomplete() {
            (UPLOAD_INCOMPLETE, flag(!complete))
        } else {
            (UPLOAD_COMPLETE, flag(complete))
        }
    }
}

/// What a draft request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IetfAction {
    /// `OPTIONS`: the limits.
    Options,
    /// `HEAD`: the offset.
    Offset,
    /// `POST` or `PUT` with `Upload-Complete`: create the upload, store the
    /// body from offset 0.
    Create {
        /// The request says the upload ends with it.
        complete: bool,
        /// The upload's length, as the request indicates it.
        total: Option<u64>,
        /// The body's length if it may hold bytes: `Some(None)` for a body
        /// of unknown length.
        body: Option<Option<u64>>,
    },
    /// `PATCH`: bytes from `offset`.
    Append {
        offset: u64,
        /// The request says the upload ends with it.
        complete: bool,
        /// The upload's length, as the request indicates it.
        total: Option<u64>,
        /// The body's length, if known.
        length: Option<u64>,
    },
    /// `DELETE`: cancel the upload.
    Cancel,
}

/// Whether a request speaks the draft: it carries
/// `Upload-Draft-Interop-Version` (and no `Tus-Resumable`, which wins).
pub(crate) fn is_ietf(headers: &HeaderMap) -> bool {
    headers.contains_key(UPLOAD_DRAFT_INTEROP_VERSION)
}

fn is_partial_upload(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case(PARTIAL_UPLOAD))
}

/// The upload's length as a request from `offset` indicates it: its
/// `Upload-Length`, and its end when it says it completes the upload and its
/// body's length is known. Two that differ, or a body that passes the
/// length, are `400` (inconsistent length); a length past `max_size` is `413`.
fn indicated_total(
    headers: &HeaderMap,
    offset: u64,
    complete: bool,
    length: Option<u64>,
    max_size: u64,
) -> Result<Option<u64>, Error> {
    let declared = number_header(headers, &UPLOAD_LENGTH)?;
    let end = match length {
        Some(length) => Some(offset.checked_add(length).ok_or(Error::TooLarge)?),
        None => None,
    };
    let total = match (declared, end.filter(|_| complete)) {
        (Some(declared), Some(end)) if declared != end => return Err(Error::TotalMismatch),
        (declared, end) => declared.or(end),
    };
    if let (Some(total), Some(end)) = (total, end) {
        if end > total {
            return Err(Error::TotalMismatch);
        }
    }
    if total.is_some_and(|total| total > max_size) || end.is_some_and(|end| end > max_size) {
        return Err(Error::TooLarge);
    }
    Ok(total)
}

/// Classifies a draft request. `body_len` is the body's length if known (its
/// `Content-Length`); `has_body` whether it may hold bytes.
pub(crate) fn classify(
    method: &Method,
    headers: &HeaderMap,
    body_len: Option<u64>,
    has_body: bool,
    max_size: u64,
) -> Result<(Interop, IetfAction), Error> {
    let interop = Interop::of(headers)?;
    let complete = interop.complete(headers)?;
    let length = if has_body { body_len } else { Some(0) };
    let action = match *method {
        Method::OPTIONS => IetfAction::Options,
        Method::HEAD | Method::DELETE => {
            if complete.is_some() || headers.contains_key(UPLOAD_OFFSET) {
                return Err(Error::HeaderInvalid);
            }
            if *method == Method::HEAD {
                if interop.head_refuses_length() && headers.contains_key(UPLOAD_LENGTH) {
                    return Err(Error::HeaderInvalid);
                }
                IetfAction::Offset
            } else {
                IetfAction::Cancel
            }
        }
        Method::POST | Method::PUT => {
            let complete = complete.ok_or(Error::HeaderInvalid)?;
            let total = indicated_total(headers, 0, complete, length, max_size)?;
            let body = (has_body && body_len != Some(0)).then_some(body_len);
            IetfAction::Create {
                complete,
                total,
                body,
            }
        }
        Method::PATCH => {
            if interop.requires_partial_upload() && !is_partial_upload(headers) {
                return Err(Error::ContentTypeInvalid);
            }
            let complete = match complete {
                Some(complete) => complete,
                None if interop.append_says_completion() => return Err(Error::HeaderInvalid),
                None => true,
            };
            let offset = number_header(headers, &UPLOAD_OFFSET)?.ok_or(Error::HeaderInvalid)?;
            let total = indicated_total(headers, offset, complete, length, max_size)?;
            IetfAction::Append {
                offset,
                complete,
                total,
                length,
            }
        }
        _ => return Err(Error::MethodNotAllowed),
    };
    Ok((interop, action))
}

/// A problem details body (RFC 9457) of `kind`, with the envelope's `code`
/// as an extension member and `extra` members.
fn problem(
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    error: Error,
    extra: &[(&'static str, u64)],
) -> Response<Bytes> {
    let mut body = serde_json::json!({
        "type": kind,
        "title": title,
        "status": status.as_u16(),
        "detail": error.to_string(),
        "code": error.code(),
    });
    if let Some(members) = body.as_object_mut() {
        for (name, value) in extra {
            members.insert((*name).to_owned(), serde_json::Value::from(*value));
        }
    }
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response.extensions_mut().insert(error);
    response
}

/// The answer to a refused draft request: the draft's problem type where its
/// version defines one, else the envelope. An inconsistent length is `400`,
/// and so is an append to a completed upload from version 6.
pub(crate) fn error_response(meta: &Meta, error: Error, interop: Interop) -> Response<Bytes> {
    let mut response = refusal(meta, error, interop);
    mark_refused_append(&mut response, meta, interop);
    response
}

fn refusal(meta: &Meta, error: Error, interop: Interop) -> Response<Bytes> {
    match error {
        Error::UploadComplete if interop.has_offset_problems() && meta.method == Method::PATCH => {
            problem(
                StatusCode::BAD_REQUEST,
                PROBLEM_COMPLETED,
                "upload is already completed",
                error,
                &[],
            )
        }
        Error::TotalMismatch if interop.has_length_problem() => problem(
            StatusCode::BAD_REQUEST,
            PROBLEM_INCONSISTENT_LENGTH,
            "inconsistent length values for upload",
            error,
            &[],
        ),
        Error::TotalMismatch => envelope::error_with_status(meta, error, StatusCode::BAD_REQUEST),
        _ => envelope::error(meta, error),
    }
}

/// Drafts -06 to -09 (interop versions 7 and 8): every answer to an append
/// that did not complete the upload, successful or not, carries
/// `Upload-Complete: ?0` ("this response does not belong to the processing
/// of the uploaded representation"); drafts -10 and -11 read a missing one
/// the same way. Refusals of appends carry it from version 7.
fn mark_refused_append(response: &mut Response<Bytes>, meta: &Meta, interop: Interop) {
    if interop.marks_refused_appends() && meta.method == Method::PATCH {
        let (name, value) = interop.completion_header(false);
        response.headers_mut().insert(name, value);
    }
}

/// The refusal of an append to a completed upload. Drafts -10 and -11
/// (interop version 8) tell the two apart: bytes for a completed upload are
/// an inconsistent length (`400`); an empty append, the completing request
/// sent again, is `410 (Gone)` with the completed-upload problem type.
/// Earlier versions: see [`error_response`].
pub(crate) fn completed_append(meta: &Meta, interop: Interop, empty: bool) -> Response<Bytes> {
    let error = Error::UploadComplete;
    let mut response = match (interop.0 >= 8, empty) {
        (true, true) => problem(
            StatusCode::GONE,
            PROBLEM_COMPLETED,
            "upload is already completed",
            error,
            &[],
        ),
        (true, false) => problem(
            StatusCode::BAD_REQUEST,
            PROBLEM_INCONSISTENT_LENGTH,
            "inconsistent length values for upload",
            error,
            &[],
        ),
        (false, _) => refusal(meta, error, interop),
    };
    mark_refused_append(&mut response, meta, interop);
    response
}

/// The `409` of an append at the wrong offset, with the current one.
pub(crate) fn offset_mismatch(
    meta: &Meta,
    interop: Interop,
    expected: u64,
    provided: u64,
) -> Response<Bytes> {
    let mut response = if interop.has_offset_problems() {
        problem(
            StatusCode::CONFLICT,
            PROBLEM_MISMATCHING_OFFSET,
            "offset from request does not match offset of resource",
            Error::OffsetMismatch,
            &[("expected-offset", expected), ("provided-offset", provided)],
        )
    } else {
        envelope::error(meta, Error::OffsetMismatch)
    };
    response
        .headers_mut()
        .insert(UPLOAD_OFFSET, HeaderValue::from(expected));
    let (name, value) = interop.completion_header(false);
    response.headers_mut().insert(name, value);
    response
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
    fn versions_follow_their_drafts() {
        for version in ["3", "5", "6", "7", "8"] {
            let map = headers(&[("upload-draft-interop-version", version)]);
            assert_eq!(
                Interop::of(&map).map(|v| v.number().to_string()),
                Ok(version.into())
            );
        }
        for version in ["2", "4", "9", "x", "-6"] {
            let map = headers(&[("upload-draft-interop-version", version)]);
            assert_eq!(
                Interop::of(&map),
                Err(Error::VersionUnsupported),
                "{version}"
            );
        }
        // Version 3 says the opposite flag under another name.
        let v3 = headers(&[
            ("upload-draft-interop-version", "3"),
            ("upload-incomplete", "?1"),
        ]);
        assert_eq!(Interop(3).complete(&v3), Ok(Some(false)));
        assert_eq!(Interop(5).complete(&v3), Ok(None));
        let v6 = headers(&[("upload-complete", "?1")]);
        assert_eq!(Interop(6).complete(&v6), Ok(Some(true)));
        assert_eq!(
            Interop(6).complete(&headers(&[("upload-complete", "1")])),
            Err(Error::HeaderInvalid)
        );
    }

    #[test]
    fn creations_and_appends_check_their_lengths() {
        let run = |method: Method, pairs: &[(&'static str, &'static str)], len: u64| {
            classify(&method, &headers(pairs), Some(len), len > 0, MAX).map(|(_, action)| action)
        };
        assert_eq!(
            run(
                Method::POST,
                &[
                    ("upload-draft-interop-version", "6"),
                    ("upload-complete", "?0"),
                    ("upload-length", "100")
                ],
                0
            ),
            Ok(IetfAction::Create {
                complete: false,
                total: Some(100),
                body: None
            })
        );
        assert_eq!(
            run(
                Method::PUT,
                &[
                    ("upload-draft-interop-version", "7"),
                    ("upload-complete", "?1")
                ],
                10
            ),
            Ok(IetfAction::Create {
                complete: true,
                total: Some(10),
                body: Some(Some(10))
            })
        );
        // A body past its Upload-Length, or a complete one short of it.
        for (complete, len) in [("?0", 101), ("?1", 99)] {
            let pairs = [
                ("upload-draft-interop-version", "7"),
                ("upload-complete", complete),
                ("upload-length", "100"),
            ];
            assert_eq!(run(Method::POST, &pairs, len), Err(Error::TotalMismatch));
        }
        assert_eq!(
            run(
                Method::POST,
                &[
                    ("upload-draft-interop-version", "7"),
                    ("upload-complete", "?0"),
                    ("upload-length", "1001")
                ],
                0
            ),
            Err(Error::TooLarge)
        );
        assert_eq!(
            run(Method::POST, &[("upload-draft-interop-version", "7")], 0),
            Err(Error::HeaderInvalid)
        );
        // Appends: the media type from version 6, an offset always.
        let patch = [
            ("upload-draft-interop-version", "6"),
            ("upload-complete", "?0"),
            ("upload-offset", "5"),
        ];
        assert_eq!(
            run(Method::PATCH, &patch, 3),
            Err(Error::ContentTypeInvalid)
        );
        let mut v5 = patch;
        v5[0].1 = "5";
        assert_eq!(
            run(Method::PATCH, &v5, 3),
            Ok(IetfAction::Append {
                offset: 5,
                complete: false,
                total: None,
                length: Some(3)
            })
        );
        // Before version 7 an append that does not say completes the upload.
        assert_eq!(
            run(
                Method::PATCH,
                &[
                    ("upload-draft-interop-version", "5"),
                    ("upload-offset", "5")
                ],
                3
            ),
            Ok(IetfAction::Append {
                offset: 5,
                complete: true,
                total: Some(8),
                length: Some(3)
            })
        );
        assert_eq!(
            run(
                Method::PATCH,
                &[
                    ("upload-draft-interop-version", "7"),
                    ("content-type", "application/partial-upload"),
                    ("upload-offset", "5")
                ],
                3
            ),
            Err(Error::HeaderInvalid)
        );
        assert_eq!(
            run(
                Method::PATCH,
                &[
                    ("upload-draft-interop-version", "8"),
                    ("upload-complete", "?1"),
                    ("content-type", "application/partial-upload"),
                    ("upload-offset", "998"),
                ],
                3
            ),
            Err(Error::TooLarge)
        );
        assert_eq!(
            run(
                Method::HEAD,
                &[
                    ("upload-draft-interop-version", "8"),
                    ("upload-offset", "0")
                ],
                0
            ),
            Err(Error::HeaderInvalid)
        );
        // Upload-Length on a HEAD: refused from version 6 (draft -05).
        for (version, refused) in [("3", false), ("5", false), ("6", true), ("8", true)] {
            let pairs = [
                ("upload-draft-interop-version", version),
                ("upload-length", "10"),
            ];
            let expected = if refused {
                Err(Error::HeaderInvalid)
            } else {
                Ok(IetfAction::Offset)
            };
            assert_eq!(run(Method::HEAD, &pairs, 0), expected, "{version}");
        }
        assert_eq!(
            run(Method::GET, &[("upload-draft-interop-version", "8")], 0),
            Err(Error::MethodNotAllowed)
        );
    }
}

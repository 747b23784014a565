//! The IETF resumable uploads draft on the signed URL
//! (docs/protocol.md#ietf-resumable-uploads), over real HTTP on 127.0.0.1, on
//! every backend: each row of the contract and its errors, at every interop
//! version the layer speaks (3, 5, 6, 7, 8), each against what its own draft
//! text says ([`Draft`]).

use bytes::Bytes;
use http::Method;
use serde_json::Value;

use crate::common::*;
use crate::tus::tus as request;
use tower_signed_upload::UrlOptions;

mod appends;
mod creation;
mod cut_off;
mod refusals;

/// Every interop version served.
const DRAFTS: [Draft; 5] = [Draft(3), Draft(5), Draft(6), Draft(7), Draft(8)];

/// The URLs of these tests live an hour from the fixed clock: `Upload-Limit`
/// tells so exactly.
const LIFETIME: u64 = 3600;

/// One interop version, and what its own draft text expects (the table of
/// docs/protocol.md#interop-versions, written out here independently of the
/// crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Draft(u8);

/// How a refusal reads: its status, the envelope's `code`, and the draft's
/// problem type when the version defines one (else the JSON envelope).
#[derive(Debug, Clone, Copy)]
struct Refusal {
    status: u16,
    code: &'static str,
    problem: Option<&'static str>,
}

impl Refusal {
    /// A refusal the drafts give no problem type: the envelope.
    fn envelope(status: u16, code: &'static str) -> Refusal {
        Refusal {
            status,
            code,
            problem: None,
        }
    }

    /// Checks `answer` against the refusal; returns its JSON body.
    #[track_caller]
    fn check(&self, answer: &Answer) -> Value {
        assert_eq!(answer.status.as_u16(), self.status, "{answer:?}");
        assert!(answer.header("tus-resumable").is_none(), "{answer:?}");
        let json = answer.json();
        match self.problem {
            Some(kind) => {
                assert_eq!(
                    answer.header("content-type"),
                    Some("application/problem+json"),
                    "{answer:?}"
                );
                assert_eq!(
                    json["type"],
                    format!("https://iana.org/assignments/http-problem-types#{kind}"),
                    "{answer:?}"
                );
                assert_eq!(json["status"], self.status, "{answer:?}");
                assert!(json["title"].is_string(), "{answer:?}");
                assert!(json["detail"].is_string(), "{answer:?}");
                assert_eq!(json["code"], self.code, "{answer:?}");
            }
            None => {
                assert_eq!(
                    answer.header("content-type"),
                    Some("application/json"),
                    "{answer:?}"
                );
                assert_eq!(json["error"]["code"], self.code, "{answer:?}");
                assert_eq!(json["meta"]["status"], self.status, "{answer:?}");
            }
        }
        json
    }
}

impl Refusal {
    /// Checks the refusal of an append (`PATCH`) of `draft`: from version 7
    /// (drafts -06 to -09: "any response, successful or not") it says
    /// `Upload-Complete: ?0`.
    #[track_caller]
    fn check_append(&self, draft: Draft, answer: &Answer) -> Value {
        let json = self.check(answer);
        if draft.0 >= 7 {
            assert!(!draft.says_complete(answer), "{answer:?}");
        } else {
            assert_eq!(answer.header("upload-complete"), None, "{answer:?}");
            assert_eq!(answer.header("upload-incomplete"), None, "{answer:?}");
        }
        json
    }

    /// Checks the answer to a `HEAD`, which has no body: the status, and the
    /// media type of the body a `GET` would get.
    #[track_caller]
    fn check_head(&self, answer: &Answer) {
        assert_eq!(answer.status.as_u16(), self.status, "{answer:?}");
        assert!(answer.body.is_empty(), "{answer:?}");
        let media = if self.problem.is_some() {
            "application/problem+json"
        } else {
            "application/json"
        };
        assert_eq!(answer.header("content-type"), Some(media), "{answer:?}");
    }
}

impl Draft {
    /// `Upload-Draft-Interop-Version`.
    fn version(self) -> (&'static str, &'static str) {
        let value = match self.0 {
            3 => "3",
            5 => "5",
            6 => "6",
            7 => "7",
            _ => "8",
        };
        ("upload-draft-interop-version", value)
    }

    /// The completion header in this draft's words: `Upload-Incomplete` with
    /// the opposite sense in -01 (version 3), `Upload-Complete` after.
    fn complete(self, done: bool) -> (&'static str, &'static str) {
        let flag = |set: bool| if set { "?1" } else { "?0" };
        if self.0 == 3 {
            ("upload-incomplete", flag(!done))
        } else {
            ("upload-complete", flag(done))
        }
    }

    /// Whether an answer says the upload is complete, in this draft's words
    /// (and never in the other ones').
    #[track_caller]
    fn says_complete(self, answer: &Answer) -> bool {
        let (name, other) = if self.0 == 3 {
            ("upload-incomplete", "upload-complete")
        } else {
            ("upload-complete", "upload-incomplete")
        };
        assert!(answer.header(other).is_none(), "{other} in {answer:?}");
        let set = match answer.header(name) {
            Some("?1") => true,
            Some("?0") => false,
            value => panic!("{name}: {value:?} in {answer:?}"),
        };
        set != (self.0 == 3)
    }

    /// The headers every append of this draft carries besides its own:
    /// `Content-Type: application/partial-upload` from draft -04 (version 6).
    fn append_type(self) -> Option<(&'static str, &'static str)> {
        (self.0 >= 6).then_some(("content-type", "application/partial-upload"))
    }

    /// The status of an append that leaves the upload incomplete: `201` in
    /// drafts -01 to -05, `204` from -06 (version 7).
    fn progress(self) -> u16 {
        if self.0 >= 7 {
            204
        } else {
            201
        }
    }

    /// Whether an append without the completion header completes the
    /// upload (before version 7), rather than being refused.
    fn unsaid_append_completes(self) -> bool {
        self.0 < 7
    }

    /// `Upload-Limit` for a URL of `max_size`: none before draft -04, the
    /// lifetime as `expires` in -04 and -05 (version 6), `max-age` after.
    fn limit(self, max_size: u64) -> Option<String> {
        match self.0 {
            3 | 5 => None,
            6 => Some(format!(
                "max-size={max_size}, min-size=0, expires={LIFETIME}"
            )),
            _ => Some(format!(
                "max-size={max_size}, min-size=0, max-age={LIFETIME}"
            )),
        }
    }

    /// `Upload-Length` on an answer: the known length, from version 6.
    fn length(self, known: Option<u64>) -> Option<String> {
        known
            .filter(|_| self.0 >= 6)
            .map(|length| length.to_string())
    }

    /// A `HEAD` carrying `Upload-Length` is `400`: draft -05 (version 6)
    /// says so; the layer keeps the rule after.
    fn head_refuses_length(self) -> bool {
        self.0 >= 6
    }

    /// `Accept-Patch` on `OPTIONS`, from version 8.
    fn accept_patch(self) -> Option<&'static str> {
        (self.0 >= 8).then_some("application/partial-upload")
    }

    /// An append at another offset: `409`, a problem type from version 6.
    fn wrong_offset(self) -> Refusal {
        Refusal {
            status: 409,
            code: "offset_mismatch",
            problem: (self.0 >= 6).then_some("mismatching-upload-offset"),
        }
    }

    /// An inconsistent length: `400`, a problem type from version 7.
    fn inconsistent_length(self) -> Refusal {
        Refusal {
            status: 400,
            code: "total_mismatch",
            problem: (self.0 >= 7).then_some("inconsistent-upload-length"),
        }
    }

    /// An append to a completed upload: `409` in the envelope before
    /// version 6, the completed-upload problem (`400`) in 6 and 7; in 8
    /// bytes are an inconsistent length and an empty append is `410`.
    fn completed_append(self, empty: bool) -> Refusal {
        let (status, problem) = match (self.0, empty) {
            (3 | 5, _) => (409, None),
            (6 | 7, _) => (400, Some("completed-upload")),
            (_, true) => (410, Some("completed-upload")),
            (_, false) => (400, Some("inconsistent-upload-length")),
        };
        Refusal {
            status,
            code: "upload_complete",
            problem,
        }
    }

    /// An answer that leaves the upload incomplete at `offset`, with the
    /// upload's `length` if known.
    #[track_caller]
    fn check_incomplete(self, answer: &Answer, status: u16, offset: u64, length: Option<u64>) {
        assert_eq!(answer.status.as_u16(), status, "{self:?}: {answer:?}");
        assert!(!self.says_complete(answer), "{self:?}: {answer:?}");
        assert_eq!(upload_offset(answer), offset, "{self:?}: {answer:?}");
        assert_eq!(
            answer.header("upload-length"),
            self.length(length).as_deref(),
            "{self:?}: {answer:?}"
        );
        assert!(answer.header("tus-resumable").is_none(), "{answer:?}");
    }

    /// The completion: the inner service's answer (`RespondCreated`'s `201`
    /// and File object) with the final offset and the completion header.
    #[track_caller]
    fn check_completed(self, answer: &Answer, size: u64) {
        assert_eq!(answer.status.as_u16(), 201, "{self:?}: {answer:?}");
        assert!(self.says_complete(answer), "{self:?}: {answer:?}");
        assert_eq!(upload_offset(answer), size, "{self:?}: {answer:?}");
        assert_eq!(
            answer.header("upload-length"),
            self.length(Some(size)).as_deref(),
            "{self:?}: {answer:?}"
        );
        assert_eq!(answer.json()["data"]["filesize"], size, "{answer:?}");
    }

    /// A creation (`POST` or `PUT`) with the completion header, an optional
    /// `Upload-Length` and `body`.
    async fn create(
        self,
        method: Method,
        url: &str,
        length: Option<u64>,
        done: bool,
        body: &[u8],
    ) -> Answer {
        let length = length.map(|length| length.to_string());
        let mut headers = vec![self.complete(done)];
        if let Some(length) = &length {
            headers.push(("upload-length", length.as_str()));
        }
        self.send(method, url, &headers, body).await
    }

    /// A `POST` creation.
    async fn post(self, url: &str, length: Option<u64>, done: bool, body: &[u8]) -> Answer {
        self.create(Method::POST, url, length, done, body).await
    }

    /// A `PATCH` at `at` with the completion header (and the media type
    /// the version requires).
    async fn append(self, url: &str, at: u64, done: bool, body: &[u8]) -> Answer {
        self.append_with(url, at, &[self.complete(done)], body)
            .await
    }

    /// A `PATCH` at `at` with `extra` headers (and the media type the
    /// version requires).
    async fn append_with(self, url: &str, at: u64, extra: &[(&str, &str)], body: &[u8]) -> Answer {
        let at = at.to_string();
        let mut headers = vec![("upload-offset", at.as_str())];
        headers.extend(self.append_type());
        headers.extend_from_slice(extra);
        self.send(Method::PATCH, url, &headers, body).await
    }

    /// A `HEAD`.
    async fn head(self, url: &str) -> Answer {
        self.send(Method::HEAD, url, &[], b"").await
    }

    /// The upload's offset, by `HEAD`.
    async fn offset(self, url: &str) -> u64 {
        let answer = self.head(url).await;
        assert_eq!(answer.status.as_u16(), 204, "{answer:?}");
        upload_offset(&answer)
    }

    /// Any request of this version: the interop header and `headers`.
    async fn send(
        self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let mut all = vec![self.version()];
        all.extend_from_slice(headers);
        send(
            &client(),
            request(method, url, &all, Bytes::copy_from_slice(body)),
        )
        .await
    }
}

#[track_caller]
fn upload_offset(answer: &Answer) -> u64 {
    answer
        .header("upload-offset")
        .unwrap_or_else(|| panic!("no Upload-Offset: {answer:?}"))
        .parse()
        .unwrap()
}

/// A fresh `put` URL per draft and name.
fn url_for(server: &StorageServer, draft: Draft, name: &str) -> String {
    server.put_url(&format!("d/v{}/{name}", draft.0), &UrlOptions::new())
}

/// The inner service sees a draft completion as a `PUT` of the path, with
/// the File and the interop version in the extensions, at every version.
#[tokio::test]
async fn the_inner_service_sees_a_put_with_the_interop_version() {
    use tower_signed_upload::{SignedMethod, UploadProtocol};
    let (signer, addr, seen) = serve_recording_inner().await;
    for draft in DRAFTS {
        let url = sign(
            &signer,
            addr,
            &format!("d/inner{}.bin", draft.0),
            SignedMethod::Put,
        );
        let created = draft.post(&url, None, false, b"").await;
        assert_eq!(created.status.as_u16(), 201, "{created:?}");
        let done = draft.append(&url, 0, true, b"abc").await;
        // The inner service's own answer, with the draft's headers added.
        assert_eq!(done.status.as_u16(), 200, "{done:?}");
        assert_eq!(upload_offset(&done), 3);
        assert!(draft.says_complete(&done));
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        assert_eq!(seen.len(), 1, "{draft:?}");
        let (method, via, size) = &seen[0];
        assert_eq!(method, Method::PUT);
        let via = via.clone().expect("UploadVia in the extensions");
        assert_eq!(
            (via.protocol, via.method),
            (
                UploadProtocol::IetfDraft {
                    interop_version: draft.0
                },
                Method::PATCH
            )
        );
        assert_eq!(*size, Some(3));
    }
}

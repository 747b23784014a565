//! The JSON envelope: the only code that writes response JSON.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use serde::Serialize;

use crate::storage::ByteRanges;
use crate::{Error, UploadedFile};

/// An id for one request, `req_` and 16 hex digits, unique within the process
/// and unlikely to repeat across processes.
///
/// The layer inserts it into the request extensions and writes it as
/// `meta.request_id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    pub(crate) fn next() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = *SEED.get_or_init(|| {
            let mut bytes = [0u8; 8];
            // Without entropy the ids are still unique within the process.
            let _ = getrandom::fill(&mut bytes);
            u64::from_le_bytes(bytes)
        });
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        RequestId(format!("req_{:016x}", splitmix(seed.wrapping_add(count))))
    }

    /// The id as written in `meta.request_id`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A bijective mix, so consecutive counters give unrelated-looking ids.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// What the envelope's `meta` and `links` describe: one request.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) request_id: RequestId,
    pub(crate) method: Method,
    /// The request path, raw, without the query (which holds the signature).
    pub(crate) path: String,
    /// The file's unsigned public URL, when the path was valid.
    pub(crate) link: Option<String>,
}

impl Meta {
    /// The meta of a request a service behind the layer answers: the layer's
    /// request id (or a new one) and the committed file's URL as the link.
    pub(crate) fn of_request<B>(request: &http::Request<B>) -> Self {
        let extensions = request.extensions();
        Meta {
            request_id: extensions
                .get::<RequestId>()
                .cloned()
                .unwrap_or_else(RequestId::next),
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            link: extensions
                .get::<UploadedFile>()
                .map(|file| file.url.clone()),
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    meta: MetaJson<'a>,
    data: Option<T>,
    error: Option<ErrorJson>,
    links: Links<'a>,
}

#[derive(Serialize)]
struct MetaJson<'a> {
    request_id: &'a str,
    method: &'a str,
    path: &'a str,
    status: u16,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct ErrorJson {
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct Links<'a> {
    #[serde(rename = "self", skip_serializing_if = "Option::is_none")]
    link: Option<&'a str>,
}

/// The upload object of `202` and `308` answers.
#[derive(Serialize)]
struct UploadJson<'a> {
    object: &'static str,
    path: &'a str,
    filesize: Option<u64>,
    received: u64,
    ranges: &'a [[u64; 2]],
}

fn write<T: Serialize>(
    meta: &Meta,
    status: StatusCode,
    data: Option<T>,
    error: Option<Error>,
) -> Response<Bytes> {
    let envelope = Envelope {
        meta: MetaJson {
            request_id: meta.request_id.as_str(),
            method: meta.method.as_str(),
            path: &meta.path,
            status: status.as_u16(),
            kind: "object",
        },
        data,
        error: error.map(|error| ErrorJson {
            code: error.code(),
            message: error.to_string(),
        }),
        links: Links {
            link: meta.link.as_deref(),
        },
    };
    let body =
        serde_json::to_vec(&envelope).expect("the envelope serializes: plain strings and numbers");
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A rejection: the status and code of `error`; the `Error` goes into the
/// response's extensions.
pub(crate) fn error(meta: &Meta, error: Error) -> Response<Bytes> {
    let mut response = error_with_status(meta, error, error.status());
    if error == Error::MethodNotAllowed {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, PUT"));
    }
    response
}

/// The envelope of `error` answered with `status` in place of the error's
/// own (the IETF draft's inconsistent length is `400`, where the same code
/// is `409` elsewhere): `meta.status` says the status sent.
pub(crate) fn error_with_status(meta: &Meta, error: Error, status: StatusCode) -> Response<Bytes> {
    let mut response = write::<()>(meta, status, None, Some(error));
    response.extensions_mut().insert(error);
    response
}

/// An answer with any serializable `data`.
pub(crate) fn data<T: Serialize>(meta: &Meta, status: StatusCode, data: &T) -> Response<Bytes> {
    write(meta, status, Some(data), None)
}

/// A File object answer (`201` from the default handler, `200` for replays).
pub(crate) fn file(meta: &Meta, status: StatusCode, file: &UploadedFile) -> Response<Bytes> {
    write(meta, status, Some(file), None)
}

/// A `202` (chunk stored) or `308` (status query) answer with the upload object
/// and, when a prefix is stored, `Range: bytes=0-N`.
pub(crate) fn upload(
    meta: &Meta,
    status: StatusCode,
    path: &str,
    total: Option<u64>,
    ranges: &ByteRanges,
) -> Response<Bytes> {
    let data = UploadJson {
        object: "upload",
        path,
        filesize: total,
        received: ranges.received(),
        ranges: ranges.as_slice(),
    };
    let mut response = write(meta, status, Some(data), None);
    if let Some(end) = ranges.prefix_end() {
        let value = HeaderValue::from_str(&format!("bytes=0-{end}"))
            .expect("digits are a valid header value");
        response.headers_mut().insert(header::RANGE, value);
    }
    response
}

//! The `request` target: arbitrary method, headers, path, query and body
//! through the layer over `MemoryStorage`; every status must be one that
//! docs/protocol.md#status-codes allows for the input. Signed queries may carry the
//! policy parameters (docs/protocol.md#signed-policy: `max_size`, `type`, `kid`), and requests
//! digest headers with right or wrong values. Requests may speak tus
//! (docs/protocol.md#tus): its headers, with right or wrong checksums; or the
//! IETF resumable uploads draft (docs/protocol.md#ietf-resumable-uploads): its
//! interop versions, completion flags and media type.

use std::collections::BTreeSet;

use arbitrary::Arbitrary;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{header, HeaderMap, Method, Request};
use http_body_util::{BodyExt, Either, Full};
use sha2::Digest as _;
use tower::{Layer, ServiceExt};
use tower_signed_upload::storage::MemoryStorage;
use tower_signed_upload::{
    headers::ContentRange, services::RespondCreated, SignedUploadLayer, SigningKey,
    DEFAULT_MAX_LIFETIME,
};

use crate::session_model::TestBody;
use crate::{FixedClock, NOW};

/// The key the layer verifies with; signed queries are computed here with it.
pub const KEY: &str = "request fuzz key";
/// The key's id, for `kid`.
pub const KEY_ID: &str = "req-1";
/// The layer's `max_size`.
pub const MAX_SIZE: u64 = 64;

#[derive(Arbitrary, Debug)]
pub struct RequestInput {
    method: MethodChoice,
    /// The path without its leading `/` (`?` and `#` are dropped from it).
    path: String,
    query: QueryChoice,
    headers: Vec<(NameChoice, ValueChoice)>,
    body: BodyChoice,
}

#[derive(Arbitrary, Debug)]
enum MethodChoice {
    Get,
    Head,
    Put,
    Post,
    Delete,
    Options,
    Patch,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum QueryChoice {
    None,
    Raw(String),
    /// `expiry=E&method=M&signature=S`, signed here for the request's raw path.
    Signed {
        put: bool,
        expiry: ExpiryChoice,
        policy: PolicyChoice,
    },
}

/// Signed-policy parameters (docs/protocol.md#signed-policy) of a signed query, in the signer's order.
#[derive(Arbitrary, Debug)]
struct PolicyChoice {
    max_size: Option<u8>,
    types: Option<TypesChoice>,
    kid: Option<KidChoice>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum TypesChoice {
    AnyImage,
    Png,
    Anything,
    Binary,
    Text,
}

impl TypesChoice {
    fn text(self) -> &'static str {
        match self {
            TypesChoice::AnyImage => "image/*",
            TypesChoice::Png => "image/png,video/mp4",
            TypesChoice::Anything => "*/*",
            TypesChoice::Binary => "application/octet-stream",
            TypesChoice::Text => "text/plain",
        }
    }
}

#[derive(Arbitrary, Debug)]
enum KidChoice {
    /// The layer's key.
    Own,
    /// A well-formed id that names no key.
    Other,
    /// Anything.
    Raw(String),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ExpiryChoice {
    Within(u32),
    Expired(u32),
    TooFar(u32),
}

#[derive(Arbitrary, Debug)]
enum NameChoice {
    ContentRange,
    ContentLength,
    ContentType,
    ContentDigest,
    ReprDigest,
    TransferEncoding,
    Expect,
    TusResumable,
    UploadLength,
    UploadDeferLength,
    UploadOffset,
    UploadMetadata,
    UploadChecksum,
    UploadConcat,
    MethodOverride,
    InteropVersion,
    UploadComplete,
    UploadIncomplete,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum ValueChoice {
    Raw(Vec<u8>),
    Range {
        equals: bool,
        first: u8,
        last: u8,
        total: Option<u8>,
    },
    Status {
        total: Option<u8>,
    },
    Number(u8),
    /// A digest header value of the body's bytes (`right`) or of others.
    Digest {
        sha512: bool,
        right: bool,
    },
    /// `1.0.0`, or another version.
    TusVersion(bool),
    /// tus's body type, `application/offset+octet-stream`.
    OffsetStream,
    /// An `Upload-Checksum` of the body's bytes (`right`) or of others.
    Checksum {
        algorithm: u8,
        right: bool,
    },
    /// A method name, for `X-HTTP-Method-Override`.
    MethodName(u8),
    /// An `Upload-Draft-Interop-Version`: one the layer speaks, or not.
    Interop(u8),
    /// A structured-field boolean, `?1` or `?0`.
    Flag(bool),
    /// The draft's body type, `application/partial-upload`.
    PartialUpload,
}

#[derive(Arbitrary, Debug)]
enum BodyChoice {
    Full(Vec<u8>),
    Streamed(Vec<u8>, u8),
    CutOff(Vec<u8>),
}

impl ValueChoice {
    fn bytes(&self, body: &[u8]) -> Vec<u8> {
        match self {
            ValueChoice::Digest { sha512, right } => {
                let of: &[u8] = if *right { body } else { b"other bytes" };
                let (name, digest) = if *sha512 {
                    ("sha-512", sha2::Sha512::digest(of).to_vec())
                } else {
                    ("sha-256", sha2::Sha256::digest(of).to_vec())
                };
                format!("{name}=:{}:", STANDARD.encode(digest)).into_bytes()
            }
            ValueChoice::Raw(bytes) => bytes.clone(),
            ValueChoice::Range {
                equals,
                first,
                last,
                total,
            } => {
                let unit = if *equals { "bytes=" } else { "bytes " };
                let total = total.map_or("*".to_owned(), |t| t.to_string());
                format!("{unit}{first}-{last}/{total}").into_bytes()
            }
            ValueChoice::Status { total } => format!(
                "bytes */{}",
                total.map_or("*".to_owned(), |t| t.to_string())
            )
            .into_bytes(),
            ValueChoice::Number(n) => n.to_string().into_bytes(),
            ValueChoice::TusVersion(current) => (if *current { "1.0.0" } else { "0.2.2" })
                .as_bytes()
                .to_vec(),
            ValueChoice::OffsetStream => b"application/offset+octet-stream".to_vec(),
            ValueChoice::Checksum { algorithm, right } => {
                let of: &[u8] = if *right { body } else { b"other bytes" };
                let (name, digest) = match algorithm % 4 {
                    0 => ("sha1", sha1::Sha1::digest(of).to_vec()),
                    1 => ("sha256", sha2::Sha256::digest(of).to_vec()),
                    2 => ("sha512", sha2::Sha512::digest(of).to_vec()),
                    _ => ("md5", vec![0; 16]),
                };
                format!("{name} {}", STANDARD.encode(digest)).into_bytes()
            }
            ValueChoice::MethodName(n) => ["PATCH", "DELETE", "HEAD", "POST", "OPTIONS", "GET"]
                [usize::from(*n) % 6]
                .as_bytes()
                .to_vec(),
            ValueChoice::Interop(n) => ["3", "5", "6", "7", "8", "4", "x"][usize::from(*n) % 7]
                .as_bytes()
                .to_vec(),
            ValueChoice::Flag(set) => (if *set { "?1" } else { "?0" }).as_bytes().to_vec(),
            ValueChoice::PartialUpload => b"application/partial-upload".to_vec(),
        }
    }
}

fn signature(signed: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).expect("any key length");
    mac.update(signed.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// docs/protocol.md#signed-urls's path rule, written out independently of the crate:
/// well-formed `%XX` escapes, valid UTF-8 once decoded, no empty, `.` or `..`
/// segment, no control character or backslash, at most 1024 bytes decoded and
/// 255 per segment.
fn path_is_valid(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return false;
        }
    }
    let Ok(decoded) = percent_encoding::percent_decode(bytes).decode_utf8() else {
        return false;
    };
    !decoded.is_empty()
        && decoded.len() <= 1024
        && decoded
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && s.len() <= 255)
        && !decoded.chars().any(|c| c.is_control() || c == '\\')
}

/// What a query signed here grants.
struct Signed {
    put: bool,
    /// The expiry is within the lifetime.
    fresh: bool,
    /// The size limit that applies.
    limit: u64,
    /// A `type` is signed.
    typed: bool,
    /// `max_size` or `type` is signed.
    policy: bool,
    /// (the kid is well formed, it names the layer's key); `(true, true)` without one.
    kid: (bool, bool),
}

/// What the layer sees of the body: its bytes, whether its size is exact, and
/// whether it is cut off at the end.
struct BodyFacts {
    len: u64,
    exact: bool,
    cut_off: bool,
}

/// The statuses docs/protocol.md#status-codes allows for a `PUT` whose URL verified, on a
/// fresh session: every problem the request has gives its status; a request
/// without problems is stored (`201` for a simple upload or a chunk that is
/// the whole file, `202` for another chunk, `308` for a status query).
/// `limit` is the layer's `max_size`, narrowed by a signed one; `typed`,
/// whether the URL signs a `type` (judged on bytes at offset 0: 415).
fn verified_put(headers: &HeaderMap, body: &BodyFacts, limit: u64, typed: bool) -> BTreeSet<u16> {
    let mut problems = BTreeSet::new();
    let lengths: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    let parsed: Vec<Option<u64>> = lengths
        .iter()
        .map(|v| {
            let b = v.as_bytes();
            (!b.is_empty() && b.len() <= 20 && b.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(b).ok()?.parse().ok())
                .flatten()
        })
        .collect();
    let declared = if parsed.is_empty() {
        body.exact.then_some(body.len)
    } else if parsed.iter().all(|p| p.is_some() && *p == parsed[0]) {
        parsed[0]
    } else {
        problems.insert(400); // content_range_mismatch: a bad Content-Length
        None
    };
    let ranges: Vec<_> = headers.get_all(header::CONTENT_RANGE).iter().collect();
    let success = match ranges.as_slice() {
        [] => {
            if declared.is_some_and(|d| d > limit) || body.len > limit {
                problems.insert(413);
            }
            if body.cut_off {
                problems.insert(400);
            }
            if typed {
                problems.insert(415);
            }
            201
        }
        [value] => match ContentRange::parse(value.as_bytes()) {
            Err(_) => {
                problems.insert(400);
                0
            }
            Ok(ContentRange::Status { total }) => {
                if declared.is_some_and(|d| d > 0) || body.len > 0 || body.cut_off {
                    problems.insert(400);
                }
                if total == Some(0) {
                    // The status query of an empty file completes it
                    // (docs/protocol.md), and a signed type judges it.
                    if typed {
                        problems.insert(415);
                    }
                    201
                } else {
                    308
                }
            }
            Ok(ContentRange::Bytes { first, last, total }) => {
                let len = last - first + 1;
                if total.is_some_and(|t| last >= t) {
                    problems.insert(416);
                }
                if total.unwrap_or(0) > limit || last >= limit {
                    problems.insert(413);
                }
                if typed && first == 0 {
                    problems.insert(415);
                }
                if declared.is_some_and(|d| d != len) || body.len != len || body.cut_off {
                    problems.insert(400);
                }
                if first == 0 && total == Some(last + 1) {
                    201
                } else {
                    202
                }
            }
        },
        _ => {
            problems.insert(400);
            0
        }
    };
    // A signed type may refuse the bytes, or let them through: both are
    // right here (the `upload_session` target knows which).
    let refusable_only = problems.iter().all(|&p| p == 415);
    let mut allowed = if problems.is_empty() {
        BTreeSet::from([success])
    } else if refusable_only {
        problems.insert(success);
        problems
    } else {
        problems
    };
    // Integrity headers (docs/protocol.md#integrity): one that does not parse,
    // names no algorithm the layer checks, or does not match is 400
    // (`digest_invalid`, `digest_mismatch`); a fresh session has no earlier
    // `Repr-Digest` to conflict with.
    if headers.contains_key("content-digest") || headers.contains_key("repr-digest") {
        allowed.insert(400);
    }
    allowed
}

pub fn run(input: &RequestInput) {
    let method = match &input.method {
        MethodChoice::Get => Method::GET,
        MethodChoice::Head => Method::HEAD,
        MethodChoice::Put => Method::PUT,
        MethodChoice::Post => Method::POST,
        MethodChoice::Delete => Method::DELETE,
        MethodChoice::Options => Method::OPTIONS,
        MethodChoice::Patch => Method::PATCH,
        MethodChoice::Other(name) => match Method::from_bytes(name.as_bytes()) {
            Ok(method) => method,
            Err(_) => return,
        },
    };
    let path: String = input
        .path
        .chars()
        .filter(|c| !matches!(c, '?' | '#'))
        .collect();
    let lifetime = DEFAULT_MAX_LIFETIME.as_secs();
    // (signed for put, expiry acceptable, policy) when the query is signed here.
    let mut signed = None;
    let target = match &input.query {
        QueryChoice::None => format!("/{path}"),
        QueryChoice::Raw(query) => format!("/{path}?{query}"),
        QueryChoice::Signed {
            put,
            expiry,
            policy,
        } => {
            let (expiry, fresh) = match *expiry {
                ExpiryChoice::Within(o) => (NOW + u64::from(o) % (lifetime + 1), true),
                ExpiryChoice::Expired(b) => (NOW - 1 - u64::from(b) % NOW, false),
                ExpiryChoice::TooFar(a) => (NOW + lifetime + 1 + u64::from(a), false),
            };
            let mut signed_string = format!(
                "{path}?expiry={expiry}&method={}",
                if *put { "put" } else { "get" }
            );
            if let Some(max_size) = policy.max_size {
                signed_string.push_str(&format!("&max_size={max_size}"));
            }
            if let Some(types) = policy.types {
                signed_string.push_str(&format!("&type={}", types.text()));
            }
            // (the kid is well formed, it names the key)
            let kid = match &policy.kid {
                None => (true, true),
                Some(KidChoice::Own) => {
                    signed_string.push_str(&format!("&kid={KEY_ID}"));
                    (true, true)
                }
                Some(KidChoice::Other) => {
                    signed_string.push_str("&kid=req-2");
                    (true, false)
                }
                Some(KidChoice::Raw(raw)) => {
                    if raw.contains(['&', '#']) {
                        return; // not one parameter
                    }
                    signed_string.push_str(&format!("&kid={raw}"));
                    let well_formed = !raw.is_empty()
                        && raw.len() <= 64
                        && raw
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
                    (well_formed, raw == KEY_ID)
                }
            };
            signed = Some(Signed {
                put: *put,
                fresh,
                limit: policy
                    .max_size
                    .map_or(MAX_SIZE, |m| u64::from(m).min(MAX_SIZE)),
                typed: policy.types.is_some(),
                policy: policy.max_size.is_some() || policy.types.is_some(),
                kid,
            });
            format!("/{signed_string}&signature={}", signature(&signed_string))
        }
    };
    let mut builder = Request::builder().method(method.clone()).uri(target);
    let body_bytes: &[u8] = match &input.body {
        BodyChoice::Full(bytes) | BodyChoice::Streamed(bytes, _) | BodyChoice::CutOff(bytes) => {
            bytes
        }
    };
    for (name, value) in &input.headers {
        let name: &[u8] = match name {
            NameChoice::ContentRange => b"content-range",
            NameChoice::ContentLength => b"content-length",
            NameChoice::ContentType => b"content-type",
            NameChoice::ContentDigest => b"content-digest",
            NameChoice::ReprDigest => b"repr-digest",
            NameChoice::TransferEncoding => b"transfer-encoding",
            NameChoice::Expect => b"expect",
            NameChoice::TusResumable => b"tus-resumable",
            NameChoice::UploadLength => b"upload-length",
            NameChoice::UploadDeferLength => b"upload-defer-length",
            NameChoice::UploadOffset => b"upload-offset",
            NameChoice::UploadMetadata => b"upload-metadata",
            NameChoice::UploadChecksum => b"upload-checksum",
            NameChoice::UploadConcat => b"upload-concat",
            NameChoice::MethodOverride => b"x-http-method-override",
            NameChoice::InteropVersion => b"upload-draft-interop-version",
            NameChoice::UploadComplete => b"upload-complete",
            NameChoice::UploadIncomplete => b"upload-incomplete",
            NameChoice::Other(name) => name.as_bytes(),
        };
        builder = builder.header(name, value.bytes(body_bytes));
    }
    let (facts, body) = match &input.body {
        BodyChoice::Full(bytes) => (
            BodyFacts {
                len: bytes.len() as u64,
                exact: true,
                cut_off: false,
            },
            Either::Left(Full::new(Bytes::from(bytes.clone()))),
        ),
        BodyChoice::Streamed(bytes, pieces) => (
            BodyFacts {
                len: bytes.len() as u64,
                exact: false,
                cut_off: false,
            },
            Either::Right(TestBody::new(bytes, usize::from(pieces % 4 + 1), false)),
        ),
        BodyChoice::CutOff(bytes) => (
            BodyFacts {
                len: bytes.len() as u64,
                exact: false,
                cut_off: true,
            },
            Either::Right(TestBody::new(bytes, 2, true)),
        ),
    };
    let Ok(request) = builder.body(body) else {
        return; // the builder refuses the method, target or a header
    };
    let tus = request.headers().contains_key("tus-resumable");
    let ietf = !tus
        && request
            .headers()
            .contains_key("upload-draft-interop-version");
    let allowed = if tus {
        tus_allowed(&path, signed)
    } else if ietf {
        ietf_allowed(&path, signed)
    } else if !matches!(method, Method::GET | Method::HEAD | Method::PUT) {
        BTreeSet::from([405])
    } else {
        match signed {
            // Without the key no query verifies: a missing, malformed or wrong signature.
            None => BTreeSet::from([400, 401, 403]),
            Some(Signed {
                put,
                fresh,
                limit,
                typed,
                policy,
                kid: (kid_well_formed, kid_names_the_key),
            }) => {
                let mut problems = BTreeSet::new();
                // The query's shape (400) is judged before the path (400) and
                // the signature (403): a policy on a get URL, a malformed kid.
                let query_invalid = (policy && !put) || !kid_well_formed;
                if query_invalid || !path_is_valid(&path) {
                    problems.insert(400);
                }
                if !query_invalid
                    && (!fresh || put != (method == Method::PUT) || !kid_names_the_key)
                {
                    problems.insert(403);
                }
                if !problems.is_empty() {
                    problems
                } else if method == Method::PUT {
                    verified_put(request.headers(), &facts, limit, typed)
                } else {
                    // The inner service (RespondCreated answers downloads 404).
                    BTreeSet::from([200, 404])
                }
            }
        }
    };
    check(request, allowed, tus, ietf);
}

/// The URL's verdict for a tus or draft request, which needs a `put` URL
/// whatever its method: the statuses of its problems, none if it verifies.
fn url_problems(path: &str, signed: Option<Signed>) -> BTreeSet<u16> {
    let Some(Signed {
        put,
        fresh,
        policy,
        kid: (kid_well_formed, kid_names_the_key),
        ..
    }) = signed
    else {
        return BTreeSet::from([400, 401, 403]);
    };
    let mut problems = BTreeSet::new();
    let query_invalid = (policy && !put) || !kid_well_formed;
    if query_invalid || !path_is_valid(path) {
        problems.insert(400);
    }
    if !query_invalid && (!fresh || !put || !kid_names_the_key) {
        problems.insert(403);
    }
    problems
}

/// The statuses docs/protocol.md#tus allows for a tus request: the
/// URL's verdict first, then any of tus's answers and errors.
fn tus_allowed(path: &str, signed: Option<Signed>) -> BTreeSet<u16> {
    let problems = url_problems(path, signed);
    if !problems.is_empty() {
        return problems;
    }
    BTreeSet::from([
        200, 201, 204, 400, 404, 405, 408, 409, 411, 412, 413, 415, 416, 460,
    ])
}

/// The statuses docs/protocol.md#ietf-resumable-uploads allows for a draft
/// request: the URL's verdict first, then any of the draft's answers and
/// errors.
fn ietf_allowed(path: &str, signed: Option<Signed>) -> BTreeSet<u16> {
    let problems = url_problems(path, signed);
    if !problems.is_empty() {
        return problems;
    }
    BTreeSet::from([
        200, 201, 204, 400, 404, 405, 408, 409, 410, 412, 413, 415, 416,
    ])
}

/// Sends `request` through a fresh layer and checks its answer: a status in
/// `allowed`, the same verdict as [`SignedUploadLayer::verify`], and the JSON
/// envelope of docs/protocol.md#envelope-and-file-object (with `Allow` on a 405).
fn check(
    request: Request<Either<Full<Bytes>, TestBody>>,
    allowed: BTreeSet<u16>,
    tus: bool,
    ietf: bool,
) {
    let layer = SignedUploadLayer::new(
        SigningKey::new(KEY)
            .and_then(|key| key.with_id(KEY_ID))
            .expect("the key and its id are valid"),
        MemoryStorage::new(),
    )
    .clock(FixedClock)
    .max_size(MAX_SIZE)
    .max_ranges(4);
    // A tus or draft request is verified as a `put`, whatever its method.
    let verdict = if tus || ietf {
        layer.verify(&Method::PUT, request.uri())
    } else {
        layer.verify(request.method(), request.uri())
    };
    let described = format!("{request:?}");
    // The interop version a draft request names (once, one the layer
    // speaks), and whether the answer must say the upload's state.
    let interop = {
        let mut values = request
            .headers()
            .get_all("upload-draft-interop-version")
            .iter();
        match (values.next(), values.next()) {
            (Some(value), None) => match value.as_bytes() {
                b"3" => Some(3),
                b"5" => Some(5),
                b"6" => Some(6),
                b"7" => Some(7),
                b"8" => Some(8),
                _ => None,
            },
            _ => None,
        }
    };
    let says_state = matches!(
        *request.method(),
        Method::HEAD | Method::POST | Method::PUT | Method::PATCH
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds");
    let (status, headers, body) = runtime.block_on(async {
        let response = match layer.layer(RespondCreated).oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        (parts.status.as_u16(), parts.headers, body)
    });
    assert!(
        allowed.contains(&status),
        "status {status} not in {allowed:?} for {described}: {body:?}"
    );
    match verdict {
        Err(error) => assert_eq!(
            status,
            error.status().as_u16(),
            "verify said {error:?} for {described}: {body:?}"
        ),
        Ok(_) => assert!(
            ![401, 403].contains(&status) && (tus || ietf || status != 405),
            "verified, yet {status} for {described}: {body:?}"
        ),
    }
    if tus {
        assert_eq!(
            headers.get("tus-resumable").and_then(|v| v.to_str().ok()),
            Some("1.0.0"),
            "every tus answer carries Tus-Resumable: {described}"
        );
        if status == 412 {
            assert!(headers.contains_key("tus-version"), "{described}");
        }
        // tus's progress answers have no body; errors and completions do.
        if status < 400 && body.is_empty() {
            return;
        }
    }
    if ietf {
        assert!(
            headers.get("tus-resumable").is_none(),
            "a draft answer is not tus's: {described}"
        );
        // Each version's words for the upload's state: `Upload-Incomplete`
        // in version 3 (draft -01), `Upload-Complete` after; never the other.
        if let Some(version) = interop {
            let (own, other) = if version == 3 {
                ("upload-incomplete", "upload-complete")
            } else {
                ("upload-complete", "upload-incomplete")
            };
            assert!(
                !headers.contains_key(other),
                "{other} in a version {version} answer: {described}"
            );
            if says_state && (200..300).contains(&status) {
                let flag = headers.get(own).and_then(|v| v.to_str().ok());
                assert!(
                    matches!(flag, Some("?0" | "?1")),
                    "{own} {flag:?} in a version {version} answer {status}: {described}"
                );
                assert!(
                    headers.contains_key("upload-offset"),
                    "no Upload-Offset in a version {version} answer {status}: {described}"
                );
            }
        }
        let problem = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/problem+json");
        if problem {
            // The draft's problem types (RFC 9457), with the envelope's code.
            let json: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("not JSON ({e}) for {described}: {body:?}"));
            assert_eq!(json["status"], status, "{described}: {body:?}");
            assert!(
                json["type"].as_str().is_some_and(
                    |t| t.starts_with("https://iana.org/assignments/http-problem-types#")
                ),
                "{described}: {body:?}"
            );
            assert!(
                json["code"].as_str().is_some_and(|c| !c.is_empty()),
                "{described}: {body:?}"
            );
            return;
        }
        // The draft's progress answers have no body.
        if status < 400 && body.is_empty() {
            return;
        }
    }
    let json: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}) for {described}: {body:?}"));
    assert_eq!(json["meta"]["status"], status, "{described}: {body:?}");
    if status >= 400 {
        assert!(json["data"].is_null(), "{described}: {body:?}");
        assert!(
            json["error"]["code"]
                .as_str()
                .is_some_and(|c| !c.is_empty()),
            "{described}: {body:?}"
        );
    }
    if status == 405 && !tus {
        assert_eq!(
            headers.get(header::ALLOW).and_then(|v| v.to_str().ok()),
            Some("GET, HEAD, PUT"),
            "{described}"
        );
    }
}

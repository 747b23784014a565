//! A reference model of one resumable upload session (PROTOCOL section 3), and
//! a driver that sends a sequence of chunks and status queries for ONE signed
//! URL through the real layer, in process, over `MemoryStorage`, checking
//! every answer against the model.
//!
//! Included by `tests/proptest_session.rs` and by the `upload_session` fuzz
//! target (`fuzz/src/lib.rs`), so both check the same property:
//!
//! - each answer's status, and the error code of each refusal, is the one the
//!   model predicts;
//! - `202` and `308` answers report the model's total, ranges, byte count and
//!   `Range` prefix;
//! - the file is committed exactly once (one `201`, one call of the inner
//!   service), by the very request the model says completes it, and every
//!   later request of the session is answered `200` with the same file;
//! - nothing is stored at the path before that; afterwards the stored bytes are
//!   the model's bytes.
//!
//! Every chunk carries the source file's true bytes for its range (or a wrong
//! number of them, or is cut off), so a resent range never changes the file
//! and the model needs no `range_conflict` (PROTOCOL section 6, which is not
//! implemented).
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};
use tower_signed_upload::storage::MemoryStorage;
use tower_signed_upload::{
    Clock, EnvelopeBody, RespondCreated, SignedMethod, SignedUpload, SignedUploadLayer, SigningKey,
    UploadPath,
};

/// The key the layer signs and verifies with.
pub const KEY: &str = "session model key";
/// The fixed time of every run.
pub const NOW: u64 = 1_750_000_000;
/// Where the session's file is committed.
pub const PATH: &str = "sessions/file.bin";
/// The layer's `max_ranges`: small, so `too_many_ranges` is reachable.
pub const MAX_RANGES: usize = 4;
/// The longest source file a run uses.
pub const MAX_FILE_LEN: u64 = 64;
/// The smallest and largest `max_size` a run uses.
pub const MAX_SIZE_BOUNDS: (u64, u64) = (16, 96);

/// A clock that always reads [`NOW`].
#[derive(Debug, Clone, Copy)]
pub struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }
}

/// Byte `index` of the source file. Defined for every offset, so a chunk that
/// names another total than the file's length still carries well-defined bytes
/// and a session completed at that total holds `source(0, total - 1)`.
pub fn source_byte(index: u64) -> u8 {
    (index as u8).wrapping_mul(167).wrapping_add(13) ^ (index >> 8) as u8
}

/// Source bytes `first..first + len`.
pub fn source(first: u64, len: u64) -> Vec<u8> {
    (first..first + len).map(source_byte).collect()
}

/// The total a chunk or status query names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    /// The source file's length.
    Right,
    /// `*`: not known yet.
    Unknown,
    /// Any other number (it may equal the file's length, too).
    Other(u64),
}

/// How a chunk's body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Exactly the range's bytes in a `Full` body, whose size hint is exact.
    Full,
    /// Exactly the range's bytes in `pieces` frames (at least one), with no size hint.
    Streamed { pieces: u8 },
    /// `by` (at least 1) bytes fewer than the range holds; with no size hint if `streamed`.
    Short { by: u8, streamed: bool },
    /// `by` (at least 1) bytes more than the range holds.
    Long { by: u8, streamed: bool },
    /// The first `after` bytes (at most the range's length), then the body
    /// fails, as when the connection is cut off. No size hint.
    CutOff { after: u8 },
}

/// One request of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `PUT` with `Content-Range: bytes FIRST-LAST/TOTAL`.
    Chunk {
        first: u64,
        last: u64,
        total: Total,
        delivery: Delivery,
        /// Also send `Content-Length` (the bytes sent; for a cut-off body, the range's length).
        content_length: bool,
    },
    /// `PUT` with `Content-Range: bytes */TOTAL` and a body of `body` bytes
    /// (nonzero is a client error), streamed (no size hint) or not.
    Status {
        total: Total,
        body: u8,
        streamed: bool,
    },
}

/// What the model predicts for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub status: u16,
    /// `error.code` of a refusal.
    pub code: Option<&'static str>,
}

impl Expected {
    fn ok(status: u16) -> Self {
        Expected { status, code: None }
    }

    fn refused(status: u16, code: &'static str) -> Self {
        Expected {
            status,
            code: Some(code),
        }
    }
}

/// The session as PROTOCOL section 3 describes it: a total once a chunk names
/// one, the bytes stored (a bitmap, independent of the crate's range set), and
/// the total at which it completed.
#[derive(Debug, Clone)]
pub struct Model {
    pub file_len: u64,
    pub max_size: u64,
    pub total: Option<u64>,
    stored: Vec<bool>,
    pub completed: Option<u64>,
}

/// A chunk's body as the client sends it.
struct Sent {
    bytes: Vec<u8>,
    exact: bool,
    cut_off: bool,
    pieces: usize,
    content_length: Option<u64>,
}

impl Op {
    fn sent(&self) -> Sent {
        match *self {
            Op::Chunk {
                first,
                last,
                delivery,
                content_length,
                ..
            } => {
                let len = last - first + 1;
                let (bytes, exact, cut_off, pieces) = match delivery {
                    Delivery::Full => (source(first, len), true, false, 1),
                    Delivery::Streamed { pieces } => {
                        (source(first, len), false, false, usize::from(pieces.max(1)))
                    }
                    Delivery::Short { by, streamed } => (
                        source(first, len.saturating_sub(u64::from(by.max(1)))),
                        !streamed,
                        false,
                        2,
                    ),
                    Delivery::Long { by, streamed } => {
                        let mut bytes = source(first, len);
                        bytes.extend(std::iter::repeat_n(0xa5, usize::from(by.max(1))));
                        (bytes, !streamed, false, 2)
                    }
                    Delivery::CutOff { after } => {
                        (source(first, len.min(u64::from(after))), false, true, 2)
                    }
                };
                let declared = if cut_off { len } else { bytes.len() as u64 };
                Sent {
                    bytes,
                    exact,
                    cut_off,
                    pieces,
                    content_length: content_length.then_some(declared),
                }
            }
            Op::Status { body, streamed, .. } => Sent {
                bytes: vec![0x5a; usize::from(body)],
                exact: !streamed,
                cut_off: false,
                pieces: 1,
                content_length: None,
            },
        }
    }
}

impl Model {
    pub fn new(file_len: u64, max_size: u64) -> Self {
        Model {
            file_len,
            max_size,
            total: None,
            stored: vec![false; max_size as usize],
            completed: None,
        }
    }

    fn resolve(&self, total: Total) -> Option<u64> {
        match total {
            Total::Right => Some(self.file_len),
            Total::Unknown => None,
            Total::Other(n) => Some(n),
        }
    }

    /// The stored ranges, inclusive, sorted, adjacent ones merged.
    pub fn ranges(&self) -> Vec<[u64; 2]> {
        runs(&self.stored)
    }

    fn end(&self) -> Option<u64> {
        self.stored.iter().rposition(|&b| b).map(|i| i as u64)
    }

    /// Predicts the answer to `op` and applies its effect.
    pub fn apply(&mut self, op: &Op) -> Expected {
        let sent = op.sent();
        match *op {
            Op::Chunk {
                first, last, total, ..
            } => {
                let named = self.resolve(total);
                let len = last - first + 1;
                let declared = sent
                    .content_length
                    .or(sent.exact.then_some(sent.bytes.len() as u64));
                // Judged from the headers, before the session is looked at.
                if named.is_some_and(|t| last >= t) {
                    return Expected::refused(416, "range_not_satisfiable");
                }
                if named.unwrap_or(0) > self.max_size || last >= self.max_size {
                    return Expected::refused(413, "too_large");
                }
                if declared.is_some_and(|d| d != len) {
                    return Expected::refused(400, "content_range_mismatch");
                }
                // After completion the body is not read: the completion is replayed.
                if self.completed.is_some() {
                    return Expected::ok(200);
                }
                if let Some(t) = named {
                    if self.total.is_some_and(|known| known != t)
                        || self.end().is_some_and(|end| end >= t)
                    {
                        return Expected::refused(409, "total_mismatch");
                    }
                }
                if named.or(self.total).is_some_and(|t| last >= t) {
                    return Expected::refused(416, "range_not_satisfiable");
                }
                let mut after = self.stored.clone();
                after[first as usize..=last as usize].fill(true);
                let contained = self.stored[first as usize..=last as usize]
                    .iter()
                    .all(|&b| b);
                if !contained && runs(&after).len() > MAX_RANGES {
                    return Expected::refused(400, "too_many_ranges");
                }
                if sent.cut_off {
                    return Expected::refused(400, "body_incomplete");
                }
                if sent.bytes.len() as u64 != len {
                    return Expected::refused(400, "content_range_mismatch");
                }
                // Stored: it counts.
                self.stored = after;
                if named.is_some() {
                    self.total = named;
                }
                match self.total {
                    Some(t) if t > 0 && self.stored[..t as usize].iter().all(|&b| b) => {
                        self.completed = Some(t);
                        Expected::ok(201)
                    }
                    _ => Expected::ok(202),
                }
            }
            Op::Status { total, .. } => {
                // The body is read (and must be empty) before the session is looked at.
                if !sent.bytes.is_empty() {
                    return Expected::refused(400, "content_range_mismatch");
                }
                if self.completed.is_some() {
                    return Expected::ok(200);
                }
                if let Some(asked) = self.resolve(total) {
                    let disagrees = match self.total {
                        Some(known) => known != asked,
                        None => self.end().is_some_and(|end| end >= asked),
                    };
                    if disagrees {
                        return Expected::refused(409, "total_mismatch");
                    }
                }
                Expected::ok(308)
            }
        }
    }
}

fn runs(bits: &[bool]) -> Vec<[u64; 2]> {
    let mut out: Vec<[u64; 2]> = Vec::new();
    for (i, &set) in bits.iter().enumerate() {
        if !set {
            continue;
        }
        let i = i as u64;
        match out.last_mut() {
            Some(run) if run[1] + 1 == i => run[1] = i,
            _ => out.push([i, i]),
        }
    }
    out
}

/// A request body of several frames, with no size hint, that may fail at its
/// end like a connection cut off.
#[derive(Debug)]
pub struct TestBody {
    frames: VecDeque<Bytes>,
    cut_off: bool,
}

impl TestBody {
    pub fn new(bytes: &[u8], pieces: usize, cut_off: bool) -> Self {
        let size = bytes.len().div_ceil(pieces.max(1)).max(1);
        TestBody {
            frames: bytes.chunks(size).map(Bytes::copy_from_slice).collect(),
            cut_off,
        }
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if let Some(data) = this.frames.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if std::mem::take(&mut this.cut_off) {
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "cut off",
            ))));
        }
        Poll::Ready(None)
    }
}

/// The default inner service, counting its calls.
#[derive(Debug, Clone, Default)]
pub struct CountingInner(pub Arc<AtomicUsize>);

impl<B> Service<Request<B>> for CountingInner {
    type Response = Response<EnvelopeBody>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        RespondCreated.call(request)
    }
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub json: serde_json::Value,
}

async fn send<B>(service: &SignedUpload<CountingInner>, request: Request<B>) -> Answer
where
    B: Body + Send + 'static,
    B::Data: bytes::Buf + Send,
{
    let response = match service.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|error| panic!("answer is not JSON ({error}): {body:?}"));
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        json,
    }
}

fn content_range(op: &Op, file_len: u64, equals: bool) -> String {
    let unit = if equals { "bytes=" } else { "bytes " };
    let total = |total: Total| match total {
        Total::Right => file_len.to_string(),
        Total::Unknown => "*".to_owned(),
        Total::Other(n) => n.to_string(),
    };
    match *op {
        Op::Chunk {
            first,
            last,
            total: t,
            ..
        } => format!("{unit}{first}-{last}/{}", total(t)),
        Op::Status { total: t, .. } => format!("{unit}*/{}", total(t)),
    }
}

/// Runs `ops` against a fresh layer (file of `file_len` bytes, `max_size`,
/// [`MAX_RANGES`]) and panics, naming the operation, where an answer differs
/// from the model. Builds its own current-thread runtime.
pub fn check(file_len: u64, max_size: u64, ops: &[Op]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(check_async(file_len, max_size, ops));
}

/// [`check`], on the caller's runtime (which must have a timer).
pub async fn check_async(file_len: u64, max_size: u64, ops: &[Op]) {
    let storage = MemoryStorage::new();
    let inner = CountingInner::default();
    let layer = SignedUploadLayer::new(
        SigningKey::new(KEY).expect("the key is not empty"),
        storage.clone(),
    )
    .clock(FixedClock)
    .max_ranges(MAX_RANGES)
    .max_size(max_size);
    let url = layer.signer().sign(
        &UploadPath::new(PATH).expect("the path is valid"),
        SignedMethod::Put,
        Duration::from_secs(3600),
    );
    let target = url.path_and_query().to_owned();
    let service = layer.layer(inner.clone());
    let mut model = Model::new(file_len, max_size);
    let mut created = 0;
    for (index, op) in ops.iter().enumerate() {
        let before = model.clone();
        let expected = model.apply(op);
        let sent = op.sent();
        let mut builder = Request::put(target.as_str()).header(
            http::header::CONTENT_RANGE,
            content_range(op, file_len, index % 2 == 1),
        );
        if let Some(length) = sent.content_length {
            builder = builder.header(http::header::CONTENT_LENGTH, length);
        }
        let answer = if sent.exact {
            let request = builder
                .body(Full::new(Bytes::from(sent.bytes)))
                .expect("the request is well formed");
            send(&service, request).await
        } else {
            let body = TestBody::new(&sent.bytes, sent.pieces, sent.cut_off);
            let request = builder.body(body).expect("the request is well formed");
            send(&service, request).await
        };
        let context = || {
            format!(
                "op #{index} {op:?} (file_len {file_len}, max_size {max_size})\n\
                 model before: {before:?}\nanswer: {answer:?}"
            )
        };
        assert_eq!(
            answer.status,
            expected.status,
            "status differs from the model's {expected:?}: {}",
            context()
        );
        assert_eq!(
            answer.json["meta"]["status"],
            answer.status,
            "meta.status: {}",
            context()
        );
        match answer.status {
            200 | 201 => {
                let total = model.completed.expect("the model completed");
                assert_eq!(
                    answer.json["data"]["filesize"],
                    total,
                    "filesize: {}",
                    context()
                );
                assert_eq!(
                    answer.json["data"]["object"],
                    "source",
                    "File object: {}",
                    context()
                );
                for header in ["etag", "location"] {
                    assert!(
                        answer.headers.contains_key(header),
                        "{header} missing: {}",
                        context()
                    );
                }
                if answer.status == 201 {
                    created += 1;
                }
            }
            202 | 308 => {
                let ranges = model.ranges();
                let data = &answer.json["data"];
                assert_eq!(data["object"], "upload", "{}", context());
                assert_eq!(
                    data["filesize"],
                    serde_json::json!(model.total),
                    "filesize: {}",
                    context()
                );
                assert_eq!(
                    data["ranges"],
                    serde_json::json!(ranges),
                    "ranges: {}",
                    context()
                );
                let received: u64 = ranges.iter().map(|r| r[1] - r[0] + 1).sum();
                assert_eq!(data["received"], received, "received: {}", context());
                let prefix = ranges
                    .first()
                    .filter(|r| r[0] == 0)
                    .map(|r| format!("bytes=0-{}", r[1]));
                assert_eq!(
                    answer
                        .headers
                        .get(http::header::RANGE)
                        .and_then(|v| v.to_str().ok()),
                    prefix.as_deref(),
                    "Range header: {}",
                    context()
                );
            }
            _ => {
                assert_eq!(
                    answer.json["error"]["code"].as_str(),
                    expected.code,
                    "error code: {}",
                    context()
                );
            }
        }
        assert_eq!(
            inner.0.load(Ordering::SeqCst),
            usize::from(model.completed.is_some()),
            "inner service calls: {}",
            context()
        );
        assert!(created <= 1, "more than one 201: {}", context());
        let stored = storage.file(PATH);
        match model.completed {
            None => assert_eq!(stored, None, "a file before completion: {}", context()),
            Some(total) => assert_eq!(
                stored.as_deref(),
                Some(source(0, total).as_slice()),
                "stored bytes: {}",
                context()
            ),
        }
    }
    assert_eq!(created, usize::from(model.completed.is_some()));
}

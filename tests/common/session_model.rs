//! A reference model of one resumable upload session (docs/protocol.md,
//! #resumable-uploads, #signed-policy and #integrity), and a driver that sends a sequence of chunks and status queries for ONE
//! signed URL through the real layer, in process, over `MemoryStorage` or (with
//! the `fs` feature) `FsStorage` in a fresh temporary folder, checking every
//! answer against the model.
//!
//! Included by `tests/it/proptest_session.rs` and by the `upload_session` fuzz
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
//!   the model's bytes, and a File `sha256` is theirs.
//!
//! The model keeps the byte stored at every offset, so chunks may carry other
//! bytes than the source file's (`Delivery::Changed`): over stored bytes that
//! is `409 range_conflict` and counts for nothing, elsewhere the changed byte
//! is stored and ends up in the file. Requests may carry `Content-Digest`
//! (right, wrong, malformed, of an unsupported algorithm) and `Repr-Digest`
//! (the source file's true digest, a wrong one, malformed, unsupported): the
//! first `Repr-Digest` of a stored chunk is kept, a different one later is
//! `409 digest_conflict`, and at completion a kept digest that does not match
//! the bytes is `400 digest_mismatch` and discards the session (the model
//! starts afresh). The URL may carry a signed `type`: the chunk at offset 0 is
//! judged on its own first bytes (a refusal, `415`, discards the session), and
//! the commit judges the assembled head again. A status query `bytes */0` on a
//! session that stored nothing completes it as an empty file.
//!
//! The same URL speaks tus (docs/protocol.md#tus-100), and tus requests and
//! chunks on it are one upload: the model also predicts `POST` (creation,
//! with `Upload-Length` or a deferred length, maybe with a body from offset
//! 0), `HEAD` (`404 upload_not_found` until a creation or a stored chunk,
//! else the stored prefix), `PATCH` (an append at the current offset, else
//! `409 offset_mismatch` with the current one; maybe declaring the deferred
//! length; maybe with an `Upload-Checksum`) and `DELETE`, with the status,
//! the `error.code` and the `Upload-Offset` of each answer. The completion is
//! the same wherever it comes from: one call of the inner service, `201`;
//! after it `HEAD` answers `200`, `PATCH` `204` and `POST` `201`, all with the
//! final offset and without calling it again. The crate stores a tus body in
//! pieces of 64 MiB (4 MiB when its length is unknown), each one range, so an
//! append cut off midway keeps its whole pieces: the bodies here are far
//! smaller than a piece, so a cut-off body stores nothing at all.
//!
//! One file, model and driver together, because the fuzz crate includes it
//! whole with `#[path]`.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha512};
use tower::{Layer, Service, ServiceExt};
#[cfg(all(feature = "fs", unix))]
use tower_signed_upload::storage::FsStorage;
use tower_signed_upload::storage::MemoryStorage;
use tower_signed_upload::{
    services::RespondCreated, Clock, EnvelopeBody, SignedMethod, SignedUpload, SignedUploadLayer,
    SigningKey, UploadPath, UrlOptions,
};

/// The key the layer signs and verifies with.
pub const KEY: &str = "session model key";
/// The layer's public base: tus's `Location` is the signed URL on it.
pub const PUBLIC_BASE: &str = "https://files.example";
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
/// How many first bytes of the offset-0 chunk the layer sniffs (src/inspect.rs).
pub const SNIFF_LEN: usize = 8192;
/// The PNG signature that starts a PNG source file.
pub const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// A clock that always reads [`NOW`].
#[derive(Debug, Clone, Copy)]
pub struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }
}

/// Byte `index` of the plain source file. Defined for every offset, so a chunk
/// that names another total than the file's length still carries well-defined
/// bytes and a session completed at that total holds `source(0, total - 1)`.
pub fn source_byte(index: u64) -> u8 {
    (index as u8).wrapping_mul(167).wrapping_add(13) ^ (index >> 8) as u8
}

/// Byte `index` of the source file: a PNG one starts with [`PNG_SIGNATURE`].
pub fn file_byte(png: bool, index: u64) -> u8 {
    match usize::try_from(index) {
        Ok(i) if png && i < PNG_SIGNATURE.len() => PNG_SIGNATURE[i],
        _ => source_byte(index),
    }
}

/// Plain source bytes `first..first + len`.
pub fn source(first: u64, len: u64) -> Vec<u8> {
    (first..first + len).map(source_byte).collect()
}

/// Source file bytes `first..first + len`.
pub fn file_bytes(png: bool, first: u64, len: u64) -> Vec<u8> {
    (first..first + len).map(|i| file_byte(png, i)).collect()
}

/// The type the model says the layer sniffs from `head`: the only signature
/// the model's bytes can carry is PNG's (its first four bytes, as `infer`
/// checks); anything else is unrecognised. `tests/it/proptest_session.rs` checks
/// this against the crate's sniffer for every head a run can send.
pub fn sniffed(head: &[u8]) -> &'static str {
    if head.len() >= 4 && head[..4] == PNG_SIGNATURE[..4] {
        "image/png"
    } else {
        "application/octet-stream"
    }
}

/// A signed `type` for the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Types {
    /// `image/*`.
    AnyImage,
    /// `image/png,video/mp4`.
    PngOrMp4,
    /// `application/octet-stream`.
    Binary,
    /// `text/plain`: nothing the model sends.
    Text,
}

impl Types {
    pub fn patterns(self) -> &'static str {
        match self {
            Types::AnyImage => "image/*",
            Types::PngOrMp4 => "image/png,video/mp4",
            Types::Binary => "application/octet-stream",
            Types::Text => "text/plain",
        }
    }

    /// Whether the sniffed `mime` matches, written out for the model's two types.
    pub fn allows(self, mime: &str) -> bool {
        match self {
            Types::AnyImage | Types::PngOrMp4 => mime == "image/png",
            Types::Binary => mime == "application/octet-stream",
            Types::Text => false,
        }
    }
}

/// What one session's run is about: the source file and the URL's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// The source file's length.
    pub file_len: u64,
    /// The layer's `max_size`.
    pub max_size: u64,
    /// The source file starts with the PNG signature.
    pub png: bool,
    /// The URL's signed `type`.
    pub types: Option<Types>,
    /// The URL's signed `max_size` (the smaller limit applies).
    pub signed_max_size: Option<u64>,
}

impl Setup {
    /// A plain file, no policy: the session of docs/protocol.md#resumable-uploads alone.
    pub fn plain(file_len: u64, max_size: u64) -> Self {
        Setup {
            file_len,
            max_size,
            png: false,
            types: None,
            signed_max_size: None,
        }
    }

    /// The limit that applies: the layer's, narrowed by the signed one.
    pub fn limit(&self) -> u64 {
        self.signed_max_size
            .map_or(self.max_size, |signed| signed.min(self.max_size))
    }
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
    /// The range's length, but byte `at % len` of it flipped (`^ 0x5a`): a
    /// retry whose bytes changed. In a `Full` body.
    Changed { at: u8 },
}

/// A digest header value a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestValue {
    /// No header.
    None,
    /// `sha-256` of the right bytes (`Content-Digest`: the request's body as
    /// sent; `Repr-Digest`: the source file of the file's length).
    Sha256,
    /// `sha-512` of the right bytes.
    Sha512,
    /// A wrong `sha-256` together with the right `sha-512`: the stronger counts.
    Both,
    /// A well-formed `sha-256` of other bytes (`n` picks which).
    Wrong(u8),
    /// Only an algorithm the layer does not check (`md5`): nothing would be
    /// checked, so `400 digest_invalid` like a value that does not parse.
    Unsupported,
    /// A value that does not parse: `400 digest_invalid`.
    Malformed,
}

/// The digest headers of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digests {
    pub content: DigestValue,
    pub repr: DigestValue,
}

impl Digests {
    pub const NONE: Digests = Digests {
        content: DigestValue::None,
        repr: DigestValue::None,
    };
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
        digests: Digests,
    },
    /// `PUT` with `Content-Range: bytes */TOTAL` and a body of `body` bytes
    /// (nonzero is a client error), streamed (no size hint) or not.
    Status {
        total: Total,
        body: u8,
        streamed: bool,
        digests: Digests,
    },
    /// tus `POST` (creation): `Upload-Length` of `total`, or
    /// `Upload-Defer-Length: 1` for `Total::Unknown`, and a body of the source
    /// file's first `body` bytes (none when 0 in a `Full` body), sent with the
    /// `Content-Type` tus asks for or another one.
    TusCreate {
        total: Total,
        body: u64,
        delivery: TusBody,
        content_type: bool,
    },
    /// tus `HEAD`: the offset.
    TusHead,
    /// tus `PATCH` (append) at `offset` of `len` source bytes from that
    /// offset (`None`: the rest of the file), with `Upload-Length` unless
    /// `total` is `Total::Unknown`, and maybe an `Upload-Checksum`.
    TusAppend {
        offset: TusOffset,
        len: Option<u64>,
        delivery: TusBody,
        total: Total,
        checksum: Checksum,
        content_type: bool,
    },
    /// tus `DELETE` (termination).
    TusDelete,
}

/// The `Upload-Offset` an append names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TusOffset {
    /// The upload's offset as the model knows it (the stored prefix, or the
    /// file's length once complete): what a client that asked `HEAD` sends.
    Current,
    /// This offset, right or not.
    At(u64),
}

/// How a tus body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TusBody {
    /// In a `Full` body, whose size hint is exact (the layer's length).
    Full,
    /// In `pieces` frames (at least one), with no size hint: a length the
    /// layer learns only at the end.
    Streamed { pieces: u8 },
    /// The first `after` bytes (at most the body's length), then the body
    /// fails as when the connection is cut off; with `Content-Length` of the
    /// whole body if `content_length`, else of unknown length.
    CutOff { after: u8, content_length: bool },
}

/// An append's `Upload-Checksum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// No header.
    None,
    /// `sha1` of the body.
    Sha1,
    /// `sha256` of the body.
    Sha256,
    /// `sha512` of the body.
    Sha512,
    /// A well-formed `sha256` of other bytes.
    Wrong,
    /// `md5`, which the layer does not offer: `400 checksum_invalid`.
    Md5,
}

impl Checksum {
    /// The header value for `body`.
    fn header(self, body: &[u8]) -> Option<String> {
        let b64 = |digest: &[u8]| STANDARD.encode(digest);
        Some(match self {
            Checksum::None => return None,
            Checksum::Sha1 => format!("sha1 {}", b64(&Sha1::digest(body))),
            Checksum::Sha256 => format!("sha256 {}", b64(&sha256(body))),
            Checksum::Sha512 => format!("sha512 {}", b64(&sha512(body))),
            Checksum::Wrong => format!("sha256 {}", b64(&sha256(b"other bytes"))),
            Checksum::Md5 => "md5 AAAAAAAAAAAAAAAAAAAAAA==".to_owned(),
        })
    }
}

impl Op {
    /// Whether this is a tus request.
    pub fn is_tus(&self) -> bool {
        matches!(
            self,
            Op::TusCreate { .. } | Op::TusHead | Op::TusAppend { .. } | Op::TusDelete
        )
    }
}

/// What the model predicts for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub status: u16,
    /// `error.code` of a refusal.
    pub code: Option<&'static str>,
    /// The `Upload-Offset` of a tus answer that carries one.
    pub offset: Option<u64>,
}

impl Expected {
    fn ok(status: u16) -> Self {
        Expected {
            status,
            code: None,
            offset: None,
        }
    }

    fn refused(status: u16, code: &'static str) -> Self {
        Expected {
            status,
            code: Some(code),
            offset: None,
        }
    }

    fn at(self, offset: u64) -> Self {
        Expected {
            offset: Some(offset),
            ..self
        }
    }
}

/// A parsed, supported digest: (is it `sha-512`, its bytes).
type Parsed = (bool, Vec<u8>);

/// A digest header as the model understands it.
enum Header {
    Absent,
    Malformed,
    Digest(Parsed),
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

fn sha512(bytes: &[u8]) -> Vec<u8> {
    Sha512::digest(bytes).to_vec()
}

impl DigestValue {
    /// The header value for `right` (the bytes the right digest is of).
    fn header(self, right: &[u8]) -> Option<String> {
        let b64 = |digest: Vec<u8>| STANDARD.encode(digest);
        Some(match self {
            DigestValue::None => return None,
            DigestValue::Sha256 => format!("sha-256=:{}:", b64(sha256(right))),
            DigestValue::Sha512 => format!("sha-512=:{}:", b64(sha512(right))),
            DigestValue::Both => format!(
                "sha-256=:{}:, sha-512=:{}:",
                b64(sha256(b"other bytes")),
                b64(sha512(right))
            ),
            DigestValue::Wrong(n) => format!("sha-256=:{}:", b64(sha256(&[n, 0x77]))),
            DigestValue::Unsupported => "md5=:AAAAAAAAAAAAAAAAAAAAAA==:".to_owned(),
            DigestValue::Malformed => "sha-256=:AAAA:".to_owned(),
        })
    }

    /// What the layer makes of it.
    fn parsed(self, right: &[u8]) -> Header {
        match self {
            DigestValue::None => Header::Absent,
            DigestValue::Malformed | DigestValue::Unsupported => Header::Malformed,
            DigestValue::Sha256 => Header::Digest((false, sha256(right))),
            DigestValue::Sha512 | DigestValue::Both => Header::Digest((true, sha512(right))),
            DigestValue::Wrong(n) => Header::Digest((false, sha256(&[n, 0x77]))),
        }
    }
}

fn matches(digest: &Parsed, bytes: &[u8]) -> bool {
    let (is512, value) = digest;
    *value == if *is512 { sha512(bytes) } else { sha256(bytes) }
}

/// The session as docs/protocol.md#resumable-uploads and #signed-policy describe it: a total once a chunk
/// names one, the byte stored at each offset (independent of the crate's
/// range set), the kept `Repr-Digest`, and the file once it completed.
#[derive(Debug, Clone)]
pub struct Model {
    pub setup: Setup,
    pub total: Option<u64>,
    stored: Vec<Option<u8>>,
    kept: Option<Parsed>,
    /// The committed file's bytes.
    pub completed: Option<Vec<u8>>,
    /// Whether the committed File object has its `sha256`.
    pub sha256_known: bool,
    /// A tus creation opened the session (a stored chunk opens it too).
    pub created: bool,
}

/// What a session becomes once its bytes may all have arrived.
enum Settled {
    /// Not complete yet.
    Progress,
    /// Committed, by this request.
    Completed,
    /// The commit refused the file (and discarded the session).
    Refused(Expected),
}

/// A request's body as the client sends it.
struct Sent {
    bytes: Vec<u8>,
    exact: bool,
    cut_off: bool,
    pieces: usize,
    content_length: Option<u64>,
}

impl TusBody {
    /// The body of `bytes` sent this way.
    fn sent(self, mut bytes: Vec<u8>) -> Sent {
        let len = bytes.len() as u64;
        match self {
            TusBody::Full => Sent {
                bytes,
                exact: true,
                cut_off: false,
                pieces: 1,
                content_length: None,
            },
            TusBody::Streamed { pieces } => Sent {
                bytes,
                exact: false,
                cut_off: false,
                pieces: usize::from(pieces.max(1)),
                content_length: None,
            },
            TusBody::CutOff {
                after,
                content_length,
            } => {
                bytes.truncate(usize::from(after));
                Sent {
                    bytes,
                    exact: false,
                    cut_off: true,
                    pieces: 2,
                    content_length: content_length.then_some(len),
                }
            }
        }
    }
}

impl Op {
    /// The body as the client sends it; `current` is the upload's offset
    /// before this request ([`Model::tus_offset`]).
    fn sent(&self, setup: &Setup, current: u64) -> Sent {
        let png = setup.png;
        match *self {
            Op::TusCreate { body, delivery, .. } => delivery.sent(file_bytes(png, 0, body)),
            Op::TusAppend {
                offset,
                len,
                delivery,
                ..
            } => {
                let offset = offset.resolve(current);
                let len = len.unwrap_or(setup.file_len.saturating_sub(offset));
                delivery.sent(file_bytes(png, offset, len))
            }
            Op::TusHead | Op::TusDelete => TusBody::Full.sent(Vec::new()),
            Op::Chunk {
                first,
                last,
                delivery,
                content_length,
                ..
            } => {
                let len = last - first + 1;
                let source = |first, len| file_bytes(png, first, len);
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
                    Delivery::Changed { at } => {
                        let mut bytes = source(first, len);
                        bytes[(u64::from(at) % len) as usize] ^= 0x5a;
                        (bytes, true, false, 1)
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

    fn digests(&self) -> Digests {
        match *self {
            Op::Chunk { digests, .. } | Op::Status { digests, .. } => digests,
            _ => Digests::NONE,
        }
    }
}

impl TusOffset {
    /// The offset sent, given the upload's `current` one.
    pub fn resolve(self, current: u64) -> u64 {
        match self {
            TusOffset::Current => current,
            TusOffset::At(offset) => offset,
        }
    }
}

impl Model {
    pub fn new(setup: Setup) -> Self {
        Model {
            setup,
            total: None,
            stored: vec![None; setup.limit() as usize],
            kept: None,
            completed: None,
            sha256_known: false,
            created: false,
        }
    }

    /// The length of the stored prefix from byte 0.
    pub fn prefix(&self) -> u64 {
        self.stored
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.stored.len()) as u64
    }

    /// The upload's offset as tus reports it: the stored prefix, or the
    /// file's length once complete.
    pub fn tus_offset(&self) -> u64 {
        match &self.completed {
            Some(file) => file.len() as u64,
            None => self.prefix(),
        }
    }

    /// Whether the session exists for tus: created, or holding stored bytes.
    pub fn opened(&self) -> bool {
        self.created || self.end().is_some()
    }

    /// Commits the session if every byte of its total is stored: the commit
    /// judges the assembled file's type and the kept `Repr-Digest` (else
    /// `own`, the completing request's), and a refusal discards the session.
    fn settle(&mut self, own: Option<&Parsed>) -> Settled {
        let Some(total) = self.total else {
            return Settled::Progress;
        };
        let Some(file) = self.stored[..total as usize]
            .iter()
            .copied()
            .collect::<Option<Vec<u8>>>()
        else {
            return Settled::Progress;
        };
        if let Some(types) = self.setup.types {
            if !types.allows(sniffed(&file)) {
                self.discard();
                return Settled::Refused(Expected::refused(415, "type_not_allowed"));
            }
        }
        if let Some(judged) = self.kept.as_ref().or(own) {
            if !matches(judged, &file) {
                self.discard();
                return Settled::Refused(Expected::refused(400, "digest_mismatch"));
            }
        }
        // A kept Repr-Digest (any algorithm) makes the backend compute
        // SHA-256 too.
        self.sha256_known = own.is_some() || self.kept.is_some();
        self.completed = Some(file);
        Settled::Completed
    }

    /// A range's admission by the storage, judged before its bytes are read:
    /// past the total, or one range too many.
    fn admit(&self, first: u64, last: u64) -> Result<(), Expected> {
        if self.total.is_some_and(|t| last >= t) {
            return Err(Expected::refused(416, "range_not_satisfiable"));
        }
        let bits = self.bits();
        if (last as usize) < bits.len() && bits[first as usize..=last as usize].iter().all(|&b| b) {
            return Ok(());
        }
        let mut after = bits;
        after.resize(after.len().max(last as usize + 1), false);
        after[first as usize..=last as usize].fill(true);
        if runs(&after).len() > MAX_RANGES {
            return Err(Expected::refused(400, "too_many_ranges"));
        }
        Ok(())
    }

    /// Stores `bytes` at `first`, unless stored bytes there differ.
    fn record(&mut self, first: u64, bytes: &[u8]) -> Result<(), Expected> {
        let overlap = self.stored[first as usize..first as usize + bytes.len()]
            .iter()
            .zip(bytes)
            .any(|(stored, sent)| stored.is_some_and(|s| s != *sent));
        if overlap {
            return Err(Expected::refused(409, "range_conflict"));
        }
        for (offset, byte) in (first..).zip(bytes) {
            self.stored[offset as usize] = Some(*byte);
        }
        Ok(())
    }

    /// A tus body stored at `offset` (`length`: the layer's `Content-Length`
    /// or size hint). The crate stores a tus body in pieces of 64 MiB (4 MiB
    /// when its length is unknown), each one range: the model's bodies are
    /// far smaller, so a body is one piece, stored whole or not at all (a
    /// cut-off body stores nothing). A body of known length is admitted from
    /// its range before it is read, then judged (type, checksum) at its end,
    /// then compared with stored bytes; one of unknown length is read whole
    /// first (at most up to the total, else the limit), then admitted.
    fn store_tus(
        &mut self,
        offset: u64,
        length: Option<u64>,
        sent: &Sent,
        checksum: Checksum,
    ) -> Result<(), Expected> {
        let arrived = sent.bytes.len() as u64;
        match length {
            Some(len) => {
                self.admit(offset, offset + len - 1)?;
                if sent.cut_off {
                    return Err(Expected::refused(400, "body_incomplete"));
                }
                let judged_now =
                    offset == 0 && (len >= SNIFF_LEN as u64 || self.total == Some(len));
                if let Some(types) = self.setup.types.filter(|_| judged_now) {
                    let head = &sent.bytes[..sent.bytes.len().min(SNIFF_LEN)];
                    if !types.allows(sniffed(head)) {
                        if self.stored[0].is_some() {
                            return Err(Expected::refused(409, "range_conflict"));
                        }
                        self.discard();
                        return Err(Expected::refused(415, "type_not_allowed"));
                    }
                }
                if checksum == Checksum::Wrong {
                    return Err(Expected::refused(460, "checksum_mismatch"));
                }
            }
            None => {
                let room = self.total.unwrap_or(self.setup.limit()) - offset;
                if arrived > room {
                    return Err(Expected::refused(413, "too_large"));
                }
                if sent.cut_off {
                    return Err(Expected::refused(400, "body_incomplete"));
                }
                if arrived == 0 {
                    return Ok(());
                }
                self.admit(offset, offset + arrived - 1)?;
            }
        }
        self.record(offset, &sent.bytes)
    }

    /// The answer of a tus request that may have completed the session:
    /// the completion (`201` from the inner service), a refusal at commit,
    /// or `progress` with the new offset.
    fn settled_tus(&mut self, progress: u16) -> Expected {
        match self.settle(None) {
            Settled::Completed => Expected::ok(201).at(self.tus_offset()),
            Settled::Refused(refusal) => refusal,
            Settled::Progress => Expected::ok(progress).at(self.prefix()),
        }
    }

    /// Predicts a tus request (docs/protocol.md#tus-100) on the session.
    fn apply_tus(&mut self, op: &Op, sent: &Sent, offset: u64) -> Expected {
        let limit = self.setup.limit();
        // The layer's length of the body: `Content-Length`, else an exact
        // size hint; and whether the body may hold bytes at all.
        let known = sent
            .content_length
            .or(sent.exact.then_some(sent.bytes.len() as u64));
        let has_body = !(sent.exact && sent.bytes.is_empty());
        match *op {
            Op::TusCreate {
                total,
                content_type,
                ..
            } => {
                let named = self.resolve(total);
                let body = (has_body && known != Some(0)).then_some(known);
                if named.is_some_and(|t| t > limit) {
                    return Expected::refused(413, "too_large");
                }
                if body.is_some() && !content_type {
                    return Expected::refused(415, "content_type_invalid");
                }
                if let (Some(Some(len)), Some(t)) = (body, named) {
                    if len > t {
                        return Expected::refused(416, "range_not_satisfiable");
                    }
                }
                if body.flatten().is_some_and(|len| len > limit) {
                    return Expected::refused(413, "too_large");
                }
                if let Some(file) = &self.completed {
                    // A creation of a completed upload: its offset, nothing stored.
                    return Expected::ok(201).at(file.len() as u64);
                }
                if let Some(t) = named {
                    let disagrees = match self.total {
                        Some(known) => known != t,
                        None => self.end().is_some_and(|end| end >= t),
                    };
                    if disagrees {
                        return Expected::refused(409, "total_mismatch");
                    }
                    self.total = Some(t);
                }
                self.created = true;
                if let Some(length) = body {
                    if let Err(refusal) = self.store_tus(0, length, sent, Checksum::None) {
                        return refusal;
                    }
                }
                self.settled_tus(201)
            }
            Op::TusHead => {
                if let Some(file) = &self.completed {
                    return Expected::ok(200).at(file.len() as u64);
                }
                if !self.opened() {
                    return Expected::refused(404, "upload_not_found");
                }
                self.settled_tus(200)
            }
            Op::TusDelete => {
                if self.completed.is_some() {
                    return Expected::refused(409, "upload_complete");
                }
                if !self.opened() {
                    return Expected::refused(404, "upload_not_found");
                }
                self.discard();
                Expected::ok(204)
            }
            Op::TusAppend {
                total,
                checksum,
                content_type,
                ..
            } => {
                let length = if has_body { known } else { Some(0) };
                let declared = self.resolve(total);
                if !content_type {
                    return Expected::refused(415, "content_type_invalid");
                }
                if declared.is_some_and(|t| t > limit) {
                    return Expected::refused(413, "too_large");
                }
                if checksum == Checksum::Md5 {
                    return Expected::refused(400, "checksum_invalid");
                }
                if checksum != Checksum::None && length.is_none() {
                    return Expected::refused(411, "length_required");
                }
                if let Some(len) = length {
                    let end = offset.checked_add(len);
                    if end.is_none_or(|end| end > limit) {
                        return Expected::refused(413, "too_large");
                    }
                    if end.is_some_and(|end| declared.is_some_and(|t| end > t)) {
                        return Expected::refused(416, "range_not_satisfiable");
                    }
                }
                if let Some(file) = &self.completed {
                    // Nothing is stored; the answer is the final offset.
                    return Expected::ok(204).at(file.len() as u64);
                }
                if !self.opened() {
                    return Expected::refused(404, "upload_not_found");
                }
                let current = self.prefix();
                if offset != current {
                    return Expected::refused(409, "offset_mismatch").at(current);
                }
                if let Some(sent_total) = declared {
                    match self.total {
                        Some(known) if known != sent_total => {
                            return Expected::refused(409, "total_mismatch")
                        }
                        Some(_) => {}
                        None => {
                            // A deferred length, declared now: kept before any byte.
                            if self.end().is_some_and(|end| end >= sent_total) {
                                return Expected::refused(409, "total_mismatch");
                            }
                            self.total = Some(sent_total);
                        }
                    }
                }
                if length != Some(0) {
                    if let Err(refusal) = self.store_tus(offset, length, sent, checksum) {
                        return refusal;
                    }
                }
                self.settled_tus(204)
            }
            Op::Chunk { .. } | Op::Status { .. } => unreachable!("not a tus request"),
        }
    }

    /// The source file's bytes (of its own length): what `Repr-Digest` is the digest of.
    fn true_file(&self) -> Vec<u8> {
        file_bytes(self.setup.png, 0, self.setup.file_len)
    }

    fn resolve(&self, total: Total) -> Option<u64> {
        match total {
            Total::Right => Some(self.setup.file_len),
            Total::Unknown => None,
            Total::Other(n) => Some(n),
        }
    }

    fn bits(&self) -> Vec<bool> {
        self.stored.iter().map(Option::is_some).collect()
    }

    /// The stored ranges, inclusive, sorted, adjacent ones merged.
    pub fn ranges(&self) -> Vec<[u64; 2]> {
        runs(&self.bits())
    }

    fn end(&self) -> Option<u64> {
        self.stored
            .iter()
            .rposition(Option::is_some)
            .map(|i| i as u64)
    }

    /// A refused session's data is discarded: the same URL starts afresh.
    fn discard(&mut self) {
        *self = Model::new(self.setup);
    }

    /// Predicts the answer to `op` and applies its effect.
    pub fn apply(&mut self, op: &Op) -> Expected {
        let current = self.tus_offset();
        let sent = op.sent(&self.setup, current);
        if let Op::TusAppend { offset, .. } = *op {
            return self.apply_tus(op, &sent, offset.resolve(current));
        }
        if op.is_tus() {
            return self.apply_tus(op, &sent, 0);
        }
        let digests = op.digests();
        let content = digests.content.parsed(&sent.bytes);
        let repr = digests.repr.parsed(&self.true_file());
        let malformed = matches!(content, Header::Malformed) || matches!(repr, Header::Malformed);
        let repr = match repr {
            Header::Digest(parsed) => Some(parsed),
            _ => None,
        };
        let conflicts = |kept: &Option<Parsed>| matches!((kept, &repr), (Some(kept), Some(sent)) if kept != sent);
        match *op {
            Op::Chunk {
                first, last, total, ..
            } => {
                let named = self.resolve(total);
                let len = last - first + 1;
                let limit = self.setup.limit();
                let declared = sent
                    .content_length
                    .or(sent.exact.then_some(sent.bytes.len() as u64));
                // Judged from the headers, before the session is looked at.
                if named.is_some_and(|t| last >= t) {
                    return Expected::refused(416, "range_not_satisfiable");
                }
                if named.unwrap_or(0) > limit || last >= limit {
                    return Expected::refused(413, "too_large");
                }
                if declared.is_some_and(|d| d != len) {
                    return Expected::refused(400, "content_range_mismatch");
                }
                if malformed {
                    return Expected::refused(400, "digest_invalid");
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
                let bits = self.bits();
                let mut after = bits.clone();
                after[first as usize..=last as usize].fill(true);
                let contained = bits[first as usize..=last as usize].iter().all(|&b| b);
                if !contained && runs(&after).len() > MAX_RANGES {
                    return Expected::refused(400, "too_many_ranges");
                }
                if conflicts(&self.kept) {
                    return Expected::refused(409, "digest_conflict");
                }
                // The body, as it streams.
                if sent.cut_off {
                    return Expected::refused(400, "body_incomplete");
                }
                if sent.bytes.len() as u64 != len {
                    return Expected::refused(400, "content_range_mismatch");
                }
                // The offset-0 chunk is judged on its own first bytes when it
                // holds enough to judge (SNIFF_LEN, or the whole file it names);
                // a smaller one waits for the commit. A refused chunk over a
                // stored byte 0 changed stored bytes: a range conflict.
                let judged_now = first == 0 && (len >= SNIFF_LEN as u64 || named == Some(last + 1));
                if let Some(types) = self.setup.types.filter(|_| judged_now) {
                    let head = &sent.bytes[..sent.bytes.len().min(SNIFF_LEN)];
                    if !types.allows(sniffed(head)) {
                        if self.stored[0].is_some() {
                            return Expected::refused(409, "range_conflict");
                        }
                        self.discard();
                        return Expected::refused(415, "type_not_allowed");
                    }
                }
                if let Header::Digest(digest) = &content {
                    if !matches(digest, &sent.bytes) {
                        return Expected::refused(400, "digest_mismatch");
                    }
                }
                // Stored bytes must match.
                let overlap = self.stored[first as usize..=last as usize]
                    .iter()
                    .zip(&sent.bytes)
                    .any(|(stored, sent)| stored.is_some_and(|s| s != *sent));
                if overlap {
                    return Expected::refused(409, "range_conflict");
                }
                // Stored: it counts.
                for (offset, byte) in (first..=last).zip(&sent.bytes) {
                    self.stored[offset as usize] = Some(*byte);
                }
                if named.is_some() {
                    self.total = named;
                }
                if self.kept.is_none() {
                    self.kept.clone_from(&repr);
                }
                // The commit judges the assembled file once more.
                match self.settle(repr.as_ref()) {
                    Settled::Completed => Expected::ok(201),
                    Settled::Refused(refusal) => refusal,
                    Settled::Progress => Expected::ok(202),
                }
            }
            Op::Status { total, .. } => {
                // An exact body size is judged from the headers, a streamed body
                // after the digest headers, both before the session is looked at.
                if sent.exact && !sent.bytes.is_empty() {
                    return Expected::refused(400, "content_range_mismatch");
                }
                if malformed {
                    return Expected::refused(400, "digest_invalid");
                }
                if !sent.bytes.is_empty() {
                    return Expected::refused(400, "content_range_mismatch");
                }
                // A Content-Digest holds for the (empty) body of a status query too.
                if let Header::Digest(digest) = &content {
                    if !matches(digest, &sent.bytes) {
                        return Expected::refused(400, "digest_mismatch");
                    }
                }
                if self.completed.is_some() {
                    return Expected::ok(200);
                }
                if conflicts(&self.kept) {
                    return Expected::refused(409, "digest_conflict");
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
                // `bytes */0` on a session that stored nothing completes it as
                // an empty file, judged at commit as any file is.
                if self.resolve(total) == Some(0) && self.total.is_none() && self.end().is_none() {
                    let file = Vec::new();
                    if let Some(types) = self.setup.types {
                        if !types.allows(sniffed(&file)) {
                            self.discard();
                            return Expected::refused(415, "type_not_allowed");
                        }
                    }
                    if let Some(own) = &repr {
                        if !matches(own, &file) {
                            self.discard();
                            return Expected::refused(400, "digest_mismatch");
                        }
                    }
                    self.sha256_known = repr.is_some();
                    self.completed = Some(file);
                    return Expected::ok(201);
                }
                // A session whose bytes all arrived without its commit (a
                // tus append that declared the last length, then failed)
                // is committed by the status query.
                match self.settle(repr.as_ref()) {
                    Settled::Completed => Expected::ok(201),
                    Settled::Refused(refusal) => refusal,
                    Settled::Progress => Expected::ok(308),
                }
            }
            Op::TusCreate { .. } | Op::TusHead | Op::TusAppend { .. } | Op::TusDelete => {
                unreachable!("answered by apply_tus")
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
    // tus answers without an error carry no body.
    let json = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|error| panic!("answer is not JSON ({error}): {body:?}"))
    };
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
        _ => unreachable!("a tus request has no Content-Range"),
    }
}

/// The storage a run goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `MemoryStorage`.
    Memory,
    /// `FsStorage` in a fresh temporary folder, removed after the run.
    #[cfg(all(feature = "fs", unix))]
    Fs,
}

impl Backend {
    /// Every backend of this build.
    pub const ALL: &'static [Backend] = &[
        Backend::Memory,
        #[cfg(all(feature = "fs", unix))]
        Backend::Fs,
    ];
}

/// The storage of one run, and where it keeps the committed file.
enum Store {
    Memory(MemoryStorage),
    #[cfg(all(feature = "fs", unix))]
    Fs(FsStorage, TempRoot),
}

impl Store {
    fn new(backend: Backend) -> Self {
        match backend {
            Backend::Memory => Store::Memory(MemoryStorage::new()),
            #[cfg(all(feature = "fs", unix))]
            Backend::Fs => {
                let root = TempRoot::new();
                let storage = FsStorage::new(&root.0).expect("FsStorage opens a fresh folder");
                Store::Fs(storage, root)
            }
        }
    }

    fn layer(&self) -> SignedUploadLayer {
        let key = SigningKey::new(KEY).expect("the key is not empty");
        match self {
            Store::Memory(storage) => SignedUploadLayer::new(key, storage.clone()),
            #[cfg(all(feature = "fs", unix))]
            Store::Fs(storage, _) => SignedUploadLayer::new(key, storage.clone()),
        }
    }

    /// The committed file at [`PATH`], if any.
    fn file(&self) -> Option<Vec<u8>> {
        match self {
            Store::Memory(storage) => storage.file(PATH).map(|bytes| bytes.to_vec()),
            #[cfg(all(feature = "fs", unix))]
            Store::Fs(_, root) => match std::fs::read(root.0.join(PATH)) {
                Ok(bytes) => Some(bytes),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                Err(error) => panic!("reading the committed file: {error}"),
            },
        }
    }
}

/// A fresh folder under the system's temporary folder, removed on drop (no
/// `tempfile`: the fuzz crate includes this file too).
#[cfg(all(feature = "fs", unix))]
struct TempRoot(std::path::PathBuf);

#[cfg(all(feature = "fs", unix))]
impl TempRoot {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "session-model-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("a temporary folder");
        TempRoot(path)
    }
}

#[cfg(all(feature = "fs", unix))]
impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `ops` against a fresh layer over `MemoryStorage` for a plain file with
/// no policy.
pub fn check(file_len: u64, max_size: u64, ops: &[Op]) {
    check_setup(Setup::plain(file_len, max_size), ops);
}

/// [`check_on`] over `MemoryStorage`.
pub fn check_setup(setup: Setup, ops: &[Op]) {
    check_on(Backend::Memory, setup, ops);
}

/// Runs `ops` against a fresh layer over `backend` (the `setup`'s `max_size`,
/// [`MAX_RANGES`], a URL with the setup's policy) and panics, naming the
/// operation, where an answer differs from the model. Builds its own
/// current-thread runtime.
pub fn check_on(backend: Backend, setup: Setup, ops: &[Op]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds");
    runtime.block_on(check_async(backend, setup, ops));
}

/// [`check_on`], on the caller's runtime (which must have a timer).
pub async fn check_async(backend: Backend, setup: Setup, ops: &[Op]) {
    let Setup {
        file_len, max_size, ..
    } = setup;
    let store = Store::new(backend);
    let inner = CountingInner::default();
    let layer = store
        .layer()
        .clock(FixedClock)
        .max_ranges(MAX_RANGES)
        .max_size(max_size)
        .public_base(PUBLIC_BASE)
        .expect("the public base is a URL");
    let mut options = UrlOptions::new();
    if let Some(types) = setup.types {
        options = options
            .types(types.patterns())
            .expect("the model's patterns parse");
    }
    if let Some(signed) = setup.signed_max_size {
        options = options.max_size(signed);
    }
    let url = layer
        .signer()
        .sign_with(
            &UploadPath::new(PATH).expect("the path is valid"),
            SignedMethod::Put,
            Duration::from_secs(3600),
            &options,
        )
        .expect("a put URL with a policy signs");
    let target = url.path_and_query().to_owned();
    let service = layer.layer(inner.clone());
    let mut model = Model::new(setup);
    let true_file = model.true_file();
    let mut completions = 0;
    for (index, op) in ops.iter().enumerate() {
        let before = model.clone();
        let current = model.tus_offset();
        let expected = model.apply(op);
        let sent = op.sent(&setup, current);
        let digests = op.digests();
        let mut builder = if op.is_tus() {
            tus_request(op, &target, file_len, current, &sent.bytes)
        } else {
            Request::put(target.as_str()).header(
                http::header::CONTENT_RANGE,
                content_range(op, file_len, index % 2 == 1),
            )
        };
        if let Some(length) = sent.content_length {
            builder = builder.header(http::header::CONTENT_LENGTH, length);
        }
        if let Some(value) = digests.content.header(&sent.bytes) {
            builder = builder.header("content-digest", value);
        }
        if let Some(value) = digests.repr.header(&true_file) {
            builder = builder.header("repr-digest", value);
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
                "op #{index} {op:?} ({setup:?})\n\
                 model before: {before:?}\nexpected: {expected:?}\n\
                 answer: {answer:?}\nbackend: {backend:?}"
            )
        };
        assert_eq!(
            answer.status,
            expected.status,
            "status differs from the model's {expected:?}: {}",
            context()
        );
        if !answer.json.is_null() {
            assert_eq!(
                answer.json["meta"]["status"],
                answer.status,
                "meta.status: {}",
                context()
            );
        }
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .map(|value| value.to_str().expect("a visible header value"))
        };
        if op.is_tus() {
            assert_eq!(
                header("tus-resumable"),
                Some("1.0.0"),
                "Tus-Resumable: {}",
                context()
            );
        }
        assert_eq!(
            header("upload-offset").map(|value| value.parse::<u64>()),
            expected.offset.map(Ok),
            "Upload-Offset: {}",
            context()
        );
        if let Some(code) = expected.code {
            assert_eq!(
                answer.json["error"]["code"].as_str(),
                Some(code),
                "error code: {}",
                context()
            );
        }
        let completion = before.completed.is_none() && model.completed.is_some();
        let replay = !op.is_tus() && answer.status == 200;
        if completion || replay {
            // The File object: from the inner service once, replayed after.
            assert_eq!(
                answer.status,
                if completion { 201 } else { 200 },
                "{}",
                context()
            );
            let file = model.completed.as_ref().expect("the model completed");
            let data = &answer.json["data"];
            assert_eq!(data["filesize"], file.len(), "filesize: {}", context());
            assert_eq!(data["object"], "source", "File object: {}", context());
            let sha256 = data["sha256"].as_str();
            if model.sha256_known {
                assert!(sha256.is_some(), "sha256 missing: {}", context());
            }
            if let Some(sha256) = sha256 {
                let want: String = Sha256::digest(file)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(sha256, want, "sha256: {}", context());
            }
            for header in ["etag", "location"] {
                assert!(
                    answer.headers.contains_key(header),
                    "{header} missing: {}",
                    context()
                );
            }
            completions += usize::from(completion);
        }
        match (op, answer.status) {
            (Op::Chunk { .. } | Op::Status { .. }, 202 | 308) => {
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
                    header("range"),
                    prefix.as_deref(),
                    "Range header: {}",
                    context()
                );
            }
            (Op::TusHead, 200) => {
                // The length: the file's once complete, else the session's.
                let length = match &model.completed {
                    Some(file) => Some(file.len() as u64),
                    None => model.total,
                };
                let length = length.map(|n| n.to_string());
                assert_eq!(
                    header("upload-length"),
                    length.as_deref(),
                    "Upload-Length: {}",
                    context()
                );
                let deferred = length.is_none().then_some("1");
                assert_eq!(
                    header("upload-defer-length"),
                    deferred,
                    "Upload-Defer-Length: {}",
                    context()
                );
                assert_eq!(
                    header("cache-control"),
                    Some("no-store"),
                    "Cache-Control: {}",
                    context()
                );
            }
            (Op::TusCreate { .. }, 201) if !completion => {
                assert_eq!(
                    header("location"),
                    Some(format!("{PUBLIC_BASE}{target}").as_str()),
                    "Location: {}",
                    context()
                );
                assert!(answer.json.is_null(), "a body: {}", context());
            }
            _ => {}
        }
        assert_eq!(
            inner.0.load(Ordering::SeqCst),
            usize::from(model.completed.is_some()),
            "inner service calls: {}",
            context()
        );
        let stored = store.file();
        assert_eq!(
            stored.as_deref(),
            model.completed.as_deref(),
            "stored file: {}",
            context()
        );
    }
    assert_eq!(completions, usize::from(model.completed.is_some()));
}

/// The tus request of `op` (without its body): `Tus-Resumable`, the method,
/// and the headers it names; `current` is the upload's offset before it.
fn tus_request(
    op: &Op,
    target: &str,
    file_len: u64,
    current: u64,
    body: &[u8],
) -> http::request::Builder {
    let length = |total: Total| match total {
        Total::Right => Some(file_len),
        Total::Unknown => None,
        Total::Other(n) => Some(n),
    };
    let content_type = |right: bool| {
        if right {
            "application/offset+octet-stream"
        } else {
            "application/octet-stream"
        }
    };
    let builder = Request::builder()
        .uri(target)
        .header("tus-resumable", "1.0.0");
    match *op {
        Op::TusCreate {
            total,
            content_type: right,
            ..
        } => {
            let builder = builder
                .method(http::Method::POST)
                .header(http::header::CONTENT_TYPE, content_type(right));
            match length(total) {
                Some(n) => builder.header("upload-length", n),
                None => builder.header("upload-defer-length", "1"),
            }
        }
        Op::TusAppend {
            offset,
            total,
            checksum,
            content_type: right,
            ..
        } => {
            let mut builder = builder
                .method(http::Method::PATCH)
                .header(http::header::CONTENT_TYPE, content_type(right))
                .header("upload-offset", offset.resolve(current));
            if let Some(n) = length(total) {
                builder = builder.header("upload-length", n);
            }
            if let Some(value) = checksum.header(body) {
                builder = builder.header("upload-checksum", value);
            }
            builder
        }
        Op::TusHead => builder.method(http::Method::HEAD),
        Op::TusDelete => builder.method(http::Method::DELETE),
        Op::Chunk { .. } | Op::Status { .. } => unreachable!("not a tus request"),
    }
}

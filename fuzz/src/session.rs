//! The `upload_session` target: arbitrary operations on one session (chunks
//! and status queries with digest headers and changed retries, tus
//! creations, offsets, appends and terminations, and maybe a signed `type`
//! and `max_size`), over `MemoryStorage` or `FsStorage` as the input picks,
//! checked against the reference model in `tests/common/session_model.rs`.

use arbitrary::Arbitrary;

use crate::session_model::{
    self, Backend, Checksum, Delivery, DigestValue, Digests, Op, Setup, Total, TusBody, TusOffset,
    Types, MAX_FILE_LEN, MAX_SIZE_BOUNDS,
};

/// At most this many operations per input.
const MAX_OPS: usize = 32;

/// One fuzz input: the file's length, the layer's `max_size`, the operations.
#[derive(Arbitrary, Debug)]
pub struct SessionInput {
    file_len: u8,
    max_size: u8,
    /// The source file is a PNG.
    png: bool,
    /// The URL's signed `type` (one of four, or none).
    types: u8,
    /// The URL's signed `max_size`.
    signed_max_size: Option<u8>,
    /// The session goes through `FsStorage` in a fresh temporary folder
    /// (with the `fs` feature), else through `MemoryStorage`.
    on_disk: bool,
    ops: Vec<RawOp>,
}

/// `Content-Digest` and `Repr-Digest` choices, one byte each.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct RawDigests(u8, u8);

impl RawDigests {
    fn model(self) -> Digests {
        Digests {
            content: digest_value(self.0),
            repr: digest_value(self.1),
        }
    }
}

/// Mostly no header; else each kind of value.
fn digest_value(n: u8) -> DigestValue {
    match n % 16 {
        0..=6 => DigestValue::None,
        7 | 8 => DigestValue::Sha256,
        9 => DigestValue::Sha512,
        10 => DigestValue::Both,
        11 | 12 => DigestValue::Wrong(n / 16 % 2),
        13 => DigestValue::Unsupported,
        _ => DigestValue::Malformed,
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum RawTotal {
    Right,
    Unknown,
    Other(u8),
    Huge(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum RawOp {
    Chunk {
        first: u8,
        len: u8,
        total: RawTotal,
        delivery: Delivery2,
        content_length: bool,
        digests: RawDigests,
    },
    /// A chunk of 1 to 3 bytes: many of them split the session into many ranges.
    Small {
        first: u8,
        len: u8,
        total: RawTotal,
    },
    /// The rest of the file from `first`, named with the right total.
    Rest {
        first: u8,
        streamed: bool,
        digests: RawDigests,
    },
    /// A range of the file with one byte changed: a retry whose bytes differ.
    Changed {
        first: u8,
        len: u8,
        at: u8,
        digests: RawDigests,
    },
    Status {
        total: RawTotal,
        body: u8,
        streamed: bool,
        digests: RawDigests,
    },
    // tus requests, after the chunk ops so that older inputs keep their
    // fields (their variant choice scales with the count, see arbitrary's
    // derive, so an older input may now pick other operations).
    /// `POST`: the length (`RawTotal::Unknown`: deferred), a body of the
    /// file's first `body` bytes, the `Content-Type` right unless `untyped`.
    TusCreate {
        total: RawTotal,
        body: u8,
        delivery: RawTusBody,
        untyped: bool,
    },
    TusHead,
    /// `PATCH`: at the upload's offset, or at `offset - 1` when nonzero;
    /// the rest of the file (`len` 0) or `len - 1` bytes.
    TusAppend {
        offset: u8,
        len: u8,
        delivery: RawTusBody,
        total: RawTotal,
        checksum: u8,
        untyped: bool,
    },
    TusDelete,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum RawTusBody {
    Full,
    Streamed { pieces: u8 },
    CutOff { after: u8, content_length: bool },
}

impl RawTusBody {
    fn model(self) -> TusBody {
        match self {
            RawTusBody::Full => TusBody::Full,
            RawTusBody::Streamed { pieces } => TusBody::Streamed {
                pieces: pieces % 8 + 1,
            },
            RawTusBody::CutOff {
                after,
                content_length,
            } => TusBody::CutOff {
                after,
                content_length,
            },
        }
    }
}

/// Mostly no `Upload-Checksum`; else each kind.
fn checksum(n: u8) -> Checksum {
    match n % 16 {
        0..=8 => Checksum::None,
        9 => Checksum::Sha1,
        10 => Checksum::Sha256,
        11 => Checksum::Sha512,
        12 | 13 => Checksum::Wrong,
        _ => Checksum::Md5,
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Delivery2 {
    Full,
    Streamed { pieces: u8 },
    Short { by: u8, streamed: bool },
    Long { by: u8, streamed: bool },
    CutOff { after: u8 },
    Changed { at: u8 },
}

impl RawTotal {
    fn model(self) -> Total {
        match self {
            RawTotal::Right => Total::Right,
            RawTotal::Unknown => Total::Unknown,
            RawTotal::Other(n) => Total::Other(u64::from(n % 112)),
            RawTotal::Huge(n) => Total::Other(n),
        }
    }
}

impl Delivery2 {
    fn model(self) -> Delivery {
        match self {
            Delivery2::Full => Delivery::Full,
            Delivery2::Streamed { pieces } => Delivery::Streamed {
                pieces: pieces % 8 + 1,
            },
            Delivery2::Short { by, streamed } => Delivery::Short {
                by: by % 8 + 1,
                streamed,
            },
            Delivery2::Long { by, streamed } => Delivery::Long {
                by: by % 8 + 1,
                streamed,
            },
            Delivery2::CutOff { after } => Delivery::CutOff { after },
            Delivery2::Changed { at } => Delivery::Changed { at },
        }
    }
}

impl SessionInput {
    /// The setup (file length 1..=64, `max_size` 16..=96, the URL's policy)
    /// and the operations.
    pub fn decode(&self) -> (Setup, Vec<Op>) {
        let file_len = u64::from(self.file_len) % MAX_FILE_LEN + 1;
        let (low, high) = MAX_SIZE_BOUNDS;
        let max_size = low + u64::from(self.max_size) % (high - low + 1);
        let setup = Setup {
            file_len,
            max_size,
            png: self.png,
            types: match self.types % 8 {
                0 => Some(Types::AnyImage),
                1 => Some(Types::PngOrMp4),
                2 => Some(Types::Binary),
                3 => Some(Types::Text),
                _ => None,
            },
            signed_max_size: self.signed_max_size.map(|n| u64::from(n % 112)),
        };
        // Offsets reach a little past the file and past max_size.
        let span = max_size + 8;
        let ops = self
            .ops
            .iter()
            .take(MAX_OPS)
            .map(|op| match *op {
                RawOp::Chunk {
                    first,
                    len,
                    total,
                    delivery,
                    content_length,
                    digests,
                } => {
                    let first = u64::from(first) % span;
                    let len = u64::from(len) % span + 1;
                    Op::Chunk {
                        first,
                        last: first + len - 1,
                        total: total.model(),
                        delivery: delivery.model(),
                        content_length,
                        digests: digests.model(),
                    }
                }
                RawOp::Small { first, len, total } => {
                    let first = u64::from(first) % span;
                    Op::Chunk {
                        first,
                        last: first + u64::from(len % 3),
                        total: total.model(),
                        delivery: Delivery::Full,
                        content_length: false,
                        digests: Digests::NONE,
                    }
                }
                RawOp::Rest {
                    first,
                    streamed,
                    digests,
                } => {
                    let first = u64::from(first) % file_len;
                    Op::Chunk {
                        first,
                        last: file_len - 1,
                        total: Total::Right,
                        delivery: if streamed {
                            Delivery::Streamed { pieces: 3 }
                        } else {
                            Delivery::Full
                        },
                        content_length: false,
                        digests: digests.model(),
                    }
                }
                RawOp::Changed {
                    first,
                    len,
                    at,
                    digests,
                } => {
                    let first = u64::from(first) % file_len;
                    let len = u64::from(len) % (file_len - first) + 1;
                    Op::Chunk {
                        first,
                        last: first + len - 1,
                        total: Total::Right,
                        delivery: Delivery::Changed { at },
                        content_length: false,
                        digests: digests.model(),
                    }
                }
                RawOp::Status {
                    total,
                    body,
                    streamed,
                    digests,
                } => Op::Status {
                    total: total.model(),
                    body: if body < 224 { 0 } else { body % 8 + 1 },
                    streamed,
                    digests: digests.model(),
                },
                RawOp::TusCreate {
                    total,
                    body,
                    delivery,
                    untyped,
                } => Op::TusCreate {
                    total: total.model(),
                    body: u64::from(body) % span,
                    delivery: delivery.model(),
                    content_type: !untyped,
                },
                RawOp::TusHead => Op::TusHead,
                RawOp::TusAppend {
                    offset,
                    len,
                    delivery,
                    total,
                    checksum: sum,
                    untyped,
                } => Op::TusAppend {
                    offset: match offset {
                        0 => TusOffset::Current,
                        n => TusOffset::At(u64::from(n - 1) % span),
                    },
                    len: match len {
                        0 => None,
                        n => Some(u64::from(n - 1) % span),
                    },
                    delivery: delivery.model(),
                    total: total.model(),
                    checksum: checksum(sum),
                    content_type: !untyped,
                },
                RawOp::TusDelete => Op::TusDelete,
            })
            .collect();
        (setup, ops)
    }
}

/// Runs the input's operations through the layer, over the storage the input
/// picks, against the model.
pub fn run(input: &SessionInput) {
    let (setup, ops) = input.decode();
    session_model::check_on(input.backend(), setup, &ops);
}

impl SessionInput {
    /// The storage backend this input runs over.
    pub fn backend(&self) -> Backend {
        match self.on_disk {
            #[cfg(feature = "fs")]
            true => Backend::Fs,
            _ => Backend::Memory,
        }
    }
}

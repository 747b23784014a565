//! The `upload_session` target: arbitrary operations on one session, checked
//! against the reference model in `tests/common/session_model.rs`.

use arbitrary::Arbitrary;

use crate::session_model::{self, Delivery, Op, Total, MAX_FILE_LEN, MAX_SIZE_BOUNDS};

/// At most this many operations per input.
const MAX_OPS: usize = 32;

/// One fuzz input: the file's length, the layer's `max_size`, the operations.
#[derive(Arbitrary, Debug)]
pub struct SessionInput {
    file_len: u8,
    max_size: u8,
    ops: Vec<RawOp>,
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
    },
    /// A chunk of 1 to 3 bytes: many of them split the session into many ranges.
    Small { first: u8, len: u8, total: RawTotal },
    /// The rest of the file from `first`, named with the right total.
    Rest { first: u8, streamed: bool },
    Status {
        total: RawTotal,
        body: u8,
        streamed: bool,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Delivery2 {
    Full,
    Streamed { pieces: u8 },
    Short { by: u8, streamed: bool },
    Long { by: u8, streamed: bool },
    CutOff { after: u8 },
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
        }
    }
}

impl SessionInput {
    /// The file length (1..=64), `max_size` (16..=96) and the operations.
    pub fn decode(&self) -> (u64, u64, Vec<Op>) {
        let file_len = u64::from(self.file_len) % MAX_FILE_LEN + 1;
        let (low, high) = MAX_SIZE_BOUNDS;
        let max_size = low + u64::from(self.max_size) % (high - low + 1);
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
                } => {
                    let first = u64::from(first) % span;
                    let len = u64::from(len) % span + 1;
                    Op::Chunk {
                        first,
                        last: first + len - 1,
                        total: total.model(),
                        delivery: delivery.model(),
                        content_length,
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
                    }
                }
                RawOp::Rest { first, streamed } => {
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
                    }
                }
                RawOp::Status {
                    total,
                    body,
                    streamed,
                } => Op::Status {
                    total: total.model(),
                    body: if body < 224 { 0 } else { body % 8 + 1 },
                    streamed,
                },
            })
            .collect();
        (file_len, max_size, ops)
    }
}

/// Runs the input's operations through the layer against the model.
pub fn run(input: &SessionInput) {
    let (file_len, max_size, ops) = input.decode();
    session_model::check(file_len, max_size, &ops);
}

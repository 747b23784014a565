//! Chunk digests: the xxh3-128 of each 64 KiB block of the file a chunk
//! covers, computed while its body streams, and checked against the disk.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use xxhash_rust::xxh3::{xxh3_128, Xxh3Default};

use crate::storage::ByteRanges;
use crate::storage::ChunkRange;

/// Chunks are hashed in blocks aligned on this many bytes of the file.
const BLOCK: u64 = 64 * 1024;

/// Hashes a chunk's bytes as they stream: one xxh3-128 per block of the file
/// ([`BLOCK`]-aligned, cut at the chunk's ends).
pub(super) struct BlockHasher {
    /// The file offset of the next byte.
    at: u64,
    current: Xxh3Default,
    /// Whether `current` holds bytes of an unfinished block.
    partial: bool,
    blocks: Vec<u128>,
}

impl BlockHasher {
    pub(super) fn new(first: u64) -> Self {
        BlockHasher {
            at: first,
            current: Xxh3Default::new(),
            partial: false,
            blocks: Vec::new(),
        }
    }

    pub(super) fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = BLOCK - self.at % BLOCK;
            let take = usize::try_from(room).unwrap_or(usize::MAX).min(bytes.len());
            let (head, rest) = bytes.split_at(take);
            if !self.partial && take as u64 == room {
                self.blocks.push(xxh3_128(head));
            } else {
                self.current.update(head);
                self.partial = true;
                if take as u64 == room {
                    self.blocks.push(self.current.digest128());
                    self.current.reset();
                    self.partial = false;
                }
            }
            self.at += take as u64;
            bytes = rest;
        }
    }

    pub(super) fn finish(mut self) -> Vec<u128> {
        if self.partial {
            self.blocks.push(self.current.digest128());
        }
        self.blocks
    }
}

/// The digest kept in a journal entry: xxh3-128 of the chunk's block digests.
pub(super) fn chunk_digest(blocks: &[u128]) -> u128 {
    let bytes: Vec<u8> = blocks
        .iter()
        .flat_map(|block| block.to_le_bytes())
        .collect();
    xxh3_128(&bytes)
}

/// Whether the data file holds `range`'s bytes (as `blocks` digests them) in
/// every block that meets one of `suspects`.
pub(super) fn verify_blocks(
    data: &File,
    range: ChunkRange,
    blocks: &[u128],
    suspects: &ByteRanges,
) -> io::Result<bool> {
    let base = range.first / BLOCK;
    let mut next = base;
    let mut buffer = Vec::new();
    for &[first, last] in suspects.as_slice() {
        let (first, last) = (first.max(range.first), last.min(range.last));
        if first > last {
            continue;
        }
        for block in (first / BLOCK).max(next)..=last / BLOCK {
            let from = (block * BLOCK).max(range.first);
            let to = (block * BLOCK + BLOCK - 1).min(range.last);
            let len = usize::try_from(to - from + 1).map_err(io::Error::other)?;
            buffer.resize(len, 0);
            match data.read_exact_at(&mut buffer, from) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                Err(error) => return Err(error),
            }
            let index = usize::try_from(block - base).map_err(io::Error::other)?;
            if blocks.get(index) != Some(&xxh3_128(&buffer)) {
                return Ok(false);
            }
            next = block + 1;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::chunk;

    #[test]
    fn block_digests_match_however_the_bytes_arrive() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let file = tempfile::tempfile().expect("file");
        let first = 70_000u64;
        file.write_all_at(&bytes, first).expect("write");
        let range = chunk(first, first + bytes.len() as u64 - 1, None);
        let mut digests = Vec::new();
        for piece in [1usize, 1000, BLOCK as usize, 100_000, bytes.len()] {
            let mut hasher = BlockHasher::new(first);
            for part in bytes.chunks(piece) {
                hasher.update(part);
            }
            digests.push(hasher.finish());
        }
        assert!(digests.iter().all(|d| *d == digests[0]));
        assert_eq!(digests[0].len(), 5, "blocks cut at 64 KiB file offsets");
        let all = ByteRanges::from_ranges([[0, u64::MAX - 1]]);
        assert!(verify_blocks(&file, range, &digests[0], &all).expect("verify"));
        file.write_all_at(b"!", first + 200_000).expect("change");
        assert!(!verify_blocks(&file, range, &digests[0], &all).expect("verify"));
        // Only the blocks that meet a suspect range are read.
        let elsewhere = ByteRanges::from_ranges([[0, first + 100_000]]);
        assert!(verify_blocks(&file, range, &digests[0], &elsewhere).expect("verify"));
    }
}

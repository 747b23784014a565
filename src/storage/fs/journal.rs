//! A session's journal: one checksummed entry per recorded chunk, replayed into
//! the session's state, and compacted to one entry per distinct range once
//! entries outnumber ranges.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::error::{is_not_found, write_error};
use super::paths::{sync_dir, JOURNAL, JOURNAL_TMP};
use crate::storage::SessionState;
use crate::storage::{ChunkRange, StorageError};

/// One journal entry: first, last, total, flags (u64 little-endian each), the
/// chunk digest (u128 little-endian), then the first 8 bytes of the SHA-256 of
/// those 48 bytes.
pub(super) const ENTRY_LEN: usize = 56;

/// Flag bit: the chunk named a total.
const FLAG_TOTAL: u64 = 1;

/// Flag bit: the entry carries the chunk's digest.
const FLAG_DIGEST: u64 = 2;

/// Entries a journal may hold beyond twice its distinct ranges before it is
/// compacted: the journal, and what each request replays of it, stay within
/// `(2 × ranges + SLACK + 1)` entries, however many chunks were sent.
const SLACK: u64 = 64;

pub(super) fn checksum(bytes: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(bytes);
    let mut out = [0; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

/// One recorded chunk: its range, and the digest of its bytes when the entry
/// carries one (flag bit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) range: ChunkRange,
    pub(super) digest: Option<u128>,
}

pub(super) fn encode_entry(entry: Entry) -> [u8; ENTRY_LEN] {
    let Entry { range, digest } = entry;
    let flags = if range.total.is_some() { FLAG_TOTAL } else { 0 }
        | if digest.is_some() { FLAG_DIGEST } else { 0 };
    let mut out = [0; ENTRY_LEN];
    out[0..8].copy_from_slice(&range.first.to_le_bytes());
    out[8..16].copy_from_slice(&range.last.to_le_bytes());
    out[16..24].copy_from_slice(&range.total.unwrap_or(0).to_le_bytes());
    out[24..32].copy_from_slice(&flags.to_le_bytes());
    out[32..48].copy_from_slice(&digest.unwrap_or(0).to_le_bytes());
    let sum = checksum(&out[..48]);
    out[48..].copy_from_slice(&sum);
    out
}

pub(super) fn word(bytes: &[u8], at: usize) -> Option<u64> {
    bytes
        .get(at..at + 8)
        .and_then(|bytes| bytes.try_into().ok())
        .map(u64::from_le_bytes)
}

fn decode_entry(entry: &[u8]) -> Option<Entry> {
    if entry.len() != ENTRY_LEN || entry[48..] != checksum(&entry[..48]) {
        return None;
    }
    let (first, last, total, flags) = (
        word(entry, 0)?,
        word(entry, 8)?,
        word(entry, 16)?,
        word(entry, 24)?,
    );
    if first > last || flags > (FLAG_TOTAL | FLAG_DIGEST) {
        return None;
    }
    let digest = u128::from_le_bytes(entry[32..48].try_into().ok()?);
    Some(Entry {
        range: ChunkRange {
            first,
            last,
            total: (flags & FLAG_TOTAL != 0).then_some(total),
        },
        digest: (flags & FLAG_DIGEST != 0).then_some(digest),
    })
}

/// A session's journal, replayed.
#[derive(Debug, Default)]
pub(super) struct Journal {
    pub(super) state: SessionState,
    entries: Vec<Entry>,
    /// The length of the whole entries read.
    pub(super) len: u64,
}

impl Journal {
    /// Replays the whole entries of `bytes` (the journal from offset `self.len`).
    /// Entries that fail their checksum (a torn write after a crash) are skipped.
    fn extend(&mut self, bytes: &[u8]) {
        for entry in bytes.chunks_exact(ENTRY_LEN) {
            if let Some(entry) = decode_entry(entry) {
                self.state.record(entry.range);
                self.entries.push(entry);
            }
            self.len += ENTRY_LEN as u64;
        }
    }

    /// Reads the entries appended to `journal` since it was read.
    pub(super) fn refresh(&mut self, journal: &File) -> io::Result<()> {
        let len = journal.metadata()?.len();
        let whole = len - len % ENTRY_LEN as u64;
        if whole < self.len {
            // Never happens: appends only drop a torn tail. Start over.
            *self = Journal::default();
        }
        if whole == self.len {
            return Ok(());
        }
        let size =
            usize::try_from(whole - self.len).map_err(|_| io::Error::other("journal too large"))?;
        let mut bytes = vec![0; size];
        journal.read_exact_at(&mut bytes, self.len)?;
        self.extend(&bytes);
        Ok(())
    }

    /// Counts an entry this process appended at the end of the journal.
    pub(super) fn push(&mut self, entry: Entry) {
        self.state.record(entry.range);
        self.entries.push(entry);
        self.len += ENTRY_LEN as u64;
    }

    /// Whether the journal holds enough entries beyond its distinct ranges to
    /// be rewritten (see [`compact`]). Entries skipped as torn count too.
    pub(super) fn needs_compaction(&self) -> bool {
        let ranges = self.state.ranges.len() as u64;
        self.len / ENTRY_LEN as u64 > 2 * ranges + SLACK
    }

    /// One entry per distinct range, each naming the session's total if it
    /// has one. A range keeps a digest when one entry recorded exactly its
    /// bytes with one; the other digests are dropped (an exact resend of such
    /// a chunk is then compared byte by byte with the data file).
    fn compacted(&self) -> Vec<Entry> {
        let digests: HashMap<[u64; 2], u128> = self
            .entries
            .iter()
            .filter_map(|entry| Some(([entry.range.first, entry.range.last], entry.digest?)))
            .collect();
        self.state
            .ranges
            .as_slice()
            .iter()
            .map(|&[first, last]| Entry {
                range: ChunkRange {
                    first,
                    last,
                    total: self.state.total,
                },
                digest: digests.get(&[first, last]).copied(),
            })
            .collect()
    }

    /// The entry recorded for exactly `range`'s bytes with their digest.
    pub(super) fn digest_of(&self, range: ChunkRange) -> Option<u128> {
        self.entries
            .iter()
            .find(|entry| entry.range.first == range.first && entry.range.last == range.last)
            .and_then(|entry| entry.digest)
    }
}

pub(super) fn read_journal(journal: &File) -> io::Result<Journal> {
    let mut replayed = Journal::default();
    replayed.refresh(journal)?;
    Ok(replayed)
}

/// Writes `entry` at `at` (dropping a torn tail first). Not synced: the caller
/// syncs the journal before it answers.
pub(super) fn append_entry(journal: &File, at: u64, entry: Entry) -> io::Result<()> {
    if journal.metadata()?.len() != at {
        journal.set_len(at)?;
    }
    journal.write_all_at(&encode_entry(entry), at)
}

/// Rewrites the session's journal as `journal` compacted: one entry per
/// distinct range. Call it holding the session lock, with `journal` read
/// under that lock from the file now at [`JOURNAL`] (appends happen under
/// the same lock, always to the file at that path, so none is lost).
///
/// Crash-safe: the new journal is written aside ([`JOURNAL_TMP`], truncating
/// a leftover of an interrupted compaction), `fsync`ed, renamed over the old
/// one, and the folder `fsync`ed. Either file holds the same ranges, so a
/// crash at any point leaves a journal that replays to the same state.
/// Writers streaming a batch notice the new file by its inode and read it.
pub(super) fn compact(dir: &Path, journal: &Journal) -> io::Result<()> {
    let entries = journal.compacted();
    let mut bytes = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for entry in entries {
        bytes.extend_from_slice(&encode_entry(entry));
    }
    let temp = dir.join(JOURNAL_TMP);
    let mut file = File::create(&temp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, dir.join(JOURNAL))?;
    sync_dir(dir)
}

/// The session's journal file, if it has one.
pub(super) fn open_journal(dir: &Path) -> Result<Option<File>, StorageError> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(JOURNAL))
    {
        Ok(file) => Ok(Some(file)),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(write_error(error)),
    }
}

/// The session's journal, replayed; empty when it has none yet.
pub(super) fn session_state(dir: &Path) -> Result<Journal, StorageError> {
    match open_journal(dir)? {
        Some(journal) => read_journal(&journal).map_err(write_error),
        None => Ok(Journal::default()),
    }
}

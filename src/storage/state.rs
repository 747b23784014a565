//! The rules every backend follows, in one place: a session's bookkeeping
//! (received ranges, total, kept `Repr-Digest`) and what a chunk must agree
//! with to be stored, the names a backend keeps for itself, and session ids.
//! Backends store; these rules decide.

use std::fmt;

use crate::storage::{
    ChunkOptions, ChunkRange, OpenOptions, ReprDigest, SessionStatus, StorageError,
};
use crate::UploadPath;

/// The folder (or key prefix) under which every backend keeps its own
/// bookkeeping, beside the committed files. No upload path may name it, in
/// any ASCII case: [`storage_segments`] refuses it.
pub const RESERVED_FOLDER: &str = ".uploads";

/// The longest session id a backend accepts as a file or object name.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// The segments of `path` as a backend may create them under its root: none
/// empty, `.` or `..`, none with a NUL, and the first not [`RESERVED_FOLDER`].
/// [`UploadPath`] refuses most of these already; this is defence in depth.
///
/// # Errors
///
/// [`StorageError::InvalidPath`] for a path a backend must not write.
pub fn storage_segments(path: &UploadPath) -> Result<Vec<&str>, StorageError> {
    let segments: Vec<&str> = path.segments().collect();
    if segments
        .first()
        .is_none_or(|first| first.eq_ignore_ascii_case(RESERVED_FOLDER))
    {
        return Err(StorageError::InvalidPath);
    }
    for segment in &segments {
        if segment.is_empty() || *segment == "." || *segment == ".." || segment.contains('\0') {
            return Err(StorageError::InvalidPath);
        }
    }
    Ok(segments)
}

/// Checks that a session id is safe as one file or object name: 1 to
/// [`MAX_SESSION_ID_LEN`] ASCII letters, digits, `-` or `_`. The layer's ids
/// (64 hex digits) always are.
///
/// # Errors
///
/// [`StorageError::InvalidPath`] for any other id.
pub fn check_session_id(id: &str) -> Result<&str, StorageError> {
    let safe = !id.is_empty()
        && id.len() <= MAX_SESSION_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if safe {
        Ok(id)
    } else {
        Err(StorageError::InvalidPath)
    }
}

/// Whether a request naming `asked` as the total disagrees with a session
/// whose total is `known` and whose stored bytes end at `ranges.end()`.
fn total_disagrees(known: Option<u64>, ranges: &ByteRanges, asked: u64) -> bool {
    match known {
        Some(known) => known != asked,
        None => ranges.end().is_some_and(|end| end >= asked),
    }
}

/// Whether a request's `Repr-Digest` disagrees with the one the session kept.
fn digest_disagrees(kept: Option<&ReprDigest>, sent: Option<&ReprDigest>) -> bool {
    matches!((kept, sent), (Some(kept), Some(sent)) if kept != sent)
}

/// Checks a status query against what storage answered: the total it names
/// and the `Repr-Digest` it sends must agree with the session's, by the same
/// rules as [`SessionState::admit`].
pub(crate) fn check_query(
    status: &SessionStatus,
    total: Option<u64>,
    repr_digest: Option<&ReprDigest>,
) -> Result<(), StorageError> {
    let SessionStatus::InProgress {
        total: known,
        ranges,
        repr_digest: kept,
        ..
    } = status
    else {
        return Ok(());
    };
    if digest_disagrees(kept.as_ref(), repr_digest) {
        return Err(StorageError::DigestConflict);
    }
    if total.is_some_and(|asked| total_disagrees(*known, ranges, asked)) {
        return Err(StorageError::TotalMismatch);
    }
    Ok(())
}

/// A session's bookkeeping as a backend keeps it: the declared total and the
/// ranges stored durably. Backends share these rules through [`SessionState::admit`]
/// and [`SessionState::record`], so every backend judges chunks the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    /// The file's total size, once a chunk named it.
    pub total: Option<u64>,
    /// The ranges stored.
    pub ranges: ByteRanges,
    /// The first `Repr-Digest` a chunk announced, kept with the session.
    pub repr_digest: Option<ReprDigest>,
    /// Whether the session exists: a creation opened it ([`SessionState::open`])
    /// or a chunk was recorded.
    pub opened: bool,
    /// The metadata of the creation that opened it, kept as sent.
    pub metadata: Option<String>,
}

impl SessionState {
    /// Checks that `range` may be stored in this session.
    ///
    /// # Errors
    ///
    /// - [`StorageError::TotalMismatch`] if the chunk names a total other than the
    ///   session's, or one that bytes already stored reach past;
    /// - [`StorageError::RangeNotSatisfiable`] if the range reaches past the total;
    /// - [`StorageError::TooManyRanges`] if storing it would leave more than
    ///   [`ChunkOptions::max_ranges`] disjoint ranges;
    /// - [`StorageError::DigestConflict`] if it announces another `Repr-Digest`
    ///   than the session kept.
    pub fn admit(&self, range: ChunkRange, options: &ChunkOptions) -> Result<(), StorageError> {
        if range
            .total
            .is_some_and(|total| total_disagrees(self.total, &self.ranges, total))
        {
            return Err(StorageError::TotalMismatch);
        }
        if let Some(total) = range.total.or(self.total) {
            if range.last >= total {
                return Err(StorageError::RangeNotSatisfiable);
            }
        }
        if !self.ranges.contains(range.first, range.last)
            && self.ranges.count_after_insert(range.first, range.last) > options.max_ranges
        {
            return Err(StorageError::TooManyRanges);
        }
        if digest_disagrees(self.repr_digest.as_ref(), options.repr_digest.as_ref()) {
            return Err(StorageError::DigestConflict);
        }
        Ok(())
    }

    /// Keeps `sent` as the session's `Repr-Digest` unless it kept one already
    /// (call it with an admitted chunk's [`ChunkOptions::repr_digest`]);
    /// returns whether it changed.
    pub fn keep_repr_digest(&mut self, sent: Option<&ReprDigest>) -> bool {
        match (&self.repr_digest, sent) {
            (None, Some(sent)) => {
                self.repr_digest = Some(sent.clone());
                true
            }
            _ => false,
        }
    }

    /// Records a stored range (and the total it names). Call it only after
    /// [`SessionState::admit`] accepted the range.
    pub fn record(&mut self, range: ChunkRange) {
        if range.total.is_some() {
            self.total = range.total;
        }
        self.ranges.insert(range.first, range.last);
        self.opened = true;
    }

    /// Opens the session for a creation: takes its total (a total the session
    /// already has, or one its stored bytes reach past, is
    /// [`StorageError::TotalMismatch`] if it differs) and, on the first
    /// creation, its metadata. Opening again with the same total, or with
    /// none, changes nothing. Returns whether anything changed, so a backend
    /// knows whether to write.
    ///
    /// # Errors
    ///
    /// [`StorageError::TotalMismatch`], as above.
    pub fn open(&mut self, options: &OpenOptions) -> Result<bool, StorageError> {
        if let Some(total) = options.total {
            if total_disagrees(self.total, &self.ranges, total) {
                return Err(StorageError::TotalMismatch);
            }
        }
        let mut changed = false;
        if self.total.is_none() && options.total.is_some() {
            self.total = options.total;
            changed = true;
        }
        if !self.opened {
            self.opened = true;
            self.metadata.clone_from(&options.metadata);
            changed = true;
        }
        Ok(changed)
    }

    /// Whether every byte of the file has arrived: a total of 0 with no
    /// ranges is the complete empty file.
    pub fn is_complete(&self) -> bool {
        self.total
            .is_some_and(|total| self.ranges.is_complete(total))
    }

    /// The state a completion judges: a session that stored nothing and named
    /// no total takes the total of 0 that a completion declares (a status
    /// query `bytes */0`, see
    /// [`CompleteOptions::total`](crate::storage::CompleteOptions::total)),
    /// and so is the complete empty file. No other declared total changes
    /// anything: a file of one byte or more is complete only once chunks
    /// stored its bytes.
    pub fn with_declared_total(mut self, declared: Option<u64>) -> Self {
        if declared == Some(0) && self.total.is_none() && self.ranges.is_empty() {
            self.total = Some(0);
        }
        self
    }
}

/// The byte ranges a session has received, sorted, with overlapping and adjacent
/// ranges merged. Each range is inclusive: `[first, last]`.
///
/// Storage backends keep one `ByteRanges` per session; the layer reads it back to
/// answer `202` and status queries.
///
/// # Example
///
/// ```
/// use tower_signed_upload::storage::ByteRanges;
///
/// let mut ranges = ByteRanges::new();
/// ranges.insert(10, 19);
/// ranges.insert(0, 9);
/// assert_eq!(ranges.as_slice(), &[[0, 19]]);
/// assert_eq!(ranges.received(), 20);
/// assert!(ranges.is_complete(20));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ByteRanges {
    ranges: Vec<[u64; 2]>,
}

impl ByteRanges {
    /// No bytes received.
    pub fn new() -> Self {
        ByteRanges { ranges: Vec::new() }
    }

    /// Builds the set from ranges in any order; invalid ones (`first > last`) are skipped.
    pub fn from_ranges<I: IntoIterator<Item = [u64; 2]>>(ranges: I) -> Self {
        let mut set = ByteRanges::new();
        for [first, last] in ranges {
            if first <= last {
                set.insert(first, last);
            }
        }
        set
    }

    /// Adds `[first, last]`, merging it with the ranges it overlaps or touches.
    ///
    /// # Panics
    ///
    /// If `first > last`; the layer never builds such a range.
    pub fn insert(&mut self, first: u64, last: u64) {
        assert!(first <= last, "a byte range starts at or before its end");
        let (start, end) = self.touching(first, last);
        if start >= end {
            self.ranges.insert(start, [first, last]);
            return;
        }
        let merged = [
            first.min(self.ranges[start][0]),
            last.max(self.ranges[end - 1][1]),
        ];
        self.ranges.splice(start..end, [merged]);
    }

    /// How many disjoint ranges there would be after inserting `[first, last]`.
    pub fn count_after_insert(&self, first: u64, last: u64) -> usize {
        let (start, end) = self.touching(first, last);
        self.ranges.len() + 1 - (end - start)
    }

    /// The indices `start..end` of the stored ranges that `[first, last]`
    /// overlaps or touches, and so would merge with.
    fn touching(&self, first: u64, last: u64) -> (usize, usize) {
        // The first range that ends at or after `first - 1`.
        let start = self
            .ranges
            .partition_point(|r| r[1].saturating_add(1) < first);
        // Past the last range that starts at or before `last + 1`.
        let end = self
            .ranges
            .partition_point(|r| r[0] <= last.saturating_add(1));
        (start, end)
    }

    /// Whether `[first, last]` is stored already, byte for byte.
    pub fn contains(&self, first: u64, last: u64) -> bool {
        let index = self.ranges.partition_point(|r| r[1] < first);
        self.ranges
            .get(index)
            .is_some_and(|r| r[0] <= first && last <= r[1])
    }

    /// The ranges, sorted and disjoint.
    pub fn as_slice(&self) -> &[[u64; 2]] {
        &self.ranges
    }

    /// How many disjoint ranges there are.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether no byte has been received.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The number of bytes received.
    pub fn received(&self) -> u64 {
        self.ranges.iter().map(|r| r[1] - r[0] + 1).sum()
    }

    /// The last byte of the prefix `0..=N` that is stored, if byte 0 is.
    pub fn prefix_end(&self) -> Option<u64> {
        self.ranges.first().filter(|r| r[0] == 0).map(|r| r[1])
    }

    /// The highest byte offset received, if any.
    pub fn end(&self) -> Option<u64> {
        self.ranges.last().map(|r| r[1])
    }

    /// Whether every byte of a file of `total` bytes has been received.
    pub fn is_complete(&self, total: u64) -> bool {
        match total {
            0 => true,
            _ => self.ranges.len() == 1 && self.ranges[0] == [0, total - 1],
        }
    }
}

impl fmt::Debug for ByteRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ranges.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(first: u64, last: u64, total: Option<u64>) -> ChunkRange {
        ChunkRange { first, last, total }
    }

    fn digest(text: &str) -> ReprDigest {
        ReprDigest::parse(text).expect("a valid digest")
    }

    const ONE: &str = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
    const TWO: &str = "sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:";

    #[test]
    fn admit_keeps_the_first_repr_digest_and_refuses_another() {
        let mut state = SessionState::default();
        let first = ChunkOptions::new(10).repr_digest(digest(ONE));
        state.admit(chunk(0, 9, None), &first).unwrap();
        assert!(state.keep_repr_digest(first.repr_digest.as_ref()));
        assert!(!state.keep_repr_digest(Some(&digest(TWO))));
        assert_eq!(state.repr_digest, Some(digest(ONE)));
        let other = ChunkOptions::new(10).repr_digest(digest(TWO));
        assert!(matches!(
            state.admit(chunk(10, 19, None), &other),
            Err(StorageError::DigestConflict)
        ));
        // A chunk that announces nothing, or the same digest, is admitted.
        state
            .admit(chunk(10, 19, None), &ChunkOptions::new(10))
            .unwrap();
        state.admit(chunk(10, 19, None), &first).unwrap();
    }

    #[test]
    fn status_queries_follow_the_chunk_rules() {
        let mut state = SessionState::default();
        state.record(chunk(0, 9, None));
        state.keep_repr_digest(Some(&digest(ONE)));
        let status = SessionStatus::in_progress(state);
        check_query(&status, None, None).unwrap();
        check_query(&status, Some(10), Some(&digest(ONE))).unwrap();
        assert!(matches!(
            check_query(&status, Some(9), None),
            Err(StorageError::TotalMismatch)
        ));
        assert!(matches!(
            check_query(&status, Some(10), Some(&digest(TWO))),
            Err(StorageError::DigestConflict)
        ));
        let mut known = SessionState::default();
        known.record(chunk(0, 9, Some(20)));
        let status = SessionStatus::in_progress(known);
        check_query(&status, Some(20), None).unwrap();
        assert!(matches!(
            check_query(&status, Some(30), None),
            Err(StorageError::TotalMismatch)
        ));
    }

    #[test]
    fn reserved_folder_and_unsafe_segments_are_refused() {
        let path = |text: &str| UploadPath::new(text).expect("a valid path");
        assert_eq!(storage_segments(&path("a/b.png")).unwrap(), ["a", "b.png"]);
        for reserved in [".uploads/x", ".UPLOADS/x", ".Uploads"] {
            assert!(matches!(
                storage_segments(&path(reserved)),
                Err(StorageError::InvalidPath)
            ));
        }
        assert_eq!(
            storage_segments(&path("x/.uploads")).unwrap(),
            ["x", ".uploads"]
        );
        assert_eq!(
            storage_segments(&path(".uploads2/x")).unwrap(),
            [".uploads2", "x"]
        );
    }

    #[test]
    fn session_ids_are_single_safe_names() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(check_session_id(&hex).unwrap(), hex);
        check_session_id("a-b_C9").unwrap();
        check_session_id(&"a".repeat(MAX_SESSION_ID_LEN)).unwrap();
        for bad in ["", "../x", "a/b", "a.b", "tmp dir", "é"] {
            assert!(check_session_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_session_id(&"a".repeat(MAX_SESSION_ID_LEN + 1)).is_err());
    }

    #[test]
    fn only_a_declared_zero_completes_a_session_that_stored_nothing() {
        let empty = SessionState::default();
        assert!(!empty.is_complete());
        assert!(empty.clone().with_declared_total(Some(0)).is_complete());
        for declared in [None, Some(1), Some(100)] {
            assert_eq!(empty.clone().with_declared_total(declared), empty);
        }
        let mut started = SessionState::default();
        started.record(chunk(0, 9, None));
        assert_eq!(started.clone().with_declared_total(Some(0)), started);
    }

    #[test]
    fn admit_checks_total_and_bounds() {
        let mut state = SessionState::default();
        state
            .admit(chunk(0, 9, None), &ChunkOptions::new(10))
            .unwrap();
        state.record(chunk(0, 9, None));
        assert!(matches!(
            state.admit(chunk(10, 19, Some(5)), &ChunkOptions::new(10)),
            Err(StorageError::TotalMismatch)
        ));
        state
            .admit(chunk(10, 19, Some(20)), &ChunkOptions::new(10))
            .unwrap();
        state.record(chunk(10, 19, Some(20)));
        assert!(state.is_complete());
        assert!(matches!(
            state.admit(chunk(0, 9, Some(30)), &ChunkOptions::new(10)),
            Err(StorageError::TotalMismatch)
        ));
        assert!(matches!(
            state.admit(chunk(15, 20, None), &ChunkOptions::new(10)),
            Err(StorageError::RangeNotSatisfiable)
        ));
        assert!(matches!(
            state.admit(chunk(0, 20, Some(20)), &ChunkOptions::new(10)),
            Err(StorageError::RangeNotSatisfiable)
        ));
    }

    #[test]
    fn admit_limits_disjoint_ranges() {
        let mut state = SessionState::default();
        state.record(chunk(0, 0, Some(100)));
        state.record(chunk(10, 10, None));
        assert!(matches!(
            state.admit(chunk(20, 20, None), &ChunkOptions::new(2)),
            Err(StorageError::TooManyRanges)
        ));
        state
            .admit(chunk(1, 9, None), &ChunkOptions::new(2))
            .unwrap();
        state
            .admit(chunk(10, 10, None), &ChunkOptions::new(2))
            .unwrap();
    }

    #[test]
    fn adjacent_ranges_merge() {
        let mut ranges = ByteRanges::new();
        ranges.insert(0, 4);
        ranges.insert(5, 9);
        assert_eq!(ranges.as_slice(), &[[0, 9]]);
    }

    #[test]
    fn disjoint_ranges_stay_apart_and_sorted() {
        let mut ranges = ByteRanges::new();
        ranges.insert(20, 29);
        ranges.insert(0, 4);
        ranges.insert(10, 14);
        assert_eq!(ranges.as_slice(), &[[0, 4], [10, 14], [20, 29]]);
        assert_eq!(ranges.received(), 20);
        assert_eq!(ranges.prefix_end(), Some(4));
    }

    #[test]
    fn overlapping_range_swallows_several() {
        let mut ranges = ByteRanges::from_ranges([[0, 4], [10, 14], [20, 29], [40, 45]]);
        assert_eq!(ranges.count_after_insert(3, 25), 2);
        ranges.insert(3, 25);
        assert_eq!(ranges.as_slice(), &[[0, 29], [40, 45]]);
    }

    #[test]
    fn contained_range_changes_nothing() {
        let mut ranges = ByteRanges::from_ranges([[0, 99]]);
        assert!(ranges.contains(10, 20));
        assert!(!ranges.contains(90, 100));
        ranges.insert(10, 20);
        assert_eq!(ranges.as_slice(), &[[0, 99]]);
    }

    #[test]
    fn completeness_needs_every_byte() {
        let ranges = ByteRanges::from_ranges([[0, 9], [11, 19]]);
        assert!(!ranges.is_complete(20));
        assert!(ByteRanges::from_ranges([[0, 19]]).is_complete(20));
        assert!(!ByteRanges::from_ranges([[0, 19]]).is_complete(21));
        assert!(ByteRanges::new().is_complete(0));
    }

    #[test]
    fn count_after_insert_matches_insert() {
        let base = ByteRanges::from_ranges([[5, 9], [20, 24], [40, 44]]);
        for first in 0..50u64 {
            for last in first..50 {
                let mut copy = base.clone();
                let predicted = base.count_after_insert(first, last);
                copy.insert(first, last);
                assert_eq!(copy.len(), predicted, "[{first}, {last}]");
            }
        }
    }

    #[test]
    fn extremes_do_not_overflow() {
        let mut ranges = ByteRanges::new();
        ranges.insert(u64::MAX - 1, u64::MAX);
        ranges.insert(0, 0);
        assert_eq!(ranges.as_slice(), &[[0, 0], [u64::MAX - 1, u64::MAX]]);
    }
}

//! Upload session bookkeeping: the received ranges, the total, and the rules a
//! chunk must follow to be stored.

use std::fmt;

use crate::storage::{ChunkRange, StorageError};

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
    pub repr_digest: Option<String>,
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
    ///   `max_ranges` disjoint ranges.
    pub fn admit(&self, range: ChunkRange, max_ranges: usize) -> Result<(), StorageError> {
        if let Some(total) = range.total {
            if self.total.is_some_and(|known| known != total)
                || self.ranges.end().is_some_and(|end| end >= total)
            {
                return Err(StorageError::TotalMismatch);
            }
        }
        if let Some(total) = range.total.or(self.total) {
            if range.last >= total {
                return Err(StorageError::RangeNotSatisfiable);
            }
        }
        if !self.ranges.contains(range.first, range.last)
            && self.ranges.count_after_insert(range.first, range.last) > max_ranges
        {
            return Err(StorageError::TooManyRanges);
        }
        Ok(())
    }

    /// Records a stored range (and the total it names). Call it only after
    /// [`SessionState::admit`] accepted the range.
    pub fn record(&mut self, range: ChunkRange) {
        if range.total.is_some() {
            self.total = range.total;
        }
        self.ranges.insert(range.first, range.last);
    }

    /// Whether every byte of the file has arrived.
    pub fn is_complete(&self) -> bool {
        self.total
            .is_some_and(|total| total > 0 && self.ranges.is_complete(total))
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

    #[test]
    fn admit_checks_total_and_bounds() {
        let mut state = SessionState::default();
        state.admit(chunk(0, 9, None), 10).unwrap();
        state.record(chunk(0, 9, None));
        assert!(matches!(
            state.admit(chunk(10, 19, Some(5)), 10),
            Err(StorageError::TotalMismatch)
        ));
        state.admit(chunk(10, 19, Some(20)), 10).unwrap();
        state.record(chunk(10, 19, Some(20)));
        assert!(state.is_complete());
        assert!(matches!(
            state.admit(chunk(0, 9, Some(30)), 10),
            Err(StorageError::TotalMismatch)
        ));
        assert!(matches!(
            state.admit(chunk(15, 20, None), 10),
            Err(StorageError::RangeNotSatisfiable)
        ));
        assert!(matches!(
            state.admit(chunk(0, 20, Some(20)), 10),
            Err(StorageError::RangeNotSatisfiable)
        ));
    }

    #[test]
    fn admit_limits_disjoint_ranges() {
        let mut state = SessionState::default();
        state.record(chunk(0, 0, Some(100)));
        state.record(chunk(10, 10, None));
        assert!(matches!(
            state.admit(chunk(20, 20, None), 2),
            Err(StorageError::TooManyRanges)
        ));
        state.admit(chunk(1, 9, None), 2).unwrap();
        state.admit(chunk(10, 10, None), 2).unwrap();
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

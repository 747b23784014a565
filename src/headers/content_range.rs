//! The `Content-Range` header of a chunk or a status query: a pure parser and
//! its formatter; no I/O.

use std::fmt;

use super::number::{number, NumberError};

/// A parsed `Content-Range` header value.
///
/// Accepted forms (RFC 9110 section 14.4, plus the `bytes=` spelling that
/// ittybit's documentation shows):
///
/// | form | meaning |
/// |---|---|
/// | `bytes FIRST-LAST/TOTAL` | a chunk of a file of TOTAL bytes |
/// | `bytes FIRST-LAST/*` | a chunk of a file whose size is not known yet |
/// | `bytes */TOTAL`, `bytes */*` | a status query |
///
/// Digits only (no sign, no spaces inside numbers), no overflow past `u64`,
/// `FIRST <= LAST`. Whether `LAST < TOTAL` is for the caller to judge (the wire
/// contract answers that with `416`, not `400`).
///
/// # Example
///
/// ```
/// use tower_signed_upload::headers::ContentRange;
///
/// let range = ContentRange::parse(b"bytes=0-1023/4096").unwrap();
/// assert_eq!(range, ContentRange::Bytes { first: 0, last: 1023, total: Some(4096) });
/// assert_eq!(range.to_string(), "bytes 0-1023/4096");
/// assert_eq!(ContentRange::parse(b"bytes */4096").unwrap(), ContentRange::Status { total: Some(4096) });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentRange {
    /// A chunk: bytes `first..=last` of the file.
    Bytes {
        /// Offset of the first byte.
        first: u64,
        /// Offset of the last byte (inclusive).
        last: u64,
        /// The file's size, or `None` for `*`.
        total: Option<u64>,
    },
    /// A status query (`bytes */TOTAL` or `bytes */*`): no bytes attached.
    Status {
        /// The file's size, or `None` for `*`.
        total: Option<u64>,
    },
}

/// Why a `Content-Range` value did not parse. Each case has its own variant so
/// logs and fuzzers can tell them apart; all are answered `400 content_range_invalid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContentRangeError {
    /// The value is empty.
    Empty,
    /// It does not start with `bytes ` or `bytes=`.
    Unit,
    /// There is no `/` before the total.
    MissingSlash,
    /// There is no `-` between first and last.
    MissingDash,
    /// A number is empty.
    EmptyNumber,
    /// A number holds something other than ASCII digits.
    NotDigit,
    /// A number does not fit in 64 bits.
    Overflow,
    /// FIRST is greater than LAST.
    Order,
    /// The total `*` is combined with a `*` range in a way that is not a status query,
    /// or a range is `*` on one side only.
    Asterisk,
}

impl ContentRangeError {
    /// A short description, without allocation.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentRangeError::Empty => "empty Content-Range",
            ContentRangeError::Unit => "Content-Range unit must be `bytes`",
            ContentRangeError::MissingSlash => "Content-Range lacks `/TOTAL`",
            ContentRangeError::MissingDash => "Content-Range lacks `FIRST-LAST`",
            ContentRangeError::EmptyNumber => "Content-Range has an empty number",
            ContentRangeError::NotDigit => "Content-Range numbers must be decimal digits",
            ContentRangeError::Overflow => "Content-Range number too large",
            ContentRangeError::Order => "Content-Range FIRST is after LAST",
            ContentRangeError::Asterisk => "Content-Range misuses `*`",
        }
    }
}

impl fmt::Display for ContentRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ContentRangeError {}

impl ContentRange {
    /// Parses a header value.
    ///
    /// # Errors
    ///
    /// A [`ContentRangeError`] naming the first problem found.
    pub fn parse(value: &[u8]) -> Result<Self, ContentRangeError> {
        if value.is_empty() {
            return Err(ContentRangeError::Empty);
        }
        let rest = value
            .strip_prefix(b"bytes ")
            .or_else(|| value.strip_prefix(b"bytes="))
            .ok_or(ContentRangeError::Unit)?;
        let slash = rest
            .iter()
            .position(|&b| b == b'/')
            .ok_or(ContentRangeError::MissingSlash)?;
        let (range, total) = (&rest[..slash], &rest[slash + 1..]);
        let total = match total {
            b"*" => None,
            digits => Some(number(digits)?),
        };
        if range == b"*" {
            return Ok(ContentRange::Status { total });
        }
        let dash = range
            .iter()
            .position(|&b| b == b'-')
            .ok_or(ContentRangeError::MissingDash)?;
        let (first, last) = (&range[..dash], &range[dash + 1..]);
        if first == b"*" || last == b"*" {
            return Err(ContentRangeError::Asterisk);
        }
        let first = number(first)?;
        let last = number(last)?;
        if first > last {
            return Err(ContentRangeError::Order);
        }
        Ok(ContentRange::Bytes { first, last, total })
    }

    /// The total the header names, if any.
    pub fn total(&self) -> Option<u64> {
        match *self {
            ContentRange::Bytes { total, .. } | ContentRange::Status { total } => total,
        }
    }
}

impl From<NumberError> for ContentRangeError {
    fn from(error: NumberError) -> Self {
        match error {
            NumberError::Empty => ContentRangeError::EmptyNumber,
            NumberError::NotDigit => ContentRangeError::NotDigit,
            NumberError::Asterisk => ContentRangeError::Asterisk,
            NumberError::Overflow => ContentRangeError::Overflow,
        }
    }
}

impl fmt::Display for ContentRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ContentRange::Bytes { first, last, .. } => write!(f, "bytes {first}-{last}/")?,
            ContentRange::Status { .. } => f.write_str("bytes */")?,
        }
        match self.total() {
            Some(total) => write!(f, "{total}"),
            None => f.write_str("*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ContentRangeError as E;
    use super::*;

    #[test]
    fn parses_every_form() {
        let cases: &[(&[u8], ContentRange)] = &[
            (
                b"bytes 0-0/1",
                ContentRange::Bytes {
                    first: 0,
                    last: 0,
                    total: Some(1),
                },
            ),
            (
                b"bytes=0-1023/4096",
                ContentRange::Bytes {
                    first: 0,
                    last: 1023,
                    total: Some(4096),
                },
            ),
            (
                b"bytes 10-19/*",
                ContentRange::Bytes {
                    first: 10,
                    last: 19,
                    total: None,
                },
            ),
            (b"bytes */100", ContentRange::Status { total: Some(100) }),
            (b"bytes=*/*", ContentRange::Status { total: None }),
            (
                b"bytes 0-5/3",
                ContentRange::Bytes {
                    first: 0,
                    last: 5,
                    total: Some(3),
                },
            ),
            (
                b"bytes 18446744073709551614-18446744073709551615/18446744073709551615",
                ContentRange::Bytes {
                    first: u64::MAX - 1,
                    last: u64::MAX,
                    total: Some(u64::MAX),
                },
            ),
            (
                b"bytes 007-008/010",
                ContentRange::Bytes {
                    first: 7,
                    last: 8,
                    total: Some(10),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                ContentRange::parse(input),
                Ok(*expected),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn each_malformation_has_its_error() {
        let cases: &[(&[u8], ContentRangeError)] = &[
            (b"", E::Empty),
            (b"bits 0-1/2", E::Unit),
            (b"Bytes 0-1/2", E::Unit),
            (b"bytes0-1/2", E::Unit),
            (b"bytes  0-1/2", E::NotDigit),
            (b"bytes 0-1", E::MissingSlash),
            (b"bytes 01/2", E::MissingDash),
            (b"bytes -1/2", E::EmptyNumber),
            (b"bytes 0-/2", E::EmptyNumber),
            (b"bytes 0-1/", E::EmptyNumber),
            (b"bytes +0-1/2", E::NotDigit),
            (b"bytes 0-1/2 ", E::NotDigit),
            (b"bytes 0x1-2/3", E::NotDigit),
            (b"bytes 0-1/-2", E::NotDigit),
            (b"bytes 0-18446744073709551616/*", E::Overflow),
            (b"bytes 0-1/99999999999999999999", E::Overflow),
            (b"bytes 5-4/10", E::Order),
            (b"bytes *-4/10", E::Asterisk),
            (b"bytes 0-*/10", E::Asterisk),
            (b"bytes 0-1/**", E::Asterisk),
            (b"bytes 0-1-2/3", E::NotDigit),
            (b"bytes 0-1/2/3", E::NotDigit),
        ];
        for (input, expected) in cases {
            assert_eq!(
                ContentRange::parse(input),
                Err(*expected),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "bytes=0-1023/4096",
            "bytes 3-3/*",
            "bytes */7",
            "bytes */*",
            "bytes 007-8/9",
        ] {
            let parsed = ContentRange::parse(input.as_bytes()).unwrap();
            assert_eq!(
                ContentRange::parse(parsed.to_string().as_bytes()),
                Ok(parsed)
            );
        }
    }
}

//! The one digit parser of the crate: header values (`Content-Range`,
//! `Content-Length`, `Range`) and query values (`expiry`, `max_size`) use it.

/// Why a run of bytes is not a decimal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberError {
    /// No digit at all.
    Empty,
    /// A byte that is not an ASCII digit.
    NotDigit,
    /// A `*` where a number was expected.
    Asterisk,
    /// More than `u64` holds.
    Overflow,
}

/// A run of ASCII decimal digits as a number: not empty, nothing but digits (no
/// sign, no spaces), no overflow.
pub(crate) fn number(digits: &[u8]) -> Result<u64, NumberError> {
    if digits.is_empty() {
        return Err(NumberError::Empty);
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            if b == b'*' {
                return Err(NumberError::Asterisk);
            }
            return Err(NumberError::NotDigit);
        }
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(b - b'0')))
            .ok_or(NumberError::Overflow)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_parse_and_everything_else_is_refused() {
        assert_eq!(number(b"0"), Ok(0));
        assert_eq!(number(b"007"), Ok(7));
        assert_eq!(number(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(number(b""), Err(NumberError::Empty));
        assert_eq!(number(b"+1"), Err(NumberError::NotDigit));
        assert_eq!(number(b"1 "), Err(NumberError::NotDigit));
        assert_eq!(number(b"*"), Err(NumberError::Asterisk));
        assert_eq!(number(b"18446744073709551616"), Err(NumberError::Overflow));
    }
}

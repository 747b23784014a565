//! Header reading and writing the resumable dialects (tus, the IETF draft)
//! share.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::headers::number::number;
use crate::storage::ByteRanges;
use crate::Error;

/// One header's value, if present; twice is `400 header_invalid`.
pub(crate) fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, Error> {
    let mut values = headers.get_all(name).iter();
    let value = values.next();
    if values.next().is_some() {
        return Err(Error::HeaderInvalid);
    }
    Ok(value)
}

/// A header holding a decimal number, if present; malformed or twice is
/// `400 header_invalid`.
pub(crate) fn number_header(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, Error> {
    single(headers, name)?
        .map(|value| number(value.as_bytes()).map_err(|_| Error::HeaderInvalid))
        .transpose()
}

/// Sets `name` to `value` when it is a valid header value.
pub(crate) fn set(headers: &mut HeaderMap, name: HeaderName, value: impl ToString) {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(name, value);
    }
}

/// The length of the stored prefix from byte 0: a resumable upload's offset.
pub(crate) fn offset_of(ranges: &ByteRanges) -> u64 {
    ranges.prefix_end().map_or(0, |last| last + 1)
}

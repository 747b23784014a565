//! The query of a signed URL: its parameters, its signed part, its signature.

use memchr::memchr;

use super::key::is_key_id;
use super::{Policy, SignedMethod, TypeRule};
use crate::Error;

#[derive(Debug, PartialEq, Eq)]
pub(super) struct SignedQuery<'a> {
    /// Every byte before `&signature=`.
    pub(super) signed: &'a str,
    pub(super) expiry: u64,
    pub(super) method: SignedMethod,
    pub(super) policy: Policy,
    pub(super) kid: Option<&'a str>,
    /// The nonce of a tus part URL (one the layer mints, see
    /// [`PART_NONCE_LEN`]): always the last signed parameter.
    pub(super) part: Option<&'a str>,
    pub(super) signature: &'a str,
}

/// The hex digits of a part URL's nonce.
pub(crate) const PART_NONCE_LEN: usize = 32;

/// Splits a query into its signed part and its parameters, checking its shape.
pub(super) fn parse_query(query: &str) -> Result<SignedQuery<'_>, Error> {
    let mut expiry = None;
    let mut method = None;
    let mut max_size = None;
    let mut types = None;
    let mut kid = None;
    let mut part = None;
    let mut signature = None;
    // `memchr` for the `&`s rather than `split('&')`, and no search for the
    // `=`: a parameter is one of seven names and `=`, or refused. This runs on
    // every request.
    let bytes = query.as_bytes();
    let mut start = 0;
    while !query.is_empty() && start <= bytes.len() {
        let end = memchr(b'&', &bytes[start..]).map_or(bytes.len(), |at| start + at);
        if signature.is_some() || (part.is_some() && !query[start..end].starts_with("signature=")) {
            // Nothing may follow the signature; only the signature follows a part.
            return Err(Error::QueryInvalid);
        }
        // Both sides of an ASCII byte are whole UTF-8 sequences of `query`.
        let (name, value) = split_param(&query[start..end]).ok_or(Error::QueryInvalid)?;
        let param_start = start;
        start = end + 1;
        match name {
            Name::Expiry if expiry.is_none() => expiry = Some(value),
            Name::Method if method.is_none() => method = Some(value),
            Name::MaxSize if max_size.is_none() => max_size = Some(value),
            Name::Type if types.is_none() => types = Some(value),
            Name::Kid if kid.is_none() => kid = Some(value),
            Name::Part if part.is_none() => part = Some(value),
            Name::Signature => signature = Some((param_start.saturating_sub(1), value)),
            _ => return Err(Error::QueryInvalid),
        }
    }
    let (Some(expiry), Some(method), Some((signed_end, signature))) = (expiry, method, signature)
    else {
        return Err(Error::SignatureMissing);
    };
    if signature.is_empty() || expiry.is_empty() || method.is_empty() {
        return Err(Error::SignatureMissing);
    }
    let expiry = decimal(expiry).ok_or(Error::QueryInvalid)?;
    let method = SignedMethod::parse(method).ok_or(Error::QueryInvalid)?;
    if method == SignedMethod::Get && (max_size.is_some() || types.is_some() || part.is_some()) {
        return Err(Error::QueryInvalid);
    }
    let max_size = match max_size {
        Some(digits) => Some(decimal(digits).ok_or(Error::QueryInvalid)?),
        None => None,
    };
    let types = match types {
        Some(patterns) => Some(TypeRule::parse(patterns).ok_or(Error::QueryInvalid)?),
        None => None,
    };
    if kid.is_some_and(|kid| !is_key_id(kid)) {
        return Err(Error::QueryInvalid);
    }
    if part.is_some_and(|nonce| !is_part_nonce(nonce)) {
        return Err(Error::QueryInvalid);
    }
    Ok(SignedQuery {
        signed: &query[..signed_end],
        expiry,
        method,
        policy: Policy { max_size, types },
        kid,
        part,
        signature,
    })
}

/// Whether `nonce` is a part nonce: [`PART_NONCE_LEN`] lowercase hex digits.
fn is_part_nonce(nonce: &str) -> bool {
    nonce.len() == PART_NONCE_LEN
        && nonce
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// The parameters a signed URL may carry.
#[derive(Clone, Copy)]
enum Name {
    Expiry,
    Method,
    MaxSize,
    Type,
    Kid,
    Part,
    Signature,
}

/// A parameter's name and value, if it is one of [`Name`]s followed by `=`.
fn split_param(param: &str) -> Option<(Name, &str)> {
    [
        (Name::Expiry, "expiry="),
        (Name::Method, "method="),
        (Name::Signature, "signature="),
        (Name::MaxSize, "max_size="),
        (Name::Type, "type="),
        (Name::Kid, "kid="),
        (Name::Part, "part="),
    ]
    .into_iter()
    .find_map(|(name, prefix)| Some((name, param.strip_prefix(prefix)?)))
}

/// A query value of at most 20 ASCII digits as a number; `None` for anything
/// else (empty, a sign, other characters, more digits, overflow).
fn decimal(digits: &str) -> Option<u64> {
    if digits.len() > 20 {
        return None;
    }
    crate::headers::number::number(digits.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_parse_to_their_value_or_nothing() {
        assert_eq!(decimal(""), None);
        assert_eq!(decimal("0"), Some(0));
        assert_eq!(decimal("0001765432100"), Some(1_765_432_100));
        assert_eq!(decimal("18446744073709551615"), Some(u64::MAX));
        assert_eq!(decimal("18446744073709551616"), None);
        assert_eq!(decimal("99999999999999999999"), None);
        assert_eq!(decimal("000000000000000000001"), None);
        assert_eq!(decimal("+1"), None);
        assert_eq!(decimal("1e3"), None);
    }
}

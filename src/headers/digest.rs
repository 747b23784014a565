//! Integrity headers: `Content-Digest` and `Repr-Digest` (RFC 9530) with
//! `sha-256` and `sha-512`, and the hasher storage backends use for a whole file.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm of RFC 9530 that the crate checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha-256",
            Algorithm::Sha512 => "sha-512",
        }
    }

    fn len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }
}

/// A digest of RFC 9530: the value of a `Repr-Digest` (the whole file) or a
/// `Content-Digest` (one request's bytes) field, reduced to the strongest
/// algorithm the crate checks (`sha-512`, else `sha-256`).
///
/// Equal digests are equal values and print the same normalized field value,
/// `sha-256=:BASE64:`, which is also what [`ReprDigest::parse`] reads back: a
/// backend keeps a session's digest as that text (it serializes as it, too).
///
/// # Example
///
/// ```
/// use tower_signed_upload::storage::ReprDigest;
///
/// let digest = ReprDigest::parse("md5=:AAAA:, sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:").unwrap();
/// assert_eq!(digest.to_string(), "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:");
/// assert!(ReprDigest::parse("md5=:AAAA:").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReprDigest {
    pub(crate) algorithm: Algorithm,
    pub(crate) value: Vec<u8>,
}

impl ReprDigest {
    /// Parses a field value; `None` if it does not parse or names no
    /// algorithm the crate checks.
    pub fn parse(value: &str) -> Option<Self> {
        parse(value.as_bytes()).ok()
    }
}

impl fmt::Display for ReprDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}=:{}:",
            self.algorithm.name(),
            STANDARD.encode(&self.value)
        )
    }
}

impl Serialize for ReprDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ReprDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ReprDigest::parse(&text).ok_or_else(|| D::Error::custom("not a digest field value"))
    }
}

/// Why a digest field value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DigestError {
    /// Not a dictionary of `alg=:BASE64:` members, or a value of the wrong
    /// length for its algorithm.
    Malformed,
    /// Well formed, but no member names an algorithm the crate checks, so
    /// nothing would be checked.
    NoKnownAlgorithm,
}

/// Parses a `Content-Digest`/`Repr-Digest` value: a structured-field
/// dictionary whose members are byte sequences (`alg=:BASE64:`). Returns the
/// strongest of `sha-512` and `sha-256`; members with other algorithms are
/// ignored, but a value made of them only is [`DigestError::NoKnownAlgorithm`].
pub(crate) fn parse(value: &[u8]) -> Result<ReprDigest, DigestError> {
    const MALFORMED: DigestError = DigestError::Malformed;
    let text = std::str::from_utf8(value).map_err(|_| MALFORMED)?;
    let mut best: Option<ReprDigest> = None;
    for member in text.split(',') {
        let member = member.trim_matches([' ', '\t']);
        let (name, rest) = member.split_once('=').ok_or(MALFORMED)?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.*".contains(&b))
        {
            return Err(MALFORMED);
        }
        // Parameters (`;key=value`) are allowed by structured fields and ignored.
        let bytes = rest.split(';').next().unwrap_or("");
        let encoded = bytes
            .strip_prefix(':')
            .and_then(|b| b.strip_suffix(':'))
            .ok_or(MALFORMED)?;
        let decoded = STANDARD.decode(encoded).map_err(|_| MALFORMED)?;
        let algorithm = match name {
            "sha-256" => Algorithm::Sha256,
            "sha-512" => Algorithm::Sha512,
            _ => continue,
        };
        if decoded.len() != algorithm.len() {
            return Err(MALFORMED);
        }
        if best
            .as_ref()
            .is_none_or(|b| b.algorithm == Algorithm::Sha256)
        {
            best = Some(ReprDigest {
                algorithm,
                value: decoded,
            });
        }
    }
    best.ok_or(DigestError::NoKnownAlgorithm)
}

/// Which whole-file digests a backend computes at completion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DigestSet {
    /// SHA-256.
    pub sha256: bool,
    /// SHA-512.
    pub sha512: bool,
}

impl DigestSet {
    /// Whether no digest is asked for.
    pub fn is_empty(self) -> bool {
        !self.sha256 && !self.sha512
    }

    /// Adds what a kept `Repr-Digest` (as in
    /// [`ChunkOptions::repr_digest`](crate::storage::ChunkOptions)) calls for: the
    /// algorithm it names, to check it, and SHA-256, for the File object's
    /// `sha256`. A backend computes them at completion whether or not the layer
    /// asked.
    pub fn with_repr_digest(self, kept: Option<&ReprDigest>) -> Self {
        match kept {
            Some(kept) => self.with(kept.algorithm).with(Algorithm::Sha256),
            None => self,
        }
    }

    pub(crate) fn with(mut self, algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => self.sha256 = true,
            Algorithm::Sha512 => self.sha512 = true,
        }
        self
    }
}

/// The whole-file digests a backend computed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileDigests {
    /// SHA-256, if asked for.
    pub sha256: Option<[u8; 32]>,
    /// SHA-512, if asked for.
    pub sha512: Option<Vec<u8>>,
}

impl FileDigests {
    pub(crate) fn get(&self, algorithm: Algorithm) -> Option<&[u8]> {
        match algorithm {
            Algorithm::Sha256 => self.sha256.as_ref().map(|d| &d[..]),
            Algorithm::Sha512 => self.sha512.as_deref(),
        }
    }
}

/// Computes the digests of a [`DigestSet`] over bytes fed in order; for
/// storage backends computing a whole file's digests at completion.
///
/// # Example
///
/// ```
/// use tower_signed_upload::storage::{DigestSet, FileHasher};
///
/// let mut hasher = FileHasher::new(DigestSet { sha256: true, sha512: false });
/// hasher.update(b"hello");
/// let digests = hasher.finish();
/// assert_eq!(digests.sha256.unwrap()[0], 0x2c);
/// assert!(digests.sha512.is_none());
/// ```
#[derive(Debug, Clone)]
pub struct FileHasher {
    sha256: Option<Sha256>,
    sha512: Option<Sha512>,
}

impl FileHasher {
    /// A hasher for the digests in `set`.
    pub fn new(set: DigestSet) -> Self {
        FileHasher {
            sha256: set.sha256.then(Sha256::new),
            sha512: set.sha512.then(Sha512::new),
        }
    }

    /// Feeds the next bytes of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(hasher) = &mut self.sha256 {
            hasher.update(bytes);
        }
        if let Some(hasher) = &mut self.sha512 {
            hasher.update(bytes);
        }
    }

    /// The digests of everything fed.
    pub fn finish(self) -> FileDigests {
        FileDigests {
            sha256: self.sha256.map(|h| h.finalize().into()),
            sha512: self.sha512.map(|h| h.finalize().to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc_9530_values() {
        // RFC 9530 appendix: sha-256 of `{"hello": "world"}`.
        let sha256 = parse(b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:").unwrap();
        assert_eq!(sha256.algorithm, Algorithm::Sha256);
        assert_eq!(
            sha256.to_string(),
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
        );
        let both = format!(
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-512=:{}:",
            STANDARD.encode([7u8; 64])
        );
        assert_eq!(parse(both.as_bytes()).unwrap().algorithm, Algorithm::Sha512);
        // Unknown algorithms beside a known one are ignored.
        let beside = b"md5=:AAAAAAAAAAAAAAAAAAAAAA==:, sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
        assert_eq!(parse(beside).unwrap(), sha256);
    }

    #[test]
    fn values_that_name_no_known_algorithm_are_refused() {
        for value in [
            &b"md5=:AAAAAAAAAAAAAAAAAAAAAA==:"[..],
            b"unixsum=:AAAA:",
            b"md5=:AAAAAAAAAAAAAAAAAAAAAA==:, sha=:AAAA:;x=1",
        ] {
            assert_eq!(
                parse(value),
                Err(DigestError::NoKnownAlgorithm),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        assert!(ReprDigest::parse("md5=:AAAA:").is_none());
    }

    #[test]
    fn malformed_values_do_not_parse() {
        for value in [
            &b""[..],
            b"sha-256",
            b"sha-256=abc",
            b"sha-256=:not base64!:",
            b"sha-256=:AAAA:",
            b"SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
            b"\xff",
        ] {
            assert_eq!(
                parse(value),
                Err(DigestError::Malformed),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn hasher_matches_one_shot_digests() {
        let mut hasher = FileHasher::new(DigestSet {
            sha256: true,
            sha512: true,
        });
        hasher.update(b"hel");
        hasher.update(b"lo");
        let digests = hasher.finish();
        assert_eq!(
            digests.sha256.unwrap().to_vec(),
            Sha256::digest(b"hello").to_vec()
        );
        assert_eq!(digests.sha512.unwrap(), Sha512::digest(b"hello").to_vec());
    }
}

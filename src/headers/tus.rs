//! The request headers of tus 1.0.0: `Upload-Metadata`, `Upload-Checksum` and
//! `Upload-Concat`. Pure parsers over bytes, no I/O.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;

/// The most `Upload-Metadata` pairs a request may carry.
pub const MAX_METADATA_PAIRS: usize = 64;

/// The parsed value of tus's `Upload-Metadata` header: unique keys, each with
/// an optional Base64-decoded value, in the order they came.
///
/// An empty header is valid and holds no pair (some clients send it when they
/// have no metadata). Keys are non-empty and hold no space or comma; values
/// are Base64 (padded or not). The metadata never names where the file goes
/// nor its type: the signed path and the sniffed bytes do.
///
/// # Example
///
/// ```
/// use tower_signed_upload::headers::UploadMetadata;
///
/// let metadata = UploadMetadata::parse(b"filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential").unwrap();
/// assert_eq!(metadata.get("filename"), Some(&b"world_domination_plan.pdf"[..]));
/// assert_eq!(metadata.get("is_confidential"), Some(&b""[..]));
/// assert!(UploadMetadata::parse(b"a 1,a 2").is_err()); // a key twice
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadMetadata {
    pairs: Vec<(String, Vec<u8>)>,
}

/// Why a tus header value did not parse; answered `400`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TusHeaderError {
    /// Not UTF-8, or not the header's grammar.
    Malformed,
    /// A value that is not Base64.
    Base64,
    /// An `Upload-Metadata` key given twice.
    DuplicateKey,
    /// More than [`MAX_METADATA_PAIRS`] metadata pairs.
    TooManyPairs,
    /// An `Upload-Checksum` algorithm the layer does not check.
    UnsupportedAlgorithm,
}

impl fmt::Display for TusHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TusHeaderError::Malformed => "malformed header value",
            TusHeaderError::Base64 => "a value is not Base64",
            TusHeaderError::DuplicateKey => "a metadata key appears twice",
            TusHeaderError::TooManyPairs => "too many metadata pairs",
            TusHeaderError::UnsupportedAlgorithm => "checksum algorithm not supported",
        })
    }
}

impl std::error::Error for TusHeaderError {}

fn text(value: &[u8]) -> Result<&str, TusHeaderError> {
    std::str::from_utf8(value).map_err(|_| TusHeaderError::Malformed)
}

fn base64(value: &str) -> Result<Vec<u8>, TusHeaderError> {
    STANDARD
        .decode(value)
        .or_else(|_| STANDARD_NO_PAD.decode(value))
        .map_err(|_| TusHeaderError::Base64)
}

impl UploadMetadata {
    /// Parses a header value.
    ///
    /// # Errors
    ///
    /// [`TusHeaderError`] for a value that breaks the grammar above.
    pub fn parse(value: &[u8]) -> Result<Self, TusHeaderError> {
        let value = text(value)?.trim_matches([' ', '\t']);
        let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
        if value.is_empty() {
            return Ok(UploadMetadata { pairs });
        }
        for pair in value.split(',') {
            let pair = pair.trim_matches([' ', '\t']);
            let (key, encoded) = match pair.split_once(' ') {
                Some((key, encoded)) => (key, encoded.trim_matches([' ', '\t'])),
                None => (pair, ""),
            };
            if key.is_empty()
                || !key.bytes().all(|b| b.is_ascii_graphic() && b != b',')
                || encoded.contains([' ', '\t'])
            {
                return Err(TusHeaderError::Malformed);
            }
            if pairs.iter().any(|(known, _)| known == key) {
                return Err(TusHeaderError::DuplicateKey);
            }
            if pairs.len() == MAX_METADATA_PAIRS {
                return Err(TusHeaderError::TooManyPairs);
            }
            pairs.push((key.to_owned(), base64(encoded)?));
        }
        Ok(UploadMetadata { pairs })
    }

    /// The decoded value of `key` (empty for a key sent without a value).
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(known, _)| known == key)
            .map(|(_, value)| value.as_slice())
    }

    /// The pairs, in the order they came.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.pairs
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_slice()))
    }

    /// Whether it holds no pair.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl fmt::Display for UploadMetadata {
    /// The header value, values Base64-encoded with padding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.pairs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(key)?;
            if !value.is_empty() {
                write!(f, " {}", STANDARD.encode(value))?;
            }
        }
        Ok(())
    }
}

/// A checksum algorithm of tus's `Upload-Checksum` that the layer checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChecksumAlgorithm {
    /// `sha1`, the one every tus server must offer.
    Sha1,
    /// `sha256`.
    Sha256,
    /// `sha512`.
    Sha512,
}

impl ChecksumAlgorithm {
    /// Every algorithm, as `Tus-Checksum-Algorithm` lists them.
    pub const ALL: [ChecksumAlgorithm; 3] = [
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
        ChecksumAlgorithm::Sha512,
    ];

    /// The algorithm's tus name.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Sha1 => "sha1",
            ChecksumAlgorithm::Sha256 => "sha256",
            ChecksumAlgorithm::Sha512 => "sha512",
        }
    }

    /// The length of its digests, in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
            ChecksumAlgorithm::Sha512 => 64,
        }
    }
}

/// A parsed `Upload-Checksum` header: `ALGORITHM BASE64`.
///
/// # Example
///
/// ```
/// use tower_signed_upload::headers::{ChecksumAlgorithm, TusHeaderError, UploadChecksum};
///
/// let checksum = UploadChecksum::parse(b"sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap();
/// assert_eq!(checksum.algorithm, ChecksumAlgorithm::Sha1);
/// assert_eq!(UploadChecksum::parse(b"crc32 AAAAAA=="), Err(TusHeaderError::UnsupportedAlgorithm));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadChecksum {
    /// The algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// The digest of the request's body.
    pub digest: Vec<u8>,
}

impl UploadChecksum {
    /// Parses a header value.
    ///
    /// # Errors
    ///
    /// [`TusHeaderError::UnsupportedAlgorithm`] for an algorithm the layer
    /// does not check (tus answers it `400`), others for a malformed value or a
    /// digest of the wrong length.
    pub fn parse(value: &[u8]) -> Result<Self, TusHeaderError> {
        let value = text(value)?.trim_matches([' ', '\t']);
        let (name, encoded) = value.split_once(' ').ok_or(TusHeaderError::Malformed)?;
        let algorithm = ChecksumAlgorithm::ALL
            .into_iter()
            .find(|algorithm| algorithm.name().eq_ignore_ascii_case(name))
            .ok_or(TusHeaderError::UnsupportedAlgorithm)?;
        let digest = base64(encoded.trim_matches([' ', '\t']))?;
        if digest.len() != algorithm.digest_len() {
            return Err(TusHeaderError::Malformed);
        }
        Ok(UploadChecksum { algorithm, digest })
    }
}

/// The most partial uploads one final upload may list.
pub const MAX_CONCAT_PARTS: usize = 1024;

/// A parsed `Upload-Concat` header.
///
/// # Example
///
/// ```
/// use tower_signed_upload::headers::UploadConcat;
///
/// assert_eq!(UploadConcat::parse(b"partial").unwrap(), UploadConcat::Partial);
/// let UploadConcat::Final(parts) = UploadConcat::parse(b"final;/a?part=1 https://h/a?part=2").unwrap() else { panic!() };
/// assert_eq!(parts, ["/a?part=1", "https://h/a?part=2"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadConcat {
    /// This upload is one part of a file.
    Partial,
    /// This upload is the file made of these parts' URLs (absolute or
    /// relative), in order.
    Final(Vec<String>),
}

impl UploadConcat {
    /// Parses a header value.
    ///
    /// # Errors
    ///
    /// [`TusHeaderError::Malformed`] for anything but `partial` or `final;`
    /// followed by one or more space-separated URLs (at most
    /// [`MAX_CONCAT_PARTS`]).
    pub fn parse(value: &[u8]) -> Result<Self, TusHeaderError> {
        let value = text(value)?.trim_matches([' ', '\t']);
        if value == "partial" {
            return Ok(UploadConcat::Partial);
        }
        let list = value
            .strip_prefix("final;")
            .ok_or(TusHeaderError::Malformed)?;
        let parts: Vec<String> = list.split_ascii_whitespace().map(str::to_owned).collect();
        if parts.is_empty() || parts.len() > MAX_CONCAT_PARTS {
            return Err(TusHeaderError::Malformed);
        }
        Ok(UploadConcat::Final(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_pairs_keys_alone_and_the_empty_header() {
        let parsed =
            UploadMetadata::parse(b"filename aGVsbG8udHh0, type dGV4dC9wbGFpbg,empty").unwrap();
        assert_eq!(parsed.get("filename"), Some(&b"hello.txt"[..]));
        assert_eq!(parsed.get("type"), Some(&b"text/plain"[..]));
        assert_eq!(parsed.get("empty"), Some(&b""[..]));
        assert_eq!(parsed.get("other"), None);
        assert_eq!(
            parsed.to_string(),
            "filename aGVsbG8udHh0,type dGV4dC9wbGFpbg==,empty"
        );
        assert!(UploadMetadata::parse(b"").unwrap().is_empty());
        assert!(UploadMetadata::parse(b"  ").unwrap().is_empty());
    }

    #[test]
    fn metadata_refuses_what_breaks_the_grammar() {
        for bad in [
            &b"a b c"[..],
            b",a",
            b"a,,b",
            b"a b,",
            b"k \xff",
            b"k not*base64",
        ] {
            assert!(UploadMetadata::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            UploadMetadata::parse(b"k,k"),
            Err(TusHeaderError::DuplicateKey)
        );
        let many: Vec<String> = (0..=MAX_METADATA_PAIRS).map(|i| format!("k{i}")).collect();
        assert_eq!(
            UploadMetadata::parse(many.join(",").as_bytes()),
            Err(TusHeaderError::TooManyPairs)
        );
    }

    #[test]
    fn checksums_name_a_known_algorithm_and_a_digest_of_its_length() {
        let sha256 = format!("sha256 {}", STANDARD.encode([1u8; 32]));
        let parsed = UploadChecksum::parse(sha256.as_bytes()).unwrap();
        assert_eq!(parsed.algorithm, ChecksumAlgorithm::Sha256);
        assert_eq!(parsed.digest, vec![1u8; 32]);
        let sha512 = format!("SHA512 {}", STANDARD_NO_PAD.encode([2u8; 64]));
        assert_eq!(
            UploadChecksum::parse(sha512.as_bytes()).unwrap().algorithm,
            ChecksumAlgorithm::Sha512
        );
        assert_eq!(
            UploadChecksum::parse(b"md5 AAAAAAAAAAAAAAAAAAAAAA=="),
            Err(TusHeaderError::UnsupportedAlgorithm)
        );
        assert_eq!(
            UploadChecksum::parse(b"sha1 AAAA"),
            Err(TusHeaderError::Malformed)
        );
        assert_eq!(
            UploadChecksum::parse(b"sha1"),
            Err(TusHeaderError::Malformed)
        );
        assert_eq!(
            UploadChecksum::parse(b"sha1 !!!!"),
            Err(TusHeaderError::Base64)
        );
    }

    #[test]
    fn concat_is_partial_or_a_final_list() {
        assert_eq!(
            UploadConcat::parse(b" partial ").unwrap(),
            UploadConcat::Partial
        );
        assert_eq!(
            UploadConcat::parse(b"final;a  b").unwrap(),
            UploadConcat::Final(vec!["a".into(), "b".into()])
        );
        for bad in [&b"final;"[..], b"final; ", b"final", b"parts", b""] {
            assert!(UploadConcat::parse(bad).is_err(), "{bad:?}");
        }
    }
}

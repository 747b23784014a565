//! Checks on an upload's bytes as they stream: the signed `type` judged from
//! the first bytes, `Content-Digest` and `Repr-Digest`, and the File object's
//! SHA-256. One pass, no second read.

use std::sync::{Arc, Mutex};

use sha2::Digest as _;

use crate::headers::digest::{DigestSet, FileDigests, FileHasher, ReprDigest};
use crate::headers::{ChecksumAlgorithm, UploadChecksum};
use crate::{Error, TypeRule};

/// How many first bytes the type is judged from while streaming; the commit
/// judges again from the file's head.
pub(crate) const SNIFF_LEN: usize = 8192;

/// The type sniffed from a file's first bytes, for the signed `type` rule: the
/// extension does not count, and bytes no signature recognises are
/// `application/octet-stream`.
pub(crate) fn sniffed_type(head: &[u8]) -> &'static str {
    infer::get(head).map_or("application/octet-stream", |kind| kind.mime_type())
}

/// What to check on one request's bytes.
#[derive(Debug, Default)]
pub(crate) struct Inspect {
    /// The signed type rule, judged on the first bytes (the stream starts at offset 0).
    sniff: Option<TypeRule>,
    head: Vec<u8>,
    /// Digests the request's bytes must have: `Content-Digest`, and for a
    /// whole file, `Repr-Digest`.
    expected: Vec<ReprDigest>,
    hasher: Option<FileHasher>,
    /// Where the computed digests go, for the File object.
    digests: Option<Arc<Mutex<FileDigests>>>,
    /// tus's `Upload-Checksum` of the request's bytes, and its hasher.
    checksum: Option<(Vec<u8>, Checksum)>,
}

/// A hasher for one `Upload-Checksum` algorithm.
#[derive(Debug)]
enum Checksum {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Checksum {
    fn new(algorithm: ChecksumAlgorithm) -> Self {
        match algorithm {
            ChecksumAlgorithm::Sha1 => Checksum::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha256 => Checksum::Sha256(sha2::Sha256::new()),
            ChecksumAlgorithm::Sha512 => Checksum::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Checksum::Sha1(hasher) => hasher.update(bytes),
            Checksum::Sha256(hasher) => hasher.update(bytes),
            Checksum::Sha512(hasher) => hasher.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Checksum::Sha1(hasher) => hasher.finalize().to_vec(),
            Checksum::Sha256(hasher) => hasher.finalize().to_vec(),
            Checksum::Sha512(hasher) => hasher.finalize().to_vec(),
        }
    }
}

impl Inspect {
    /// Checks that judge the first bytes against `sniff`, compare the bytes
    /// with every `expected` digest at the end, and compute `compute`'s
    /// digests into its slot.
    pub(crate) fn new(
        sniff: Option<TypeRule>,
        expected: Vec<ReprDigest>,
        compute: Option<(DigestSet, Arc<Mutex<FileDigests>>)>,
    ) -> Self {
        let mut set = compute.as_ref().map(|(set, _)| *set).unwrap_or_default();
        for digest in &expected {
            set = set.with(digest.algorithm);
        }
        Inspect {
            sniff,
            head: Vec::new(),
            expected,
            hasher: (!set.is_empty()).then(|| FileHasher::new(set)),
            digests: compute.map(|(_, out)| out),
            checksum: None,
        }
    }

    /// Also checks the bytes against tus's `Upload-Checksum`.
    pub(crate) fn checksum(mut self, checksum: Option<UploadChecksum>) -> Self {
        self.checksum = checksum.map(|sent| (sent.digest, Checksum::new(sent.algorithm)));
        self
    }

    /// Whether anything is checked; an empty `Inspect` costs nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.sniff.is_none() && self.hasher.is_none() && self.checksum.is_none()
    }

    /// The next bytes of the request.
    pub(crate) fn data(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if let Some(hasher) = &mut self.hasher {
            hasher.update(bytes);
        }
        if let Some((_, checksum)) = &mut self.checksum {
            checksum.update(bytes);
        }
        if self.sniff.is_some() {
            let take = (SNIFF_LEN - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            if self.head.len() >= SNIFF_LEN {
                self.judge()?;
            }
        }
        Ok(())
    }

    /// The request's body ended: the last checks.
    pub(crate) fn end(&mut self) -> Result<(), Error> {
        self.judge()?;
        if let Some((sent, checksum)) = self.checksum.take() {
            if checksum.finish() != sent {
                return Err(Error::ChecksumMismatch);
            }
        }
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        let digests = hasher.finish();
        for expected in &self.expected {
            if digests.get(expected.algorithm) != Some(&expected.value[..]) {
                return Err(Error::DigestMismatch);
            }
        }
        if let Some(out) = &self.digests {
            *out.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = digests;
        }
        Ok(())
    }

    fn judge(&mut self) -> Result<(), Error> {
        if let Some(rule) = self.sniff.take() {
            if !rule.allows(sniffed_type(&self.head)) {
                return Err(Error::TypeNotAllowed);
            }
            self.head = Vec::new();
        }
        Ok(())
    }
}

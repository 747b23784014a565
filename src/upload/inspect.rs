//! Checks on an upload's bytes as they stream: the signed `type` judged from
//! the first bytes, `Content-Digest` and `Repr-Digest`, and the File object's
//! SHA-256. One pass, no second read.

use std::sync::{Arc, Mutex};

use crate::headers::digest::{DigestSet, FileDigests, FileHasher, ReprDigest};
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
        }
    }

    /// Whether anything is checked; an empty `Inspect` costs nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.sniff.is_none() && self.hasher.is_none()
    }

    /// The next bytes of the request.
    pub(crate) fn data(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if let Some(hasher) = &mut self.hasher {
            hasher.update(bytes);
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

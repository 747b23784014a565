//! Verification: a request target's signature, expiry and method.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::query::parse_query;
use super::{Policy, SignedMethod, SigningKey};
use crate::clock::unix_seconds;
use crate::{Error, UploadPath};

/// A request target whose signature, expiry and method checked out.
#[derive(Debug, Clone)]
pub(crate) struct Verified<'a> {
    pub(crate) path: UploadPath,
    pub(crate) expiry: u64,
    pub(crate) policy: Policy,
    /// The raw path without its leading `/`, then the signed query bytes:
    /// together with a `?` between them, the signed string.
    pub(crate) signed: [&'a str; 2],
}

/// The keys that verify, and the longest lifetime a URL may have.
#[derive(Clone)]
pub(crate) struct Verifier {
    pub(crate) keys: Vec<SigningKey>,
    pub(crate) max_lifetime: Duration,
}

/// The most bytes a signature may take in the query (percent-encoded, padded).
const MAX_SIGNATURE_LEN: usize = 3 * 44;

impl Verifier {
    /// Verifies a request target for `wanted` at `now`, in the order of the wire
    /// contract: query shape (401/400), path (400), signature (403), expiry (403),
    /// method (403).
    pub(crate) fn verify<'a>(
        &self,
        raw_path: &'a str,
        raw_query: Option<&'a str>,
        wanted: SignedMethod,
        now: SystemTime,
    ) -> Result<Verified<'a>, Error> {
        let query = parse_query(raw_query.unwrap_or(""))?;
        let path = UploadPath::from_request_path(raw_path).map_err(|_| Error::PathInvalid)?;
        let unslashed = raw_path.strip_prefix('/').unwrap_or(raw_path);
        let parts: [&[u8]; 3] = [unslashed.as_bytes(), b"?", query.signed.as_bytes()];
        let signature = decode_signature(query.signature).ok_or(Error::SignatureInvalid)?;
        let verified = match query.kid {
            // A named key is the only one tried; an unknown name verifies nothing.
            Some(kid) => self
                .keys
                .iter()
                .filter(|key| key.id() == Some(kid))
                .any(|key| key.verifies(&parts, &signature)),
            None => self.keys.iter().any(|key| key.verifies(&parts, &signature)),
        };
        if !verified {
            return Err(Error::SignatureInvalid);
        }
        let now = unix_seconds(now);
        if now > query.expiry {
            return Err(Error::UrlExpired);
        }
        if query.expiry - now > self.max_lifetime.as_secs() {
            return Err(Error::ExpiryTooFar);
        }
        if query.method != wanted {
            return Err(Error::MethodNotSigned);
        }
        Ok(Verified {
            path,
            expiry: query.expiry,
            policy: query.policy,
            signed: [unslashed, query.signed],
        })
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

/// Decodes a signature leniently: percent-encoded or not, base64url or standard
/// alphabet, padded or not. Returns the 32 bytes, or `None`.
fn decode_signature(raw: &str) -> Option<[u8; 32]> {
    if raw.len() > MAX_SIGNATURE_LEN {
        return None;
    }
    // The form the signer writes, unpadded base64url, decodes as it is.
    if let Ok(text) = <&[u8; 43]>::try_from(raw.as_bytes()) {
        if let Some(bytes) = decode_url_safe_32(text) {
            return Some(bytes);
        }
    }
    let mut text = [0u8; MAX_SIGNATURE_LEN];
    let mut len = 0;
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let mut byte = bytes[i];
        if byte == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            byte = (hex_digit(hex[0])? << 4) | hex_digit(hex[1])?;
            i += 2;
        }
        text[len] = match byte {
            b'+' => b'-',
            b'/' => b'_',
            other => other,
        };
        len += 1;
        i += 1;
    }
    // 32 bytes take 43 characters, and one `=` when padded.
    let text = text[..len].strip_suffix(b"=").unwrap_or(&text[..len]);
    decode_url_safe_32(text.try_into().ok()?)
}

/// Base64url sextets by character; [`NOT_BASE64`] for any other byte.
const SEXTETS: [u8; 256] = {
    let mut table = [NOT_BASE64; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};
const NOT_BASE64: u8 = 0x80;

/// Decodes exactly the 43 characters of unpadded base64url that 32 bytes take,
/// strictly: `None` for a character outside the alphabet or non-zero trailing
/// bits, like `URL_SAFE_NO_PAD` (which the tests compare it with). This runs on
/// every request; the general decoder costs about ten times as much here.
fn decode_url_safe_32(text: &[u8; 43]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let mut invalid = 0u8;
    for (chars, bytes) in text[..40]
        .chunks_exact(4)
        .zip(out[..30].chunks_exact_mut(3))
    {
        let mut group = 0u32;
        for &c in chars {
            let sextet = SEXTETS[usize::from(c)];
            invalid |= sextet;
            group = group << 6 | u32::from(sextet);
        }
        bytes.copy_from_slice(&group.to_be_bytes()[1..]);
    }
    let mut last = 0u32;
    for &c in &text[40..] {
        let sextet = SEXTETS[usize::from(c)];
        invalid |= sextet;
        last = last << 6 | u32::from(sextet);
    }
    // 18 bits: two bytes and two trailing bits that must be zero.
    if invalid & NOT_BASE64 != 0 || last & 0b11 != 0 {
        return None;
    }
    out[30] = (last >> 10) as u8;
    out[31] = (last >> 2) as u8;
    Some(out)
}

fn hex_digit(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|digit| digit as u8)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use super::super::fixtures::{at, Fixed, NODE_VECTORS};
    use super::super::{SignedUrl, Signer};
    use super::*;

    fn verifier(keys: &[&str]) -> Verifier {
        Verifier {
            keys: keys.iter().map(|k| SigningKey::new(k).unwrap()).collect(),
            max_lifetime: Duration::from_secs(7 * 24 * 3600),
        }
    }

    fn split(url: &str) -> (&str, &str) {
        let target = &url[url.find("://").unwrap() + 3..];
        let target = &target[target.find('/').unwrap()..];
        target.split_once('?').unwrap()
    }
    #[test]
    fn the_32_byte_decoder_agrees_with_the_base64_crate() {
        // Every byte value in every position, encoded and decoded back.
        for position in 0..32 {
            for value in 0..=255u8 {
                let mut bytes = [0x5au8; 32];
                bytes[position] = value;
                let text = URL_SAFE_NO_PAD.encode(bytes);
                let text: &[u8; 43] = text.as_bytes().try_into().expect("43 characters");
                assert_eq!(decode_url_safe_32(text), Some(bytes));
            }
        }
        // Any character in any position, valid or not, and every trailing sextet.
        let base = URL_SAFE_NO_PAD.encode([0x33u8; 32]).into_bytes();
        for position in 0..43 {
            for c in 0..=255u8 {
                let mut text: [u8; 43] = base.clone().try_into().expect("43 characters");
                text[position] = c;
                let mut expected = [0u8; 64];
                let reference = match URL_SAFE_NO_PAD.decode_slice(text, &mut expected) {
                    Ok(32) => Some(<[u8; 32]>::try_from(&expected[..32]).expect("32 bytes")),
                    _ => None,
                };
                assert_eq!(decode_url_safe_32(&text), reference, "{position} {c}");
            }
        }
    }
    #[test]
    fn node_vectors_verify() {
        let verifier = verifier(&[
            "unrelated",
            "secret",
            "another-key-2025",
            "k\u{e9}y with spaces & symbols!",
        ]);
        for &(_, encoded, expiry, method, signature) in NODE_VECTORS {
            let path = format!("/{encoded}");
            let query = format!("expiry={expiry}&method={method}&signature={signature}");
            let verified = verifier
                .verify(&path, Some(&query), method, at(expiry - 60))
                .unwrap();
            assert_eq!(verified.expiry, expiry);
            assert_eq!(
                verified.signed,
                [encoded, &query[..query.find("&signature").unwrap()]]
            );
        }
    }

    #[test]
    fn signature_forms_are_lenient() {
        let verifier = verifier(&["secret"]);
        // "n6l90i9-B32PshV1josBY-yI9x3bbvQ17tanPHMaZdA" in the other spellings.
        for signature in [
            "n6l90i9-B32PshV1josBY-yI9x3bbvQ17tanPHMaZdA",
            "n6l90i9-B32PshV1josBY-yI9x3bbvQ17tanPHMaZdA=",
            "n6l90i9-B32PshV1josBY-yI9x3bbvQ17tanPHMaZdA%3D",
            "n6l90i9+B32PshV1josBY+yI9x3bbvQ17tanPHMaZdA",
            "n6l90i9%2BB32PshV1josBY%2ByI9x3bbvQ17tanPHMaZdA%3d",
            "n6l90i9%2bB32PshV1josBY%2DyI9x3bbvQ17tanPHMaZdA",
        ] {
            let query = format!("expiry=1735689600&method=put&signature={signature}");
            verifier
                .verify(
                    "/nested/folders/image.png",
                    Some(&query),
                    SignedMethod::Put,
                    at(1735689000),
                )
                .unwrap_or_else(|e| panic!("{signature}: {e:?}"));
        }
        for signature in [
            "n6l90i9-B32PshV1josBY-yI9x3bbvQ17tanPHMaZdB",
            "n6l90i9-B32PshV1josBY-yI9x3bbvQ17tanPHMaZd",
            "n6l90i9-B32PshV1josBY-yI9x3bbvQ17tanPHMaZdA==",
            "n6l90i9-B32PshV1josBY-yI9x3bbvQ17tanPHMaZdA%",
            "n6l90i9-B32PshV1josBY-yI9x3bbvQ17tanPHMaZd%+A",
            "!!!",
        ] {
            let query = format!("expiry=1735689600&method=put&signature={signature}");
            assert_eq!(
                verifier
                    .verify(
                        "/nested/folders/image.png",
                        Some(&query),
                        SignedMethod::Put,
                        at(1735689000)
                    )
                    .unwrap_err(),
                Error::SignatureInvalid,
                "{signature}"
            );
        }
    }

    #[test]
    fn query_shape_is_checked_before_signature() {
        let verifier = verifier(&["secret"]);
        let cases: &[(&str, Error)] = &[
            ("", Error::SignatureMissing),
            ("expiry=1&method=put", Error::SignatureMissing),
            ("expiry=1&signature=abc", Error::SignatureMissing),
            ("method=put&signature=abc", Error::SignatureMissing),
            ("signature=abc", Error::SignatureMissing),
            ("expiry=1&method=put&signature=", Error::SignatureMissing),
            ("expiry=1&method=put&signature=abc&x=1", Error::QueryInvalid),
            (
                "expiry=1&method=put&signature=abc&signature=abc",
                Error::QueryInvalid,
            ),
            (
                "expiry=1&expiry=1&method=put&signature=abc",
                Error::QueryInvalid,
            ),
            (
                "expiry=1&method=put&foo=bar&signature=abc",
                Error::QueryInvalid,
            ),
            ("expiry=-1&method=put&signature=abc", Error::QueryInvalid),
            ("expiry=1e9&method=put&signature=abc", Error::QueryInvalid),
            (
                "expiry=99999999999999999999999&method=put&signature=abc",
                Error::QueryInvalid,
            ),
            ("expiry=1&method=post&signature=abc", Error::QueryInvalid),
            ("expiry=1&method=PUT&signature=abc", Error::QueryInvalid),
            ("expiry=1&&method=put&signature=abc", Error::QueryInvalid),
            ("expiry&method=put&signature=abc", Error::QueryInvalid),
            (
                "max_size=1x&expiry=1&method=put&signature=abc",
                Error::QueryInvalid,
            ),
            (
                "max_size=1&max_size=1&expiry=1&method=put&signature=abc",
                Error::QueryInvalid,
            ),
            (
                "type=image&expiry=1&method=put&signature=abc",
                Error::QueryInvalid,
            ),
            (
                "expiry=1&method=get&type=image/*&signature=abc",
                Error::QueryInvalid,
            ),
            (
                "expiry=1&method=get&max_size=5&signature=abc",
                Error::QueryInvalid,
            ),
            (
                "expiry=1&method=put&kid=a%20b&signature=abc",
                Error::QueryInvalid,
            ),
            (
                "expiry=1&method=put&kid=&signature=abc",
                Error::QueryInvalid,
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(
                verifier
                    .verify("/a.png", Some(query), SignedMethod::Put, at(0))
                    .unwrap_err(),
                *expected,
                "{query}"
            );
        }
        assert_eq!(
            verifier
                .verify("/a.png", None, SignedMethod::Put, at(0))
                .unwrap_err(),
            Error::SignatureMissing
        );
        assert_eq!(
            verifier
                .verify(
                    "/a/../b",
                    Some("expiry=1&method=put&signature=abc"),
                    SignedMethod::Put,
                    at(0)
                )
                .unwrap_err(),
            Error::PathInvalid
        );
    }

    #[test]
    fn expiry_and_method_are_enforced_after_the_signature() {
        let signer = Signer::new(SigningKey::new("secret").unwrap()).clock(Fixed(at(1_000_000)));
        let path = UploadPath::new("a.png").unwrap();
        let verifier = verifier(&["secret"]);
        let check = |url: &SignedUrl, method, now| {
            let (path, query) = split(url.as_str());
            verifier
                .verify(path, Some(query), method, at(now))
                .map(|_| ())
        };
        let url = signer.sign(&path, SignedMethod::Put, Duration::from_secs(60));
        assert_eq!(url.expiry(), 1_000_060);
        assert_eq!(check(&url, SignedMethod::Put, 1_000_060), Ok(()));
        assert_eq!(
            check(&url, SignedMethod::Put, 1_000_061),
            Err(Error::UrlExpired)
        );
        assert_eq!(
            check(&url, SignedMethod::Get, 1_000_000),
            Err(Error::MethodNotSigned)
        );
        let far = signer.sign(
            &path,
            SignedMethod::Put,
            Duration::from_secs(7 * 24 * 3600 + 1),
        );
        assert_eq!(
            check(&far, SignedMethod::Put, 1_000_000),
            Err(Error::ExpiryTooFar)
        );
        let edge = signer.sign(&path, SignedMethod::Put, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(check(&edge, SignedMethod::Put, 1_000_000), Ok(()));
    }

    #[test]
    fn every_configured_key_verifies_and_the_first_signs() {
        let old = Signer::new(SigningKey::new("old").unwrap()).clock(Fixed(at(0)));
        let new = Signer::new(SigningKey::new("new").unwrap()).clock(Fixed(at(0)));
        let path = UploadPath::new("a.png").unwrap();
        let both = verifier(&["new", "old"]);
        let only_new = verifier(&["new"]);
        for url in [
            old.sign(&path, SignedMethod::Put, at(100)),
            new.sign(&path, SignedMethod::Put, at(100)),
        ] {
            let (p, q) = split(url.as_str());
            assert!(both.verify(p, Some(q), SignedMethod::Put, at(0)).is_ok());
        }
        let url = old.sign(&path, SignedMethod::Put, at(100));
        let (p, q) = split(url.as_str());
        assert_eq!(
            only_new
                .verify(p, Some(q), SignedMethod::Put, at(0))
                .unwrap_err(),
            Error::SignatureInvalid
        );
    }

    #[test]
    fn a_changed_byte_never_verifies() {
        let signer = Signer::new(SigningKey::new("secret").unwrap()).clock(Fixed(at(0)));
        let url = signer.sign(
            &UploadPath::new("dir/a.png").unwrap(),
            SignedMethod::Put,
            at(100),
        );
        let target = url.path_and_query().to_owned();
        let verifier = verifier(&["secret"]);
        let signature_start = target.find("signature=").unwrap() + "signature=".len();
        for i in 1..target.len() {
            for replacement in [b'b', b'0', b'-'] {
                let mut bytes = target.clone().into_bytes();
                if bytes[i] == replacement {
                    continue;
                }
                bytes[i] = replacement;
                // The last character of a base64 signature carries 2 spare bits.
                if i == target.len() - 1 && i >= signature_start {
                    continue;
                }
                let Ok(changed) = String::from_utf8(bytes) else {
                    continue;
                };
                let (p, q) = changed.split_once('?').unwrap_or((&changed, ""));
                assert!(
                    verifier
                        .verify(p, Some(q), SignedMethod::Put, at(0))
                        .is_err(),
                    "{changed} verified"
                );
            }
        }
    }
}

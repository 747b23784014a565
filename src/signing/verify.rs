//! Verification: a request target's signature, expiry and method.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

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
    /// A tus part URL's nonce and its parent's signed query (this URL's
    /// signed query without its last parameter, `&part=…`).
    pub(crate) part: Option<Part<'a>>,
    /// Which of the keys verified it.
    pub(crate) key: usize,
}

/// What makes a signed URL a tus part URL.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Part<'a> {
    pub(crate) nonce: &'a str,
    pub(crate) parent_query: &'a str,
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
        // A named key is the only one tried; an unknown name verifies nothing.
        let key = self
            .keys
            .iter()
            .position(|key| {
                query.kid.is_none_or(|kid| key.id() == Some(kid))
                    && key.verifies(&parts, &signature)
            })
            .ok_or(Error::SignatureInvalid)?;
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
            part: query.part.map(|nonce| Part {
                nonce,
                parent_query: query
                    .signed
                    .strip_suffix(nonce)
                    .and_then(|rest| rest.strip_suffix("&part="))
                    .unwrap_or(query.signed),
            }),
            key,
        })
    }

    /// The URL of a new tus part of the upload at `raw_path?signed_query`
    /// (a verified `put` URL that is not a part itself), under the public
    /// base: the same query with `&part={nonce}` appended, signed by the key
    /// that verified the parent (so its `kid`, if any, still names it).
    pub(crate) fn part_url(&self, public_base: &str, parent: &Verified<'_>, nonce: &str) -> String {
        let [path, query] = parent.signed;
        let signed = format!("{path}?{query}&part={nonce}");
        // `parent.key` indexes `self.keys`: this verifier verified it.
        let key = &self.keys[parent.key];
        let signature = URL_SAFE_NO_PAD.encode(key.signature(&[signed.as_bytes()]));
        format!("{public_base}/{signed}&signature={signature}")
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

/// The characters of a 32-byte MAC in unpadded base64.
const SIGNATURE_CHARS: usize = 43;

/// The base64 of signatures once [`decode_signature`] has normalised them:
/// the URL-safe alphabet, no padding, and trailing bits that must be zero.
///
/// The last of the 43 characters carries the MAC's last 4 bits and 2 spare
/// bits. With the spare bits allowed, four characters would spell the same
/// MAC; the contract would permit that (another spelling of the same bytes),
/// but no encoder writes it (Node.js, this signer and every base64 library
/// write zero bits), so it is refused like the `base64` crate's default: each
/// MAC has exactly one spelling per form of the contract, and a changed
/// character either decodes to other bytes or does not decode at all. Either
/// way it never verifies.
const SIGNATURE_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes a signature leniently, as the wire contract asks: base64url or the
/// standard alphabet (`+`, `/`, even mixed), with or without one `=` of
/// padding, each character percent-encoded or not (`%2B`, `%2F`, `%3D`).
/// Returns the 32 bytes, or `None` for anything that does not decode to
/// exactly 32 bytes.
fn decode_signature(raw: &str) -> Option<[u8; 32]> {
    let raw = raw.as_bytes();
    if raw.len() > MAX_SIGNATURE_LEN {
        return None;
    }
    // The signer's own spelling (maybe padded) decodes as it stands. Any other
    // has a `%`, `+` or `/`, which base64url refuses, and is normalised first:
    // a text that decodes as it stands has none, so normalising it would
    // change nothing.
    if let Some(bytes) = decode_url_safe(raw) {
        return Some(bytes);
    }
    let mut buffer = [0u8; SIGNATURE_CHARS + 1];
    decode_url_safe(normalise(raw, &mut buffer)?)
}

/// The 32 bytes of 43 base64url characters and at most one `=`.
fn decode_url_safe(text: &[u8]) -> Option<[u8; 32]> {
    let text = text.strip_suffix(b"=").unwrap_or(text);
    if text.len() != SIGNATURE_CHARS {
        return None;
    }
    // `decode_slice` wants room for the 33 bytes that 44 characters could hold.
    let mut bytes = [0u8; 33];
    match SIGNATURE_BASE64.decode_slice(text, &mut bytes) {
        Ok(32) => bytes[..32].try_into().ok(),
        _ => None,
    }
}

/// Percent-decodes `raw` into `buffer`, mapping the standard alphabet's `+`
/// and `/` onto base64url's `-` and `_`. `None` for a malformed escape or more
/// characters than a padded signature has.
fn normalise<'b>(raw: &[u8], buffer: &'b mut [u8; SIGNATURE_CHARS + 1]) -> Option<&'b [u8]> {
    let mut len = 0;
    let mut rest = raw;
    while let Some((&first, tail)) = rest.split_first() {
        let (byte, tail) = if first == b'%' {
            let (escape, tail) = tail.split_at_checked(2)?;
            let mut byte = [0u8; 1];
            hex::decode_to_slice(escape, &mut byte).ok()?;
            (byte[0], tail)
        } else {
            (first, tail)
        };
        *buffer.get_mut(len)? = match byte {
            b'+' => b'-',
            b'/' => b'_',
            other => other,
        };
        len += 1;
        rest = tail;
    }
    Some(&buffer[..len])
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};

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
        // Every byte value in every position, encoded in each alphabet, padded
        // or not, and decoded back.
        for position in 0..32 {
            for value in 0..=255u8 {
                let mut bytes = [0x5au8; 32];
                bytes[position] = value;
                for engine in [URL_SAFE_NO_PAD, URL_SAFE, STANDARD_NO_PAD, STANDARD] {
                    let text = engine.encode(bytes);
                    assert_eq!(decode_signature(&text), Some(bytes), "{text}");
                }
            }
        }
        // Any character in any position, valid or not, and every trailing
        // sextet: what one of the two alphabets decodes strictly, and nothing
        // else. (The base spells no character that differs between them.)
        let base = URL_SAFE_NO_PAD.encode([0x33u8; 32]).into_bytes();
        assert!(!base.iter().any(|c| b"-_+/".contains(c)));
        for position in 0..43 {
            for c in 0..=255u8 {
                let mut text: [u8; 43] = base.clone().try_into().expect("43 characters");
                text[position] = c;
                let strictly = |engine: GeneralPurpose| {
                    let mut expected = [0u8; 64];
                    match engine.decode_slice(text, &mut expected) {
                        Ok(32) => Some(<[u8; 32]>::try_from(&expected[..32]).expect("32 bytes")),
                        _ => None,
                    }
                };
                let reference = strictly(URL_SAFE_NO_PAD).or(strictly(STANDARD_NO_PAD));
                let Ok(text) = std::str::from_utf8(&text) else {
                    continue; // a query is a str: such bytes never reach the decoder
                };
                assert_eq!(decode_signature(text), reference, "{position} {c}");
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
    fn part_urls_extend_their_parent_and_verify_alone() {
        const NONCE: &str = "0123456789abcdef0123456789abcdef";
        let rotated = SigningKey::new("old").unwrap().with_id("k1").unwrap();
        let verifier = Verifier {
            keys: vec![SigningKey::new("new").unwrap(), rotated.clone()],
            max_lifetime: Duration::from_secs(7 * 24 * 3600),
        };
        let now = at(1735689000);
        // A parent signed by the second key and naming it.
        let parent_signed = "a/b.png?expiry=1735689600&method=put&kid=k1";
        let signature = URL_SAFE_NO_PAD.encode(rotated.signature(&[parent_signed.as_bytes()]));
        let parent_query = format!("expiry=1735689600&method=put&kid=k1&signature={signature}");
        let parent = verifier
            .verify("/a/b.png", Some(&parent_query), SignedMethod::Put, now)
            .unwrap();
        assert!(parent.part.is_none());
        assert_eq!(parent.key, 1);

        let url = verifier.part_url("https://h.example", &parent, NONCE);
        assert!(url.starts_with(&format!(
            "https://h.example/{parent_signed}&part={NONCE}&signature="
        )));
        let (path, query) = split(&url);
        let part = verifier
            .verify(path, Some(query), SignedMethod::Put, now)
            .unwrap();
        let found = part.part.expect("a part URL");
        assert_eq!(found.nonce, NONCE);
        assert_eq!(found.parent_query, parent.signed[1]);
        assert_eq!(part.signed[0], parent.signed[0]);
        // The part is a `put` URL only, and its nonce is covered.
        assert_eq!(
            verifier
                .verify(path, Some(query), SignedMethod::Get, now)
                .unwrap_err(),
            Error::MethodNotSigned
        );
        let changed = query.replacen("&part=0", "&part=1", 1);
        assert_eq!(
            verifier
                .verify(path, Some(&changed), SignedMethod::Put, now)
                .unwrap_err(),
            Error::SignatureInvalid
        );
    }

    #[test]
    fn a_part_nonce_is_hex_and_last_before_the_signature() {
        let verifier = verifier(&["secret"]);
        let nonce = "0123456789abcdef0123456789abcdef";
        for query in [
            format!("expiry=1&method=put&part={nonce}&kid=a&signature=abc"),
            format!("part={nonce}&expiry=1&method=put&signature=abc"),
            format!("expiry=1&method=get&part={nonce}&signature=abc"),
            format!("expiry=1&method=put&part={nonce}&part={nonce}&signature=abc"),
            "expiry=1&method=put&part=0123&signature=abc".to_owned(),
            format!(
                "expiry=1&method=put&part={}&signature=abc",
                nonce.to_uppercase()
            ),
            format!("expiry=1&method=put&part={nonce}0&signature=abc"),
            "expiry=1&method=put&part=&signature=abc".to_owned(),
        ] {
            assert_eq!(
                verifier
                    .verify("/a.png", Some(&query), SignedMethod::Put, at(0))
                    .unwrap_err(),
                Error::QueryInvalid,
                "{query}"
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
        let verifies = |target: &str| {
            let (p, q) = target.split_once('?').unwrap_or((target, ""));
            verifier
                .verify(p, Some(q), SignedMethod::Put, at(0))
                .is_ok()
        };
        assert!(verifies(&target));
        // Every byte, the signature's last character included: that character
        // carries 2 spare bits, and a spelling with them set is refused
        // (see `SIGNATURE_BASE64`), so no change verifies.
        for i in 1..target.len() {
            for replacement in [b'b', b'0', b'-'] {
                let mut bytes = target.clone().into_bytes();
                if bytes[i] == replacement {
                    continue;
                }
                bytes[i] = replacement;
                let Ok(changed) = String::from_utf8(bytes) else {
                    continue;
                };
                assert!(!verifies(&changed), "{changed} verified");
            }
        }
        // The last character, exhaustively: only the signer's own verifies,
        // though three others decode to the same bytes when spare bits are
        // allowed, and the rest to other bytes.
        let last = target.len() - 1;
        let original = URL_SAFE_NO_PAD
            .decode(&target[target.find("signature=").unwrap() + "signature=".len()..])
            .unwrap();
        let lenient = GeneralPurpose::new(
            &alphabet::URL_SAFE,
            GeneralPurposeConfig::new()
                .with_decode_padding_mode(DecodePaddingMode::RequireNone)
                .with_decode_allow_trailing_bits(true),
        );
        let mut same_bytes = 0;
        for c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/" {
            let mut changed = target.clone().into_bytes();
            if changed[last] == *c {
                continue;
            }
            changed[last] = *c;
            let changed = String::from_utf8(changed).unwrap();
            let signature = &changed[changed.find("signature=").unwrap() + "signature=".len()..];
            let normalised = signature.replace('+', "-").replace('/', "_");
            if lenient.decode(&normalised).unwrap() == original {
                same_bytes += 1;
            }
            assert!(!verifies(&changed), "{changed} verified");
        }
        // The four sextets that differ only in the 2 spare bits share the
        // MAC's bytes: the signer's own and three aliases, all refused.
        assert_eq!(same_bytes, 3);
    }

    /// A signature in each spelling of the wire contract: base64url as minted,
    /// the standard alphabet, each percent-encoded (either case), and padded
    /// with `=` or `%3D`.
    fn spellings(canonical: &str) -> Vec<String> {
        assert!(
            canonical.contains('-') && canonical.contains('_'),
            "{canonical}"
        );
        let standard = canonical.replace('-', "+").replace('_', "/");
        let mut forms = vec![
            canonical.to_owned(),
            standard.clone(),
            canonical.replace('-', "%2D").replace('_', "%5F"),
            standard.replace('+', "%2B").replace('/', "%2F"),
            standard.replace('+', "%2b").replace('/', "%2f"),
            standard.replace('+', "%2B"),
            standard.replace('/', "%2F"),
            canonical.replacen('-', "+", 1),
        ];
        for form in forms.clone() {
            forms.push(format!("{form}="));
            forms.push(format!("{form}%3D"));
            forms.push(format!("{form}%3d"));
        }
        forms
    }

    #[test]
    fn every_spelling_verifies_and_no_spelling_of_a_forgery_does() {
        // A Node.js vector whose signature has both `-` and `_`.
        let &(key, encoded, expiry, method, signature) = NODE_VECTORS
            .iter()
            .find(|v| v.4.contains('-') && v.4.contains('_'))
            .unwrap();
        let verifier = verifier(&[key]);
        let path = format!("/{encoded}");
        let check = |signature: &str| {
            let query = format!("expiry={expiry}&method={method}&signature={signature}");
            verifier
                .verify(&path, Some(&query), method, at(expiry))
                .map(|_| ())
        };
        let forms = spellings(signature);
        assert!(forms.iter().any(|f| f.contains('/') && f.contains('+')));
        assert!(forms.iter().any(|f| f.contains("%2F") && f.contains("%2B")));
        for form in &forms {
            assert!(check(form).is_ok(), "{form}: {:?}", check(form));
        }
        // The same spellings of other bytes: one bit flipped in the first,
        // a middle and the last byte (whose bits end the last character).
        let bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        for (byte, bit) in [(0, 0), (15, 7), (31, 0), (31, 4)] {
            let mut forged = bytes.clone();
            forged[byte] ^= 1 << bit;
            // These bits lie away from the `-` and `_` (characters 12 and 23),
            // so the forgery has every spelling too.
            let canonical = URL_SAFE_NO_PAD.encode(&forged);
            for form in spellings(&canonical) {
                assert_eq!(check(&form), Err(Error::SignatureInvalid), "{form}");
            }
        }
    }
}

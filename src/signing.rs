//! Signed URLs: keys, the signer, and request verification.
//!
//! A signed URL is `{public_base}/{path}?expiry={E}&method={M}&signature={S}`.
//! The *signed string* is the request path without its leading `/`, a `?`, and
//! every query byte before `&signature=`; `S` is HMAC-SHA256 of it under the key,
//! base64url without padding. This is byte for byte what this Node.js snippet
//! produces:
//!
//! ```js
//! const s = `${path}?expiry=${expiry}&method=put`;
//! const sig = crypto.createHmac('sha256', KEY).update(s).digest('base64url');
//! const url = `https://${DOMAIN}/${s}&signature=${sig}`;
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::clock::unix_seconds;
use crate::mac::HmacKey;
use crate::path::find_byte;
use crate::policy::{Policy, TypeRule};
use crate::{Clock, ConfigError, Error, SystemClock, UploadPath, UrlOptions};

/// A secret that signs and verifies URLs.
///
/// The HMAC is keyed once when the key is made; each signature or verification
/// starts from that keyed state, so no per-request key schedule is paid. `Debug`
/// prints `<redacted>`, never the secret.
#[derive(Clone)]
pub struct SigningKey {
    mac: HmacKey,
    id: Option<Arc<str>>,
}

impl SigningKey {
    /// A key from the secret's bytes (for the Node.js snippet's `KEY` string,
    /// its UTF-8 bytes).
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptyKey`] if the secret is empty.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(ConfigError::EmptyKey);
        }
        Ok(SigningKey {
            mac: HmacKey::new(secret),
            id: None,
        })
    }

    /// Gives the key an id, the `kid` a URL may name to select it: ASCII
    /// letters, digits, `-`, `_`, `.` and `~`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::KeyId`] if the id is empty, longer than 64 bytes, or has
    /// another character.
    pub fn with_id(mut self, id: &str) -> Result<Self, ConfigError> {
        if !is_key_id(id) {
            return Err(ConfigError::KeyId);
        }
        self.id = Some(Arc::from(id));
        Ok(self)
    }

    /// The key's id, if it has one.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    fn signature(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.mac.mac(parts)
    }

    fn verifies(&self, parts: &[&[u8]], signature: &[u8]) -> bool {
        // Compared in constant time.
        self.mac.verifies(parts, signature)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn is_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
}

/// What a signed URL grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignedMethod {
    /// Uploads (`PUT`) and status queries.
    Put,
    /// Downloads (`GET` and `HEAD`).
    Get,
}

impl SignedMethod {
    /// `"put"` or `"get"`, as in the query.
    pub fn as_str(self) -> &'static str {
        match self {
            SignedMethod::Put => "put",
            SignedMethod::Get => "get",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "put" => Some(SignedMethod::Put),
            "get" => Some(SignedMethod::Get),
            _ => None,
        }
    }
}

impl fmt::Display for SignedMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a URL stops working: at an instant, or a duration from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// At this instant (rounded down to whole seconds).
    At(SystemTime),
    /// This long after the signer's clock's now.
    In(Duration),
}

impl From<Duration> for Expiry {
    fn from(duration: Duration) -> Self {
        Expiry::In(duration)
    }
}

impl From<SystemTime> for Expiry {
    fn from(time: SystemTime) -> Self {
        Expiry::At(time)
    }
}

/// A signed URL, as minted by [`Signer::sign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    url: String,
    path_start: usize,
    expiry: u64,
    method: SignedMethod,
}

impl SignedUrl {
    /// The whole URL: public base, path, query.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The path and query, starting with `/`, for a client that knows the host.
    pub fn path_and_query(&self) -> &str {
        &self.url[self.path_start..]
    }

    /// The expiry, in unix seconds.
    pub fn expiry(&self) -> u64 {
        self.expiry
    }

    /// What the URL grants.
    pub fn method(&self) -> SignedMethod {
        self.method
    }
}

impl fmt::Display for SignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl From<SignedUrl> for String {
    fn from(url: SignedUrl) -> Self {
        url.url
    }
}

/// Mints signed URLs with the first of its keys.
///
/// A backend that hands out upload URLs needs only a `Signer`; the layer that
/// verifies them may run in another process, configured with the same key.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_signed_upload::{SignedMethod, Signer, SigningKey, UploadPath};
///
/// let signer = Signer::new(SigningKey::new("secret")?).public_base("https://files.example.com")?;
/// let path = UploadPath::new("avatars/me.png").unwrap();
/// let url = signer.sign(&path, SignedMethod::Put, Duration::from_secs(3600));
/// assert!(url.as_str().starts_with("https://files.example.com/avatars/me.png?expiry="));
/// assert!(url.as_str().contains("&method=put&signature="));
/// # Ok::<(), tower_signed_upload::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    public_base: Arc<str>,
    clock: Arc<dyn Clock>,
}

impl Signer {
    /// A signer with `key`, the public base `http://localhost`, and the system clock.
    pub fn new(key: SigningKey) -> Self {
        Signer {
            key,
            public_base: Arc::from("http://localhost"),
            clock: Arc::new(SystemClock),
        }
    }

    /// The scheme and authority URLs start with, such as `https://files.example.com`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::PublicBase`] unless it is an `http` or `https` origin
    /// (a trailing `/` is dropped; a path, query or fragment is refused).
    pub fn public_base(mut self, base: &str) -> Result<Self, ConfigError> {
        self.public_base = Arc::from(parse_public_base(base)?);
        Ok(self)
    }

    /// The clock that [`Expiry::In`] counts from.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The public base URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.public_base
    }

    /// Signs a URL for `path`, granting `method` until `expiry`.
    pub fn sign(
        &self,
        path: &UploadPath,
        method: SignedMethod,
        expiry: impl Into<Expiry>,
    ) -> SignedUrl {
        self.sign_with(path, method, expiry, &UrlOptions::new())
            .expect("a URL without policy or key id always signs")
    }

    /// Signs a URL that also carries `options`: the signed policy (`max_size`,
    /// `type`) and the key id (`kid`). The parameters stand before the
    /// signature, so it covers them.
    ///
    /// # Errors
    ///
    /// [`ConfigError::PolicyOnGet`] for a policy on a `get` URL, and
    /// [`ConfigError::KeyId`] when asked for a key id the signing key lacks.
    pub fn sign_with(
        &self,
        path: &UploadPath,
        method: SignedMethod,
        expiry: impl Into<Expiry>,
        options: &UrlOptions,
    ) -> Result<SignedUrl, ConfigError> {
        let expiry = match expiry.into() {
            Expiry::At(time) => unix_seconds(time),
            Expiry::In(duration) => {
                unix_seconds(self.clock.now()).saturating_add(duration.as_secs())
            }
        };
        let mut signed = format!(
            "{}?expiry={expiry}&method={}",
            path.encoded(),
            method.as_str()
        );
        if method == SignedMethod::Get && (options.max_size.is_some() || options.types.is_some()) {
            return Err(ConfigError::PolicyOnGet);
        }
        if let Some(max_size) = options.max_size {
            signed.push_str(&format!("&max_size={max_size}"));
        }
        if let Some(types) = &options.types {
            signed.push_str(&format!("&type={types}"));
        }
        if options.key_id {
            let id = self.key.id().ok_or(ConfigError::KeyId)?;
            signed.push_str(&format!("&kid={id}"));
        }
        let signature = URL_SAFE_NO_PAD.encode(self.key.signature(&[signed.as_bytes()]));
        let url = format!("{}/{signed}&signature={signature}", self.public_base);
        Ok(SignedUrl {
            path_start: self.public_base.len(),
            url,
            expiry,
            method,
        })
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("key", &self.key)
            .field("public_base", &self.public_base)
            .field("clock", &self.clock)
            .finish()
    }
}

/// Checks a public base URL and returns it without a trailing `/`.
pub(crate) fn parse_public_base(base: &str) -> Result<String, ConfigError> {
    let rest = base
        .strip_prefix("https://")
        .or_else(|| base.strip_prefix("http://"))
        .ok_or(ConfigError::PublicBase(
            "it must start with http:// or https://",
        ))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err(ConfigError::PublicBase("it has no host"));
    }
    if authority.contains(['/', '?', '#', '@', ' ']) || authority.chars().any(|c| c.is_control()) {
        return Err(ConfigError::PublicBase(
            "it must be an origin, with no path, query or user",
        ));
    }
    if authority.parse::<http::uri::Authority>().is_err() {
        return Err(ConfigError::PublicBase("its host is not valid"));
    }
    Ok(base[..base.len() - (rest.len() - authority.len())].to_owned())
}

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

#[derive(Debug, PartialEq, Eq)]
struct SignedQuery<'a> {
    /// Every byte before `&signature=`.
    signed: &'a str,
    expiry: u64,
    method: SignedMethod,
    policy: Policy,
    kid: Option<&'a str>,
    signature: &'a str,
}

/// Splits a query into its signed part and its parameters, checking its shape.
fn parse_query(query: &str) -> Result<SignedQuery<'_>, Error> {
    let mut expiry = None;
    let mut method = None;
    let mut max_size = None;
    let mut types = None;
    let mut kid = None;
    let mut signature = None;
    // Eight bytes at a time rather than `split('&')` and `split_once('=')`:
    // this runs on every request.
    let bytes = query.as_bytes();
    let mut start = 0;
    while !query.is_empty() && start <= bytes.len() {
        let end = find_byte(&bytes[start..], b'&').map_or(bytes.len(), |at| start + at);
        let param = &bytes[start..end];
        if signature.is_some() {
            // Nothing may follow the signature.
            return Err(Error::QueryInvalid);
        }
        let equals = find_byte(param, b'=').ok_or(Error::QueryInvalid)?;
        // Both sides of an ASCII byte are whole UTF-8 sequences of `query`.
        let name = &query[start..start + equals];
        let value = &query[start + equals + 1..end];
        let param_start = start;
        start = end + 1;
        match name {
            "expiry" if expiry.is_none() => expiry = Some(value),
            "method" if method.is_none() => method = Some(value),
            "max_size" if max_size.is_none() => max_size = Some(value),
            "type" if types.is_none() => types = Some(value),
            "kid" if kid.is_none() => kid = Some(value),
            "signature" => signature = Some((param_start.saturating_sub(1), value)),
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
    if method == SignedMethod::Get && (max_size.is_some() || types.is_some()) {
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
    Ok(SignedQuery {
        signed: &query[..signed_end],
        expiry,
        method,
        policy: Policy { max_size, types },
        kid,
        signature,
    })
}

/// A query value of at most 20 ASCII digits as a number; `None` for anything
/// else (empty, a sign, other characters, more digits, overflow).
fn decimal(digits: &str) -> Option<u64> {
    if digits.len() > 20 {
        return None;
    }
    crate::content_range::number(digits.as_bytes()).ok()
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
    use std::time::UNIX_EPOCH;

    use super::*;

    /// Vectors computed once with the Node.js snippet of the wire contract:
    /// `crypto.createHmac('sha256', key).update(`${path}?expiry=${expiry}&method=${method}`).digest('base64url')`.
    /// (key, encoded path, expiry, method, signature)
    const NODE_VECTORS: &[(&str, &str, u64, SignedMethod, &str)] = &[
        (
            "secret",
            "image.png",
            1735689600,
            SignedMethod::Put,
            "SCJ6n4i8eEsGyqRVRW01qiiy2NjqfT7UtGmWBfy5FNQ",
        ),
        (
            "secret",
            "nested/folders/image.png",
            1735689600,
            SignedMethod::Put,
            "n6l90i9-B32PshV1josBY-yI9x3bbvQ17tanPHMaZdA",
        ),
        (
            "secret",
            "nested/folders/image.png",
            1735689600,
            SignedMethod::Get,
            "6TzS3O7ytkq-FpRcyXHwhZgnLsRIQZ-Oc0-92xBENHc",
        ),
        (
            "another-key-2025",
            "a/b/c/d/e/report.pdf",
            4102444800,
            SignedMethod::Put,
            "DbauLicBKPCM9Q_ig2154aNEPgsSHkQw1cPkXpWQQGY",
        ),
        (
            "secret",
            "my%20photos/%C3%A9t%C3%A9%202024.png",
            1735689600,
            SignedMethod::Put,
            "P39KPjqFYrutNRtdlzPdZE_q3LoLgLumm3RNkLVb_Uo",
        ),
        (
            "k\u{e9}y with spaces & symbols!",
            "videos/clip%231%3F.mp4",
            1767225600,
            SignedMethod::Put,
            "r1LaprCPyWcS-4hjW5H4pz0_5kUdQ6BwF7AyDHM6Klw",
        ),
        (
            "secret",
            "%E2%9C%93/%E6%97%A5%E6%9C%AC%E8%AA%9E.txt",
            1735689600,
            SignedMethod::Get,
            "Wt8F_jU8eBPpwdS7l7Wo0N8Jhx9Uds0eyFRLtYNyL0w",
        ),
    ];

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

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

    #[test]
    fn find_byte_finds_the_first() {
        let mut text: Vec<u8> = b"expiry=1&method=put&&signature=abc=&".to_vec();
        text.extend((0..=255u8).rev());
        text.extend(0..=255u8);
        for start in 0..9 {
            for end in start..text.len() {
                let hay = &text[start..end];
                for needle in [b'&', b'=', b'x', 0, 0x7f, 0x80, 0xff] {
                    let want = hay.iter().position(|&b| b == needle);
                    assert_eq!(find_byte(hay, needle), want, "{start}..{end} {needle}");
                }
            }
        }
    }

    #[test]
    fn signer_matches_node_vectors() {
        for &(key, encoded, expiry, method, signature) in NODE_VECTORS {
            let decoded = percent_encoding::percent_decode_str(encoded)
                .decode_utf8()
                .unwrap();
            let path = UploadPath::new(&decoded).unwrap();
            let signer = Signer::new(SigningKey::new(key).unwrap())
                .public_base("https://files.example.com")
                .unwrap();
            let url = signer.sign(&path, method, at(expiry));
            let expected = format!(
                "https://files.example.com/{encoded}?expiry={expiry}&method={method}&signature={signature}"
            );
            assert_eq!(url.as_str(), expected);
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

    #[test]
    fn public_base_must_be_an_origin() {
        let signer = || Signer::new(SigningKey::new("k").unwrap());
        assert_eq!(
            signer().public_base("https://x.example/").unwrap().base(),
            "https://x.example"
        );
        assert_eq!(
            signer()
                .public_base("http://127.0.0.1:3000")
                .unwrap()
                .base(),
            "http://127.0.0.1:3000"
        );
        for bad in [
            "",
            "x.example",
            "ftp://x",
            "https://",
            "https://x/y",
            "https://x?y",
            "https://u@x",
            "https://x y",
        ] {
            assert!(signer().public_base(bad).is_err(), "{bad}");
        }
        assert_eq!(SigningKey::new("").unwrap_err(), ConfigError::EmptyKey);
    }

    #[derive(Debug)]
    struct Fixed(SystemTime);

    impl Clock for Fixed {
        fn now(&self) -> SystemTime {
            self.0
        }
    }
}

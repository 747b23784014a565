//! Minting: [`Signer`], and the [`SignedUrl`]s it makes.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::{SigningKey, UrlOptions};
use crate::clock::unix_seconds;
use crate::{Clock, ConfigError, SystemClock, UploadPath};

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

    pub(super) fn parse(value: &str) -> Option<Self> {
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::{at, NODE_VECTORS};
    use super::*;

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
}

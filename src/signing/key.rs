//! [`SigningKey`]: a secret, keyed into HMAC-SHA256 once.

use std::fmt;
use std::sync::Arc;

use crate::mac::HmacKey;
use crate::ConfigError;

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

    pub(super) fn signature(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.mac.mac(parts)
    }

    pub(super) fn verifies(&self, parts: &[&[u8]], signature: &[u8]) -> bool {
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

pub(super) fn is_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
}

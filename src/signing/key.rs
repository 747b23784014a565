//! [`SigningKey`]: a secret, keyed into HMAC-SHA256 once.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ConfigError;

/// A secret that signs and verifies URLs.
///
/// HMAC-SHA256 from RustCrypto's `hmac`, keyed once when the key is made:
/// each signature or verification starts from a clone of that keyed state, so
/// no per-request key schedule is paid. `Debug` prints `<redacted>`, never the
/// secret.
#[derive(Clone)]
pub struct SigningKey {
    mac: Hmac<Sha256>,
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
            mac: Hmac::new_from_slice(secret).expect("HMAC takes keys of any length"),
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

    /// The keyed state, fed the concatenation of `parts`.
    fn mac_of(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac
    }

    /// The MAC of the concatenation of `parts`.
    pub(super) fn signature(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.mac_of(parts).finalize().into_bytes().into()
    }

    /// Whether `signature` is the MAC of the concatenation of `parts`: all 32
    /// bytes, compared in constant time.
    pub(super) fn verifies(&self, parts: &[&[u8]], signature: &[u8]) -> bool {
        self.mac_of(parts).verify_slice(signature).is_ok()
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A freshly keyed HMAC, the reference for a key keyed once and reused.
    fn reference(key: &[u8], message: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    #[test]
    fn rfc_4231_vectors() {
        let cases: [(&[u8], &[u8], &str); 3] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
        ];
        for (key, message, expected) in cases {
            let key = SigningKey::new(key).unwrap();
            assert_eq!(hex::encode(key.signature(&[message])), expected);
        }
    }

    #[test]
    fn a_key_used_many_times_signs_like_a_fresh_one() {
        let bytes: Vec<u8> = (0..300u32).map(|i| (i * 31 % 256) as u8).collect();
        for key_len in [1, 31, 32, 63, 64, 65, 128, 200] {
            let key = &bytes[..key_len];
            let signing = SigningKey::new(key).unwrap();
            for len in 0..=200 {
                let message = &bytes[100..100 + len];
                assert_eq!(
                    signing.signature(&[message]),
                    reference(key, message),
                    "{key_len} {len}"
                );
            }
        }
    }

    #[test]
    fn verifies_only_the_exact_mac() {
        let key = SigningKey::new(b"key").unwrap();
        let good = key.signature(&[b"path?expiry=1&method=put"]);
        assert!(key.verifies(&[b"path?expiry=1", b"&method=put"], &good));
        for i in 0..32 {
            let mut bad = good;
            bad[i] ^= 1;
            assert!(!key.verifies(&[b"path?expiry=1&method=put"], &bad));
        }
        assert!(!key.verifies(&[b"path?expiry=1&method=put"], &good[..31]));
        assert!(!key.verifies(&[b"path?expiry=1&method=put"], &[]));
        let mut longer = good.to_vec();
        longer.push(0);
        assert!(!key.verifies(&[b"path?expiry=1&method=put"], &longer));
    }

    proptest! {
        #[test]
        fn parts_sign_as_their_concatenation(
            key in proptest::collection::vec(any::<u8>(), 1..150),
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..5),
        ) {
            let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let whole = parts.concat();
            let signing = SigningKey::new(&key).unwrap();
            prop_assert_eq!(signing.signature(&slices), reference(&key, &whole));
            prop_assert!(signing.verifies(&slices, &reference(&key, &whole)));
        }
    }
}

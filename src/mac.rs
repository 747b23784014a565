//! HMAC-SHA256 (RFC 2104) for short messages, on SHA-256's compression function.
//!
//! Every request's URL is verified, so this is the hottest code of the crate.
//! The key's inner and outer pads are absorbed once, when the key is made; a
//! MAC then runs only the compressions its message needs (two for a typical
//! URL: one for the message, one for the outer hash), on state copied from the
//! key, with no buffering or finalisation machinery in between. The result is
//! checked against the `hmac` crate in the tests below, for keys and messages
//! of every length around the block boundaries and for random ones.

use sha2::digest::generic_array::GenericArray;
use sha2::digest::Digest;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// SHA-256's block size in bytes.
const BLOCK: usize = 64;

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

type Block = GenericArray<u8, sha2::digest::consts::U64>;

/// A key's HMAC-SHA256 states after its inner and outer pads.
#[derive(Clone)]
pub(crate) struct HmacKey {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl HmacKey {
    /// Keys of any length: longer than a block, the key is its SHA-256.
    pub(crate) fn new(secret: &[u8]) -> Self {
        let mut key = [0u8; BLOCK];
        if secret.len() > BLOCK {
            key[..32].copy_from_slice(&Sha256::digest(secret));
        } else {
            key[..secret.len()].copy_from_slice(secret);
        }
        let absorb = |pad: u8| {
            let mut block = Block::default();
            for (byte, key) in block.iter_mut().zip(key) {
                *byte = key ^ pad;
            }
            let mut state = IV;
            sha2::compress256(&mut state, std::slice::from_ref(&block));
            state
        };
        HmacKey {
            inner: absorb(0x36),
            outer: absorb(0x5c),
        }
    }

    /// The MAC of the concatenation of `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut state = self.inner;
        let mut block = Block::default();
        let mut fill = 0;
        let mut len = BLOCK as u64;
        for part in parts {
            let mut rest = *part;
            while !rest.is_empty() {
                let take = (BLOCK - fill).min(rest.len());
                block[fill..fill + take].copy_from_slice(&rest[..take]);
                fill += take;
                len += take as u64;
                rest = &rest[take..];
                if fill == BLOCK {
                    sha2::compress256(&mut state, std::slice::from_ref(&block));
                    fill = 0;
                }
            }
        }
        let inner = finish(state, block, fill, len);
        let mut block = Block::default();
        block[..32].copy_from_slice(&inner);
        finish(self.outer, block, 32, (BLOCK + 32) as u64)
    }

    /// Whether `expected` is the MAC of `parts`, compared in constant time.
    pub(crate) fn verifies(&self, parts: &[&[u8]], expected: &[u8]) -> bool {
        let Ok(expected) = <&[u8; 32]>::try_from(expected) else {
            return false;
        };
        words(&self.mac(parts)).ct_eq(&words(expected)).into()
    }
}

/// Pads the last `fill` bytes of `block` for a message of `len` bytes in all and
/// returns the digest.
fn finish(mut state: [u32; 8], mut block: Block, fill: usize, len: u64) -> [u8; 32] {
    block[fill] = 0x80;
    block[fill + 1..].fill(0);
    if fill + 1 > BLOCK - 8 {
        sha2::compress256(&mut state, std::slice::from_ref(&block));
        block = Block::default();
    }
    block[BLOCK - 8..].copy_from_slice(&(len * 8).to_be_bytes());
    sha2::compress256(&mut state, std::slice::from_ref(&block));
    let mut digest = [0u8; 32];
    for (bytes, word) in digest.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

/// A MAC as four words, so a constant-time comparison takes four steps, not 32.
fn words(mac: &[u8; 32]) -> [u64; 4] {
    let mut words = [0u64; 4];
    for (word, bytes) in words.iter_mut().zip(mac.chunks_exact(8)) {
        *word = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
    }
    words
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac};
    use proptest::prelude::*;

    use super::*;

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
            assert_eq!(hex::encode(HmacKey::new(key).mac(&[message])), expected);
        }
    }

    #[test]
    fn every_length_around_the_block_boundaries_matches_the_hmac_crate() {
        let bytes: Vec<u8> = (0..300u32).map(|i| (i * 31 % 256) as u8).collect();
        for key_len in [1, 31, 32, 63, 64, 65, 128, 200] {
            let key = &bytes[..key_len];
            let mac = HmacKey::new(key);
            for len in 0..=200 {
                let message = &bytes[100..100 + len];
                assert_eq!(
                    mac.mac(&[message]),
                    reference(key, message),
                    "{key_len} {len}"
                );
            }
        }
    }

    #[test]
    fn verifies_only_the_exact_mac() {
        let key = HmacKey::new(b"key");
        let good = key.mac(&[b"path?expiry=1&method=put"]);
        assert!(key.verifies(&[b"path?expiry=1", b"&method=put"], &good));
        for i in 0..32 {
            let mut bad = good;
            bad[i] ^= 1;
            assert!(!key.verifies(&[b"path?expiry=1&method=put"], &bad));
        }
        assert!(!key.verifies(&[b"path?expiry=1&method=put"], &good[..31]));
        assert!(!key.verifies(&[b"path?expiry=1&method=put"], &[]));
    }

    proptest! {
        #[test]
        fn matches_the_hmac_crate(
            key in proptest::collection::vec(any::<u8>(), 1..150),
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 0..5),
        ) {
            let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let whole = parts.concat();
            prop_assert_eq!(HmacKey::new(&key).mac(&slices), reference(&key, &whole));
        }
    }
}

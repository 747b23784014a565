//! Random names and ids, unique rather than secret: simple uploads' File ids,
//! temporary file names, chunk object tags and claim owners.

use std::time::{SystemTime, UNIX_EPOCH};

/// `N` random bytes as `2 * N` lowercase hex digits.
///
/// Without an entropy source (a sandbox that forbids it), the clock, the
/// process id and a counter stand in: the names stay unique, which is all
/// their users need.
pub(crate) fn random_hex<const N: usize>() -> String {
    let mut random = [0u8; N];
    if getrandom::fill(&mut random).is_err() {
        fallback(&mut random);
    }
    hex::encode(random)
}

fn fallback(out: &mut [u8]) {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    for (block, piece) in (0u32..).zip(out.chunks_mut(32)) {
        let digest = Sha256::new()
            .chain_update(nanos.to_le_bytes())
            .chain_update(std::process::id().to_le_bytes())
            .chain_update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes())
            .chain_update(block.to_le_bytes())
            .finalize();
        piece.copy_from_slice(&digest[..piece.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex_of_the_asked_length_and_distinct() {
        let a = random_hex::<12>();
        assert_eq!(a.len(), 24);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(a, random_hex::<12>());
    }

    #[test]
    fn the_fallback_is_distinct_too() {
        let (mut a, mut b) = ([0u8; 40], [0u8; 40]);
        fallback(&mut a);
        fallback(&mut b);
        assert_ne!(a, b);
        assert_ne!(a[..32], a[8..]);
    }
}

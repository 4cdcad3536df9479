//! Proof-of-work: the host asks for a `pow_nonce` with `sha256(challenge + pow_nonce)`
//! starting with `difficulty` lowercase hex zeros.

use sha2::{Digest as _, Sha256};

/// Whether `nonce` solves `challenge` at `difficulty` (leading zero hex digits).
pub fn verify_pow(challenge: &str, nonce: &str, difficulty: u8) -> bool {
    let digest = Sha256::new()
        .chain_update(challenge.as_bytes())
        .chain_update(nonce.as_bytes())
        .finalize();
    let full = usize::from(difficulty / 2);
    if full > digest.len() || (full == digest.len() && !difficulty.is_multiple_of(2)) {
        return false;
    }
    digest[..full].iter().all(|b| *b == 0)
        && (difficulty.is_multiple_of(2) || digest[full] >> 4 == 0)
}

/// The first decimal nonce that solves `challenge` at `difficulty`. Each hex digit of
/// difficulty multiplies the expected work by 16; hosts ask for small values.
pub fn solve_pow(challenge: &str, difficulty: u8) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|n| verify_pow(challenge, n, difficulty))
        .expect("a nonce exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solutions_have_the_leading_zeros() {
        for difficulty in 0..=4u8 {
            let n = solve_pow("challenge-abc", difficulty);
            let hex = hex::encode(Sha256::digest(format!("challenge-abc{n}")));
            assert!(
                hex.starts_with(&"0".repeat(difficulty.into())),
                "{difficulty}: {hex}"
            );
            assert!(verify_pow("challenge-abc", &n, difficulty));
        }
        // Odd difficulty looks at the high nibble only.
        let n = solve_pow("x", 3);
        assert!(hex::encode(Sha256::digest(format!("x{n}"))).starts_with("000"));
        assert!(!verify_pow("x", "0", 64));
    }
}

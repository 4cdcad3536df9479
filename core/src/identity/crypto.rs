//! Wallet addresses, wallet signatures and proof-of-work.
//!
//! Everything here is pure and allocation-free on the verification path, so the
//! criterion benches in `benches/` can compare each verifier with the bare primitive it
//! wraps (one SHA-256, one `k256` public-key recovery, one `ed25519-dalek` verify).

use ed25519_dalek::VerifyingKey as SolanaKey;
use k256::ecdsa::{RecoveryId, Signature as EvmSignature, VerifyingKey as EvmKey};
use sha2::{Digest, Sha256};
use sha3::Keccak256;

/// The blockchain family a wallet belongs to, told from the address format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Chain {
    Evm,
    Solana,
}

impl Chain {
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::Evm => "evm",
            Chain::Solana => "solana",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "evm" => Some(Chain::Evm),
            "solana" => Some(Chain::Solana),
            _ => None,
        }
    }
}

/// Why an address, signature or proof-of-work was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("not an EVM (0x + 40 hex) or Solana (base58, 32 bytes) address")]
    BadAddress,
    #[error("signature is not in an accepted encoding")]
    BadSignatureEncoding,
    #[error("signature does not verify for this wallet and message")]
    SignatureMismatch,
}

/// A parsed wallet address with its canonical text form.
#[derive(Debug, Clone)]
pub struct WalletAddress {
    canonical: String,
    key: WalletKey,
}

#[derive(Debug, Clone)]
enum WalletKey {
    Evm([u8; 20]),
    Solana(SolanaKey),
}

impl WalletAddress {
    /// Parses `0x` + 40 hex (any case, EIP-55 accepted) as EVM, and a base58 string
    /// that decodes to a valid 32-byte ed25519 public key as Solana.
    pub fn parse(input: &str) -> Result<Self, ProofError> {
        let input = input.trim();
        if let Some(hex_part) = input
            .strip_prefix("0x")
            .or_else(|| input.strip_prefix("0X"))
        {
            let mut bytes = [0u8; 20];
            hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| ProofError::BadAddress)?;
            return Ok(Self {
                canonical: format!("0x{}", hex::encode(bytes)),
                key: WalletKey::Evm(bytes),
            });
        }
        if !(32..=44).contains(&input.len()) {
            return Err(ProofError::BadAddress);
        }
        let mut bytes = [0u8; 32];
        let n = bs58::decode(input)
            .onto(&mut bytes[..])
            .map_err(|_| ProofError::BadAddress)?;
        if n != 32 {
            return Err(ProofError::BadAddress);
        }
        let key = SolanaKey::from_bytes(&bytes).map_err(|_| ProofError::BadAddress)?;
        Ok(Self {
            canonical: bs58::encode(bytes).into_string(),
            key: WalletKey::Solana(key),
        })
    }

    pub fn chain(&self) -> Chain {
        match self.key {
            WalletKey::Evm(_) => Chain::Evm,
            WalletKey::Solana(_) => Chain::Solana,
        }
    }

    /// Lowercase `0x…` for EVM, base58 for Solana: the form stored and compared.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// Verifies `signature` over the exact `message` bytes for this wallet.
    pub fn verify(&self, message: &[u8], signature: &str) -> Result<(), ProofError> {
        match &self.key {
            WalletKey::Evm(address) => verify_evm(address, message, signature),
            WalletKey::Solana(key) => verify_solana(key, message, signature),
        }
    }
}

/// The largest difficulty a proof-of-work can ask for (every hex digit of SHA-256).
pub const MAX_POW_DIFFICULTY: u8 = 64;

/// Checks `sha256(challenge + nonce)`, as lowercase hex, starts with `difficulty` zeros.
///
/// Works on the digest's nibbles directly: no hex string is built.
pub fn verify_pow(challenge: &str, nonce: &str, difficulty: u8) -> bool {
    if difficulty > MAX_POW_DIFFICULTY {
        return false;
    }
    let digest = Sha256::new()
        .chain_update(challenge.as_bytes())
        .chain_update(nonce.as_bytes())
        .finalize();
    leading_zero_nibbles(&digest, difficulty)
}

fn leading_zero_nibbles(digest: &[u8], difficulty: u8) -> bool {
    let full = usize::from(difficulty / 2);
    digest[..full].iter().all(|b| *b == 0)
        && (difficulty.is_multiple_of(2) || digest[full] >> 4 == 0)
}

/// The EIP-191 `personal_sign` digest of `message`:
/// `keccak256("\x19Ethereum Signed Message:\n" + len(message) + message)`.
pub fn eip191_hash(message: &[u8]) -> [u8; 32] {
    let mut len = itoa::Buffer::new();
    Keccak256::new()
        .chain_update(b"\x19Ethereum Signed Message:\n")
        .chain_update(len.format(message.len()).as_bytes())
        .chain_update(message)
        .finalize()
        .into()
}

/// Decodes a 65-byte EVM signature given as 130 hex digits, with or without `0x`.
pub fn decode_evm_signature(signature: &str) -> Result<[u8; 65], ProofError> {
    let hex_part = signature.strip_prefix("0x").unwrap_or(signature);
    let mut out = [0u8; 65];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| ProofError::BadSignatureEncoding)?;
    Ok(out)
}

/// Recovers the 20-byte address that signed `prehash` with `r || s || v`.
///
/// `v` may be 0/1 or 27/28. A high-`s` signature is normalised (and its recovery id
/// flipped) rather than refused: nonces are single use, so malleability gains nothing.
pub fn recover_evm_address(prehash: &[u8; 32], sig: &[u8; 65]) -> Result<[u8; 20], ProofError> {
    let mut recid = match sig[64] {
        v @ (0 | 1) => v,
        v @ (27 | 28) => v - 27,
        _ => return Err(ProofError::BadSignatureEncoding),
    };
    let mut signature =
        EvmSignature::from_slice(&sig[..64]).map_err(|_| ProofError::BadSignatureEncoding)?;
    if let Some(low) = signature.normalize_s() {
        signature = low;
        recid ^= 1;
    }
    let recid = RecoveryId::from_byte(recid).ok_or(ProofError::BadSignatureEncoding)?;
    let key = EvmKey::recover_from_prehash(prehash, &signature, recid)
        .map_err(|_| ProofError::SignatureMismatch)?;
    Ok(evm_address(&key))
}

/// The Ethereum address of a public key: the last 20 bytes of keccak256(x || y).
pub fn evm_address(key: &EvmKey) -> [u8; 20] {
    let point = key.to_encoded_point(false);
    let hash = Keccak256::digest(&point.as_bytes()[1..]);
    let mut out = [0u8; 20];
    out.copy_from_slice(&hash[12..]);
    out
}

/// Verifies an EIP-191 `personal_sign` signature of `message` by `address`.
pub fn verify_evm(address: &[u8; 20], message: &[u8], signature: &str) -> Result<(), ProofError> {
    let sig = decode_evm_signature(signature)?;
    let recovered = recover_evm_address(&eip191_hash(message), &sig)?;
    if &recovered == address {
        Ok(())
    } else {
        Err(ProofError::SignatureMismatch)
    }
}

/// Decodes a raw 64-byte ed25519 signature given in base58, base64, 128 hex digits or
/// `0x` + 128 hex digits.
pub fn decode_solana_signature(signature: &str) -> Result<[u8; 64], ProofError> {
    use base64::Engine as _;
    let mut out = [0u8; 64];
    if let Some(hex_part) = signature.strip_prefix("0x") {
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| ProofError::BadSignatureEncoding)?;
        return Ok(out);
    }
    if signature.len() == 128 && hex::decode_to_slice(signature, &mut out).is_ok() {
        return Ok(out);
    }
    let base64_only = signature.bytes().any(|b| matches!(b, b'+' | b'/' | b'='));
    if !base64_only && matches!(bs58::decode(signature).onto(&mut out[..]), Ok(64)) {
        return Ok(out);
    }
    // base64 of 64 bytes is 88 characters with padding, 86 without.
    let mut buf = [0u8; 66];
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(signature, &mut buf)
        .or_else(|_| {
            base64::engine::general_purpose::STANDARD_NO_PAD.decode_slice(signature, &mut buf)
        })
        .map_err(|_| ProofError::BadSignatureEncoding)?;
    if n != 64 {
        return Err(ProofError::BadSignatureEncoding);
    }
    out.copy_from_slice(&buf[..64]);
    Ok(out)
}

/// Verifies a raw ed25519 signature of `message` by a Solana wallet key.
pub fn verify_solana(key: &SolanaKey, message: &[u8], signature: &str) -> Result<(), ProofError> {
    let sig = ed25519_dalek::Signature::from_bytes(&decode_solana_signature(signature)?);
    key.verify_strict(message, &sig)
        .map_err(|_| ProofError::SignatureMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;

    #[test]
    fn pow_counts_hex_zeros() {
        // Find a nonce for difficulty 3 and check the boundary on both sides.
        let challenge = "abc";
        let nonce = (0u64..)
            .map(|n| n.to_string())
            .find(|n| verify_pow(challenge, n, 3))
            .unwrap();
        let hex = hex::encode(Sha256::digest(format!("{challenge}{nonce}")));
        assert!(hex.starts_with("000"));
        assert!(verify_pow(challenge, &nonce, 0));
        assert_eq!(verify_pow(challenge, &nonce, 4), hex.starts_with("0000"));
        assert!(!verify_pow(challenge, &nonce, 65));
    }

    #[test]
    fn pow_odd_difficulty_checks_high_nibble() {
        assert!(leading_zero_nibbles(&[0x00, 0x0f], 3));
        assert!(!leading_zero_nibbles(&[0x00, 0x10], 3));
        assert!(leading_zero_nibbles(&[0x00, 0x10], 2));
    }

    /// web3.js documentation vector: `accounts.sign('Some data', key)`.
    #[test]
    fn eip191_known_vector() {
        let hash = eip191_hash(b"Some data");
        assert_eq!(
            hex::encode(hash),
            "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655"
        );
        let sig = "0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c";
        let addr = WalletAddress::parse("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23").unwrap();
        assert_eq!(addr.chain(), Chain::Evm);
        assert_eq!(
            addr.canonical(),
            "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23"
        );
        addr.verify(b"Some data", sig).unwrap();
        addr.verify(b"Some data", &sig[2..]).unwrap();
        assert_eq!(
            addr.verify(b"Other data", sig),
            Err(ProofError::SignatureMismatch)
        );
        assert_eq!(
            addr.verify(b"Some data", "0x1234"),
            Err(ProofError::BadSignatureEncoding)
        );
    }

    #[test]
    fn evm_address_of_private_key_one() {
        let key = k256::ecdsa::SigningKey::from_slice(&{
            let mut k = [0u8; 32];
            k[31] = 1;
            k
        })
        .unwrap();
        assert_eq!(
            hex::encode(evm_address(key.verifying_key())),
            "7e5f4552091a69125d5dfcb7b8c2659029395bdf"
        );
    }

    /// RFC 8032 test 1: empty message.
    #[test]
    fn solana_rfc8032_vector_in_every_encoding() {
        let public =
            hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap();
        let sig_hex = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
        let sig = hex::decode(sig_hex).unwrap();
        let addr = WalletAddress::parse(&bs58::encode(&public).into_string()).unwrap();
        assert_eq!(addr.chain(), Chain::Solana);
        for encoded in [
            sig_hex.to_owned(),
            format!("0x{sig_hex}"),
            bs58::encode(&sig).into_string(),
            base64::engine::general_purpose::STANDARD.encode(&sig),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(&sig),
        ] {
            addr.verify(b"", &encoded)
                .unwrap_or_else(|e| panic!("{encoded}: {e}"));
            assert_eq!(
                addr.verify(b"x", &encoded),
                Err(ProofError::SignatureMismatch)
            );
        }
    }

    #[test]
    fn solana_signature_from_real_key() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let addr =
            WalletAddress::parse(&bs58::encode(key.verifying_key().as_bytes()).into_string())
                .unwrap();
        let sig = key.sign(b"hello");
        addr.verify(b"hello", &bs58::encode(sig.to_bytes()).into_string())
            .unwrap();
    }

    #[test]
    fn bad_addresses() {
        for bad in [
            "",
            "0x1234",
            "0xzz7536E3605D9C16a7a3D7b1898e529396a65c23",
            "not base58 0OIl",
            "1111",
        ] {
            assert!(WalletAddress::parse(bad).is_err(), "{bad}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Proof-of-work checks answer for any text and difficulty; an unsolved
            /// challenge at a high difficulty never passes.
            #[test]
            fn pow_never_panics(challenge in ".{0,80}", nonce in ".{0,80}", difficulty in any::<u8>()) {
                let ok = verify_pow(&challenge, &nonce, difficulty);
                if difficulty > MAX_POW_DIFFICULTY {
                    prop_assert!(!ok);
                }
            }

            /// Addresses, signatures and proofs from the network decode to an error,
            /// never a panic; a random signature never verifies.
            #[test]
            fn wallet_decoders_never_panic(text in ".{0,200}", bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = WalletAddress::parse(&text);
                let _ = Chain::parse(&text);
                let lossy = String::from_utf8_lossy(&bytes);
                let _ = WalletAddress::parse(&lossy);
                for sig in [text.as_str(), &lossy, &hex::encode(&bytes), &format!("0x{}", hex::encode(&bytes)), &bs58::encode(&bytes).into_string()] {
                    let _ = decode_evm_signature(sig);
                    let _ = decode_solana_signature(sig);
                    if let Ok(sig65) = decode_evm_signature(sig) {
                        let _ = recover_evm_address(&eip191_hash(b"m"), &sig65);
                    }
                    prop_assert!(verify_evm(&[7u8; 20], b"message", sig).is_err());
                    let key = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]).verifying_key();
                    prop_assert!(verify_solana(&key, b"message", sig).is_err());
                }
            }
        }
    }
}

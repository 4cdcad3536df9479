//! A local development wallet for the command line (`crochet wallet new|prove`), so an
//! operator can follow the README's curl quick start without a browser wallet. It signs
//! exactly as real wallets do (EIP-191 `personal_sign`, raw ed25519) and solves the
//! proof-of-work. Keys are plain JSON files: development and demos only.

use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::identity::crypto::{Chain, MAX_POW_DIFFICULTY, eip191_hash, evm_address, verify_pow};

/// A wallet file: chain, address and hex secret key.
#[derive(Debug, Serialize, Deserialize)]
pub struct DevWallet {
    pub chain: Chain,
    pub address: String,
    pub secret_key: String,
}

impl DevWallet {
    /// A new random wallet.
    pub fn generate(chain: Chain) -> Self {
        loop {
            let mut secret = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            if let Ok(w) = Self::from_secret(chain, &secret) {
                return w;
            }
        }
    }

    fn from_secret(chain: Chain, secret: &[u8; 32]) -> anyhow::Result<Self> {
        let address = match chain {
            Chain::Evm => {
                let key = k256::ecdsa::SigningKey::from_slice(secret)?;
                format!("0x{}", hex::encode(evm_address(key.verifying_key())))
            }
            Chain::Solana => {
                let key = ed25519_dalek::SigningKey::from_bytes(secret);
                bs58::encode(key.verifying_key().as_bytes()).into_string()
            }
        };
        Ok(Self {
            chain,
            address,
            secret_key: hex::encode(secret),
        })
    }

    /// Signs `message` as the wallet's chain expects: `0x` + r‖s‖v for EVM, base58 for Solana.
    pub fn sign(&self, message: &str) -> anyhow::Result<String> {
        let mut secret = [0u8; 32];
        hex::decode_to_slice(&self.secret_key, &mut secret)?;
        Ok(match self.chain {
            Chain::Evm => {
                let key = k256::ecdsa::SigningKey::from_slice(&secret)?;
                let (sig, recid) =
                    key.sign_prehash_recoverable(&eip191_hash(message.as_bytes()))?;
                let mut bytes = sig.to_bytes().to_vec();
                bytes.push(27 + recid.to_byte());
                format!("0x{}", hex::encode(bytes))
            }
            Chain::Solana => {
                use ed25519_dalek::Signer as _;
                let key = ed25519_dalek::SigningKey::from_bytes(&secret);
                bs58::encode(key.sign(message.as_bytes()).to_bytes()).into_string()
            }
        })
    }

    /// Answers a `POST /auth/challenge` response (whole envelope or its `data`): returns
    /// `{wallet_address, nonce, signature, pow_nonce}` ready for `/register` and friends.
    pub fn prove(&self, challenge: &Value) -> anyhow::Result<Value> {
        let c = challenge.get("data").unwrap_or(challenge);
        let field = |v: &Value, name: &str| -> anyhow::Result<String> {
            v.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("challenge has no `{name}`"))
        };
        let message = field(c, "message")?;
        let pow = c
            .get("pow")
            .ok_or_else(|| anyhow::anyhow!("challenge has no `pow`"))?;
        let difficulty = pow.get("difficulty").and_then(Value::as_u64).unwrap_or(0);
        let difficulty = u8::try_from(difficulty)
            .ok()
            .filter(|d| *d <= MAX_POW_DIFFICULTY);
        let difficulty = difficulty.ok_or_else(|| anyhow::anyhow!("unsupported difficulty"))?;
        Ok(json!({
            "wallet_address": self.address,
            "nonce": field(c, "nonce")?,
            "signature": self.sign(&message)?,
            "pow_nonce": solve_pow(&field(pow, "challenge")?, difficulty),
        }))
    }
}

/// The first decimal nonce that solves `sha256(challenge + nonce)` at `difficulty`.
pub fn solve_pow(challenge: &str, difficulty: u8) -> String {
    let mut n: u64 = 0;
    loop {
        let candidate = n.to_string();
        if verify_pow(challenge, &candidate, difficulty) {
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::crypto::WalletAddress;
    use sha2::{Digest as _, Sha256};

    fn sha256_hex(input: &str) -> String {
        hex::encode(Sha256::digest(input.as_bytes()))
    }

    #[test]
    fn proofs_verify_for_both_chains() {
        for chain in [Chain::Evm, Chain::Solana] {
            let w = DevWallet::generate(chain);
            let challenge = json!({"data": {"nonce": "n1", "message": "hello", "pow": {"challenge": "c", "difficulty": 2}}});
            let p = w.prove(&challenge).unwrap();
            let addr = WalletAddress::parse(&w.address).unwrap();
            addr.verify(b"hello", p["signature"].as_str().unwrap())
                .unwrap();
            assert!(
                sha256_hex(&format!("c{}", p["pow_nonce"].as_str().unwrap())).starts_with("00")
            );
        }
    }
}

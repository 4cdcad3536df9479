//! An in-process facilitator for development: real signature checks, no chain.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sha3::{Digest, Keccak256};

use super::{Facilitator, FacilitatorError};
use crate::evm::{self, ExactEvmCheck, Invalid, reason};
use crate::networks::{self, Family};
use crate::types::{
    ExactEvmPayload, PaymentPayload, PaymentRequirements, SettleResponse, SupportedKind,
    SupportedResponse, VerifyResponse, X402_VERSION,
};

/// A development facilitator: it really verifies `exact` EVM payments (everything
/// [`evm::check_exact_evm`] checks, with no minimum remaining validity) but has no
/// chain, so it **moves no money** and does not check balances. Never use it in
/// production.
///
/// `settle` records each payment in memory under `network|asset|payer|nonce` and
/// answers with a made-up transaction hash (`0x` + keccak256 of that key). Settling the
/// same authorization again returns the recorded answer, as a facilitator with
/// idempotent settlement would; a real chain instead refuses a reused EIP-3009 nonce.
/// A *different* authorization reusing a recorded payer/nonce fails with
/// `invalid_exact_evm_nonce_already_used`, as it would on chain.
#[derive(Debug)]
pub struct BuiltinFacilitator {
    networks: Vec<String>,
    settled: Mutex<HashMap<String, Settled>>,
}

#[derive(Debug)]
struct Settled {
    /// What was authorized, to tell a repeat from a nonce reuse.
    authorization: String,
    response: SettleResponse,
}

impl BuiltinFacilitator {
    /// A facilitator for the given `eip155:<chain id>` networks; other networks
    /// (Solana, malformed ids) are not supported and are left out.
    pub fn new(networks: Vec<String>) -> Self {
        let mut accepted: Vec<String> = Vec::new();
        for network in networks {
            let evm = matches!(networks::family(&network), Some(Family::Evm { .. }));
            if evm && !accepted.contains(&network) {
                accepted.push(network);
            }
        }
        Self {
            networks: accepted,
            settled: Mutex::new(HashMap::new()),
        }
    }

    /// How many distinct payments have been settled.
    pub fn settled_count(&self) -> usize {
        self.records().len()
    }

    fn records(&self) -> MutexGuard<'_, HashMap<String, Settled>> {
        // A panic while holding the lock cannot leave the map half-updated.
        self.settled.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<ExactEvmCheck, Invalid> {
        if !self.networks.contains(&requirements.network) {
            return Err(Invalid::new(
                reason::INVALID_NETWORK,
                format!(
                    "the builtin facilitator does not handle network `{}`",
                    requirements.network
                ),
            ));
        }
        // check_exact_evm also requires `accepted` to match the requirements field by
        // field (scheme, network, amount, asset and payTo, addresses case-insensitively).
        evm::check_exact_evm(payload, requirements, now_secs(), 0)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The claimed payer of a payload that failed a check, lowercased when it is an address.
fn claimed_payer(payload: &PaymentPayload) -> Option<String> {
    let from = payload
        .payload
        .get("authorization")?
        .get("from")?
        .as_str()?;
    evm::parse_address(from).ok().map(|a| evm::address_hex(&a))
}

/// The signed terms other than payer and nonce, normalised.
fn authorization_terms(payload: &PaymentPayload) -> String {
    let Ok(evm) = serde_json::from_value::<ExactEvmPayload>(payload.payload.clone()) else {
        return String::new();
    };
    let a = evm.authorization;
    let number = |s: &str| {
        let trimmed = s.trim_start_matches('0');
        if trimmed.is_empty() { "0" } else { trimmed }.to_string()
    };
    format!(
        "{}|{}|{}|{}",
        a.to.to_ascii_lowercase(),
        number(&a.value),
        number(&a.valid_after),
        number(&a.valid_before)
    )
}

#[async_trait]
impl Facilitator for BuiltinFacilitator {
    fn name(&self) -> &str {
        "builtin"
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        Ok(SupportedResponse {
            kinds: self
                .networks
                .iter()
                .map(|network| SupportedKind {
                    x402_version: X402_VERSION,
                    scheme: "exact".into(),
                    network: network.clone(),
                    extra: None,
                })
                .collect(),
            extensions: Vec::new(),
            signers: Default::default(),
        })
    }

    async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<VerifyResponse, FacilitatorError> {
        Ok(match self.check(payload, requirements) {
            Ok(check) => VerifyResponse {
                is_valid: true,
                invalid_reason: None,
                payer: Some(check.payer),
            },
            Err(invalid) => VerifyResponse {
                is_valid: false,
                invalid_reason: Some(invalid.reason.to_string()),
                payer: claimed_payer(payload),
            },
        })
    }

    async fn settle(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<SettleResponse, FacilitatorError> {
        let failed = |reason: &str, payer: Option<String>| SettleResponse {
            success: false,
            error_reason: Some(reason.to_string()),
            payer,
            transaction: String::new(),
            network: requirements.network.clone(),
            amount: None,
        };
        let check = match self.check(payload, requirements) {
            Ok(check) => check,
            Err(invalid) => return Ok(failed(invalid.reason, claimed_payer(payload))),
        };
        let key = format!(
            "{}|{}|{}|{}",
            requirements.network, requirements.asset, check.payer, check.nonce
        )
        .to_lowercase();
        let terms = authorization_terms(payload);
        let mut records = self.records();
        if let Some(done) = records.get(&key) {
            return Ok(if done.authorization == terms {
                done.response.clone()
            } else {
                failed(reason::NONCE_ALREADY_USED, Some(check.payer))
            });
        }
        let response = SettleResponse {
            success: true,
            error_reason: None,
            payer: Some(check.payer),
            transaction: format!("0x{}", hex::encode(Keccak256::digest(key.as_bytes()))),
            network: requirements.network.clone(),
            amount: Some(requirements.amount.clone()),
        };
        records.insert(
            key,
            Settled {
                authorization: terms,
                response: response.clone(),
            },
        );
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::requirements;
    use k256::ecdsa::SigningKey;
    use serde_json::json;

    use super::*;
    use crate::evm::{key_address, sign_exact_evm};

    fn key() -> SigningKey {
        SigningKey::from_slice(&[9; 32]).unwrap()
    }

    fn pay(required: &PaymentRequirements, nonce: u8) -> PaymentPayload {
        let now = now_secs();
        sign_exact_evm(&key(), required, None, now - 60, now + 300, [nonce; 32])
    }

    fn facilitator() -> BuiltinFacilitator {
        BuiltinFacilitator::new(vec![
            "eip155:84532".into(),
            "eip155:8453".into(),
            "eip155:84532".into(),
            networks::SOLANA_DEVNET.into(),
        ])
    }

    #[tokio::test]
    async fn supported_lists_evm_networks_only() {
        let f = facilitator();
        assert_eq!(f.name(), "builtin");
        let s = f.supported().await.unwrap();
        let networks: Vec<_> = s.kinds.iter().map(|k| k.network.as_str()).collect();
        assert_eq!(networks, ["eip155:84532", "eip155:8453"]);
        assert!(
            s.kinds
                .iter()
                .all(|k| k.scheme == "exact" && k.x402_version == 2)
        );
    }

    #[tokio::test]
    async fn verify_valid_and_invalid() {
        let f = facilitator();
        let required = requirements();
        let v = f.verify(&pay(&required, 1), &required).await.unwrap();
        assert!(v.is_valid, "{v:?}");
        assert_eq!(v.payer, Some(key_address(&key())));
        assert_eq!(v.invalid_reason, None);

        let mut other = required.clone();
        other.amount = "20000".into();
        let v = f.verify(&pay(&required, 1), &other).await.unwrap();
        assert!(!v.is_valid);
        assert_eq!(v.invalid_reason.as_deref(), Some(reason::AMOUNT_MISMATCH));
        assert_eq!(v.payer, Some(key_address(&key())));

        let mut tampered = pay(&required, 1);
        tampered.payload["authorization"]["validBefore"] = json!((now_secs() + 900).to_string());
        let v = f.verify(&tampered, &required).await.unwrap();
        assert_eq!(v.invalid_reason.as_deref(), Some(reason::INVALID_SIGNATURE));

        let mut unsupported = required.clone();
        unsupported.network = "eip155:1".into();
        let v = f.verify(&pay(&unsupported, 1), &unsupported).await.unwrap();
        assert_eq!(v.invalid_reason.as_deref(), Some(reason::INVALID_NETWORK));
    }

    #[tokio::test]
    async fn settle_is_idempotent_per_nonce() {
        let f = facilitator();
        let required = requirements();
        let payment = pay(&required, 1);

        let first = f.settle(&payment, &required).await.unwrap();
        assert!(first.success, "{first:?}");
        assert_eq!(first.transaction.len(), 66);
        assert_eq!(first.network, "eip155:84532");
        assert_eq!(first.amount.as_deref(), Some("10000"));
        assert_eq!(first.payer, Some(key_address(&key())));

        let again = f.settle(&payment, &required).await.unwrap();
        assert_eq!(again, first);
        assert_eq!(f.settled_count(), 1);

        let second = f.settle(&pay(&required, 2), &required).await.unwrap();
        assert!(second.success);
        assert_ne!(second.transaction, first.transaction);
        assert_eq!(f.settled_count(), 2);

        // Same nonce, different signed terms: refused, as the chain would.
        let mut cheaper = required.clone();
        cheaper.amount = "5000".into();
        let reuse = f.settle(&pay(&cheaper, 1), &cheaper).await.unwrap();
        assert!(!reuse.success);
        assert_eq!(
            reuse.error_reason.as_deref(),
            Some(reason::NONCE_ALREADY_USED)
        );
        assert_eq!(f.settled_count(), 2);
    }

    #[tokio::test]
    async fn settle_refuses_invalid_payments() {
        let f = facilitator();
        let required = requirements();
        let mut payment = pay(&required, 3);
        payment.payload["signature"] = json!(format!("0x{}", "11".repeat(65)));
        let s = f.settle(&payment, &required).await.unwrap();
        assert!(!s.success);
        assert_eq!(s.transaction, "");
        assert_eq!(s.network, "eip155:84532");
        assert!(s.error_reason.is_some());
        assert_eq!(f.settled_count(), 0);
    }
}

//! After a call: receipts and their offline check, the caller's gateway history and
//! ledger, reviews and the public Crochet Score.
//!
//! A receipt's `payload` is the exact string the host signed with ed25519; `signature`
//! is the base64 signature and `key_id` names the key, published with the host's other
//! keys at `/.well-known/crochet-receipt-keys`. [`verify`] checks one offline:
//!
//! ```
//! use crochet_client::receipts::{self, ReceiptError};
//! use ed25519_dalek::Signer as _;
//! use base64::Engine as _;
//!
//! let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
//! let payload = r#"{"type":"crochet.receipt.v1","charged_amount_cents":25}"#;
//! let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(payload.as_bytes()).to_bytes());
//! let public_key = hex::encode(key.verifying_key().as_bytes());
//!
//! assert!(receipts::verify(&public_key, payload, &signature).is_ok());
//! let forged = payload.replace("25", "2500");
//! assert_eq!(receipts::verify(&public_key, &forged, &signature), Err(ReceiptError::BadSignature));
//! ```

use base64::Engine as _;
use reqwest::Method;
use serde_json::json;

use crate::client::decode;
use crate::models::{
    AgentScore, GatewayRequest, LedgerEntry, PageQuery, PublicReceiptKey, Receipt, Review,
};
use crate::{Client, ClientError};

/// Why a receipt did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("the host publishes no key {0}")]
    UnknownKey(String),
    #[error("the public key is not a 32-byte hex ed25519 key")]
    BadKey,
    #[error("the signature is not base64 of 64 bytes")]
    Malformed,
    #[error("the signature does not match the payload")]
    BadSignature,
}

/// Checks `signature_b64` over `payload` under the hex ed25519 `public_key_hex`.
pub fn verify(
    public_key_hex: &str,
    payload: &str,
    signature_b64: &str,
) -> Result<(), ReceiptError> {
    let key = hex::decode(public_key_hex.trim()).map_err(|_| ReceiptError::BadKey)?;
    let key = <[u8; 32]>::try_from(key.as_slice()).map_err(|_| ReceiptError::BadKey)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| ReceiptError::BadKey)?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.trim())
        .map_err(|_| ReceiptError::Malformed)?;
    let signature =
        ed25519_dalek::Signature::from_slice(&signature).map_err(|_| ReceiptError::Malformed)?;
    key.verify_strict(payload.as_bytes(), &signature)
        .map_err(|_| ReceiptError::BadSignature)
}

/// Checks `receipt` against the published `keys` (the one its `key_id` names).
pub fn verify_receipt(receipt: &Receipt, keys: &[PublicReceiptKey]) -> Result<(), ReceiptError> {
    let key = keys
        .iter()
        .find(|k| k.key_id == receipt.key_id && k.algorithm == "ed25519")
        .ok_or_else(|| ReceiptError::UnknownKey(receipt.key_id.clone()))?;
    verify(&key.public_key, &receipt.payload, &receipt.signature)
}

impl Client {
    /// The caller's receipts, as buyer or seller, newest first.
    pub async fn receipts(&self, page: PageQuery) -> Result<Vec<Receipt>, ClientError> {
        let data = Self::data(self.request(Method::GET, "/receipts").query(&page)).await?;
        decode(data, "receipts")
    }

    /// One receipt by id.
    pub async fn receipt(&self, id: &str) -> Result<Receipt, ClientError> {
        decode(
            Self::data(self.at(Method::GET, &["receipts", id])?).await?,
            "receipt",
        )
    }

    /// The host's receipt verification keys (`/.well-known/crochet-receipt-keys`).
    pub async fn receipt_keys(&self) -> Result<Vec<PublicReceiptKey>, ClientError> {
        let req = self.at_origin(Method::GET, "/.well-known/crochet-receipt-keys")?;
        decode(Self::data(req).await?, "receipt keys")
    }

    /// Fetches the host's published keys and checks `receipt` against them. Keep the
    /// keys ([`Client::receipt_keys`]) to check later receipts with no request at all.
    pub async fn verify_receipt(&self, receipt: &Receipt) -> Result<(), ClientError> {
        let keys = self.receipt_keys().await?;
        verify_receipt(receipt, &keys).map_err(|e| ClientError::Receipt(e.to_string()))
    }

    /// The caller's gateway calls (as buyer), newest first: metadata, never bodies.
    pub async fn gateway_requests(
        &self,
        page: PageQuery,
    ) -> Result<Vec<GatewayRequest>, ClientError> {
        let data = Self::data(self.request(Method::GET, "/gateway-requests").query(&page)).await?;
        decode(data, "gateway requests")
    }

    /// The caller's ledger entries, newest first.
    pub async fn ledger(&self, page: PageQuery) -> Result<Vec<LedgerEntry>, ClientError> {
        let data = Self::data(self.request(Method::GET, "/ledger").query(&page)).await?;
        decode(data, "ledger")
    }

    /// Reviews a listing the caller has called successfully (`rating` 1 to 5).
    pub async fn review(
        &self,
        listing: &str,
        rating: i64,
        comment: Option<&str>,
    ) -> Result<Review, ClientError> {
        let mut body = json!({"rating": rating});
        if let Some(c) = comment {
            body["comment"] = json!(c);
        }
        let req = self.at(Method::POST, &["reviews", listing])?.json(&body);
        decode(Self::data(req).await?, "review")
    }

    /// A listing's reviews, newest first.
    pub async fn reviews(
        &self,
        listing: &str,
        page: PageQuery,
    ) -> Result<Vec<Review>, ClientError> {
        let req = self.at(Method::GET, &["reviews", listing])?.query(&page);
        decode(Self::data(req).await?, "reviews")
    }

    /// An agent's public Crochet Score with its explanation.
    pub async fn score(&self, agent_id: &str) -> Result<AgentScore, ClientError> {
        decode(
            Self::data(self.at(Method::GET, &["agents", agent_id, "score"])?).await?,
            "score",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_is_checked_under_the_key_it_names() {
        use ed25519_dalek::Signer as _;
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let payload = r#"{"type":"crochet.receipt.v1"}"#.to_owned();
        let signature = base64::engine::general_purpose::STANDARD
            .encode(key.sign(payload.as_bytes()).to_bytes());
        let receipt = Receipt {
            id: "r".into(),
            gateway_request_id: "g".into(),
            content: serde_json::from_str(&payload).unwrap(),
            payload,
            signature,
            signature_algorithm: "ed25519".into(),
            key_id: "k1".into(),
            created_at: String::new(),
            status: "charged".into(),
            refund: None,
            call_status: None,
        };
        let published = |id: &str, k: &ed25519_dalek::SigningKey| PublicReceiptKey {
            key_id: id.into(),
            algorithm: "ed25519".into(),
            public_key: hex::encode(k.verifying_key().as_bytes()),
            status: "current".into(),
        };
        let other = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
        assert!(
            verify_receipt(&receipt, &[published("k0", &other), published("k1", &key)]).is_ok()
        );
        assert_eq!(
            verify_receipt(&receipt, &[published("k1", &other)]),
            Err(ReceiptError::BadSignature)
        );
        assert_eq!(
            verify_receipt(&receipt, &[published("k2", &key)]),
            Err(ReceiptError::UnknownKey("k1".into()))
        );
        assert_eq!(verify("zz", "x", "AA=="), Err(ReceiptError::BadKey));
        assert_eq!(
            verify(
                &hex::encode(key.verifying_key().as_bytes()),
                "x",
                "not base64!"
            ),
            Err(ReceiptError::Malformed)
        );
    }
}

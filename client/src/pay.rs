//! Paying for gateway calls: a [`Payer`] turns the 402's payment object into the header
//! the call is retried with.

use serde_json::{Value, json};

use crate::{Client, ClientError, Wallet};

/// How to retry a call once it is paid.
#[derive(Clone, PartialEq, Eq)]
pub enum Retry {
    /// Retry with `X-Crochet-Relay-Request-Id` (the provider flow: mock, relay).
    Relay { relay_request_id: String },
    /// Retry with `PAYMENT-SIGNATURE` (an x402 `PaymentPayload`, base64).
    X402 { payment_signature: String },
}

impl std::fmt::Debug for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retry::Relay { relay_request_id } => f
                .debug_struct("Relay")
                .field("relay_request_id", relay_request_id)
                .finish(),
            Retry::X402 { .. } => f.debug_struct("X402").finish_non_exhaustive(),
        }
    }
}

/// Pays a gateway call's requirement.
#[async_trait::async_trait]
pub trait Payer: Send + Sync {
    /// Pays the 402's `error.details.payment` object; `client` is the calling client
    /// (its host and key).
    async fn pay(&self, client: &Client, payment: &Value) -> Result<Retry, ClientError>;
}

/// The development mock provider: completes the payment through its `settle_url`.
#[derive(Debug, Clone)]
pub struct MockPayer {
    /// `settled` (default), `pending` or `failed`.
    pub outcome: String,
}

impl Default for MockPayer {
    fn default() -> Self {
        Self {
            outcome: "settled".into(),
        }
    }
}

#[async_trait::async_trait]
impl Payer for MockPayer {
    async fn pay(&self, client: &Client, payment: &Value) -> Result<Retry, ClientError> {
        let settle_url = payment["requirements"]["settle_url"]
            .as_str()
            .ok_or_else(|| ClientError::Payment("not a mock payment (no settle_url)".into()))?;
        let relay_request_id = payment["relay_request_id"]
            .as_str()
            .ok_or_else(|| ClientError::Payment("the requirement has no relay_request_id".into()))?
            .to_owned();
        let answer = Client::send(
            client
                .request_url(reqwest::Method::POST, settle_url)
                .json(&json!({"outcome": self.outcome})),
        )
        .await?;
        if !(200..300).contains(&answer.status) {
            return Err(ClientError::from_envelope(answer.status, &answer.body));
        }
        Ok(Retry::Relay { relay_request_id })
    }
}

/// Pays with x402 `exact` on an EVM network: signs an EIP-3009 authorization for the
/// first offer (valid from a minute ago for the offer's `maxTimeoutSeconds`).
#[derive(Debug)]
pub struct X402Payer {
    pub wallet: Wallet,
}

#[async_trait::async_trait]
impl Payer for X402Payer {
    async fn pay(&self, _client: &Client, payment: &Value) -> Result<Retry, ClientError> {
        let Wallet::Evm(key) = &self.wallet else {
            return Err(ClientError::Payment(
                "x402 payments need an EVM wallet".into(),
            ));
        };
        let offer: crochet_payment_x402::PaymentRequired =
            serde_json::from_value(payment.get("x402").cloned().unwrap_or(Value::Null))
                .map_err(|e| ClientError::Payment(format!("no x402 offer: {e}")))?;
        let required = offer
            .accepts
            .first()
            .ok_or_else(|| ClientError::Payment("the x402 offer accepts nothing".into()))?;
        if required.scheme != "exact" || !required.network.starts_with("eip155:") {
            return Err(ClientError::Payment(format!(
                "unsupported x402 offer: {} on {}",
                required.scheme, required.network
            )));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| ClientError::Payment(e.to_string()))?
            .as_secs();
        let mut nonce = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        // `sign_exact_evm` panics on offers it cannot sign (bad addresses, amounts).
        let signed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crochet_payment_x402::evm::sign_exact_evm(
                key,
                required,
                Some(offer.resource.clone()),
                now.saturating_sub(60),
                now + required.max_timeout_seconds,
                nonce,
            )
        }))
        .map_err(|_| ClientError::Payment("the x402 offer cannot be signed".into()))?;
        Ok(Retry::X402 {
            payment_signature: crochet_payment_x402::encode_header(&signed),
        })
    }
}

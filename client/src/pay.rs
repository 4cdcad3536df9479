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

/// Carries out one item of a Relay quote step (a transaction to sign and send on the
/// origin chain, or a message to sign), e.g. with the buyer's own chain library and RPC
/// node. `step` is the whole step (`id`, `kind`, `action`, ...) and `item` one of its
/// `items` (`data` holds the transaction or the message).
#[async_trait::async_trait]
pub trait StepExecutor: Send + Sync {
    async fn execute(&self, step: &Value, item: &Value) -> Result<(), ClientError>;
}

/// Pays through the Relay provider: the 402's `requirements.steps` are Relay's quote
/// steps, in order. With an executor every item of every step is carried out and the
/// call is retried with the quote's request id (the host then waits for Relay to report
/// the payment settled, answering 202 meanwhile). Without one, [`ClientError::PaymentSteps`]
/// hands the steps to the caller, who carries them out and calls again with the same
/// idempotency key and `CallOptions::paid` set to the returned request id.
pub struct RelayPayer {
    executor: Option<Box<dyn StepExecutor>>,
}

impl std::fmt::Debug for RelayPayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayPayer")
            .field("executes", &self.executor.is_some())
            .finish()
    }
}

impl RelayPayer {
    /// A payer that carries out the steps with `executor`.
    pub fn new(executor: impl StepExecutor + 'static) -> Self {
        Self {
            executor: Some(Box::new(executor)),
        }
    }

    /// A payer that returns the steps for the caller to carry out.
    pub fn steps_only() -> Self {
        Self { executor: None }
    }
}

#[async_trait::async_trait]
impl Payer for RelayPayer {
    async fn pay(&self, _client: &Client, payment: &Value) -> Result<Retry, ClientError> {
        let requirements = &payment["requirements"];
        if requirements["scheme"] != "relay" {
            return Err(ClientError::Payment(
                "not a Relay payment (the host's provider is another)".into(),
            ));
        }
        let relay_request_id = payment["relay_request_id"]
            .as_str()
            .or_else(|| requirements["request_id"].as_str())
            .ok_or_else(|| ClientError::Payment("the requirement has no request id".into()))?
            .to_owned();
        let steps = requirements["steps"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(executor) = &self.executor else {
            return Err(ClientError::PaymentSteps {
                relay_request_id,
                steps: Value::Array(steps),
                // `Client::call` fills in the call's key.
                idempotency_key: String::new(),
            });
        };
        for step in &steps {
            for item in step["items"].as_array().into_iter().flatten() {
                executor.execute(step, item).await?;
            }
        }
        Ok(Retry::Relay { relay_request_id })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records what it was asked to carry out.
    #[derive(Default)]
    struct Recorder(std::sync::Arc<Mutex<Vec<String>>>);

    #[async_trait::async_trait]
    impl StepExecutor for Recorder {
        async fn execute(&self, step: &Value, item: &Value) -> Result<(), ClientError> {
            let mut seen = self
                .0
                .lock()
                .map_err(|_| ClientError::Payment("poisoned".into()))?;
            seen.push(format!(
                "{}/{}",
                step["id"].as_str().unwrap_or(""),
                item["data"]["to"].as_str().unwrap_or("")
            ));
            Ok(())
        }
    }

    fn relay_payment() -> Value {
        json!({
            "relay_request_id": "0xabc",
            "requirements": {
                "scheme": "relay",
                "request_id": "0xabc",
                "steps": [
                    {"id": "approve", "kind": "transaction", "items": [{"data": {"to": "0xtoken"}}]},
                    {"id": "deposit", "kind": "transaction", "items": [{"data": {"to": "0xrelay"}}, {"data": {"to": "0xrelay2"}}]}
                ]
            }
        })
    }

    #[tokio::test]
    async fn relay_steps_are_carried_out_in_order_or_handed_back() {
        let client = Client::new("http://127.0.0.1:9/api/v1");
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let payer = RelayPayer::new(Recorder(seen.clone()));
        let retry = payer.pay(&client, &relay_payment()).await.unwrap();
        assert_eq!(
            retry,
            Retry::Relay {
                relay_request_id: "0xabc".into()
            }
        );
        assert_eq!(
            *seen.lock().unwrap(),
            ["approve/0xtoken", "deposit/0xrelay", "deposit/0xrelay2"]
        );

        match RelayPayer::steps_only()
            .pay(&client, &relay_payment())
            .await
        {
            Err(ClientError::PaymentSteps {
                relay_request_id,
                steps,
                ..
            }) => {
                assert_eq!(relay_request_id, "0xabc");
                assert_eq!(steps.as_array().unwrap().len(), 2);
            }
            other => panic!("{other:?}"),
        }
        let mock = json!({"relay_request_id": "m", "requirements": {"scheme": "mock"}});
        assert!(matches!(
            RelayPayer::steps_only().pay(&client, &mock).await,
            Err(ClientError::Payment(_))
        ));
    }
}

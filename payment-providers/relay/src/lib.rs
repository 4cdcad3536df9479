//! The Relay (relay.link) payment provider of Crochet Gateway: the production
//! [`PaymentProvider`].
//!
//! For each paid call it asks Relay for an `EXACT_OUTPUT` quote that delivers the price
//! (in the destination token, USDC on Solana by default) to the operator's treasury,
//! paid from whatever chain and currency the buyer chose. The quote's `requestId` is the
//! request id of the 402, and its `steps` (the transactions the buyer signs) are shown
//! verbatim in `requirements`. Settlement polls Relay's status API; with an API key, a
//! `success` is only reported settled once `/requests/v3` confirms that the right amount
//! reached the right treasury.
//!
//! # Configuration
//!
//! The host deserializes [`RelayConfig`] from the `[relay]` table of `crochet.toml`
//! (and selects this provider with `payment_provider = "relay"`):
//!
//! ```toml
//! [relay]
//! base_url = "https://api.relay.link"      # or https://api.testnets.relay.link
//! destination_chain_id = 792703809          # Solana (the default)
//! destination_currency = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"  # USDC (default)
//! destination_decimals = 6
//! default_evm_chain_id = 8453               # Base, for EVM buyers naming no chain
//! timeout_ms = 10000
//! max_retries = 3
//! quotes_per_minute = 50
//!
//! [relay.recipients]                        # treasury per destination chain (required)
//! "792703809" = "YourSolanaTreasuryAddress"
//!
//! [relay.usdc_addresses]                    # merged over the built-in 1, 10, 8453, 42161
//! "137" = "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359"
//! ```
//!
//! The API key belongs in the environment (`CROCHET_RELAY_API_KEY`), not in the file.
//! Without one, quotes and status still work, but a Relay `success` is trusted without
//! the `/requests/v3` recipient and amount check.

mod config;
mod http;
mod limiter;
mod route;
mod settle;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use crochet_payment::{
    PaymentChain, PaymentError, PaymentProvider, PaymentRequirement, RequirementRequest,
    Settlement, SettlementQuery,
};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

pub use config::{RelayConfig, default_usdc_addresses};
use http::{Backoff, Http, Operation, Reply};
use limiter::QuoteLimiter;
use settle::{Class, Confirmation, Expected, RequestsResponse, StatusResponse};

/// Relay's mainnet API.
pub const MAINNET_URL: &str = "https://api.relay.link";
/// Relay's testnet API.
pub const TESTNET_URL: &str = "https://api.testnets.relay.link";
/// Relay's address for native SOL.
pub const SOL_ADDRESS: &str = "11111111111111111111111111111111";
/// USDC on Solana.
pub const SOLANA_USDC: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
/// Relay's address for the native token of an EVM chain (ETH).
pub const EVM_NATIVE: &str = "0x0000000000000000000000000000000000000000";

/// Longest Relay error message passed on to buyers.
const MAX_MESSAGE_CHARS: usize = 300;

/// The Relay payment provider. Cheap to share behind an `Arc` and safe to call
/// concurrently; it keeps no payment state (Relay and the host database do).
pub struct RelayProvider {
    config: RelayConfig,
    /// `base_url` without a trailing slash.
    base: String,
    /// The treasury for the destination chain (checked by [`RelayProvider::new`]).
    treasury: String,
    http: Http,
    limiter: QuoteLimiter,
}

impl fmt::Debug for RelayProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RelayProvider {
    /// Validates `config` and builds the provider. A missing treasury for the destination
    /// chain, a bad base URL or other impossible settings are
    /// [`PaymentError::Misconfigured`].
    pub fn new(config: RelayConfig) -> Result<Self, PaymentError> {
        config.validate()?;
        if config.api_key().is_some() && config.base_url.starts_with("http://") {
            tracing::warn!(base_url = %config.base_url, "the Relay API key is sent over plain HTTP");
        }
        let treasury = config
            .treasury()
            .ok_or_else(|| {
                PaymentError::Misconfigured("relay.recipients has no treasury address".into())
            })?
            .to_owned();
        Ok(Self {
            base: config.base_url.trim_end_matches('/').to_owned(),
            treasury,
            http: Http::new(config.api_key(), config.timeout_ms, config.max_retries)?,
            limiter: QuoteLimiter::per_minute(config.quotes_per_minute),
            config,
        })
    }

    /// Overrides the retry backoff: `base * 2^n` between attempts, at most `cap`, which
    /// also bounds how long a `Retry-After` is honoured. Defaults: 200 ms and 5 s. Tests
    /// use a few milliseconds.
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.http.backoff = Backoff { base, cap };
        self
    }

    /// The operator configuration in use.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Confirms a `success` with `/requests/v3` (when an API key allows it) and builds
    /// the settlement.
    async fn settled(
        &self,
        query: &SettlementQuery,
        id: &str,
        status: StatusResponse,
    ) -> Result<Settlement, PaymentError> {
        let tx_refs: Vec<String> = status
            .in_tx_hashes
            .into_iter()
            .flatten()
            .chain(status.tx_hashes.into_iter().flatten())
            .collect();
        let settled = |payer| Settlement::Settled {
            amount_cents: query.amount_cents,
            currency: query.currency.clone(),
            payer,
            tx_refs: tx_refs.clone(),
        };
        if !self.http.has_api_key() {
            tracing::debug!(request_id = %id, "no Relay API key: success not confirmed with /requests/v3");
            return Ok(settled(None));
        }
        let units = route::smallest_units(
            query.amount_cents,
            &query.currency,
            self.config.destination_decimals,
        )?;
        let url = self.url("/requests/v3");
        let reply = self
            .http
            .send(Operation::Requests, |c| c.get(&url).query(&[("id", id)]))
            .await?;
        let requests = match reply.status {
            s if s.is_success() => reply
                .json::<RequestsResponse>(Operation::Requests)?
                .requests
                .unwrap_or_default(),
            StatusCode::NOT_FOUND => Vec::new(),
            s => return Err(refusal(Operation::Requests, s)),
        };
        let still_pending = Settlement::Pending {
            retry_after_seconds: settle::RETRY_PENDING_SECS,
            provider_status: "success".into(),
        };
        let Some(record) = settle::find_record(requests, id) else {
            tracing::debug!(request_id = %id, "Relay success not in /requests/v3 yet");
            return Ok(still_pending);
        };
        let expected = Expected {
            recipient: &self.treasury,
            units,
            chain_id: self.config.destination_chain_id,
            currency: &self.config.destination_currency,
        };
        match settle::confirm(&record, &expected) {
            Confirmation::Confirmed { payer } => Ok(settled(payer)),
            Confirmation::Incomplete(field) => {
                tracing::warn!(request_id = %id, field, "Relay request record incomplete; still pending");
                Ok(still_pending)
            }
            Confirmation::Mismatch(reason) => {
                tracing::warn!(request_id = %id, %reason, "Relay payment does not match the requirement");
                Ok(Settlement::Failed {
                    reason,
                    refunded: false,
                })
            }
        }
    }
}

#[async_trait]
impl PaymentProvider for RelayProvider {
    fn name(&self) -> &'static str {
        "relay"
    }

    async fn create_requirement(
        &self,
        req: &RequirementRequest,
    ) -> Result<PaymentRequirement, PaymentError> {
        let units = route::smallest_units(
            req.amount_cents,
            &req.currency,
            self.config.destination_decimals,
        )?;
        let amount = units.to_string();
        let origin = route::resolve_origin(&req.route, &self.config)?;
        let destination_chain_id = self.config.destination_chain_id;
        let destination_currency = self.config.destination_currency.trim();
        let body = json!({
            "user": origin.user,
            "recipient": self.treasury,
            "originChainId": origin.chain_id,
            "destinationChainId": destination_chain_id,
            "originCurrency": origin.currency,
            "destinationCurrency": destination_currency,
            "amount": amount,
            "tradeType": "EXACT_OUTPUT",
        });
        self.limiter.try_acquire().map_err(|secs| {
            tracing::warn!(
                limit = self.config.quotes_per_minute,
                "Relay quote limit reached"
            );
            PaymentError::RateLimited {
                retry_after_seconds: secs,
            }
        })?;
        tracing::debug!(
            listing_id = %req.listing_id,
            origin_chain_id = origin.chain_id,
            origin_currency = %origin.currency,
            %amount,
            "requesting Relay quote"
        );
        let url = self.url("/quote/v2");
        let reply = self
            .http
            .send(Operation::Quote, |c| c.post(&url).json(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(quote_refusal(&reply, origin.chain == PaymentChain::Solana));
        }
        let quote: Value = reply.json(Operation::Quote)?;
        let steps = quote.get("steps").cloned().unwrap_or(Value::Null);
        let request_id = steps
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|s| {
                s.get("requestId")
                    .and_then(Value::as_str)
                    .filter(|id| !id.is_empty())
            })
            .ok_or_else(|| {
                PaymentError::Unavailable("Relay quote failed: the quote has no requestId".into())
            })?
            .to_owned();
        let mut requirements = json!({
            "scheme": "relay",
            "network": "multi-chain",
            "request_id": request_id,
            "origin_chain_id": origin.chain_id,
            "origin_currency": origin.currency,
            "destination_chain_id": destination_chain_id,
            "destination_currency": destination_currency,
            "amount": amount,
            "amount_cents": req.amount_cents,
            "recipient": self.treasury,
            "steps": steps,
        });
        if let (Some(fees), Some(obj)) = (quote.get("fees"), requirements.as_object_mut()) {
            obj.insert("fees".into(), fees.clone());
        }
        tracing::debug!(%request_id, "Relay quote issued");
        Ok(PaymentRequirement {
            request_id,
            requirements,
        })
    }

    async fn settlement(&self, query: &SettlementQuery) -> Result<Settlement, PaymentError> {
        let id = query.request_id.trim();
        if id.is_empty() || id.len() > 256 {
            return Err(PaymentError::UnknownRequest);
        }
        let url = self.url("/intents/status/v3");
        let reply = self
            .http
            .send(Operation::Status, |c| {
                c.get(&url).query(&[("requestId", id)])
            })
            .await?;
        if !reply.status.is_success() {
            return Err(match reply.status {
                StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => PaymentError::UnknownRequest,
                s => refusal(Operation::Status, s),
            });
        }
        let status: StatusResponse = reply.json(Operation::Status)?;
        let word = status.status.clone().unwrap_or_default();
        match settle::classify(&word) {
            Class::Pending {
                retry_after_seconds,
            } => {
                if retry_after_seconds == settle::RETRY_UNKNOWN_SECS {
                    tracing::warn!(request_id = %id, status = %word, "unknown Relay status; treated as pending");
                }
                let provider_status = if word.is_empty() {
                    "unknown".into()
                } else {
                    word
                };
                Ok(Settlement::Pending {
                    retry_after_seconds,
                    provider_status,
                })
            }
            Class::Failed { refunded } => Ok(Settlement::Failed {
                reason: if refunded {
                    "Relay refunded the payment (status refund)".into()
                } else {
                    format!("Relay could not fill the payment (status {word})")
                },
                refunded,
            }),
            Class::Success => self.settled(query, id, status).await,
        }
    }
}

/// Relay's error body.
#[derive(Debug, Default, Deserialize)]
struct RelayErrorBody {
    message: Option<String>,
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
}

/// Maps a refused quote: amount minimums, unsupported routes, a rejected API key.
fn quote_refusal(reply: &Reply, on_solana: bool) -> PaymentError {
    let status = reply.status;
    if !status.is_client_error()
        || matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
    {
        return refusal(Operation::Quote, status);
    }
    let err: RelayErrorBody = serde_json::from_slice(&reply.body).unwrap_or_default();
    let message = err
        .message
        .map(|m| clip(m.trim()))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("Relay refused the quote (HTTP {})", status.as_u16()));
    let code = err.error_code.unwrap_or_default();
    if code == "AMOUNT_TOO_LOW" || message.to_ascii_lowercase().contains("amount too low") {
        return PaymentError::RouteMinimum {
            minimum_cents: None,
            on_solana,
            message,
        };
    }
    PaymentError::UnsupportedRoute(if code.is_empty() {
        message
    } else {
        format!("{}: {message}", clip(&code))
    })
}

/// A non-success answer other than a quote refusal.
fn refusal(op: Operation, status: StatusCode) -> PaymentError {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            PaymentError::Misconfigured("Relay rejected the API key".into())
        }
        s => {
            PaymentError::Unavailable(format!("Relay {op} failed: unexpected HTTP {}", s.as_u16()))
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_MESSAGE_CHARS).collect()
}

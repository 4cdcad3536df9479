//! The payment provider trait of Crochet Gateway.
//!
//! A paid gateway call is settled by an outside provider before anything is forwarded
//! to the seller. The host depends only on [`PaymentProvider`]: it asks for a per-call
//! [`PaymentRequirement`] (the body of the HTTP 402), then asks for the [`Settlement`] of
//! that request id when the buyer retries. Providers are separate crates (`mock` for
//! development and tests, `relay` for production); a new one is one more crate that
//! implements this trait. See `payment-providers/README.md` for the guide.
//!
//! Money is integer cents of `currency` (USD today) everywhere.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Relay's chain id for Solana.
pub const SOLANA_CHAIN_ID: u64 = 792_703_809;
/// Below this, EVM routes are refused (provider minimums make low-price EVM calls fail).
pub const EVM_ROUTE_MINIMUM_CENTS: i64 = 10;

/// The chain family of a wallet or route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentChain {
    Evm,
    Solana,
}

/// The currency a buyer pays with (`X-Crochet-Origin-Currency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OriginCurrency {
    Usdc,
    Eth,
    Sol,
}

impl OriginCurrency {
    /// Parses a header value, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "USDC" => Some(Self::Usdc),
            "ETH" => Some(Self::Eth),
            "SOL" => Some(Self::Sol),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Usdc => "USDC",
            Self::Eth => "ETH",
            Self::Sol => "SOL",
        }
    }
}

/// A wallet taking part in a payment (the buyer's payer wallet, the seller's payout wallet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletRef {
    /// The host's wallet id (`X-Crochet-Origin-Wallet-Id`).
    pub id: String,
    pub address: String,
    pub chain: PaymentChain,
}

/// How the buyer wants to pay: the three `X-Crochet-Origin-*` choices, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub origin_currency: Option<OriginCurrency>,
    pub origin_chain_id: Option<u64>,
    /// The buyer wallet that pays.
    pub payer: Option<WalletRef>,
}

impl Route {
    /// The chain the payment starts on: SOL, the Solana chain id or a Solana payer wallet
    /// mean Solana; everything else is EVM.
    pub fn chain(&self) -> PaymentChain {
        let solana = self.origin_currency == Some(OriginCurrency::Sol)
            || self.origin_chain_id == Some(SOLANA_CHAIN_ID)
            || (self.origin_chain_id.is_none()
                && self.origin_currency.is_none()
                && self
                    .payer
                    .as_ref()
                    .is_some_and(|p| p.chain == PaymentChain::Solana));
        if solana {
            PaymentChain::Solana
        } else {
            PaymentChain::Evm
        }
    }
}

/// Everything a provider needs to ask the buyer for one call's payment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequirementRequest {
    pub buyer_id: String,
    pub listing_id: String,
    pub seller_id: String,
    /// Where the seller is paid, when the provider can route there.
    pub seller_payout: Option<WalletRef>,
    pub amount_cents: i64,
    /// ISO currency of `amount_cents` (`USD`).
    pub currency: String,
    pub route: Route,
}

/// A per-call payment requirement: what the 402 body carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentRequirement {
    /// The id the buyer retries with (`X-Crochet-Relay-Request-Id`).
    pub request_id: String,
    /// Provider-specific instructions, shown to the buyer as `requirements`.
    pub requirements: serde_json::Value,
}

/// What the host expects a request id to have paid (recorded when it was issued), so a
/// provider can check amount and recipient before calling it settled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SettlementQuery {
    pub request_id: String,
    pub amount_cents: i64,
    pub currency: String,
}

/// Where a payment stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Settlement {
    /// Not final yet; ask again after `retry_after_seconds`.
    Pending {
        retry_after_seconds: u64,
        /// The provider's own status word (`waiting`, `submitted`, …).
        provider_status: String,
    },
    /// Final and paid.
    Settled {
        amount_cents: i64,
        currency: String,
        /// The paying address, when the provider reports it.
        payer: Option<String>,
        /// Transaction hashes or other references.
        tx_refs: Vec<String>,
    },
    /// Final and not paid (failed, expired or refunded).
    Failed { reason: String, refunded: bool },
}

/// Why a provider could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The route cannot carry this amount. `on_solana` says whether the refused route was
    /// already the recommended Solana one (then only a higher price helps).
    #[error("the payment route cannot carry this amount: {message}")]
    RouteMinimum {
        minimum_cents: Option<i64>,
        on_solana: bool,
        message: String,
    },
    /// No supported wallet/currency/chain combination for this request.
    #[error("unsupported payment route: {0}")]
    UnsupportedRoute(String),
    /// The provider does not know this request id.
    #[error("unknown payment request")]
    UnknownRequest,
    /// The provider asked us to slow down.
    #[error("payment provider rate limit reached; retry in {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    /// The provider could not be reached or failed (after retries).
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// The provider is configured wrongly (missing treasury address, …).
    #[error("payment provider misconfigured: {0}")]
    Misconfigured(String),
}

/// A payment provider. Implementations must be cheap to share (`Arc<dyn PaymentProvider>`)
/// and safe to call concurrently.
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Stable name (`mock`, `relay`), recorded with each payment.
    fn name(&self) -> &'static str;

    /// Creates the requirement for one call, or refuses a route that cannot carry the
    /// amount with [`PaymentError::RouteMinimum`].
    async fn create_requirement(
        &self,
        req: &RequirementRequest,
    ) -> Result<PaymentRequirement, PaymentError>;

    /// Reports where the payment of `query.request_id` stands.
    async fn settlement(&self, query: &SettlementQuery) -> Result<Settlement, PaymentError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_chain_prefers_explicit_choices() {
        let sol_wallet = WalletRef {
            id: "w".into(),
            address: "a".into(),
            chain: PaymentChain::Solana,
        };
        let mut r = Route {
            payer: Some(sol_wallet),
            ..Route::default()
        };
        assert_eq!(r.chain(), PaymentChain::Solana);
        r.origin_currency = Some(OriginCurrency::Usdc);
        assert_eq!(
            r.chain(),
            PaymentChain::Evm,
            "an explicit currency without the Solana chain is EVM"
        );
        r.origin_chain_id = Some(SOLANA_CHAIN_ID);
        assert_eq!(r.chain(), PaymentChain::Solana);
        assert_eq!(
            Route {
                origin_currency: Some(OriginCurrency::Sol),
                ..Route::default()
            }
            .chain(),
            PaymentChain::Solana
        );
        assert_eq!(Route::default().chain(), PaymentChain::Evm);
    }

    #[test]
    fn origin_currency_parsing() {
        assert_eq!(OriginCurrency::parse(" sol "), Some(OriginCurrency::Sol));
        assert_eq!(OriginCurrency::parse("usdc"), Some(OriginCurrency::Usdc));
        assert_eq!(OriginCurrency::parse("BTC"), None);
    }

    #[test]
    fn settlement_serializes_with_a_status_tag() {
        let s = Settlement::Failed {
            reason: "refund".into(),
            refunded: true,
        };
        assert_eq!(serde_json::to_value(&s).unwrap()["status"], "failed");
    }
}

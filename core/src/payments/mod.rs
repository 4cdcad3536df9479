//! Payments: the configured [`PaymentProvider`] behind one `Arc<dyn …>`, and the mock
//! provider's settle route (mounted only while the mock provider is active, so it never
//! exists in `production`).
//!
//! The gateway asks the provider for per-call requirements and settlement status; it
//! never knows which provider it talks to. Adding a provider is one more crate in
//! `payment-providers/` plus one arm in [`Payments::from_config`].

pub mod http;
pub mod x402;

use std::sync::Arc;

pub use crochet_payment::{
    OriginCurrency, PaymentChain, PaymentError, PaymentProvider, PaymentRequirement,
    RequirementRequest, Route, Settlement, SettlementQuery, WalletRef,
};
use crochet_payment_mock::MockProvider;

use crate::config::{Config, PaymentProviderKind};
use crate::storage::Database;

/// A payment wallet of a profile, as providers see it.
pub fn wallet_ref(w: crate::identity::WalletSummary) -> WalletRef {
    WalletRef {
        id: w.id,
        address: w.wallet_address,
        chain: match w.chain {
            crate::identity::crypto::Chain::Evm => PaymentChain::Evm,
            crate::identity::crypto::Chain::Solana => PaymentChain::Solana,
        },
    }
}

/// The active provider, plus a typed handle on the mock one when it is active.
#[derive(Clone)]
pub struct Payments {
    provider: Arc<dyn PaymentProvider>,
    mock: Option<MockProvider>,
    /// x402 beside the provider, when a facilitator is configured.
    x402: Option<x402::X402>,
}

impl Payments {
    /// Builds the provider named by `payment_provider`.
    pub fn from_config(
        config: &Config,
        db: &Database,
        public_url: &str,
    ) -> Result<Self, PaymentError> {
        match config.payment_provider {
            PaymentProviderKind::Mock => {
                let mock = MockProvider::new(db.pool().clone(), public_url);
                Ok(Self {
                    provider: Arc::new(mock.clone()),
                    mock: Some(mock),
                    x402: None,
                })
            }
            PaymentProviderKind::Relay => {
                let relay = config.relay.clone().unwrap_or_default();
                if relay.api_key.is_none() {
                    tracing::warn!(
                        "Relay has no API key (CROCHET_RELAY_API_KEY): settled payments are trusted \
                         from Relay's status without confirming recipient and amount"
                    );
                }
                Ok(Self {
                    provider: Arc::new(crochet_payment_relay::RelayProvider::new(relay)?),
                    mock: None,
                    x402: None,
                })
            }
        }
    }

    pub fn provider(&self) -> &Arc<dyn PaymentProvider> {
        &self.provider
    }

    /// Adds x402 beside the provider.
    pub fn with_x402(mut self, x402: Option<x402::X402>) -> Self {
        self.x402 = x402;
        self
    }

    /// x402, when a facilitator is configured.
    pub fn x402(&self) -> Option<&x402::X402> {
        self.x402.as_ref()
    }

    /// The mock provider, when it is the active one.
    pub fn mock(&self) -> Option<&MockProvider> {
        self.mock.as_ref()
    }
}

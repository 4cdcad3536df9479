//! Payments: the configured [`PaymentProvider`] behind one `Arc<dyn …>`, and the mock
//! provider's settle route (mounted only while the mock provider is active, so it never
//! exists in `production`).
//!
//! The gateway asks the provider for per-call requirements and settlement status; it
//! never knows which provider it talks to. Adding a provider is one more crate in
//! `payment-providers/` plus one arm in [`Payments::from_config`].

pub mod http;

use std::sync::Arc;

pub use crochet_payment::{
    OriginCurrency, PaymentChain, PaymentError, PaymentProvider, PaymentRequirement,
    RequirementRequest, Route, Settlement, SettlementQuery, WalletRef,
};
use crochet_payment_mock::MockProvider;

use crate::config::{Config, PaymentProviderKind};
use crate::storage::Database;

/// The active provider, plus a typed handle on the mock one when it is active.
#[derive(Clone)]
pub struct Payments {
    provider: Arc<dyn PaymentProvider>,
    mock: Option<MockProvider>,
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
                })
            }
        }
    }

    pub fn provider(&self) -> &Arc<dyn PaymentProvider> {
        &self.provider
    }

    /// The mock provider, when it is the active one.
    pub fn mock(&self) -> Option<&MockProvider> {
        self.mock.as_ref()
    }
}

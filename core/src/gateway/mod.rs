//! The pay-per-call gateway: the call pipeline ([`pipeline`]), its payment phase
//! (`payment`) and the recovery of paid calls a crash interrupted ([`recovery`]).
//! Signing a forwarded request and reaching a seller's private endpoint live in
//! [`crate::seller_client`], shared with the catalog's endpoint test, so a seller sees
//! the same headers and signature from either.

mod adapter;
pub mod discovery;
pub mod error;
pub mod http;
pub mod model;
mod payment;
pub(crate) use payment::provider_error;
pub mod pipeline;
pub mod recorder;
pub mod recovery;
pub mod store;
pub mod x402;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use error::GatewayError;
pub use pipeline::{GatewayCall, Outcome};

use crate::catalog::Catalog;
use crate::identity::Identity;
use crate::payments::Payments;
use crate::plugins::PluginHost;
use crate::plugins::policy::PolicyChain;
use crate::reputation::Reputation;
use crate::seller_client::upstream::UpstreamClient;
use crate::storage::Database;
use adapter::Adapter;
use recorder::Recorder;

/// The gateway service: what every call needs, shared by all of them.
#[derive(Clone)]
pub struct Gateway {
    db: Database,
    catalog: Catalog,
    identity: Identity,
    payments: Payments,
    upstream: UpstreamClient,
    receipts: crate::ledger::receipts::ReceiptSigner,
    /// The host's public URL, named as issuer in receipts.
    issuer: String,
    /// Batched history rows of calls that move no money.
    recorder: Recorder,
    policies: PolicyChain,
    plugins: PluginHost,
    /// Buyer and seller scores for the policy context.
    reputation: Reputation,
    /// Compiled seller adapters by `<source>:<sha256>:<updated_at>` (any change to a
    /// listing's adapter makes a new key).
    adapters: Arc<Mutex<HashMap<String, Adapter>>>,
    /// Leases of paid calls and the resolution of abandoned ones.
    recovery: Arc<recovery::Recovery>,
}

/// What the gateway is built from.
pub struct GatewayParts {
    pub db: Database,
    pub catalog: Catalog,
    pub identity: Identity,
    pub payments: Payments,
    pub upstream: UpstreamClient,
    pub receipts: crate::ledger::receipts::ReceiptSigner,
    /// The host's public URL, named as issuer in receipts.
    pub issuer: String,
    pub plugins: PluginHost,
    pub policies: PolicyChain,
    /// The batched history writer (shared with reputation, which flushes it).
    pub recorder: Recorder,
    pub reputation: Reputation,
    pub recovery: recovery::RecoverySettings,
}

impl Gateway {
    /// The gateway, from its parts.
    pub fn new(parts: GatewayParts) -> Self {
        let GatewayParts {
            db,
            catalog,
            identity,
            payments,
            upstream,
            receipts,
            issuer,
            plugins,
            policies,
            recorder,
            reputation,
            recovery,
        } = parts;
        Self {
            db,
            catalog,
            identity,
            payments,
            upstream,
            receipts,
            issuer,
            recorder,
            policies,
            plugins,
            reputation,
            adapters: Arc::default(),
            recovery: Arc::new(recovery::Recovery::new(recovery)),
        }
    }

    /// Waits until every queued history row is committed (before history reads and at
    /// shutdown).
    pub async fn flush(&self) {
        self.recorder.flush().await;
    }

    /// History rows waiting for the batched writer (for the metrics scrape).
    pub fn history_queued(&self) -> usize {
        self.recorder.queued()
    }
}

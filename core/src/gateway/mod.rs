//! The pay-per-call gateway: the call pipeline ([`pipeline`]), its payment phase
//! (`payment`) and the recovery of paid calls a crash interrupted ([`recovery`]).
//! Signing a forwarded request and reaching a seller's private endpoint live in
//! [`crate::seller_client`], shared with the catalog's endpoint test, so a seller sees
//! the same headers and signature from either.

pub mod error;
pub mod http;
pub mod model;
mod payment;
pub mod pipeline;
pub mod recorder;
pub mod recovery;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use error::GatewayError;
pub use pipeline::{GatewayCall, Outcome};

use crate::catalog::Catalog;
use crate::identity::Identity;
use crate::payments::Payments;
use crate::plugins::policy::PolicyChain;
use crate::plugins::{AdapterPlugin, PluginHost};
use crate::reputation::Reputation;
use crate::seller_client::upstream::UpstreamClient;
use crate::storage::Database;
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

/// A listing's seller adapter with its configuration.
#[derive(Clone)]
struct Adapter {
    plugin: AdapterPlugin,
    config: Arc<str>,
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

    /// The compiled adapter of a listing (compiled once per adapter version).
    async fn adapter(&self, listing_id: &str, key: &str) -> Result<Adapter, GatewayError> {
        if let Some(a) = self.adapters.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(a);
        }
        let row = self
            .catalog
            .adapter_component(listing_id)
            .await?
            .ok_or(GatewayError::AdapterUnavailable)?;
        let host = self.plugins.clone();
        let name = format!("adapter:{listing_id}");
        let plugin = tokio::task::spawn_blocking(move || host.adapter(&name, &row.1))
            .await
            .map_err(|_| GatewayError::AdapterUnavailable)?
            .map_err(|e| {
                tracing::warn!(listing_id, error = %e, "cannot load seller adapter");
                GatewayError::AdapterUnavailable
            })?;
        let adapter = Adapter {
            plugin,
            config: row.0.into(),
        };
        if let Ok(mut map) = self.adapters.lock() {
            // Old versions of this listing's adapter are never asked for again.
            map.retain(|k, _| !k.ends_with(&format!("@{listing_id}")));
            map.insert(key.to_owned(), adapter.clone());
        }
        Ok(adapter)
    }
}

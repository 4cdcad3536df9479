//! What the operator has loaded: one [`PluginInfo`] per configured plugin (shown by the
//! admin API and logged, one line each, at start-up and after every reload), and the
//! sample calls a plugin must survive before it serves.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{AgentStats, CallContext, CallKind, PluginLimits};
use crate::config::FailureMode;

/// One loaded plugin, as an operator needs to identify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PluginInfo {
    /// The configured name (logs, counters, listing configuration).
    pub name: String,
    /// `policy` or `scorer`.
    pub world: &'static str,
    /// `bundled:<name>` or the component file's path.
    pub source: String,
    /// SHA-256 of the component's bytes, hex.
    pub sha256: String,
    /// What a failure of this plugin does to a call (policies only).
    #[schema(value_type = Option<String>, example = "closed")]
    pub failure: Option<FailureMode>,
    /// Size of the component in bytes.
    pub bytes: usize,
    /// The `crochet:plugin` version a policy was built against (`1.0.0`, `1.1.0`);
    /// unset for the scorer, whose exports are the same in every version.
    #[schema(value_type = Option<String>, example = "1.1.0")]
    pub wit_version: Option<&'static str>,
    /// `reuse` or `call` (policies only): whether warm instances serve many calls.
    #[schema(value_type = Option<String>, example = "reuse")]
    pub isolation: Option<&'static str>,
}

impl PluginInfo {
    /// Describes a component loaded from `source`.
    pub fn new(
        name: &str,
        world: &'static str,
        source: &str,
        wasm: &[u8],
        failure: Option<FailureMode>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            world,
            source: source.to_owned(),
            sha256: hex::encode(Sha256::digest(wasm)),
            failure,
            bytes: wasm.len(),
            wit_version: None,
            isolation: None,
        }
    }

    /// The start-up / reload log line: what runs, from where, and under which limits.
    pub fn log(&self, limits: &PluginLimits, event: &'static str) {
        tracing::info!(
            event,
            plugin = %self.name,
            world = self.world,
            source = %self.source,
            sha256 = %self.sha256,
            failure = self.failure.map_or("-", FailureMode::as_str),
            wit = self.wit_version.unwrap_or("-"),
            isolation = self.isolation.unwrap_or("-"),
            timeout_ms = u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            max_memory_bytes = limits.max_memory_bytes,
            max_output_bytes = limits.max_output_bytes,
            "plugin loaded"
        );
    }
}

/// The sample calls a policy is tried on before it serves: a paid gateway call and an
/// unauthenticated identity route, with documentation-range addresses and ids that
/// belong to nobody.
pub fn sample_contexts() -> [CallContext; 2] {
    let mut gateway = super::policy::context(
        CallKind::Gateway,
        "/api/v1/gateway/{listing_id}",
        "192.0.2.1".into(),
    );
    gateway.buyer_id = Some("00000000-0000-4000-8000-000000000001".into());
    gateway.seller_id = Some("00000000-0000-4000-8000-000000000002".into());
    gateway.listing_id = Some("00000000-0000-4000-8000-000000000003".into());
    gateway.price_cents = 100;
    gateway.body_json = "{}".into();
    gateway.body_size = 2;
    gateway.body_sha256 = hex::encode(Sha256::digest(b"{}"));
    gateway.payment = super::PaymentFlow::Requirement;
    let auth = super::policy::context(CallKind::Auth, "/api/v1/auth/challenge", "192.0.2.1".into());
    [gateway, auth]
}

/// The statistics a scorer is tried on: an agent with some history.
pub fn sample_stats() -> AgentStats {
    AgentStats {
        account_age_days: 30,
        successful_calls: 40,
        paid_calls: 20,
        paid_volume_cents: 2_000,
        distinct_buyers: 5,
        active_days: 10,
        seller_errors: 1,
        timeouts: 1,
        invalid_responses: 0,
        review_count: 3,
        rating_sum: 13,
        paid_reviewers: 2,
        purchases: 4,
        distinct_sellers: 2,
    }
}

//! Admin request and response types: suspension bodies, the operator's views of agents
//! and listings, marketplace statistics, failed calls and audit entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::catalog::{ListingStatus, PricingModel};
use crate::gateway::model::GatewayRequestStatus;
use crate::identity::Role;

/// `POST /admin/{agents,listings}/{id}/{suspend,reinstate}` body; it may be empty.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SuspendRequest {
    /// Why (at most 500 characters); kept in the audit log, and on a suspension while it
    /// holds.
    pub reason: Option<String>,
}

/// An agent's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Active,
    Suspended,
}

impl AgentStatus {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
        }
    }
}

/// An agent as the operator sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminAgent {
    pub id: String,
    pub display_name: Option<String>,
    pub role: Role,
    /// `active` or `suspended`.
    pub status: String,
    /// API keys not revoked (they all stop working while the agent is suspended).
    pub active_api_keys: i64,
    /// Listings of any status.
    pub listings: i64,
    pub created_at: String,
    pub updated_at: String,
    /// While suspended: when, by which operator credential, and why.
    pub suspended_at: Option<String>,
    pub suspended_by: Option<String>,
    pub suspension_reason: Option<String>,
}

/// `GET /admin/agents` filters.
#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AgentFilter {
    /// `active` or `suspended`.
    pub status: Option<AgentStatus>,
    /// `buyer`, `seller` or `both`.
    pub role: Option<Role>,
    pub page: Option<u32>,
    /// At most 100 (default 20).
    pub limit: Option<u32>,
}

/// A listing as the operator sees it: any status, and whether the operator holds it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminListing {
    pub id: String,
    pub slug: String,
    pub seller_id: String,
    /// The seller's standing: `active` or `suspended` (a suspended seller's listings take
    /// no calls and are not shown publicly, whatever their own status).
    pub seller_status: String,
    pub name: String,
    pub category: Option<String>,
    pub pricing_model: PricingModel,
    pub price_cents: i64,
    pub status: ListingStatus,
    /// Whether an operator's suspension holds the listing (its seller cannot lift it).
    pub suspended_by_operator: bool,
    /// While the operator holds it: the status reinstatement restores, when, by which
    /// operator credential, and why.
    pub status_before_suspension: Option<ListingStatus>,
    pub suspended_at: Option<String>,
    pub suspended_by: Option<String>,
    pub suspension_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /admin/listings` filters.
#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListingFilter {
    /// `draft`, `active` or `suspended`.
    pub status: Option<ListingStatus>,
    pub seller_id: Option<String>,
    /// A category slug.
    pub category: Option<String>,
    pub page: Option<u32>,
    /// At most 100 (default 20).
    pub limit: Option<u32>,
}

/// `GET /admin/stats` range.
#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// Start, inclusive: RFC 3339 (`2025-01-31T00:00:00Z`) or Unix seconds. Default: 24
    /// hours before `to`.
    pub from: Option<String>,
    /// End, exclusive: RFC 3339 or Unix seconds. Default: now (the current millisecond
    /// included).
    pub to: Option<String>,
}

/// Marketplace totals over a time range. Call counts come from the gateway's request
/// history (every attempt, 402s included), money from the ledger; amounts are cents of
/// `currency`, all positive.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MarketplaceStats {
    /// RFC 3339, inclusive.
    pub from: String,
    /// RFC 3339, exclusive.
    pub to: String,
    pub currency: &'static str,
    /// The marketplace fee rate (4.9 %).
    pub fee_rate: f64,
    /// Gateway attempts recorded in the range (402s, pending payments and refusals of
    /// payment included).
    pub gateway_calls: i64,
    /// Attempts that were paid (their charge is in the ledger).
    pub paid_calls: i64,
    /// Attempts that ended with an error code (seller errors and timeouts, failed or
    /// refused payments, interrupted calls).
    pub failed_calls: i64,
    /// `failed_calls / gateway_calls` (0 without calls), to four decimals.
    pub failure_rate: f64,
    /// Agents on the buying side of at least one attempt.
    pub distinct_buyers: i64,
    /// Agents on the selling side of at least one attempt.
    pub distinct_sellers: i64,
    /// What buyers were charged (`gateway_debit` and `balance_debit` entries).
    pub gross_volume_cents: i64,
    /// The marketplace's fees (`marketplace_fee` entries).
    pub marketplace_fees_cents: i64,
    /// What sellers were credited (`seller_credit` entries).
    pub seller_credits_cents: i64,
    /// Charges given back to buyers (`gateway_refund` entries of reversed calls).
    pub refunds_cents: i64,
    /// Fees given back by those reversals (`marketplace_fee_reversal`).
    pub fee_reversals_cents: i64,
    /// Seller credits taken back by those reversals (`seller_credit_reversal`).
    pub seller_credit_reversals_cents: i64,
    /// `marketplace_fees_cents - fee_reversals_cents`.
    pub net_marketplace_fees_cents: i64,
    /// Attempts by history status; every status is present.
    pub calls_by_status: BTreeMap<String, i64>,
}

/// A gateway call that failed, newest first in `GET /admin/gateway-requests/failed`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FailedRequest {
    pub id: String,
    pub listing_id: String,
    /// The listing's name, while the listing exists.
    pub listing_name: Option<String>,
    pub buyer_id: String,
    pub seller_id: String,
    pub status: GatewayRequestStatus,
    /// The stable code of the failure (`SELLER_TIMEOUT`, `SELLER_ERROR_RESPONSE`,
    /// `PAYMENT_FAILED`, …).
    pub error_code: String,
    pub seller_status_code: Option<i64>,
    pub latency_ms: Option<i64>,
    /// Whether the call was paid (a paid call's charge stands unless it was reversed).
    pub billable: bool,
    pub charged_cents: i64,
    pub created_at: String,
}

/// One operator action.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditRecord {
    pub id: String,
    /// `admin:` and a fingerprint of the operator credential's hash.
    pub actor: String,
    /// `agent.suspend`, `agent.reinstate`, `listing.suspend`, `listing.reinstate`, …
    pub action: String,
    /// `agent`, `listing`, …
    pub target_type: String,
    pub target_id: String,
    pub reason: Option<String>,
    /// What the target looked like before and after the action.
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
    /// The operator's address as the host saw it.
    pub client_addr: Option<String>,
    /// The `x-request-id` of the request that made the change.
    pub request_id: Option<String>,
    pub created_at: String,
}

/// `GET /admin/audit` filters.
#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// e.g. `listing.suspend`.
    pub action: Option<String>,
    /// `agent`, `listing`, …
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub page: Option<u32>,
    /// At most 100 (default 20).
    pub limit: Option<u32>,
}

//! Typed requests and answers of the agent-facing API.
//!
//! Answer types carry exactly the fields the host documents in its OpenAPI document
//! (`GET /api/openapi.json`); the host's test suite compares the two field by field, so
//! a field added or renamed on one side and not the other fails the build's tests
//! instead of drifting. Enumerations the host may extend (statuses, roles, tiers) are
//! strings here, so an older client still reads a newer host.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A profile as the host shows it (`GET /me`, `GET /agents/{id}`, registration).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub id: String,
    pub display_name: Option<String>,
    /// `buyer`, `seller` or `both`.
    pub role: String,
    /// `active`, or `suspended` by the operator.
    pub status: String,
    pub created_at: String,
    /// The current Crochet Score; `null` only when the scorer could not run.
    pub crochet_score: Option<ScoreBadge>,
    /// The score-based verified mark (score >= 800).
    pub verified: bool,
}

/// A score as listings and profiles show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreBadge {
    pub score: u32,
    pub tier: String,
    pub verified: bool,
}

/// A newly issued API key (registration, recovery, `POST /api-keys`). `api_key` is shown
/// once by the host: store it now. `Debug` never shows it.
#[derive(Clone, Serialize, Deserialize)]
pub struct IssuedKey {
    pub profile: Profile,
    /// The full `am_k_…` key.
    pub api_key: String,
    pub api_key_prefix: String,
    /// `Bearer am_k_…`, the exact `Authorization` value.
    pub authorization_header: String,
    pub api_key_info: ApiKeyInfo,
}

/// A newly registered agent.
pub type Registered = IssuedKey;

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("profile", &self.profile)
            .field("api_key", &"<redacted>")
            .field("api_key_info", &self.api_key_info)
            .finish_non_exhaustive()
    }
}

/// API key metadata; never the key itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: Option<String>,
    /// The key's first characters, for recognising it; not a credential.
    pub key_prefix: String,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// The key's spend limits; `None`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<KeyLimits>,
    /// What the key spent in its current windows.
    pub spend: KeySpend,
}

/// Spend limits of an API key (a sub-agent's key); each field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimits {
    /// The highest listing price per call, in cents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price_cents: Option<i64>,
    /// Spend per UTC calendar day, in cents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_cents: Option<i64>,
    /// Spend per 30 days (windows counted from the key's creation), in cents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_cents: Option<i64>,
    /// The listings (ids or slugs) the key may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing_ids: Option<Vec<String>>,
    /// The categories of listings the key may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    /// The sellers the key may buy from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_ids: Option<Vec<String>>,
    /// When the key stops working (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// What a key spent in its current windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySpend {
    /// The current UTC day.
    pub day: SpendWindow,
    /// The current 30-day window.
    pub month: SpendWindow,
}

/// One spend window of a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpendWindow {
    pub spent_cents: i64,
    pub limit_cents: Option<i64>,
    pub remaining_cents: Option<i64>,
    pub started_at: String,
    pub resets_at: String,
}

/// The caller's marketplace balance (`GET /balance`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Balance {
    /// The balance in `currency`, in cents.
    pub available_cents: i64,
    pub currency: String,
    /// Every currency held.
    pub balances: Vec<CurrencyBalance>,
    /// The ledger entry types that move the balance.
    pub movement_entry_types: Vec<String>,
}

/// A balance in one currency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurrencyBalance {
    pub currency: String,
    pub amount_cents: i64,
    pub updated_at: Option<String>,
}

/// A top-up of the balance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deposit {
    pub id: String,
    /// `awaiting_payment`, `credited` or `failed`.
    pub status: String,
    pub amount_cents: i64,
    pub currency: String,
    pub relay_request_id: String,
    pub provider: String,
    pub created_at: String,
    pub credited_at: Option<String>,
}

/// A credited deposit and the balance after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepositConfirmation {
    pub deposit: Deposit,
    /// True for the request that credited it; false for a repeat.
    pub credited_now: bool,
    pub balance_cents: i64,
}

/// A wallet linked to the caller's profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalletSummary {
    pub id: String,
    pub wallet_address: String,
    /// `evm` or `solana`.
    pub chain: String,
    pub label: Option<String>,
    /// `active`, `disabled`, `revoked` or `compromised`.
    pub status: String,
    pub can_auth: bool,
    pub can_recover: bool,
    pub can_pay: bool,
    pub can_payout: bool,
    pub is_default_payment: bool,
    pub is_default_payout: bool,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// `GET /me`: the caller's profile, wallets and the key it authenticated with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Me {
    pub profile: Profile,
    pub wallets: Vec<WalletSummary>,
    pub api_key: ApiKeyInfo,
}

/// What a newly linked wallet may do (`POST /me/wallets`); `None` keeps the host's
/// default for a linked wallet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WalletPermissions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_auth: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_recover: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_pay: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_payout: Option<bool>,
    /// Make it the wallet payments come from.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_default_payment: bool,
    /// Make it the wallet payouts go to.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_default_payout: bool,
}

/// A listing's review count and mean rating.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListingRating {
    pub review_count: i64,
    pub average_rating: Option<f64>,
}

/// A listing as buyers see it (`GET /listings`, `GET /listings/{id}`). The seller's
/// private endpoint is never part of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listing {
    pub id: String,
    pub slug: String,
    pub seller_id: String,
    pub name: String,
    pub description: String,
    pub category: Option<String>,
    pub delivery_type: String,
    pub auth_method: String,
    pub formats: Vec<String>,
    pub connection_instructions: Option<String>,
    /// `free` or `per_call`.
    pub pricing_model: String,
    /// USD per call.
    pub pricing_amount: f64,
    /// The same price in cents, as accounting uses it.
    pub price_cents: i64,
    pub pricing_currency: String,
    /// `draft`, `active` or `suspended`.
    pub status: String,
    /// Where to `POST` to call it (through [`crate::Client::call`]); absent when the
    /// listing cannot be called.
    #[serde(default)]
    pub gateway_url: Option<String>,
    /// Per-plugin settings that apply to calls of this listing.
    #[serde(default)]
    pub policy_config: Option<Value>,
    /// The seller adapter reshaping its calls: `bundled:<name>` or `upload`.
    #[serde(default)]
    pub adapter: Option<String>,
    pub rating: ListingRating,
    /// The seller's Crochet Score; `null` until first computed.
    pub seller_score: Option<ScoreBadge>,
    pub seller_verified: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /listings` filters; `None` fields are not sent.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListingQuery {
    /// Words to find in name and description (prefix match).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// `free` or `per_call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_type: Option<String>,
    /// USD, inclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_price: Option<f64>,
    /// USD, inclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_price: Option<f64>,
    /// `relevance`, `newest`, `price_asc`, `price_desc`, `score` or `rating`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl ListingQuery {
    /// A text search.
    pub fn text(q: impl Into<String>) -> Self {
        Self {
            q: Some(q.into()),
            ..Self::default()
        }
    }
}

/// `POST /listings` body (without the proof-of-work, which the client adds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewListing {
    pub name: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// `free` or `per_call`.
    pub pricing_model: String,
    /// USD per call, at most two decimals; required (> 0) for `per_call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing_amount: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing_currency: Option<String>,
    /// The seller's endpoint; required for `per_call`. Never shown to buyers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_endpoint_url: Option<String>,
    /// `draft` (the host's default) or `active`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_instructions: Option<String>,
    /// Per-plugin settings, keyed by policy plugin name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_config: Option<Value>,
}

impl NewListing {
    /// An active `per_call` listing at `price_usd` served by `endpoint`.
    pub fn per_call(
        name: impl Into<String>,
        description: impl Into<String>,
        price_usd: f64,
        endpoint: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            category: None,
            pricing_model: "per_call".into(),
            pricing_amount: Some(price_usd),
            pricing_currency: Some("USD".into()),
            private_endpoint_url: Some(endpoint.into()),
            status: Some("active".into()),
            delivery_type: None,
            auth_method: None,
            formats: None,
            connection_instructions: None,
            policy_config: None,
        }
    }
}

/// `PATCH /listings/{id}` body; `None` fields are left as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListingUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_instructions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing_model: Option<String>,
    /// USD per call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing_amount: Option<f64>,
    /// `draft`, `active` or `suspended`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_endpoint_url: Option<String>,
    /// Replaces the per-plugin settings (`{}` clears them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_config: Option<Value>,
}

/// A created listing with its endpoint's one-time signing secret (the HMAC key the
/// seller verifies `X-Crochet-Signature` with, see [`crate::seller`]): store it now.
#[derive(Clone)]
pub struct CreatedListing {
    pub id: String,
    pub listing: Listing,
    pub signing_secret: String,
}

impl std::fmt::Debug for CreatedListing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedListing")
            .field("id", &self.id)
            .field("listing", &self.listing)
            .field("signing_secret", &"<redacted>")
            .finish()
    }
}

/// Safe metadata of a listing's private endpoint: never its URL, auth value or secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointInfo {
    pub listing_id: String,
    /// Whether a private URL is set.
    pub configured: bool,
    /// `active` or `paused`.
    pub status: String,
    pub timeout_ms: i64,
    pub max_request_bytes: i64,
    pub max_response_bytes: i64,
    pub auth_header_configured: bool,
    #[serde(default)]
    pub auth_header_name: Option<String>,
    pub signing_secret_rotated_at: String,
    pub updated_at: String,
}

/// `PUT /listings/{id}/endpoint` body; `None` fields are left as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EndpointUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_endpoint_url: Option<String>,
    /// A header the gateway adds to forwarded requests (the seller's own auth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_header_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_header_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<i64>,
    /// `active` or `paused`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A new signing secret, shown once. `Debug` never shows it.
#[derive(Clone, Serialize, Deserialize)]
pub struct SigningSecret {
    pub signing_secret: String,
    pub rotated_at: String,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningSecret")
            .field("signing_secret", &"<redacted>")
            .field("rotated_at", &self.rotated_at)
            .finish()
    }
}

/// The answer of a signed test request to the private endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointTestResult {
    /// The endpoint answered 2xx with JSON.
    pub ok: bool,
    pub request_id: String,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub json: bool,
    /// Why it failed (`SELLER_TIMEOUT`, ...).
    #[serde(default)]
    pub error: Option<String>,
}

/// A listing's seller adapter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdapterInfo {
    pub listing_id: String,
    /// `bundled:<name>` or `upload`.
    pub source: String,
    pub component_sha256: String,
    pub component_bytes: i64,
    pub config: Value,
    pub updated_at: String,
}

/// A successful gateway call.
#[derive(Debug, Clone)]
pub struct CallResult {
    pub request_id: String,
    pub listing_id: String,
    /// The seller's JSON answer.
    pub seller_response: Value,
    /// What the call cost (0 for free listings).
    pub charged_cents: i64,
    pub currency: String,
    pub billable: bool,
    /// The payment's status object (`status`, `relay_request_id`, `flow`, ...).
    pub payment: Option<Value>,
    /// The idempotency key the call was made with (generated when none was given).
    pub idempotency_key: String,
    /// The whole `data` of the success (fees, seller status code, ...).
    pub data: Value,
}

/// One gateway attempt as `GET /gateway-requests` shows it: metadata and hashes, never
/// bodies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayRequest {
    pub id: String,
    pub buyer_id: String,
    pub seller_id: String,
    pub listing_id: String,
    pub relay_request_id: Option<String>,
    /// `completed`, `payment_required`, `seller_error`, ...
    pub status: String,
    pub billable: bool,
    pub charged_cents: i64,
    pub fee_cents: i64,
    pub seller_cents: i64,
    pub currency: String,
    pub request_bytes: i64,
    pub request_sha256: String,
    pub response_bytes: Option<i64>,
    pub response_sha256: Option<String>,
    pub seller_status_code: Option<i64>,
    pub latency_ms: Option<i64>,
    pub error_code: Option<String>,
    pub attempts: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// A receipt of a billable call, signed by the host (verify it with
/// [`crate::Client::verify_receipt`] or [`crate::receipts::verify`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub id: String,
    pub gateway_request_id: String,
    /// The exact signed bytes (compact JSON). Verify against this string.
    pub payload: String,
    /// `payload` parsed, for reading.
    pub content: Value,
    /// Base64 ed25519 signature of `payload`.
    pub signature: String,
    pub signature_algorithm: String,
    pub key_id: String,
    pub created_at: String,
    /// `charged`, or `reversed` when the call's charge was undone (refunded to the
    /// buyer's balance).
    pub status: String,
    /// The refund of a reversed call: `{amount_cents, to}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<Value>,
    pub call_status: Option<String>,
}

/// A published receipt verification key (`/.well-known/crochet-receipt-keys`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicReceiptKey {
    pub key_id: String,
    /// `ed25519`.
    pub algorithm: String,
    /// Hex of the 32-byte public key.
    pub public_key: String,
    /// `current` or `previous`.
    pub status: String,
}

/// A review of a listing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Review {
    pub id: String,
    pub listing_id: String,
    pub seller_id: String,
    pub buyer_id: String,
    /// 1 to 5.
    pub rating: i64,
    pub comment: Option<String>,
    /// Always true: a review needs a successful call of the listing.
    pub verified_purchase: bool,
    /// Whether the qualifying call was paid.
    pub paid_purchase: bool,
    pub created_at: String,
}

/// One part of a score, as the scorer explained it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreComponent {
    pub name: String,
    pub points: i32,
    pub detail: String,
}

/// `GET /agents/{id}/score`: the public Crochet Score.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentScore {
    pub agent_id: String,
    /// 0-1000.
    pub score: u32,
    /// Low, Moderate, Trusted, Elite or Exceptional.
    pub tier: String,
    pub verified: bool,
    /// The statistics the scorer was given (`paid_calls`, `distinct_buyers`, ...).
    pub inputs: Value,
    pub components: Vec<ScoreComponent>,
    /// The scoring plugin (`bundled:scoring` unless the operator swapped it).
    pub scorer: String,
    pub computed_at: String,
}

/// One ledger entry of the caller's (`GET /ledger`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub id: String,
    /// `buyer_charge`, `seller_payable`, `marketplace_fee`, or a reversal.
    pub entry_type: String,
    /// Signed: a charge to the caller is negative.
    pub amount_cents: i64,
    pub currency: String,
    pub gateway_request_id: Option<String>,
    pub relay_request_id: Option<String>,
    pub listing_id: Option<String>,
    pub created_at: String,
}

/// A page position for the list routes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PageQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

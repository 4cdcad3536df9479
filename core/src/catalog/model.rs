//! Catalog request and response types, and the listing and endpoint states stored in
//! rows (read back through `From<String>`; an unknown stored value reads as the most
//! restrictive state).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::reputation::model::ScoreBadge;

/// Public pricing models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PricingModel {
    Free,
    PerCall,
}

impl PricingModel {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            PricingModel::Free => "free",
            PricingModel::PerCall => "per_call",
        }
    }
}

/// From a stored row: anything but `per_call` is free.
impl From<String> for PricingModel {
    fn from(s: String) -> Self {
        if s == "per_call" {
            PricingModel::PerCall
        } else {
            PricingModel::Free
        }
    }
}

/// Listing lifecycle: `draft` (not browsable), `active`, `suspended` (kept, not callable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListingStatus {
    Draft,
    Active,
    Suspended,
}

impl ListingStatus {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            ListingStatus::Draft => "draft",
            ListingStatus::Active => "active",
            ListingStatus::Suspended => "suspended",
        }
    }

    /// A stored value; anything unknown is a draft (not browsable, not callable).
    pub fn parse(s: &str) -> Self {
        match s {
            "active" => ListingStatus::Active,
            "suspended" => ListingStatus::Suspended,
            _ => ListingStatus::Draft,
        }
    }
}

impl From<String> for ListingStatus {
    fn from(s: String) -> Self {
        Self::parse(&s)
    }
}

/// A marketplace category.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Category {
    pub slug: String,
    pub name: String,
    pub description: String,
}

/// `POST /listings/challenge` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListingChallenge {
    /// Find `pow_nonce` with `sha256(challenge + pow_nonce)` starting with `difficulty` hex zeros.
    pub challenge: String,
    pub difficulty: u8,
    pub algorithm: &'static str,
    pub expires_at: String,
}

/// `POST /listings` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateListingRequest {
    /// Solution of the seller's newest open listing challenge (or of `pow_challenge`).
    pub pow_nonce: String,
    /// Which challenge `pow_nonce` solves; default: the seller's newest open one.
    pub pow_challenge: Option<String>,
    pub name: String,
    pub description: String,
    /// A slug from `GET /categories`.
    pub category: Option<String>,
    /// Default `api`.
    pub delivery_type: Option<String>,
    /// Default `none`.
    pub auth_method: Option<String>,
    /// Default `["json"]`.
    pub formats: Option<Vec<String>>,
    pub connection_instructions: Option<String>,
    pub pricing_model: PricingModel,
    /// USD per call, at most two decimals; required (> 0) for `per_call`, 0 or absent for `free`.
    #[schema(value_type = Option<f64>)]
    pub pricing_amount: Option<serde_json::Number>,
    /// Only `USD`.
    pub pricing_currency: Option<String>,
    /// The seller's HTTPS endpoint; required for `per_call`. Never shown to anyone.
    pub private_endpoint_url: Option<String>,
    /// `draft` (default) or `active`.
    pub status: Option<ListingStatus>,
    /// Per-plugin settings for this listing's calls, keyed by policy plugin name, e.g.
    /// `{"request-validation": {"schema": {...}}}`. Public: buyers see the rules.
    #[schema(value_type = Option<Object>)]
    pub policy_config: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `PATCH /listings/{id}` body: absent fields are left as they are.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateListingRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub delivery_type: Option<String>,
    pub auth_method: Option<String>,
    pub formats: Option<Vec<String>>,
    pub connection_instructions: Option<String>,
    pub pricing_model: Option<PricingModel>,
    #[schema(value_type = Option<f64>)]
    pub pricing_amount: Option<serde_json::Number>,
    pub status: Option<ListingStatus>,
    /// Updates the gateway endpoint of the listing.
    pub private_endpoint_url: Option<String>,
    /// Replaces the per-plugin settings (`{}` clears them).
    #[schema(value_type = Option<Object>)]
    pub policy_config: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A listing as buyers see it. The private endpoint is never part of it.
#[derive(Debug, Clone, Serialize, ToSchema)]
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
    pub pricing_model: PricingModel,
    /// USD per call.
    pub pricing_amount: f64,
    /// The same price in cents, as accounting uses it.
    pub price_cents: i64,
    pub pricing_currency: String,
    pub status: ListingStatus,
    /// `POST` here to call the capability (per_call listings, and free ones with an endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
    /// Per-plugin settings that apply to calls of this listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub policy_config: Option<serde_json::Value>,
    /// The seller adapter reshaping this listing's calls: `bundled:<name>` or `upload`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// Reviews of this listing.
    pub rating: ListingRating,
    /// The seller's Crochet Score; `null` until it is first computed.
    pub seller_score: Option<ScoreBadge>,
    /// The score-based verified checkmark of the seller (score >= 800).
    pub seller_verified: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A listing's review count and mean rating (`null` without reviews).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ListingRating {
    pub review_count: i64,
    pub average_rating: Option<f64>,
}

/// `PUT /listings/{id}/adapter` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutAdapterRequest {
    /// A bundled adapter (`chat-adapter`); absent keeps the current component (e.g. one
    /// uploaded with `PUT /listings/{id}/adapter/component`) and changes only `config`.
    pub bundled: Option<String>,
    /// The adapter's configuration (JSON object).
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A listing's seller adapter.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdapterInfo {
    pub listing_id: String,
    /// `bundled:<name>` or `upload`.
    pub source: String,
    pub component_sha256: String,
    pub component_bytes: i64,
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    pub updated_at: String,
}

/// Safe metadata of a listing's private endpoint: never the URL, auth value or secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_header_name: Option<String>,
    pub signing_secret_rotated_at: String,
    pub updated_at: String,
}

/// A new signing secret, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct SigningSecret {
    /// HMAC key for `X-Crochet-Signature` (use its UTF-8 bytes). Store it now.
    pub signing_secret: String,
    pub rotated_at: String,
}

/// `POST /listings` response: the listing plus its gateway endpoint with the one-time secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedListing {
    #[serde(flatten)]
    pub listing: Listing,
    pub gateway_endpoint: CreatedEndpoint,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedEndpoint {
    /// Shown once: store it to verify forwarded requests.
    pub signing_secret: String,
    #[serde(flatten)]
    pub info: EndpointInfo,
}

/// Endpoint status a seller can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    Active,
    Paused,
}

impl EndpointStatus {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointStatus::Active => "active",
            EndpointStatus::Paused => "paused",
        }
    }
}

/// From a stored row: anything but `active` is paused (not forwarded to).
impl From<String> for EndpointStatus {
    fn from(s: String) -> Self {
        if s == "active" {
            EndpointStatus::Active
        } else {
            EndpointStatus::Paused
        }
    }
}

/// `PUT /listings/{id}/endpoint` body: absent fields are left as they are.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpointRequest {
    pub private_endpoint_url: Option<String>,
    /// Header sent to the seller on every forward (default name `Authorization`).
    pub auth_header_name: Option<String>,
    /// Its value; an empty string removes the header.
    pub auth_header_value: Option<String>,
    /// 100 to 60000.
    pub timeout_ms: Option<i64>,
    /// 1 to 10 MiB.
    pub max_request_bytes: Option<i64>,
    /// 1 to 10 MiB.
    pub max_response_bytes: Option<i64>,
    pub status: Option<EndpointStatus>,
}

/// What the signed test request found.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointTestResult {
    /// 2xx with a JSON body.
    pub ok: bool,
    pub request_id: String,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub json: bool,
    /// Stable code when the request did not complete (`SELLER_TIMEOUT`, `SELLER_UNREACHABLE`, …).
    pub error: Option<&'static str>,
}

/// Sort orders of `GET /listings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum ListingSort {
    /// Best match first: the default of a search (`q`); without `q`, newest.
    Relevance,
    /// Newest first: the default without `q`.
    #[default]
    Newest,
    PriceAsc,
    PriceDesc,
    /// The seller's Crochet Score, highest first.
    Score,
    /// Average rating, highest first.
    Rating,
}

/// `GET /listings` filters.
#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListingQuery {
    /// Words to find in name and description (prefix match).
    pub q: Option<String>,
    pub category: Option<String>,
    pub pricing_model: Option<PricingModel>,
    pub delivery_type: Option<String>,
    /// USD, inclusive.
    pub min_price: Option<f64>,
    /// USD, inclusive.
    pub max_price: Option<f64>,
    /// `relevance` (the default with `q`: best match first), `newest` (the default
    /// without `q`), `price_asc`, `price_desc`, `score` (seller's Crochet Score) or
    /// `rating` (average review rating).
    pub sort: Option<ListingSort>,
    pub page: Option<u32>,
    pub limit: Option<u32>,
}

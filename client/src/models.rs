//! Typed requests and answers for the routes this client covers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A newly registered agent. `api_key` is shown once by the host: store it now.
#[derive(Clone, Deserialize)]
pub struct Registered {
    pub profile_id: String,
    pub api_key: String,
    /// `Bearer am_k_…`.
    pub authorization_header: String,
    pub role: String,
    pub display_name: Option<String>,
    /// The whole `profile` object (Crochet Score, verified mark, ...).
    pub profile: Value,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("profile_id", &self.profile_id)
            .field("api_key", &"<redacted>")
            .field("role", &self.role)
            .field("display_name", &self.display_name)
            .finish_non_exhaustive()
    }
}

/// A listing as buyers see it (`GET /listings`, `GET /listings/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listing {
    pub id: String,
    pub slug: String,
    pub seller_id: String,
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub category: Option<String>,
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
    #[serde(default)]
    pub delivery_type: Option<String>,
    #[serde(default)]
    pub formats: Vec<String>,
    #[serde(default)]
    pub connection_instructions: Option<String>,
    #[serde(default)]
    pub policy_config: Option<Value>,
    #[serde(default)]
    pub seller_verified: bool,
    #[serde(default)]
    pub created_at: Option<String>,
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
#[derive(Debug, Clone, Serialize)]
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

/// A created listing with its endpoint's one-time signing secret (the HMAC key the
/// seller verifies `X-Crochet-Signature` with): store it now.
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

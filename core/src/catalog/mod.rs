//! Catalog: categories, listings, listing proof-of-work, and each listing's private
//! gateway endpoint (URL, upstream auth header and signing secret, encrypted at rest).
//!
//! [`Catalog`] owns the rules; [`http`] only parses and answers. Nothing it returns to
//! anyone contains a private URL, an upstream auth value or a signing secret, except
//! the secret itself exactly once, at creation and at rotation.

pub mod error;
pub mod http;
pub mod model;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use rand::RngCore as _;
use reqwest::Url;
use serde::Serialize;
use utoipa::ToSchema;

pub use error::CatalogError;
pub use model::*;

use crate::identity::Principal;
use crate::identity::crypto::verify_pow;
use crate::plugins::PluginHost;
use crate::secrets::Cipher;
use crate::seller_client::signing::SignedHeaders;
use crate::seller_client::upstream::{UpstreamClient, UpstreamError, UpstreamRequest};
use crate::storage::cache::{Bus, Cache, Invalidation};
use crate::storage::{Database, Page, now_ms, rfc3339};
use sha2::{Digest as _, Sha256};
use store::{EndpointRow, ListingRow, ListingWithEndpoint};

type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// Built-in categories; operators add more in `crochet.toml`.
pub const DEFAULT_CATEGORIES: &[(&str, &str, &str)] = &[
    (
        "ai-models",
        "AI models",
        "Inference, generation and embeddings",
    ),
    (
        "agents",
        "Agents",
        "Autonomous agents that complete tasks end to end",
    ),
    ("data", "Data", "Datasets, enrichment, lookups and feeds"),
    (
        "search",
        "Search & research",
        "Web search, retrieval and research",
    ),
    (
        "developer-tools",
        "Developer tools",
        "Code, testing and build services",
    ),
    (
        "automation",
        "Automation",
        "Workflows, integrations and scheduling",
    ),
    ("finance", "Finance", "Market data, payments and accounting"),
    (
        "security",
        "Security",
        "Scanning, verification and monitoring",
    ),
    ("media", "Media", "Images, audio, video and documents"),
    ("other", "Other", "Everything else"),
];

/// Endpoint limits: defaults and bounds.
pub const DEFAULT_TIMEOUT_MS: i64 = 30_000;
pub const DEFAULT_MAX_BYTES: i64 = 1024 * 1024;
const TIMEOUT_RANGE: std::ops::RangeInclusive<i64> = 100..=60_000;
const BYTES_RANGE: std::ops::RangeInclusive<i64> = 1..=10 * 1024 * 1024;
/// Largest price: one million USD per call.
const MAX_PRICE_CENTS: i64 = 100_000_000;

/// Settings the catalog needs.
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    pub public_url: String,
    pub pow_difficulty: u8,
    pub challenge_ttl_ms: i64,
    pub categories: Vec<Category>,
}

/// The catalog service.
#[derive(Clone)]
pub struct Catalog {
    db: Database,
    cipher: Arc<Cipher>,
    upstream: UpstreamClient,
    settings: Arc<CatalogSettings>,
    /// Listing reference (id or slug) → what a call needs; every write to a listing or
    /// its endpoint publishes on the bus (see `storage::cache`).
    calls: Arc<Cache<Arc<ListingForCall>>>,
    /// Checks uploaded seller adapters.
    plugins: PluginHost,
}

/// A listing and its decrypted endpoint: everything a gateway call reads.
#[derive(Debug)]
pub struct ListingForCall {
    pub listing: ListingRow,
    pub endpoint: ResolvedEndpoint,
    /// `listing.policy_config` split by plugin name, each entry as the JSON text its
    /// plugin receives (serialized once per cache fill, not per call).
    pub policy_config: std::collections::HashMap<String, String>,
}

/// What `DELETE /listings/{id}` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeleteOutcome {
    pub id: String,
    /// `deleted` (drafts) or `suspended` (published listings).
    pub status: &'static str,
}

/// A listing's endpoint with its secrets decrypted, for the gateway's forwarding path.
#[derive(Debug, Clone)]
pub struct ResolvedEndpoint {
    /// Parsed once; checked again against the host's policy on every send.
    pub url: Option<Url>,
    /// The seller's upstream auth header, parsed once (the value is marked sensitive).
    pub auth_header: Option<(HeaderName, HeaderValue)>,
    pub signing_secret: String,
    pub timeout: Duration,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    pub active: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAuth {
    name: String,
    value: String,
}

impl StoredAuth {
    /// As a header; both parts were checked by `check_auth_header` when they were set.
    fn header(self) -> Result<(HeaderName, HeaderValue)> {
        let invalid = || CatalogError::Internal("stored upstream auth header is invalid".into());
        let name = HeaderName::try_from(self.name).map_err(|_| invalid())?;
        let mut value = HeaderValue::try_from(self.value).map_err(|_| invalid())?;
        value.set_sensitive(true);
        Ok((name, value))
    }
}

fn ctx(listing_id: &str, field: &str) -> String {
    format!("listing:{listing_id}:{field}")
}

impl Catalog {
    pub fn new(
        db: Database,
        cipher: Arc<Cipher>,
        upstream: UpstreamClient,
        settings: CatalogSettings,
        bus: &Bus,
        plugins: PluginHost,
    ) -> Self {
        let calls = Cache::new(
            bus,
            |what, c: &Arc<ListingForCall>| matches!(what, Invalidation::Listing(id) if *id == c.listing.id),
        );
        Self {
            db,
            cipher,
            upstream,
            settings: Arc::new(settings),
            calls,
            plugins,
        }
    }

    /// Tells every instance's caches that a listing or its endpoint changed.
    async fn changed(&self, listing_id: &str) {
        self.calls
            .bus()
            .publish(Invalidation::Listing(listing_id.to_owned()))
            .await;
    }

    pub fn categories(&self) -> &[Category] {
        &self.settings.categories
    }

    fn require_seller(who: &Principal) -> Result<()> {
        if who.role.can_sell() {
            Ok(())
        } else {
            Err(CatalogError::SellerRoleRequired)
        }
    }

    /// Issues a listing proof-of-work challenge bound to the seller.
    pub async fn create_challenge(&self, who: &Principal) -> Result<ListingChallenge> {
        Self::require_seller(who)?;
        let challenge = random_hex(32);
        let now = now_ms();
        let expires_at = now + self.settings.challenge_ttl_ms;
        let difficulty = self.settings.pow_difficulty;
        store::insert_challenge(
            self.db.pool(),
            &challenge,
            &who.profile_id,
            difficulty,
            now,
            expires_at,
        )
        .await?;
        Ok(ListingChallenge {
            challenge,
            difficulty,
            algorithm: "sha256",
            expires_at: rfc3339(expires_at),
        })
    }

    /// Consumes the seller's challenge, then checks the proof; a wrong proof burns it.
    async fn consume_pow(
        &self,
        who: &Principal,
        challenge: Option<&str>,
        pow_nonce: &str,
    ) -> Result<()> {
        if pow_nonce.is_empty() || pow_nonce.len() > 256 {
            return Err(CatalogError::invalid(
                "pow_nonce",
                "must be 1 to 256 characters",
            ));
        }
        let row = store::find_challenge(self.db.pool(), &who.profile_id, challenge)
            .await?
            .ok_or(CatalogError::ChallengeNotFound)?;
        if row.consumed_at.is_some() {
            return Err(CatalogError::ChallengeUsed);
        }
        let now = now_ms();
        if row.expires_at <= now {
            return Err(CatalogError::ChallengeExpired);
        }
        if !store::consume_challenge(self.db.pool(), &row.challenge, now).await? {
            return Err(CatalogError::ChallengeUsed);
        }
        let difficulty = u8::try_from(row.difficulty).unwrap_or(u8::MAX);
        if !verify_pow(&row.challenge, pow_nonce, difficulty) {
            return Err(CatalogError::InvalidPow);
        }
        Ok(())
    }

    /// Creates a listing and its gateway endpoint; the signing secret is returned once.
    pub async fn create_listing(
        &self,
        who: &Principal,
        req: CreateListingRequest,
    ) -> Result<CreatedListing> {
        Self::require_seller(who)?;
        let now = now_ms();
        let pricing_model = req.pricing_model;
        let price_cents = price_for(pricing_model, req.pricing_amount.as_ref())?;
        let currency = req
            .pricing_currency
            .as_deref()
            .unwrap_or("USD")
            .to_ascii_uppercase();
        if currency != "USD" {
            return Err(CatalogError::invalid("pricing_currency", "must be USD"));
        }
        let url = match req
            .private_endpoint_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            Some(u) => Some(self.upstream.check_endpoint(u).await?.to_string()),
            None if pricing_model == PricingModel::PerCall => {
                return Err(CatalogError::invalid(
                    "private_endpoint_url",
                    "is required for per_call listings",
                ));
            }
            None => None,
        };
        let status = req.status.unwrap_or(ListingStatus::Draft);
        if status == ListingStatus::Suspended {
            return Err(CatalogError::invalid(
                "status",
                "must be draft or active at creation",
            ));
        }
        let name = name_text("name", Some(&req.name), 120)?
            .ok_or_else(|| CatalogError::invalid("name", "is required"))?;
        let mut row = ListingRow {
            id: uuid::Uuid::new_v4().to_string(),
            slug: slugify(&name),
            seller_id: who.profile_id.clone(),
            description: text("description", Some(&req.description), 5000)?
                .ok_or_else(|| CatalogError::invalid("description", "is required"))?,
            name,
            category: self.category(req.category.as_deref())?,
            delivery_type: keyword(
                "delivery_type",
                req.delivery_type.as_deref().unwrap_or("api"),
            )?,
            auth_method: keyword("auth_method", req.auth_method.as_deref().unwrap_or("none"))?,
            formats: formats(req.formats.unwrap_or_else(|| vec!["json".into()]))?,
            connection_instructions: text(
                "connection_instructions",
                req.connection_instructions.as_deref(),
                2000,
            )?,
            pricing_model: pricing_model.as_str().into(),
            price_cents,
            pricing_currency: currency,
            status: status.as_str().into(),
            policy_config: policy_config(req.policy_config)?,
            adapter: None,
            review_count: 0,
            rating_sum: 0,
            seller_score: None,
            created_at: now,
            updated_at: now,
        };
        // Everything is valid: now spend the proof-of-work.
        self.consume_pow(who, req.pow_challenge.as_deref(), &req.pow_nonce)
            .await?;

        let secret = new_signing_secret();
        let endpoint = EndpointRow {
            listing_id: row.id.clone(),
            url_enc: url
                .as_deref()
                .map(|u| self.cipher.encrypt(u, &ctx(&row.id, "url"))),
            upstream_auth_enc: None,
            signing_secret_enc: self
                .cipher
                .encrypt(&secret, &ctx(&row.id, "signing_secret")),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_request_bytes: DEFAULT_MAX_BYTES,
            max_response_bytes: DEFAULT_MAX_BYTES,
            status: "active".into(),
            secret_rotated_at: now,
            updated_at: now,
        };
        let mut tx = self.db.begin().await?;
        let mut attempts = 0;
        while !store::insert_listing(&mut tx, &row).await? {
            // Slug taken: keep the readable stem, add a random suffix.
            attempts += 1;
            if attempts > 5 {
                return Err(CatalogError::invalid(
                    "name",
                    "could not derive a unique slug",
                ));
            }
            row.slug = format!("{}-{}", slugify(&row.name), random_hex(3));
        }
        store::insert_endpoint(&mut tx, &endpoint, now).await?;
        // Shown as reads show it: a seller scored before this listing has its badge.
        row.seller_score = store::seller_score(&mut tx, &row.seller_id).await?;
        tx.commit().await?;
        tracing::info!(listing_id = %row.id, seller_id = %row.seller_id, "listing created");
        Ok(CreatedListing {
            listing: row.to_listing(&self.settings.public_url, url.is_some()),
            gateway_endpoint: CreatedEndpoint {
                signing_secret: secret,
                info: endpoint.info(None),
            },
        })
    }

    fn category(&self, slug: Option<&str>) -> Result<Option<String>> {
        match slug.map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) if self.settings.categories.iter().any(|c| c.slug == s) => {
                Ok(Some(s.to_owned()))
            }
            Some(_) => Err(CatalogError::invalid(
                "category",
                "is not one of GET /categories",
            )),
        }
    }

    /// Active listings matching the filters.
    pub async fn browse(&self, q: ListingQuery) -> Result<(Vec<Listing>, i64, Page)> {
        let page = Page::new(q.page, q.limit);
        let to_cents = |field: &'static str, v: Option<f64>| -> Result<Option<i64>> {
            match v {
                None => Ok(None),
                Some(p) if p.is_finite() && p >= 0.0 => Ok(Some((p * 100.0).round() as i64)),
                Some(_) => Err(CatalogError::invalid(
                    field,
                    "must be a non-negative number",
                )),
            }
        };
        let min = to_cents("min_price", q.min_price)?;
        let max = to_cents("max_price", q.max_price)?;
        let (rows, total) =
            store::search_listings(self.db.pool(), self.db.backend(), &q, min, max, page).await?;
        let items = rows.iter().map(|r| self.public(r)).collect();
        Ok((items, total, page))
    }

    fn public(&self, r: &ListingWithEndpoint) -> Listing {
        r.listing
            .to_listing(&self.settings.public_url, r.endpoint_configured != 0)
    }

    /// A listing by UUID or slug: active ones for everyone, any status for its seller.
    pub async fn get(&self, id_or_slug: &str, viewer: Option<&Principal>) -> Result<Listing> {
        let r = store::listing_by_ref(self.db.pool(), id_or_slug)
            .await?
            .ok_or(CatalogError::ListingNotFound)?;
        let is_owner = viewer.is_some_and(|v| v.profile_id == r.listing.seller_id);
        if r.listing.status != "active" && !is_owner {
            return Err(CatalogError::ListingNotFound);
        }
        Ok(self.public(&r))
    }

    /// The listing, if `who` is its seller.
    async fn owned(&self, who: &Principal, id_or_slug: &str) -> Result<ListingWithEndpoint> {
        let r = store::listing_by_ref(self.db.pool(), id_or_slug)
            .await?
            .ok_or(CatalogError::ListingNotFound)?;
        if r.listing.seller_id != who.profile_id {
            return Err(CatalogError::NotOwner);
        }
        Ok(r)
    }

    async fn endpoint_row(&self, listing_id: &str) -> Result<EndpointRow> {
        let mut conn = self.db.pool().acquire().await?;
        store::endpoint(&mut conn, listing_id)
            .await?
            .ok_or(CatalogError::ListingNotFound)
    }

    /// Updates listing fields; `private_endpoint_url` updates the endpoint.
    pub async fn update_listing(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateListingRequest,
    ) -> Result<Listing> {
        let current = self.owned(who, id).await?;
        let mut row = current.listing.clone();
        if let Some(name) = req.name.as_deref() {
            row.name = name_text("name", Some(name), 120)?
                .ok_or_else(|| CatalogError::invalid("name", "must not be empty"))?;
        }
        if let Some(d) = req.description.as_deref() {
            row.description = text("description", Some(d), 5000)?
                .ok_or_else(|| CatalogError::invalid("description", "must not be empty"))?;
        }
        if req.category.is_some() {
            row.category = self.category(req.category.as_deref())?;
        }
        if let Some(d) = req.delivery_type.as_deref() {
            row.delivery_type = keyword("delivery_type", d)?;
        }
        if let Some(a) = req.auth_method.as_deref() {
            row.auth_method = keyword("auth_method", a)?;
        }
        if let Some(f) = req.formats {
            row.formats = formats(f)?;
        }
        if req.connection_instructions.is_some() {
            row.connection_instructions = text(
                "connection_instructions",
                req.connection_instructions.as_deref(),
                2000,
            )?;
        }
        let model = req.pricing_model.unwrap_or(row.pricing_model());
        if req.pricing_model.is_some() || req.pricing_amount.is_some() {
            let amount = req
                .pricing_amount
                .or_else(|| serde_json::Number::from_f64(row.price_cents as f64 / 100.0));
            row.price_cents = price_for(model, amount.as_ref())?;
            row.pricing_model = model.as_str().into();
        }
        if let Some(s) = req.status {
            row.status = s.as_str().into();
        }
        if req.policy_config.is_some() {
            row.policy_config = policy_config(req.policy_config)?;
        }
        let mut endpoint = self.endpoint_row(&row.id).await?;
        if let Some(u) = req.private_endpoint_url.as_deref() {
            let url = self.upstream.check_endpoint(u.trim()).await?;
            endpoint.url_enc = Some(self.cipher.encrypt(url.as_str(), &ctx(&row.id, "url")));
        }
        if model == PricingModel::PerCall && endpoint.url_enc.is_none() {
            return Err(CatalogError::invalid(
                "private_endpoint_url",
                "is required for per_call listings",
            ));
        }
        let now = now_ms();
        row.updated_at = now;
        endpoint.updated_at = now;
        let mut tx = self.db.begin().await?;
        store::update_listing(&mut tx, &row).await?;
        if req.private_endpoint_url.is_some() {
            store::update_endpoint(&mut tx, &endpoint).await?;
        }
        tx.commit().await?;
        self.changed(&row.id).await;
        Ok(row.to_listing(&self.settings.public_url, endpoint.url_enc.is_some()))
    }

    /// Deletes a draft; suspends anything published (the gateway then refuses it).
    pub async fn delete_listing(&self, who: &Principal, id: &str) -> Result<DeleteOutcome> {
        let mut row = self.owned(who, id).await?.listing;
        let mut tx = self.db.begin().await?;
        let status = if row.status == "draft" {
            store::delete_listing(&mut tx, &row.id).await?;
            "deleted"
        } else {
            row.status = "suspended".into();
            row.updated_at = now_ms();
            store::update_listing(&mut tx, &row).await?;
            "suspended"
        };
        tx.commit().await?;
        self.changed(&row.id).await;
        Ok(DeleteOutcome { id: row.id, status })
    }

    fn auth_of(&self, e: &EndpointRow) -> Result<Option<StoredAuth>> {
        let Some(enc) = &e.upstream_auth_enc else {
            return Ok(None);
        };
        let plain = self
            .cipher
            .decrypt(enc, &ctx(&e.listing_id, "upstream_auth"))?;
        Ok(serde_json::from_str(&plain).ok())
    }

    /// Safe endpoint metadata for the seller.
    pub async fn endpoint_info(&self, who: &Principal, id: &str) -> Result<EndpointInfo> {
        let listing = self.owned(who, id).await?.listing;
        let e = self.endpoint_row(&listing.id).await?;
        Ok(e.info(self.auth_of(&e)?.map(|a| a.name)))
    }

    /// Updates the private URL, upstream auth header, limits or status.
    pub async fn update_endpoint(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateEndpointRequest,
    ) -> Result<EndpointInfo> {
        let listing = self.owned(who, id).await?.listing;
        let mut e = self.endpoint_row(&listing.id).await?;
        if let Some(u) = req.private_endpoint_url.as_deref() {
            let url = self.upstream.check_endpoint(u.trim()).await?;
            e.url_enc = Some(self.cipher.encrypt(url.as_str(), &ctx(&listing.id, "url")));
        }
        match (
            req.auth_header_name.as_deref(),
            req.auth_header_value.as_deref(),
        ) {
            (_, Some("")) => e.upstream_auth_enc = None,
            (name, Some(value)) => {
                let name = name.unwrap_or("Authorization");
                check_auth_header(name, value)?;
                let plain = serde_json::json!({"name": name, "value": value}).to_string();
                e.upstream_auth_enc = Some(
                    self.cipher
                        .encrypt(&plain, &ctx(&listing.id, "upstream_auth")),
                );
            }
            (Some(_), None) => {
                return Err(CatalogError::invalid(
                    "auth_header_value",
                    "is required with auth_header_name",
                ));
            }
            (None, None) => {}
        }
        let bounded = |field: &'static str,
                       v: Option<i64>,
                       range: &std::ops::RangeInclusive<i64>,
                       cur: i64| match v {
            None => Ok(cur),
            Some(v) if range.contains(&v) => Ok(v),
            Some(_) => Err(CatalogError::invalid(
                field,
                format!("must be between {} and {}", range.start(), range.end()),
            )),
        };
        e.timeout_ms = bounded("timeout_ms", req.timeout_ms, &TIMEOUT_RANGE, e.timeout_ms)?;
        e.max_request_bytes = bounded(
            "max_request_bytes",
            req.max_request_bytes,
            &BYTES_RANGE,
            e.max_request_bytes,
        )?;
        e.max_response_bytes = bounded(
            "max_response_bytes",
            req.max_response_bytes,
            &BYTES_RANGE,
            e.max_response_bytes,
        )?;
        if let Some(s) = req.status {
            e.status = match s {
                EndpointStatus::Active => "active",
                EndpointStatus::Paused => "paused",
            }
            .into();
        }
        e.updated_at = now_ms();
        let mut conn = self.db.pool().acquire().await?;
        store::update_endpoint(&mut conn, &e).await?;
        drop(conn);
        self.changed(&listing.id).await;
        Ok(e.info(self.auth_of(&e)?.map(|a| a.name)))
    }

    /// A new signing secret, returned once; the old one stops signing at once.
    pub async fn rotate_secret(&self, who: &Principal, id: &str) -> Result<SigningSecret> {
        let listing = self.owned(who, id).await?.listing;
        let mut e = self.endpoint_row(&listing.id).await?;
        let secret = new_signing_secret();
        let now = now_ms();
        e.signing_secret_enc = self
            .cipher
            .encrypt(&secret, &ctx(&listing.id, "signing_secret"));
        e.secret_rotated_at = now;
        e.updated_at = now;
        let mut conn = self.db.pool().acquire().await?;
        store::update_endpoint(&mut conn, &e).await?;
        drop(conn);
        self.changed(&listing.id).await;
        Ok(SigningSecret {
            signing_secret: secret,
            rotated_at: rfc3339(now),
        })
    }

    /// The endpoint with its secrets decrypted (for forwarding and the endpoint test).
    pub async fn resolved_endpoint(&self, listing_id: &str) -> Result<ResolvedEndpoint> {
        let e = self.endpoint_row(listing_id).await?;
        self.resolve(&e)
    }

    /// A listing by UUID or slug with its decrypted endpoint (the gateway's hot path):
    /// from memory when cached, else read in one query and decrypted once.
    pub async fn listing_for_call(&self, id_or_slug: &str) -> Result<Option<Arc<ListingForCall>>> {
        if let Some(hit) = self.calls.get(id_or_slug) {
            return Ok(Some(hit));
        }
        let ticket = self.calls.ticket();
        let Some(both) = store::listing_and_endpoint(self.db.pool(), id_or_slug).await? else {
            return Ok(None);
        };
        let found = Arc::new(ListingForCall {
            endpoint: self.resolve(&both.endpoint)?,
            policy_config: both
                .listing
                .policy_config
                .as_deref()
                .and_then(|c| serde_json::from_str::<serde_json::Map<_, _>>(c).ok())
                .into_iter()
                .flatten()
                .map(|(plugin, config)| (plugin, config.to_string()))
                .collect(),
            listing: both.listing,
        });
        self.calls
            .insert(ticket, id_or_slug.to_owned(), found.clone());
        Ok(Some(found))
    }

    fn resolve(&self, e: &EndpointRow) -> Result<ResolvedEndpoint> {
        let listing_id = e.listing_id.as_str();
        let url = match &e.url_enc {
            Some(enc) => {
                let raw = self.cipher.decrypt(enc, &ctx(listing_id, "url"))?;
                // Checked by `check_url` when it was set, so it parses.
                Some(Url::parse(&raw).map_err(|_| {
                    CatalogError::Internal("stored endpoint URL does not parse".into())
                })?)
            }
            None => None,
        };
        let size = |v: i64| usize::try_from(v).unwrap_or(0);
        Ok(ResolvedEndpoint {
            url,
            auth_header: self.auth_of(e)?.map(StoredAuth::header).transpose()?,
            signing_secret: self
                .cipher
                .decrypt(&e.signing_secret_enc, &ctx(listing_id, "signing_secret"))?,
            timeout: Duration::from_millis(u64::try_from(e.timeout_ms).unwrap_or(0)),
            max_request_bytes: size(e.max_request_bytes),
            max_response_bytes: size(e.max_response_bytes),
            active: e.status == "active",
        })
    }

    /// Sends a signed test request, exactly as the gateway would, and reports what happened.
    pub async fn test_endpoint(&self, who: &Principal, id: &str) -> Result<EndpointTestResult> {
        let listing = self.owned(who, id).await?.listing;
        let ep = self.resolved_endpoint(&listing.id).await?;
        let url = ep.url.ok_or(CatalogError::EndpointNotConfigured)?;
        let request_id = format!("gw_test_{}", uuid::Uuid::new_v4().simple());
        let now = now_ms();
        let body = serde_json::json!({
            "type": "crochet.endpoint_test",
            "listing_id": listing.id,
            "request_id": request_id,
            "sent_at": rfc3339(now),
        })
        .to_string();
        let signed = SignedHeaders::new(
            &ep.signing_secret,
            now / 1000,
            &request_id,
            &listing.id,
            &who.profile_id,
            body.as_bytes(),
        );
        let headers = signed.into_header_map(ep.auth_header.as_ref());
        let started = std::time::Instant::now();
        let outcome = self
            .upstream
            .send(UpstreamRequest {
                url: &url,
                headers,
                body: body.into(),
                timeout: ep.timeout,
                max_response_bytes: ep.max_response_bytes,
            })
            .await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match outcome {
            Ok(r) => Ok(EndpointTestResult {
                ok: (200..300).contains(&r.status) && r.is_json,
                request_id,
                status_code: Some(r.status),
                latency_ms,
                json: r.is_json,
                error: None,
            }),
            Err(UpstreamError::Url(e)) => Err(e.into()),
            Err(e @ UpstreamError::AddressNotAllowed) => Err(CatalogError::Upstream(e)),
            Err(e) => Ok(EndpointTestResult {
                ok: false,
                request_id,
                status_code: None,
                latency_ms,
                json: false,
                error: Some(e.code()),
            }),
        }
    }

    /// Attaches a bundled adapter, or changes the configuration of the current one.
    pub async fn put_adapter(
        &self,
        who: &Principal,
        id: &str,
        req: PutAdapterRequest,
    ) -> Result<AdapterInfo> {
        let listing = self.owned(who, id).await?.listing;
        let current = store::adapter(self.db.pool(), &listing.id, true).await?;
        let (source, component, sha, bytes) = match (req.bundled.as_deref(), current) {
            (Some(name), _) => {
                // The one bundled component of the seller-adapter world.
                let wasm = (name == "chat-adapter")
                    .then(|| crate::plugins::bundled::by_name(name))
                    .flatten()
                    .ok_or_else(|| {
                        CatalogError::invalid(
                            "bundled",
                            "must name a bundled seller adapter (chat-adapter)",
                        )
                    })?;
                (
                    format!("bundled:{name}"),
                    None,
                    hex::encode(Sha256::digest(wasm)),
                    wasm.len() as i64,
                )
            }
            (None, Some(cur)) => (
                cur.source,
                cur.component,
                cur.component_sha256,
                cur.component_bytes,
            ),
            (None, None) => {
                return Err(CatalogError::invalid(
                    "bundled",
                    "is required: this listing has no adapter yet (or upload one to PUT /listings/{id}/adapter/component)",
                ));
            }
        };
        self.save_adapter(store::AdapterRow {
            listing_id: listing.id,
            source,
            component,
            component_sha256: sha,
            component_bytes: bytes,
            config: adapter_config(req.config)?,
            updated_at: now_ms(),
        })
        .await
    }

    /// Attaches an uploaded component, checked to be a seller adapter under the size cap.
    /// The configuration already set is kept.
    pub async fn upload_adapter(
        &self,
        who: &Principal,
        id: &str,
        wasm: Vec<u8>,
    ) -> Result<AdapterInfo> {
        let listing = self.owned(who, id).await?.listing;
        let host = self.plugins.clone();
        let checked =
            tokio::task::spawn_blocking(move || host.validate_adapter(&wasm).map(|()| wasm))
                .await
                .map_err(|e| CatalogError::Internal(e.to_string()))?;
        let wasm = checked.map_err(|e| CatalogError::InvalidAdapter(e.to_string()))?;
        let config = store::adapter(self.db.pool(), &listing.id, false)
            .await?
            .map_or_else(|| "{}".to_owned(), |a| a.config);
        self.save_adapter(store::AdapterRow {
            listing_id: listing.id,
            source: "upload".into(),
            component_sha256: hex::encode(Sha256::digest(&wasm)),
            component_bytes: wasm.len() as i64,
            component: Some(wasm),
            config,
            updated_at: now_ms(),
        })
        .await
    }

    async fn save_adapter(&self, row: store::AdapterRow) -> Result<AdapterInfo> {
        let mut conn = self.db.pool().acquire().await?;
        store::put_adapter(&mut conn, &row).await?;
        drop(conn);
        self.changed(&row.listing_id).await;
        Ok(row.info())
    }

    /// The listing's adapter (owner only).
    pub async fn adapter_info(&self, who: &Principal, id: &str) -> Result<AdapterInfo> {
        let listing = self.owned(who, id).await?.listing;
        store::adapter(self.db.pool(), &listing.id, false)
            .await?
            .map(|a| a.info())
            .ok_or(CatalogError::AdapterNotFound)
    }

    /// Detaches the listing's adapter (returned); calls are forwarded unchanged again.
    pub async fn delete_adapter(&self, who: &Principal, id: &str) -> Result<AdapterInfo> {
        let listing = self.owned(who, id).await?.listing;
        let removed = store::adapter(self.db.pool(), &listing.id, false)
            .await?
            .ok_or(CatalogError::AdapterNotFound)?;
        if !store::delete_adapter(self.db.pool(), &listing.id).await? {
            return Err(CatalogError::AdapterNotFound);
        }
        self.changed(&listing.id).await;
        Ok(removed.info())
    }

    /// The adapter's configuration and component bytes, for the gateway to compile.
    pub async fn adapter_component(&self, listing_id: &str) -> Result<Option<(String, Vec<u8>)>> {
        let Some(row) = store::adapter(self.db.pool(), listing_id, true).await? else {
            return Ok(None);
        };
        let wasm = match (row.source.as_str(), row.component) {
            (_, Some(bytes)) => bytes,
            (source, None) => match source
                .strip_prefix("bundled:")
                .and_then(crate::plugins::bundled::by_name)
            {
                Some(bytes) => bytes.to_vec(),
                None => return Ok(None),
            },
        };
        Ok(Some((row.config, wasm)))
    }

    /// Rewrites every encrypted value under the current master key; returns how many
    /// endpoints changed. Safe to run while the host serves traffic.
    pub async fn reencrypt_all(&self) -> Result<usize> {
        let mut changed = 0;
        for mut e in store::all_endpoints(self.db.pool()).await? {
            let id = e.listing_id.clone();
            let mut stale = false;
            for (field, value) in [
                ("url", &mut e.url_enc),
                ("upstream_auth", &mut e.upstream_auth_enc),
            ] {
                if let Some(v) = value.as_mut().filter(|v| self.cipher.is_stale(v)) {
                    *v = self
                        .cipher
                        .encrypt(&self.cipher.decrypt(v, &ctx(&id, field))?, &ctx(&id, field));
                    stale = true;
                }
            }
            if self.cipher.is_stale(&e.signing_secret_enc) {
                let plain = self
                    .cipher
                    .decrypt(&e.signing_secret_enc, &ctx(&id, "signing_secret"))?;
                e.signing_secret_enc = self.cipher.encrypt(&plain, &ctx(&id, "signing_secret"));
                stale = true;
            }
            if stale {
                let mut conn = self.db.pool().acquire().await?;
                store::update_endpoint(&mut conn, &e).await?;
                changed += 1;
            }
        }
        self.calls.bus().publish(Invalidation::All).await;
        Ok(changed)
    }
}

/// Per-plugin listing settings, stored as JSON text (`None` when empty).
fn policy_config(
    config: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<Option<String>> {
    match config.filter(|c| !c.is_empty()) {
        Some(config) => bounded_json("policy_config", config).map(Some),
        None => Ok(None),
    }
}

/// An adapter's configuration, stored as JSON text.
fn adapter_config(config: Option<serde_json::Map<String, serde_json::Value>>) -> Result<String> {
    bounded_json("config", config.unwrap_or_default())
}

/// A plugin configuration object as JSON text, refused past the size cap.
fn bounded_json(
    field: &'static str,
    config: serde_json::Map<String, serde_json::Value>,
) -> Result<String> {
    let text = serde_json::Value::Object(config).to_string();
    if text.len() > MAX_POLICY_CONFIG_BYTES {
        return Err(CatalogError::invalid(
            field,
            format!("must be at most {MAX_POLICY_CONFIG_BYTES} bytes of JSON"),
        ));
    }
    Ok(text)
}

/// Largest per-listing plugin configuration.
const MAX_POLICY_CONFIG_BYTES: usize = 16 * 1024;

fn check_auth_header(name: &str, value: &str) -> Result<()> {
    let lower = name.to_ascii_lowercase();
    let token = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    if !token
        || lower.starts_with("x-crochet-")
        || ["host", "content-type", "content-length"].contains(&lower.as_str())
    {
        return Err(CatalogError::invalid(
            "auth_header_name",
            "must be a header name other than Host, Content-* and X-Crochet-*",
        ));
    }
    if value.len() > 1024 || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(CatalogError::invalid(
            "auth_header_value",
            "must be printable ASCII, at most 1024 characters",
        ));
    }
    Ok(())
}

/// The price in cents for a pricing model: free is 0; per_call is positive with at most
/// two decimals.
pub fn price_for(model: PricingModel, amount: Option<&serde_json::Number>) -> Result<i64> {
    let cents = match amount {
        None => 0,
        Some(n) => {
            let v = n.as_f64().filter(|v| v.is_finite() && *v >= 0.0);
            let v = v.ok_or_else(|| {
                CatalogError::invalid("pricing_amount", "must be a non-negative number")
            })?;
            let cents = (v * 100.0).round();
            if (cents / 100.0 - v).abs() > 1e-9 {
                return Err(CatalogError::invalid(
                    "pricing_amount",
                    "must have at most two decimals",
                ));
            }
            if cents > MAX_PRICE_CENTS as f64 {
                return Err(CatalogError::invalid(
                    "pricing_amount",
                    "must be at most 1000000",
                ));
            }
            cents as i64
        }
    };
    match model {
        PricingModel::Free if cents != 0 => Err(CatalogError::invalid(
            "pricing_amount",
            "must be 0 for free listings",
        )),
        PricingModel::PerCall if cents == 0 => Err(CatalogError::invalid(
            "pricing_amount",
            "must be greater than 0 for per_call listings",
        )),
        _ => Ok(cents),
    }
}

/// A URL-safe slug from a name: lowercase ASCII letters and digits joined by `-`.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 60 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "listing".into()
    } else {
        slug.into()
    }
}

fn text(field: &'static str, value: Option<&str>, max: usize) -> Result<Option<String>> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > max {
        return Err(CatalogError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(CatalogError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(Some(v.to_owned()))
}

/// A listing name: [`text`] without invisible formatting characters
/// ([`crate::text::is_invisible`]).
fn name_text(field: &'static str, value: Option<&str>, max: usize) -> Result<Option<String>> {
    let v = text(field, value, max)?;
    if let Some(v) = &v
        && v.chars().any(crate::text::is_invisible)
    {
        return Err(CatalogError::invalid(
            field,
            "must not contain invisible formatting characters (bidirectional overrides, zero-width characters, ...)",
        ));
    }
    Ok(v)
}

fn keyword(field: &'static str, v: &str) -> Result<String> {
    let ok = (1..=32).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(CatalogError::invalid(
            field,
            "must be 1-32 lowercase letters, digits, '_' or '-'",
        ))
    }
}

fn formats(list: Vec<String>) -> Result<String> {
    if list.len() > 10 {
        return Err(CatalogError::invalid(
            "formats",
            "must have at most 10 entries",
        ));
    }
    for f in &list {
        let ok = (1..=32).contains(&f.len())
            && f.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-./+".contains(&b));
        if !ok {
            return Err(CatalogError::invalid(
                "formats",
                "entries must be short format names such as json",
            ));
        }
    }
    Ok(serde_json::to_string(&list).unwrap_or_else(|_| "[]".into()))
}

fn new_signing_secret() -> String {
    format!("cgs_{}", random_hex(32))
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(v: &str) -> serde_json::Number {
        serde_json::from_str(v).unwrap()
    }

    #[test]
    fn prices_in_cents() {
        assert_eq!(
            price_for(PricingModel::PerCall, Some(&num("0.01"))).unwrap(),
            1
        );
        assert_eq!(
            price_for(PricingModel::PerCall, Some(&num("1"))).unwrap(),
            100
        );
        assert_eq!(
            price_for(PricingModel::PerCall, Some(&num("19.99"))).unwrap(),
            1999
        );
        assert_eq!(
            price_for(PricingModel::PerCall, Some(&num("0.29"))).unwrap(),
            29
        );
        assert!(price_for(PricingModel::PerCall, Some(&num("0.001"))).is_err());
        assert!(price_for(PricingModel::PerCall, Some(&num("-1"))).is_err());
        assert!(price_for(PricingModel::PerCall, Some(&num("0"))).is_err());
        assert!(price_for(PricingModel::PerCall, None).is_err());
        assert!(price_for(PricingModel::PerCall, Some(&num("1000001"))).is_err());
        assert_eq!(price_for(PricingModel::Free, None).unwrap(), 0);
        assert!(price_for(PricingModel::Free, Some(&num("1"))).is_err());
    }

    #[test]
    fn slugs() {
        assert_eq!(slugify("Signal Router"), "signal-router");
        assert_eq!(slugify("  GPT-4o  summarizer!! "), "gpt-4o-summarizer");
        assert_eq!(slugify("日本語"), "listing");
        assert!(slugify(&"a".repeat(200)).len() <= 60);
    }

    #[test]
    fn auth_header_rules() {
        assert!(check_auth_header("Authorization", "Bearer x").is_ok());
        assert!(check_auth_header("X-Crochet-Signature", "x").is_err());
        assert!(check_auth_header("Host", "x").is_err());
        assert!(check_auth_header("Bad Header", "x").is_err());
        assert!(check_auth_header("X-Api-Key", "line\nbreak").is_err());
    }
}

//! Catalog: categories, listings, listing proof-of-work, and each listing's private
//! gateway endpoint (URL, upstream auth header and signing secret, encrypted at rest).
//!
//! [`Catalog`] owns the rules, split by what they govern: listings here, the endpoint
//! in `endpoints`, seller adapters in `adapters`, the listing proof-of-work in `pow`,
//! field rules in `validation`; [`http`] only parses and answers. Nothing it returns to
//! anyone contains a private URL, an upstream auth value or a signing secret, except
//! the secret itself exactly once, at creation and at rotation.

mod adapters;
mod endpoints;
pub mod error;
pub mod http;
pub mod model;
mod pow;
pub mod store;
mod validation;

use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

pub use endpoints::{DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_MS, ResolvedEndpoint};
pub use error::CatalogError;
pub use model::*;
pub use validation::{price_for, slugify};

use crate::identity::Principal;
use crate::pagination::Total;
use crate::plugins::PluginHost;
use crate::secrets::{Cipher, random_hex};
use crate::seller_client::upstream::UpstreamClient;
use crate::storage::cache::{Bus, Cache, Invalidation};
use crate::storage::{Database, Page, now_ms};
use endpoints::ctx;
use store::{ListingRow, ListingWithEndpoint};
use validation::{formats, keyword, name_text, policy_config, text};

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
            "listings",
            |what, c: &Arc<ListingForCall>| match what {
                Invalidation::Listing(id) => *id == c.listing.id,
                // The seller's standing changed (an operator suspended or reinstated it).
                Invalidation::Profile(id) => *id == c.listing.seller_id,
                _ => false,
            },
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
            pricing_model,
            price_cents,
            pricing_currency: currency,
            status,
            policy_config: policy_config(req.policy_config)?,
            adapter: None,
            review_count: 0,
            rating_sum: 0,
            seller_score: None,
            operator_suspended: 0,
            seller_suspended: 0,
            created_at: now,
            updated_at: now,
        };
        // Everything is valid: now spend the proof-of-work.
        self.consume_pow(who, req.pow_challenge.as_deref(), &req.pow_nonce)
            .await?;

        let (secret, endpoint) = self.new_endpoint(&row.id, url.as_deref(), now);
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
            row.slug = format!("{}-{}", slugify(&row.name), random_hex::<3>());
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
    pub async fn browse(&self, q: ListingQuery) -> Result<(Vec<Listing>, Total, Page)> {
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

    /// A listing by UUID or slug: active ones of sellers in good standing for everyone,
    /// any status for its seller.
    pub async fn get(&self, id_or_slug: &str, viewer: Option<&Principal>) -> Result<Listing> {
        let r = store::listing_by_ref(self.db.pool(), id_or_slug)
            .await?
            .ok_or(CatalogError::ListingNotFound)?;
        let is_owner = viewer.is_some_and(|v| v.profile_id == r.listing.seller_id);
        let public = r.listing.status == ListingStatus::Active && !r.listing.is_seller_suspended();
        if !public && !is_owner {
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

    /// The listing, if `who` is its seller and may change it: not while an operator's
    /// suspension holds it (only the operator lifts that).
    pub(super) async fn owned_for_change(
        &self,
        who: &Principal,
        id_or_slug: &str,
    ) -> Result<ListingWithEndpoint> {
        let r = self.owned(who, id_or_slug).await?;
        if r.listing.is_operator_suspended() {
            return Err(CatalogError::SuspendedByOperator);
        }
        Ok(r)
    }

    /// Updates listing fields; `private_endpoint_url` updates the endpoint.
    pub async fn update_listing(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateListingRequest,
    ) -> Result<Listing> {
        let current = self.owned_for_change(who, id).await?;
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
            row.pricing_model = model;
        }
        if let Some(s) = req.status {
            row.status = s;
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
        if !store::update_listing(&mut tx, &row).await? {
            // An operator suspended it since it was read.
            return Err(CatalogError::SuspendedByOperator);
        }
        if req.private_endpoint_url.is_some() {
            store::update_endpoint(&mut tx, &endpoint).await?;
        }
        tx.commit().await?;
        self.changed(&row.id).await;
        Ok(row.to_listing(&self.settings.public_url, endpoint.url_enc.is_some()))
    }

    /// Deletes a draft; suspends anything published (the gateway then refuses it). Refused
    /// while an operator's suspension holds the listing.
    pub async fn delete_listing(&self, who: &Principal, id: &str) -> Result<DeleteOutcome> {
        let mut row = self.owned_for_change(who, id).await?.listing;
        let mut tx = self.db.begin().await?;
        let (done, status) = if row.status == ListingStatus::Draft {
            (store::delete_listing(&mut tx, &row.id).await?, "deleted")
        } else {
            row.status = ListingStatus::Suspended;
            row.updated_at = now_ms();
            (store::update_listing(&mut tx, &row).await?, "suspended")
        };
        if !done {
            return Err(CatalogError::SuspendedByOperator);
        }
        tx.commit().await?;
        self.changed(&row.id).await;
        Ok(DeleteOutcome { id: row.id, status })
    }
}

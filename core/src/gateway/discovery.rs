//! `GET /discovery/resources`: the active paid listings as x402 resources, in the shape
//! of x402's discovery (Bazaar) API, so x402 crawlers and agents can index the catalog.
//!
//! Each item is one listing's gateway URL with what it accepts (the same offers as its
//! 402), its name and description, and, when its seller set a request schema for the
//! request-validation policy, that schema as the `bazaar` input description. The feed
//! answers only while x402 is on (else `400 X402_NOT_OFFERED`). Pagination is x402's:
//! `limit` (1-100, default 20) and `offset`, newest listings first.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use crate::catalog::model::{Listing, ListingQuery, ListingSort};
use crate::catalog::{Catalog, CatalogError, PricingModel};
use crate::payments::x402::X402;

/// Query of the discovery feed.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DiscoveryQuery {
    /// Resource type; only `http` resources exist here.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// 1-100, default 20.
    pub limit: Option<u32>,
    /// Resources to skip, default 0.
    pub offset: Option<u32>,
}

/// One discoverable resource.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredResource {
    pub resource: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub x402_version: u32,
    #[schema(value_type = Vec<Object>)]
    pub accepts: Vec<crochet_payment_x402::PaymentRequirements>,
    /// Unix seconds of the listing's last change.
    pub last_updated: i64,
    #[schema(value_type = Object)]
    pub metadata: Value,
}

/// The feed's pagination, as x402 shapes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiscoveryPagination {
    pub limit: u32,
    pub offset: u32,
    /// Resources in all; capped at a thousand past `offset` (then `total_exact` is false).
    pub total: i64,
    pub total_exact: bool,
}

/// The discovery feed's answer (x402's own shape, not the usual envelope).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryPage {
    pub x402_version: u32,
    pub items: Vec<DiscoveredResource>,
    pub pagination: DiscoveryPagination,
}

/// One page of the feed.
pub async fn feed(
    catalog: &Catalog,
    x402: &X402,
    public_url: &str,
    q: &DiscoveryQuery,
) -> Result<DiscoveryPage, CatalogError> {
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let offset = q.offset.unwrap_or(0);
    if q.kind.as_deref().is_some_and(|k| k != "http") {
        return Ok(DiscoveryPage {
            x402_version: crochet_payment_x402::X402_VERSION,
            items: Vec::new(),
            pagination: DiscoveryPagination {
                limit,
                offset,
                total: 0,
                total_exact: true,
            },
        });
    }
    // `offset` need not be a multiple of `limit`: read the page it falls in and the next.
    let first = offset / limit + 1;
    let skip = (offset % limit) as usize;
    let browse = |page: u32| {
        catalog.browse(ListingQuery {
            pricing_model: Some(PricingModel::PerCall),
            sort: Some(ListingSort::Newest),
            page: Some(page),
            limit: Some(limit),
            ..ListingQuery::default()
        })
    };
    let (mut listings, total, _) = browse(first).await?;
    if skip > 0 && listings.len() == limit as usize {
        let (more, _, _) = browse(first + 1).await?;
        listings.extend(more);
    }
    let items = listings
        .into_iter()
        .skip(skip)
        .take(limit as usize)
        .filter_map(|l| resource(x402, public_url, l))
        .collect();
    Ok(DiscoveryPage {
        x402_version: crochet_payment_x402::X402_VERSION,
        items,
        pagination: DiscoveryPagination {
            limit,
            offset,
            total: total.count,
            total_exact: total.exact,
        },
    })
}

/// A listing as a discovered resource; `None` when no offered network carries its price.
fn resource(x402: &X402, public_url: &str, l: Listing) -> Option<DiscoveredResource> {
    let accepts = x402.requirements(l.price_cents);
    if accepts.is_empty() {
        return None;
    }
    let last_updated =
        OffsetDateTime::parse(&l.updated_at, &Rfc3339).map_or(0, OffsetDateTime::unix_timestamp);
    let schema = l
        .policy_config
        .as_ref()
        .and_then(|c| c.get("request-validation"))
        .and_then(|c| c.get("schema"))
        .cloned();
    let mut input = json!({"type": "http", "method": "POST", "bodyType": "json"});
    if let Some(schema) = &schema {
        input["schema"] = schema.clone();
    }
    let metadata = json!({
        "listingId": l.id,
        "slug": l.slug,
        "name": l.name,
        "description": l.description,
        "category": l.category,
        "sellerId": l.seller_id,
        "sellerScore": l.seller_score,
        "priceCents": l.price_cents,
        "currency": l.pricing_currency,
        "bazaar": {"info": {"input": input, "output": {"type": "json"}}},
    });
    Some(DiscoveredResource {
        resource: format!("{public_url}/api/v1/gateway/{}", l.id),
        kind: "http",
        x402_version: crochet_payment_x402::X402_VERSION,
        accepts,
        last_updated,
        metadata,
    })
}

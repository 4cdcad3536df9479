//! A listing's private gateway endpoint: its URL, upstream auth header and signing
//! secret (encrypted at rest), limits and status; the signed endpoint test; and
//! re-encryption under a new master key.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use reqwest::Url;

use super::model::{
    EndpointInfo, EndpointStatus, EndpointTestResult, SigningSecret, UpdateEndpointRequest,
};
use super::store::{self, EndpointRow};
use super::{Catalog, CatalogError, ListingForCall, Result};
use crate::identity::Principal;
use crate::secrets::random_hex;
use crate::seller_client::signing::SignedHeaders;
use crate::seller_client::upstream::{UpstreamError, UpstreamRequest};
use crate::storage::cache::Invalidation;
use crate::storage::{now_ms, rfc3339};

/// Endpoint limits: defaults and bounds.
pub const DEFAULT_TIMEOUT_MS: i64 = 30_000;
pub const DEFAULT_MAX_BYTES: i64 = 1024 * 1024;
const TIMEOUT_RANGE: std::ops::RangeInclusive<i64> = 100..=60_000;
const BYTES_RANGE: std::ops::RangeInclusive<i64> = 1..=10 * 1024 * 1024;

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

/// The upstream auth header as it is stored (encrypted JSON).
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

/// The encryption context of one secret field of a listing's endpoint.
pub(super) fn ctx(listing_id: &str, field: &str) -> String {
    format!("listing:{listing_id}:{field}")
}

/// A new signing secret: `cgs_` and 64 hex digits.
fn new_signing_secret() -> String {
    format!("cgs_{}", random_hex::<32>())
}

impl Catalog {
    /// A new listing's endpoint: default limits, active, and a fresh signing secret
    /// (returned in clear once, beside the row).
    pub(super) fn new_endpoint(
        &self,
        listing_id: &str,
        url: Option<&str>,
        now: i64,
    ) -> (String, EndpointRow) {
        let secret = new_signing_secret();
        let endpoint = EndpointRow {
            listing_id: listing_id.to_owned(),
            url_enc: url.map(|u| self.cipher.encrypt(u, &ctx(listing_id, "url"))),
            upstream_auth_enc: None,
            signing_secret_enc: self
                .cipher
                .encrypt(&secret, &ctx(listing_id, "signing_secret")),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_request_bytes: DEFAULT_MAX_BYTES,
            max_response_bytes: DEFAULT_MAX_BYTES,
            status: EndpointStatus::Active,
            secret_rotated_at: now,
            updated_at: now,
        };
        (secret, endpoint)
    }

    /// The listing's endpoint row, still encrypted.
    pub(super) async fn endpoint_row(&self, listing_id: &str) -> Result<EndpointRow> {
        let mut conn = self.db.pool().acquire().await?;
        store::endpoint(&mut conn, listing_id)
            .await?
            .ok_or(CatalogError::ListingNotFound)
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
        let listing = self.owned_for_change(who, id).await?.listing;
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
            e.status = s;
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
            active: e.status == EndpointStatus::Active,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_header_rules() {
        assert!(check_auth_header("Authorization", "Bearer x").is_ok());
        assert!(check_auth_header("X-Crochet-Signature", "x").is_err());
        assert!(check_auth_header("Host", "x").is_err());
        assert!(check_auth_header("Bad Header", "x").is_err());
        assert!(check_auth_header("X-Api-Key", "line\nbreak").is_err());
    }
}

//! HTTP handlers of the admin routes: authenticate the operator, parse, call
//! [`Admin`](super::Admin), answer. Mounted under `/api/v1/admin` only when an operator
//! credential is configured; every route takes `Authorization: Bearer <admin token>`.
//!
//! A new admin route is one handler here and one `.routes(routes!(handler))` line in
//! [`routes`]; it records itself in the audit log with `admin.record(&operator, …)`.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::*;
use crate::app::{AppState, ReloadReport};
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::http::extract::{AdminAuth, ApiPath, ApiQuery, OptionalJson};
use crate::http::{Envelope, PageQuery, PagedEnvelope, ok, paged};
use crate::plugins::inventory::PluginInfo;

/// The admin routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents))
        .routes(routes!(suspend_agent))
        .routes(routes!(reinstate_agent))
        .routes(routes!(list_listings))
        .routes(routes!(suspend_listing))
        .routes(routes!(reinstate_listing))
        .routes(routes!(stats))
        .routes(routes!(failed_requests))
        .routes(routes!(audit))
        .routes(routes!(list_plugins))
        .routes(routes!(reload_plugins))
}

type Answer<T> = Result<Json<Envelope<T>>, ApiError>;
type Listed<T> = Result<Json<PagedEnvelope<T>>, ApiError>;

/// Agents of any status, newest first, with their suspension and key counts.
#[utoipa::path(get, path = "/admin/agents", tag = "admin", security(("admin_token" = [])),
    params(AgentFilter),
    responses(
        (status = 200, body = PagedEnvelope<AdminAgent>),
        (status = 400, description = "Unknown filter value", body = ErrorEnvelope),
        (status = 401, description = "No operator credential (`ADMIN_TOKEN_REQUIRED`)", body = ErrorEnvelope),
        (status = 403, description = "Not the operator credential (`ADMIN_TOKEN_INVALID`)", body = ErrorEnvelope),
    ))]
async fn list_agents(
    AdminAuth { admin, .. }: AdminAuth,
    ApiQuery(q): ApiQuery<AgentFilter>,
) -> Listed<AdminAgent> {
    let (items, total, page) = admin.agents(q).await?;
    Ok(paged(items, page, total))
}

/// Suspends an agent: every API key it has is refused with 403 `AGENT_SUSPENDED`, its
/// listings answer 409 `LISTING_NOT_ACTIVE` and leave public search, and its public
/// profile shows `suspended`. Already suspended: 409 `AGENT_ALREADY_SUSPENDED`.
#[utoipa::path(post, path = "/admin/agents/{id}/suspend", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Agent (profile) id")),
    request_body(content = Option<SuspendRequest>, description = "Optional; `reason` goes to the audit log"),
    responses(
        (status = 200, body = Envelope<AdminAgent>),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, description = "`AGENT_NOT_FOUND`", body = ErrorEnvelope),
        (status = 409, description = "`AGENT_ALREADY_SUSPENDED`", body = ErrorEnvelope),
    ))]
async fn suspend_agent(
    AdminAuth { admin, operator }: AdminAuth,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<SuspendRequest>,
) -> Answer<AdminAgent> {
    let reason = body.unwrap_or_default().reason;
    Ok(ok(admin.suspend_agent(&operator, &id, reason).await?))
}

/// Lifts an agent's suspension: its keys and listings work again. Not suspended: 409
/// `AGENT_NOT_SUSPENDED`.
#[utoipa::path(post, path = "/admin/agents/{id}/reinstate", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Agent (profile) id")),
    request_body(content = Option<SuspendRequest>, description = "Optional; `reason` goes to the audit log"),
    responses(
        (status = 200, body = Envelope<AdminAgent>),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, description = "`AGENT_NOT_FOUND`", body = ErrorEnvelope),
        (status = 409, description = "`AGENT_NOT_SUSPENDED`", body = ErrorEnvelope),
    ))]
async fn reinstate_agent(
    AdminAuth { admin, operator }: AdminAuth,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<SuspendRequest>,
) -> Answer<AdminAgent> {
    let reason = body.unwrap_or_default().reason;
    Ok(ok(admin.reinstate_agent(&operator, &id, reason).await?))
}

/// Listings of any status, newest first, with the operator's holds and the seller's
/// standing.
#[utoipa::path(get, path = "/admin/listings", tag = "admin", security(("admin_token" = [])),
    params(ListingFilter),
    responses(
        (status = 200, body = PagedEnvelope<AdminListing>),
        (status = 400, description = "Unknown filter value", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
    ))]
async fn list_listings(
    AdminAuth { admin, .. }: AdminAuth,
    ApiQuery(q): ApiQuery<ListingFilter>,
) -> Listed<AdminListing> {
    let (items, total, page) = admin.listings(q).await?;
    Ok(paged(items, page, total))
}

/// Suspends a listing: its status becomes `suspended`, the gateway answers 409
/// `LISTING_NOT_ACTIVE`, and its seller cannot change it (403
/// `LISTING_SUSPENDED_BY_OPERATOR`) until it is reinstated. Already held: 409
/// `LISTING_ALREADY_SUSPENDED`.
#[utoipa::path(post, path = "/admin/listings/{id}/suspend", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Listing UUID or slug")),
    request_body(content = Option<SuspendRequest>, description = "Optional; `reason` goes to the audit log"),
    responses(
        (status = 200, body = Envelope<AdminListing>),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, description = "`LISTING_NOT_FOUND`", body = ErrorEnvelope),
        (status = 409, description = "`LISTING_ALREADY_SUSPENDED`", body = ErrorEnvelope),
    ))]
async fn suspend_listing(
    AdminAuth { admin, operator }: AdminAuth,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<SuspendRequest>,
) -> Answer<AdminListing> {
    let reason = body.unwrap_or_default().reason;
    Ok(ok(admin.suspend_listing(&operator, &id, reason).await?))
}

/// Lifts the operator's suspension of a listing and restores the status it had before
/// (`active`, or `draft`/`suspended` as its seller left it). Not held: 409
/// `LISTING_NOT_SUSPENDED`.
#[utoipa::path(post, path = "/admin/listings/{id}/reinstate", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Listing UUID or slug")),
    request_body(content = Option<SuspendRequest>, description = "Optional; `reason` goes to the audit log"),
    responses(
        (status = 200, body = Envelope<AdminListing>),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, description = "`LISTING_NOT_FOUND`", body = ErrorEnvelope),
        (status = 409, description = "`LISTING_NOT_SUSPENDED`", body = ErrorEnvelope),
    ))]
async fn reinstate_listing(
    AdminAuth { admin, operator }: AdminAuth,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<SuspendRequest>,
) -> Answer<AdminListing> {
    let reason = body.unwrap_or_default().reason;
    Ok(ok(admin.reinstate_listing(&operator, &id, reason).await?))
}

/// Marketplace totals over `[from, to)`: gateway calls, paid and failed calls, gross
/// volume, fees, seller credits, refunds, distinct buyers and sellers, calls by status.
#[utoipa::path(get, path = "/admin/stats", tag = "admin", security(("admin_token" = [])),
    params(StatsQuery),
    responses(
        (status = 200, body = Envelope<MarketplaceStats>),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 422, description = "`from`/`to` not RFC 3339 or Unix seconds, or `from` not before `to`", body = ErrorEnvelope),
    ))]
async fn stats(
    AdminAuth { admin, .. }: AdminAuth,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Answer<MarketplaceStats> {
    Ok(ok(admin.stats(q).await?))
}

/// Recent failed gateway calls, newest first, with their error codes.
#[utoipa::path(get, path = "/admin/gateway-requests/failed", tag = "admin", security(("admin_token" = [])),
    params(PageQuery),
    responses(
        (status = 200, body = PagedEnvelope<FailedRequest>),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
    ))]
async fn failed_requests(
    AdminAuth { admin, .. }: AdminAuth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Listed<FailedRequest> {
    let page = q.page();
    let (items, total) = admin.failed_requests(page).await?;
    Ok(paged(items, page, total))
}

/// The audit log of operator actions, newest first.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", security(("admin_token" = [])),
    params(AuditFilter),
    responses(
        (status = 200, body = PagedEnvelope<AuditRecord>),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
    ))]
async fn audit(
    AdminAuth { admin, .. }: AdminAuth,
    ApiQuery(q): ApiQuery<AuditFilter>,
) -> Listed<AuditRecord> {
    let (items, total, page) = admin.audit(q).await?;
    Ok(paged(items, page, total))
}

/// The plugins in service: the policies in the order they run, then the scorer, each
/// with its source, the SHA-256 of its component and its failure mode.
#[utoipa::path(get, path = "/admin/plugins", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, body = Envelope<Vec<PluginInfo>>),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
    ))]
async fn list_plugins(_: AdminAuth, State(s): State<AppState>) -> Json<Envelope<Vec<PluginInfo>>> {
    ok(s.plugins.describe())
}

/// Reads the plugin configuration again (the same file and environment as at start-up),
/// compiles the plugins it names off the request path, tries each on sample calls, then
/// swaps them all in at once; calls in flight finish on the old plugins. When anything
/// fails nothing changes, and the answer names the plugin and the reason. Both outcomes
/// are written to the audit log.
#[utoipa::path(post, path = "/admin/plugins/reload", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, body = Envelope<ReloadReport>),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 422, description = "A plugin failed to load or its trial calls (`PLUGIN_RELOAD_REFUSED`); the running plugins go on serving", body = ErrorEnvelope),
    ))]
async fn reload_plugins(
    AdminAuth { operator, .. }: AdminAuth,
    State(s): State<AppState>,
) -> Answer<ReloadReport> {
    Ok(ok(s.reload_plugins_as(&operator).await?))
}

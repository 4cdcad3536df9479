//! The HTTP surface: router assembly, middleware, the envelope and the OpenAPI document.
//!
//! Every route lives under `/api/v1` and is registered through `utoipa-axum`, so a route
//! cannot exist without its OpenAPI entry; the document is served at `/api/openapi.json`.
//! Domain modules contribute their routes (`identity::http::routes`); this module adds
//! the cross-cutting parts: request ids, tracing, the body-size limit, panic capture,
//! a last guard that turns any non-JSON error into an envelope, and the request metrics
//! (with `GET /metrics`, see [`metrics`]).

pub mod error;
pub mod extract;
pub mod mcp;
pub mod metrics;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tower::ServiceBuilder;
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::security::{Http, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use crate::pagination::{PageQuery, Pagination, Total};

use crate::app::AppState;
use crate::storage::Page;
use error::{ApiError, ErrorEnvelope, RequestError};

/// The success envelope: `{"success": true, "data": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    pub success: bool,
    pub data: T,
}

/// Wraps `data` in the success envelope.
pub fn ok<T: Serialize>(data: T) -> Json<Envelope<T>> {
    Json(Envelope {
        success: true,
        data,
    })
}

/// The list envelope: `data` is an array and `pagination` sits beside it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PagedEnvelope<T> {
    pub success: bool,
    pub data: Vec<T>,
    pub pagination: Pagination,
}

/// Wraps a page of items in the list envelope.
pub fn paged<T: Serialize>(
    items: Vec<T>,
    page: Page,
    total: impl Into<Total>,
) -> Json<PagedEnvelope<T>> {
    let total = total.into();
    Json(PagedEnvelope {
        success: true,
        data: items,
        pagination: Pagination {
            page: page.page,
            limit: page.limit,
            total: total.count,
            total_exact: total.exact,
        },
    })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Crochet Gateway API",
        description = "Self-hosted agent-to-agent marketplace gateway: wallet identity, catalog, pay-per-call gateway, ledger and reputation. Every route answers the `{success, data}` / `{success, error}` envelope.\n\nThe same marketplace is an MCP server at `/mcp` (Streamable HTTP, outside this document's routes): tools `search_listings`, `get_listing`, `call_listing` (the gateway call of `POST /api/v1/gateway/{listing_id}`), `get_receipt` and `list_gateway_requests`, authenticated with the same `Authorization: Bearer am_k_…`. A refused tool call carries this API's error envelope and HTTP status in `structuredContent`.",
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorEnvelope, Pagination)),
    tags(
        (name = "system", description = "Health and metadata"),
        (name = "identity", description = "Wallet-signed registration, API keys, linked wallets, human claims"),
        (name = "catalog", description = "Categories, listings and seller endpoint management"),
        (name = "gateway", description = "Pay-per-call gateway, request history and ledger"),
        (name = "payments", description = "Mock payment completion (development only)"),
        (name = "reputation", description = "Reviews and the public Crochet Score"),
        (name = "admin", description = "The marketplace operator's routes (served only when an operator credential is configured)"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("am_k_...".into());
        components.add_security_scheme("api_key", SecurityScheme::Http(scheme));
        let admin = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "The operator's credential (`admin_token`); never an agent key",
            ))
            .build();
        components.add_security_scheme("admin_token", SecurityScheme::Http(admin));
    }
}

/// Builds the OpenAPI-documented router and the document itself.
///
/// `mock_payments` mounts the mock provider's settle route (only while it is active);
/// `admin` the operator's routes (only when an operator credential is configured).
pub fn api(mock_payments: bool, admin: bool) -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let mut v1 = OpenApiRouter::new()
        .routes(routes!(health))
        .merge(crate::identity::http::routes())
        .merge(crate::catalog::http::routes())
        .merge(crate::gateway::http::routes())
        .merge(crate::ledger::http::routes())
        .merge(crate::reputation::http::routes());
    if mock_payments {
        v1 = v1.merge(crate::payments::http::routes());
    }
    if admin {
        v1 = v1.merge(crate::admin::http::routes());
    }
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .split_for_parts()
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The routes served beside the OpenAPI-documented ones.
const OPENAPI_PATH: &str = "/api/openapi.json";
const RECEIPT_KEYS_PATH: &str = "/.well-known/crochet-receipt-keys";

/// The complete application: routes, OpenAPI route, fallbacks and middleware.
/// `/metrics` is served here unless `metrics_bind` gives it a listener of its own.
pub fn router(state: AppState) -> axum::Router {
    let (mut api_router, openapi) = api(state.payments.mock().is_some(), state.admin.is_some());
    let metrics_here = state.config.metrics_bind.is_none();
    let extra = [OPENAPI_PATH, RECEIPT_KEYS_PATH, mcp::MCP_PATH];
    let mcp = mcp::endpoint(state.clone(), &openapi);
    let templates = openapi.paths.paths.keys().map(String::as_str).chain(extra);
    let http_metrics = if metrics_here {
        api_router = api_router.route(metrics::METRICS_PATH, get(metrics::scrape));
        metrics::HttpMetricsLayer::new(templates.chain([metrics::METRICS_PATH]))
    } else {
        metrics::HttpMetricsLayer::new(templates)
    };
    let openapi = Arc::new(openapi);
    let max_body = state.config.max_body_bytes;
    api_router
        .route(OPENAPI_PATH, get(move || async move { Json(openapi.as_ref().clone()) }))
        .route(RECEIPT_KEYS_PATH, get(crate::ledger::http::receipt_keys))
        .route(
            mcp::MCP_PATH,
            axum::routing::any(move |request| {
                let mcp = mcp.clone();
                async move { mcp.handle(request).await }
            }),
        )
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(http_metrics)
                .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                        let id = req
                            .headers()
                            .get(&REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        // Method and path only: queries, headers and bodies may carry secrets.
                        tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
                    })
                    .on_response(DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(LatencyUnit::Micros)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
                .layer(CatchPanicLayer::custom(|_| ApiError::internal("handler panicked").into_response()))
                .map_response(ensure_json_errors)
                .layer(DefaultBodyLimit::max(max_body)),
        )
        .with_state(state)
}

/// Health of the host and its database.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the database answers.
    pub status: &'static str,
    pub database: &'static str,
    pub version: &'static str,
    pub environment: crate::config::Environment,
}

/// Says whether the host and its database answer. Needs no authentication.
#[utoipa::path(get, path = "/health", tag = "system",
    responses(
        (status = 200, description = "Host and database are up", body = Envelope<Health>),
        (status = 503, description = "Database unreachable", body = ErrorEnvelope),
    ))]
async fn health(State(state): State<AppState>) -> Response {
    let up = state.db.ping().await;
    let body = Health {
        status: if up { "ok" } else { "degraded" },
        database: if up { "ok" } else { "unreachable" },
        version: env!("CARGO_PKG_VERSION"),
        environment: state.config.environment,
    };
    if up {
        ok(body).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "success": false,
                "error": {"code": "DATABASE_UNAVAILABLE", "message": "The database does not answer.", "details": body,
                          "recovery": {"retryable": true, "next_action": "retry_after_delay", "summary": "Wait, then retry.", "retry_after_seconds": 5}}
            })),
        )
            .into_response()
    }
}

async fn route_not_found(req: Request<axum::body::Body>) -> ApiError {
    RequestError::RouteNotFound(format!("{} {}", req.method(), req.uri().path())).into()
}

async fn method_not_allowed() -> ApiError {
    RequestError::MethodNotAllowed.into()
}

/// Turns any error response that is not JSON (from a layer or an extractor this code
/// does not own) into an envelope, so clients never see a plain-text body.
fn ensure_json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "PAYLOAD_TOO_LARGE",
            "request body is larger than the host's limit",
        ),
        StatusCode::REQUEST_TIMEOUT => ("REQUEST_TIMEOUT", "the request took too long"),
        StatusCode::NOT_FOUND => ("ROUTE_NOT_FOUND", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => ("METHOD_NOT_ALLOWED", "method not allowed"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type must be application/json",
        ),
        s if s.is_client_error() => ("BAD_REQUEST", "the request could not be processed"),
        _ => (
            "INTERNAL_ERROR",
            "The gateway hit an internal error; the request was not completed.",
        ),
    };
    let mut out = (
        status,
        Json(serde_json::json!({"success": false, "error": {"code": code, "message": message}})),
    )
        .into_response();
    for name in [&REQUEST_ID, &header::RETRY_AFTER] {
        if let Some(v) = response.headers().get(name) {
            out.headers_mut().insert(name.clone(), v.clone());
        }
    }
    out
}

/// How long in-flight requests get to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

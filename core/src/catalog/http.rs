//! HTTP handlers of the catalog routes: parse, call [`Catalog`](super::Catalog), answer.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::DeleteOutcome;
use super::model::*;
use crate::app::AppState;
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, Auth, MaybeAuth};
use crate::http::{Envelope, PagedEnvelope, ok, paged};

/// The catalog routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(categories))
        .routes(routes!(browse, create_listing))
        .routes(routes!(listing_challenge))
        .routes(routes!(get_listing, update_listing, delete_listing))
        .routes(routes!(get_endpoint, put_endpoint))
        .routes(routes!(test_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(get_adapter, put_adapter, delete_adapter))
        .routes(routes!(upload_adapter))
}

/// Marketplace categories.
#[utoipa::path(get, path = "/categories", tag = "catalog",
    responses((status = 200, body = PagedEnvelope<Category>)))]
async fn categories(State(s): State<AppState>) -> Json<PagedEnvelope<Category>> {
    let all = s.catalog.categories().to_vec();
    let total = all.len() as i64;
    paged(
        all,
        crate::storage::Page::new(Some(1), Some(crate::storage::Page::MAX_LIMIT)),
        total,
    )
}

/// Browse active `free` and `per_call` listings.
#[utoipa::path(get, path = "/listings", tag = "catalog", params(ListingQuery),
    responses((status = 200, body = PagedEnvelope<Listing>), (status = 400, body = ErrorEnvelope)))]
async fn browse(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<ListingQuery>,
) -> Result<Json<PagedEnvelope<Listing>>, ApiError> {
    let (items, total, page) = s.catalog.browse(q).await?;
    Ok(paged(items, page, total))
}

/// Listing proof-of-work challenge for the authenticated seller.
#[utoipa::path(post, path = "/listings/challenge", tag = "catalog", security(("api_key" = [])),
    responses(
        (status = 200, body = Envelope<ListingChallenge>),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Buyer-only profile", body = ErrorEnvelope),
    ))]
async fn listing_challenge(
    State(s): State<AppState>,
    Auth(who): Auth,
) -> Result<Json<Envelope<ListingChallenge>>, ApiError> {
    Ok(ok(s.catalog.create_challenge(&who).await?))
}

/// Create a listing; `per_call` needs `private_endpoint_url`. Returns the signing secret once.
#[utoipa::path(post, path = "/listings", tag = "catalog", security(("api_key" = [])), request_body = CreateListingRequest,
    responses(
        (status = 201, body = Envelope<CreatedListing>),
        (status = 400, description = "Listing challenge missing, used, expired or not solved", body = ErrorEnvelope),
        (status = 403, description = "Buyer-only profile", body = ErrorEnvelope),
        (status = 422, description = "Invalid field or endpoint URL refused", body = ErrorEnvelope),
    ))]
async fn create_listing(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiJson(req): ApiJson<CreateListingRequest>,
) -> Result<(StatusCode, Json<Envelope<CreatedListing>>), ApiError> {
    Ok((
        StatusCode::CREATED,
        ok(s.catalog.create_listing(&who, req).await?),
    ))
}

/// A listing by UUID or slug (active ones; the seller also sees its drafts and suspended ones).
#[utoipa::path(get, path = "/listings/{id}", tag = "catalog",
    params(("id" = String, Path, description = "Listing UUID or slug")),
    responses((status = 200, body = Envelope<Listing>), (status = 404, body = ErrorEnvelope)))]
async fn get_listing(
    State(s): State<AppState>,
    MaybeAuth(who): MaybeAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<Listing>>, ApiError> {
    Ok(ok(s.catalog.get(&id, who.as_ref()).await?))
}

/// Update listing fields (owner); `private_endpoint_url` updates the gateway endpoint.
#[utoipa::path(patch, path = "/listings/{id}", tag = "catalog", security(("api_key" = [])),
    params(("id" = String, Path, description = "Listing UUID or slug")), request_body = UpdateListingRequest,
    responses(
        (status = 200, body = Envelope<Listing>),
        (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope),
    ))]
async fn update_listing(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateListingRequest>,
) -> Result<Json<Envelope<Listing>>, ApiError> {
    Ok(ok(s.catalog.update_listing(&who, &id, req).await?))
}

/// Delete a draft, or suspend a published listing (owner).
#[utoipa::path(delete, path = "/listings/{id}", tag = "catalog", security(("api_key" = [])),
    params(("id" = String, Path, description = "Listing UUID or slug")),
    responses((status = 200, body = Envelope<DeleteOutcome>), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn delete_listing(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<DeleteOutcome>>, ApiError> {
    Ok(ok(s.catalog.delete_listing(&who, &id).await?))
}

/// Safe endpoint metadata (owner). Never the URL, auth header value or secret.
#[utoipa::path(get, path = "/listings/{id}/endpoint", tag = "catalog", security(("api_key" = [])),
    params(("id" = String, Path, description = "Listing UUID or slug")),
    responses((status = 200, body = Envelope<EndpointInfo>), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn get_endpoint(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<EndpointInfo>>, ApiError> {
    Ok(ok(s.catalog.endpoint_info(&who, &id).await?))
}

/// Update the private endpoint URL, upstream auth header, timeout, size limits or status (owner).
#[utoipa::path(put, path = "/listings/{id}/endpoint", tag = "catalog", security(("api_key" = [])),
    params(("id" = String, Path, description = "Listing UUID or slug")), request_body = UpdateEndpointRequest,
    responses(
        (status = 200, body = Envelope<EndpointInfo>),
        (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope),
    ))]
async fn put_endpoint(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateEndpointRequest>,
) -> Result<Json<Envelope<EndpointInfo>>, ApiError> {
    Ok(ok(s.catalog.update_endpoint(&who, &id, req).await?))
}

/// Send a Crochet-signed test request to the private endpoint and report the answer (owner).
#[utoipa::path(post, path = "/listings/{id}/endpoint/test", tag = "catalog", security(("api_key" = [])),
    params(("id" = String, Path, description = "Listing UUID or slug")),
    responses(
        (status = 200, body = Envelope<EndpointTestResult>),
        (status = 403, body = ErrorEnvelope),
        (status = 409, description = "No endpoint URL configured", body = ErrorEnvelope),
        (status = 422, description = "Endpoint address refused", body = ErrorEnvelope),
    ))]
async fn test_endpoint(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<EndpointTestResult>>, ApiError> {
    Ok(ok(s.catalog.test_endpoint(&who, &id).await?))
}

/// Rotate the signing secret; the new one is returned once and the old one stops at once (owner).
#[utoipa::path(post, path = "/listings/{id}/endpoint/rotate-secret", tag = "catalog", security(("api_key" = [])),
    params(("id" = String, Path, description = "Listing UUID or slug")),
    responses((status = 200, body = Envelope<SigningSecret>), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn rotate_secret(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<SigningSecret>>, ApiError> {
    Ok(ok(s.catalog.rotate_secret(&who, &id).await?))
}

/// The listing's seller adapter (owner).
#[utoipa::path(get, path = "/listings/{id}/adapter", tag = "catalog", security(("api_key" = [])),
    params(("id" = String, Path, description = "Listing UUID or slug")),
    responses((status = 200, body = Envelope<AdapterInfo>), (status = 403, body = ErrorEnvelope), (status = 404, description = "No listing or no adapter", body = ErrorEnvelope)))]
async fn get_adapter(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<AdapterInfo>>, ApiError> {
    Ok(ok(s.catalog.adapter_info(&who, &id).await?))
}

/// Attach a bundled seller adapter, or change the adapter's configuration (owner). The
/// adapter reshapes each call's body before it is signed and the seller's reply after.
#[utoipa::path(put, path = "/listings/{id}/adapter", tag = "catalog", security(("api_key" = [])),
    params(("id" = String, Path, description = "Listing UUID or slug")), request_body = PutAdapterRequest,
    responses((status = 200, body = Envelope<AdapterInfo>), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
async fn put_adapter(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<PutAdapterRequest>,
) -> Result<Json<Envelope<AdapterInfo>>, ApiError> {
    Ok(ok(s.catalog.put_adapter(&who, &id, req).await?))
}

/// Detach the seller adapter; calls are forwarded unchanged again (owner).
#[utoipa::path(delete, path = "/listings/{id}/adapter", tag = "catalog", security(("api_key" = [])),
    params(("id" = String, Path, description = "Listing UUID or slug")),
    responses((status = 200, description = "The adapter that was detached", body = Envelope<AdapterInfo>), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn delete_adapter(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<AdapterInfo>>, ApiError> {
    Ok(ok(s.catalog.delete_adapter(&who, &id).await?))
}

/// Upload a seller-adapter component (`application/wasm`, a `seller-adapter` component of
/// `crochet:plugin@1.1.0` or `@1.0.0`, at most `plugins.max_component_bytes`). It is checked before
/// it is stored; its configuration is kept (set it with `PUT /listings/{id}/adapter`).
#[utoipa::path(put, path = "/listings/{id}/adapter/component", tag = "catalog", security(("api_key" = [])),
    params(("id" = String, Path, description = "Listing UUID or slug")),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 200, body = Envelope<AdapterInfo>), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 413, description = "Larger than the upload cap", body = ErrorEnvelope),
        (status = 415, description = "Not application/wasm", body = ErrorEnvelope),
        (status = 422, description = "Not a valid seller adapter", body = ErrorEnvelope)))]
async fn upload_adapter(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Json<Envelope<AdapterInfo>>, ApiError> {
    // The body is read (up to the cap) before anything is refused: answering while the
    // client is still sending would break its keep-alive connection.
    let cap = s.plugins.host.limits().max_component_bytes;
    let wasm = axum::body::to_bytes(body, cap).await.map_err(|e| {
        if crate::http::extract::is_body_timeout(&e) {
            crate::http::error::RequestError::BodyTimeout
        } else {
            crate::http::error::RequestError::PayloadTooLarge
        }
    })?;
    let wasm_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/wasm"));
    if !wasm_type {
        return Err(
            crate::http::error::RequestError::UnsupportedMediaTypeOf("application/wasm").into(),
        );
    }
    Ok(ok(s
        .catalog
        .upload_adapter(&who, &id, wasm.to_vec())
        .await?))
}

//! HTTP handlers of the identity routes: parse, call [`Identity`](super::Identity), answer.

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::*;
use crate::app::AppState;
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery, Auth, PolicyHeaders};
use crate::http::{Envelope, PageQuery, PagedEnvelope, ok, paged};

type Created<T> = (StatusCode, Json<Envelope<T>>);

fn created<T: serde::Serialize>(data: T) -> Created<T> {
    (StatusCode::CREATED, ok(data))
}

/// The identity routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(challenge))
        .routes(routes!(register))
        .routes(routes!(recover))
        .routes(routes!(me))
        .routes(routes!(list_wallets, link_wallet))
        .routes(routes!(get_wallet, update_wallet))
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(revoke_api_key, update_api_key))
        .routes(routes!(claim_agent))
        .routes(routes!(agent_profile))
}

/// Issues a wallet signing challenge plus proof-of-work for one purpose.
#[utoipa::path(post, path = "/auth/challenge", tag = "identity", request_body = ChallengeRequest,
    responses(
        (status = 200, body = Envelope<Challenge>),
        (status = 400, description = "Invalid wallet address", body = ErrorEnvelope),
        (status = 404, description = "profile_id does not exist", body = ErrorEnvelope),
        (status = 422, description = "Invalid field", body = ErrorEnvelope),
    ))]
async fn challenge(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    PolicyHeaders(headers): PolicyHeaders,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> Result<Json<Envelope<Challenge>>, ApiError> {
    s.guard_auth_route("POST /api/v1/auth/challenge", peer, headers)
        .await?;
    Ok(ok(s.identity.create_challenge(req).await?))
}

/// Creates an agent profile from a signed `register` challenge; returns the API key once.
#[utoipa::path(post, path = "/register", tag = "identity", request_body = RegisterRequest,
    responses(
        (status = 201, body = Envelope<IssuedKey>),
        (status = 400, description = "Challenge expired, not found or proof-of-work wrong (`restart_wallet_challenge`)", body = ErrorEnvelope),
        (status = 401, description = "Invalid signature (`restart_wallet_challenge`)", body = ErrorEnvelope),
        (status = 409, description = "Wallet already registered (`recover_api_key`) or challenge already used", body = ErrorEnvelope),
    ))]
async fn register(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    PolicyHeaders(headers): PolicyHeaders,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<Created<IssuedKey>, ApiError> {
    s.guard_auth_route("POST /api/v1/register", peer, headers)
        .await?;
    let mut issued = s.identity.register(req).await?;
    current_score(&s, &mut issued.profile).await;
    Ok(created(issued))
}

/// Puts the agent's current Crochet Score on its profile (computing it when there is
/// none yet or when something happened since, as `GET /agents/{id}/score` does). A scorer
/// failure leaves the stored badge as it was: the profile is still answered.
async fn current_score(s: &AppState, profile: &mut Profile) {
    match s.reputation.score(&profile.id).await {
        Ok(score) => {
            let badge = crate::reputation::model::ScoreBadge::of(i64::from(score.score));
            profile.crochet_score = Some(badge);
            profile.verified = badge.verified;
        }
        Err(error) => {
            tracing::warn!(%error, profile_id = %profile.id, "no Crochet Score for the profile");
        }
    }
}

/// A registered wallet proves ownership (purpose `recover`) and receives a fresh API key.
#[utoipa::path(post, path = "/auth/recover", tag = "identity", request_body = WalletProof,
    responses(
        (status = 201, body = Envelope<IssuedKey>),
        (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Wallet not active or not recovery-enabled", body = ErrorEnvelope),
        (status = 404, description = "Wallet not registered", body = ErrorEnvelope),
    ))]
async fn recover(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    PolicyHeaders(headers): PolicyHeaders,
    ApiJson(req): ApiJson<WalletProof>,
) -> Result<Created<IssuedKey>, ApiError> {
    s.guard_auth_route("POST /api/v1/auth/recover", peer, headers)
        .await?;
    Ok(created(s.identity.recover(req).await?))
}

/// The authenticated profile, its wallets and the key used.
#[utoipa::path(get, path = "/me", tag = "identity", security(("api_key" = [])),
    responses((status = 200, body = Envelope<Me>), (status = 401, body = ErrorEnvelope)))]
async fn me(State(s): State<AppState>, Auth(who): Auth) -> Result<Json<Envelope<Me>>, ApiError> {
    let mut me = s.identity.me(&who).await?;
    current_score(&s, &mut me.profile).await;
    Ok(ok(me))
}

/// Lists the profile's linked wallets.
#[utoipa::path(get, path = "/me/wallets", tag = "identity", security(("api_key" = [])), params(PageQuery),
    responses((status = 200, body = PagedEnvelope<WalletSummary>), (status = 401, body = ErrorEnvelope)))]
async fn list_wallets(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<PagedEnvelope<WalletSummary>>, ApiError> {
    let page = q.page();
    let (items, total) = s.identity.list_wallets(&who, page).await?;
    Ok(paged(items, page, total))
}

/// Links another EVM or Solana wallet with proofs from an existing wallet and the new one.
#[utoipa::path(post, path = "/me/wallets", tag = "identity", security(("api_key" = [])), request_body = LinkWalletRequest,
    responses(
        (status = 201, body = Envelope<WalletSummary>),
        (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "Existing-wallet proof is not from this profile", body = ErrorEnvelope),
        (status = 409, description = "Wallet already linked", body = ErrorEnvelope),
    ))]
async fn link_wallet(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiJson(req): ApiJson<LinkWalletRequest>,
) -> Result<Created<WalletSummary>, ApiError> {
    Ok(created(s.identity.link_wallet(&who, req).await?))
}

/// One linked wallet.
#[utoipa::path(get, path = "/me/wallets/{id}", tag = "identity", security(("api_key" = [])),
    params(("id" = String, Path, description = "Wallet id")),
    responses((status = 200, body = Envelope<WalletSummary>), (status = 404, body = ErrorEnvelope)))]
async fn get_wallet(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<WalletSummary>>, ApiError> {
    Ok(ok(s.identity.get_wallet(&who, &id).await?))
}

/// Updates a wallet's defaults, capabilities or status with a fresh `update_wallet` proof.
#[utoipa::path(patch, path = "/me/wallets/{id}", tag = "identity", security(("api_key" = [])),
    params(("id" = String, Path, description = "Wallet id")), request_body = UpdateWalletRequest,
    responses(
        (status = 200, body = Envelope<WalletSummary>),
        (status = 404, body = ErrorEnvelope),
        (status = 409, description = "Would leave no active recovery wallet", body = ErrorEnvelope),
    ))]
async fn update_wallet(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateWalletRequest>,
) -> Result<Json<Envelope<WalletSummary>>, ApiError> {
    Ok(ok(s.identity.update_wallet(&who, &id, req).await?))
}

/// API key metadata only.
#[utoipa::path(get, path = "/api-keys", tag = "identity", security(("api_key" = [])), params(PageQuery),
    responses((status = 200, body = PagedEnvelope<ApiKeyInfo>), (status = 401, body = ErrorEnvelope)))]
async fn list_api_keys(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<PagedEnvelope<ApiKeyInfo>>, ApiError> {
    let page = q.page();
    let (items, total) = s.identity.list_api_keys(&who, page).await?;
    Ok(paged(items, page, total))
}

/// Creates an API key; the raw key is returned once. With `limits`, the key is limited
/// in what it may buy (a sub-agent's key): the highest price per call, spend per UTC day
/// and per 30 days, the listings, categories and sellers it may call, an expiry. A key
/// with limits cannot manage keys.
#[utoipa::path(post, path = "/api-keys", tag = "identity", security(("api_key" = [])), request_body = CreateApiKeyRequest,
    responses((status = 201, body = Envelope<IssuedKey>), (status = 401, body = ErrorEnvelope),
        (status = 403, description = "KEY_MANAGEMENT_NOT_ALLOWED: the calling key has limits", body = ErrorEnvelope),
        (status = 422, description = "Invalid limits", body = ErrorEnvelope)))]
async fn create_api_key(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiJson(req): ApiJson<CreateApiKeyRequest>,
) -> Result<Created<IssuedKey>, ApiError> {
    Ok(created(s.identity.create_api_key(&who, req).await?))
}

/// Replaces a key's limits (`{"limits": null}` lifts them); effective on its next request.
#[utoipa::path(patch, path = "/api-keys/{id}", tag = "identity", security(("api_key" = [])),
    params(("id" = String, Path, description = "API key id")), request_body = UpdateApiKeyRequest,
    responses((status = 200, body = Envelope<ApiKeyInfo>), (status = 403, description = "KEY_MANAGEMENT_NOT_ALLOWED", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
async fn update_api_key(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateApiKeyRequest>,
) -> Result<Json<Envelope<ApiKeyInfo>>, ApiError> {
    Ok(ok(s.identity.update_api_key(&who, &id, req).await?))
}

/// Revokes a key at once.
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "identity", security(("api_key" = [])),
    params(("id" = String, Path, description = "API key id")),
    responses((status = 200, body = Envelope<ApiKeyInfo>), (status = 404, body = ErrorEnvelope)))]
async fn revoke_api_key(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<ApiKeyInfo>>, ApiError> {
    Ok(ok(s.identity.revoke_api_key(&who, &id).await?))
}

/// A human operator proves control of an agent's wallet (challenge purpose `claim`,
/// `profile_id` = agent id). Recorded; it does not create score verification.
#[utoipa::path(post, path = "/agents/{id}/claim", tag = "identity",
    params(("id" = String, Path, description = "Agent (profile) id")), request_body = ClaimRequest,
    responses(
        (status = 201, body = Envelope<Claim>),
        (status = 403, description = "Wallet is not an active wallet of this agent", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    ))]
async fn claim_agent(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> Result<Created<Claim>, ApiError> {
    Ok(created(s.identity.claim_agent(&id, req).await?))
}

/// An agent's public profile: name, role, status (`active` or `suspended`), Crochet Score.
#[utoipa::path(get, path = "/agents/{id}", tag = "identity",
    params(("id" = String, Path, description = "Agent (profile) id")),
    responses((status = 200, body = Envelope<Profile>), (status = 404, body = ErrorEnvelope)))]
async fn agent_profile(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<Profile>>, ApiError> {
    let mut profile = s.identity.profile(&id).await?;
    current_score(&s, &mut profile).await;
    Ok(ok(profile))
}

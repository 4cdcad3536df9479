//! `GET /ledger`, `GET /receipts`, `GET /receipts/{id}`, the receipt keys, `GET /balance`
//! and `POST /balance/deposits`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::balance::{self, Balance};
use super::deposits::{
    self, Confirmed, Deposit, DepositConfirmation, DepositRequest, PendingDeposit,
};
use super::receipts::{self, PublicReceiptKey, Receipt};
use super::{LedgerEntry, LedgerQuery};
use crate::app::AppState;
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::http::extract::{ApiPath, OptionalJson};
use crate::http::extract::{ApiQuery, Auth};
use crate::http::{Envelope, PageQuery, PagedEnvelope, ok, paged};
use crate::payments::Route;
use crate::storage::Page;

/// The balance routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_balance))
        .routes(routes!(deposit, list_deposits))
}

/// The caller's marketplace balance: refunds of paid calls that failed at the seller,
/// top-ups, less the calls paid from it (`X-Crochet-Pay-From: balance`). Its movements
/// are the `gateway_refund`, `deposit` and `balance_debit` entries of `GET /ledger`.
#[utoipa::path(get, path = "/balance", tag = "gateway", security(("api_key" = [])),
    responses((status = 200, body = Envelope<Balance>), (status = 401, body = ErrorEnvelope)))]
async fn get_balance(
    State(s): State<AppState>,
    Auth(who): Auth,
) -> Result<Json<Envelope<Balance>>, ApiError> {
    Ok(ok(balance::view(s.db.pool(), &who.profile_id)
        .await
        .map_err(ApiError::internal)?))
}

/// Tops the balance up through the payment provider. Without `X-Crochet-Relay-Request-Id`:
/// 402 with the payment requirement of `amount_cents` (`error.details.payment`). Pay it,
/// then repeat the request with `X-Crochet-Relay-Request-Id`: 201 once the deposit is
/// credited (exactly once, however many confirmations race), 202 while the payment is
/// pending, 200 for a repeat of a credited deposit.
#[utoipa::path(post, path = "/balance/deposits", tag = "gateway", security(("api_key" = [])),
    params(("X-Crochet-Relay-Request-Id" = Option<String>, Header, description = "The relay_request_id of the deposit's payment, once paid")),
    request_body(content = Option<DepositRequest>, description = "Required to create a deposit; optional on the confirming request"),
    responses(
        (status = 201, description = "Credited", body = Envelope<DepositConfirmation>),
        (status = 200, description = "Already credited", body = Envelope<DepositConfirmation>),
        (status = 202, description = "Payment pending", body = Envelope<PendingDeposit>),
        (status = 402, description = "PAYMENT_REQUIRED (the deposit's payment) or PAYMENT_FAILED", body = ErrorEnvelope),
        (status = 404, description = "DEPOSIT_NOT_FOUND", body = ErrorEnvelope),
        (status = 409, description = "DEPOSIT_AMOUNT_MISMATCH", body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope),
    ))]
async fn deposit(
    State(s): State<AppState>,
    Auth(who): Auth,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<DepositRequest>,
) -> Result<Response, ApiError> {
    let provider = s.payments.provider().as_ref();
    let relay_request_id = headers
        .get("x-crochet-relay-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty());
    let Some(relay_request_id) = relay_request_id else {
        let route = payer_route(&s, &who.profile_id).await?;
        let body = body.unwrap_or_default();
        return Err(
            deposits::create(&s.db, provider, &who.profile_id, &body, route)
                .await
                .into(),
        );
    };
    let confirmed = deposits::confirm(
        &s.db,
        provider,
        &who.profile_id,
        relay_request_id,
        body.as_ref(),
    )
    .await?;
    Ok(match confirmed {
        Confirmed::Credited(c) => {
            let status = if c.credited_now {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, ok(*c)).into_response()
        }
        Confirmed::Pending(pending) => (StatusCode::ACCEPTED, ok(pending)).into_response(),
    })
}

/// The caller's deposits, newest first: each with its status and `relay_request_id`, so
/// a deposit paid but never confirmed can be confirmed later.
#[utoipa::path(get, path = "/balance/deposits", tag = "gateway", security(("api_key" = [])), params(PageQuery),
    responses((status = 200, body = PagedEnvelope<Deposit>), (status = 401, body = ErrorEnvelope)))]
async fn list_deposits(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<PagedEnvelope<Deposit>>, ApiError> {
    let page = q.page();
    let (items, total) = deposits::list(&s.db, &who.profile_id, page)
        .await
        .map_err(ApiError::internal)?;
    Ok(paged(items, page, total))
}

/// The route a deposit is paid on: from the profile's default payment wallet.
async fn payer_route(s: &AppState, profile_id: &str) -> Result<Route, ApiError> {
    let payer = s
        .identity
        .payment_wallets(profile_id)
        .await?
        .into_iter()
        .next()
        .map(crate::payments::wallet_ref);
    Ok(Route {
        payer,
        ..Route::default()
    })
}

/// The caller's ledger: gateway debits, seller credits and adjustments, newest first.
#[utoipa::path(get, path = "/ledger", tag = "gateway", security(("api_key" = [])), params(LedgerQuery),
    responses((status = 200, body = PagedEnvelope<LedgerEntry>), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
pub async fn ledger(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiQuery(q): ApiQuery<LedgerQuery>,
) -> Result<Json<PagedEnvelope<LedgerEntry>>, ApiError> {
    let page = Page::new(q.page, q.limit);
    let (items, total) = super::list(s.db.pool(), &who.profile_id, &q, page)
        .await
        .map_err(ApiError::internal)?;
    Ok(paged(items, page, total))
}

/// Receipts of the caller's billable calls, as buyer or seller.
#[utoipa::path(get, path = "/receipts", tag = "gateway", security(("api_key" = [])), params(PageQuery),
    responses((status = 200, body = PagedEnvelope<Receipt>), (status = 401, body = ErrorEnvelope)))]
pub async fn list_receipts(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<PagedEnvelope<Receipt>>, ApiError> {
    let page = q.page();
    let (items, total) = receipts::list(s.db.pool(), &who.profile_id, page)
        .await
        .map_err(ApiError::internal)?;
    Ok(paged(items, page, total))
}

/// One receipt (its buyer or seller only); verify `signature` over `payload` offline with
/// the key from `/.well-known/crochet-receipt-keys`.
#[utoipa::path(get, path = "/receipts/{id}", tag = "gateway", security(("api_key" = [])),
    params(("id" = String, Path, description = "Receipt id")),
    responses((status = 200, body = Envelope<Receipt>), (status = 404, body = ErrorEnvelope)))]
pub async fn get_receipt(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<Receipt>>, ApiError> {
    Ok(ok(receipt_of(&s, &who.profile_id, &id).await?))
}

/// One of the caller's receipts (as buyer or seller), over REST or MCP.
pub(crate) async fn receipt_of(
    s: &AppState,
    profile_id: &str,
    id: &str,
) -> Result<Receipt, ApiError> {
    let receipt = receipts::get(s.db.pool(), profile_id, id)
        .await
        .map_err(ApiError::internal)?;
    receipt.ok_or(ApiError::ReceiptNotFound)
}

/// The host's receipt verification keys (current first).
pub async fn receipt_keys(State(s): State<AppState>) -> Json<Envelope<Vec<PublicReceiptKey>>> {
    ok(s.receipt_keys())
}

//! `GET /ledger`, `GET /receipts`, `GET /receipts/{id}` and the receipt keys.

use axum::Json;
use axum::extract::State;

use super::receipts::{self, PublicReceiptKey, Receipt};
use super::{LedgerEntry, LedgerQuery};
use crate::app::AppState;
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::http::extract::ApiPath;
use crate::http::extract::{ApiQuery, Auth};
use crate::http::{Envelope, PageQuery, PagedEnvelope, ok, paged};
use crate::storage::Page;

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

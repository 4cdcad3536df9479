//! `GET /ledger`.

use axum::Json;
use axum::extract::State;

use super::{LedgerEntry, LedgerQuery};
use crate::app::AppState;
use crate::http::error::{ApiError, ErrorEnvelope};
use crate::http::extract::{ApiQuery, Auth};
use crate::http::{PagedEnvelope, paged};
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

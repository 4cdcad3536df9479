//! SQL for issued payments, idempotency keys and gateway request rows.

use sqlx::{AnyConnection, AnyPool, FromRow};

use super::model::{GatewayRequestRow, GatewayRequestStatus, HistoryQuery, HistoryRole};
use crate::pagination::Total;
use crate::storage::{self, Page, now_ms};

#[derive(Debug, Clone, FromRow)]
pub struct PaymentRow {
    pub request_id: String,
    pub provider: String,
    pub buyer_id: String,
    pub listing_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub body_sha256: String,
    pub requirements: String,
    pub status: String,
    pub gateway_request_id: Option<String>,
}

const PAYMENT_COLUMNS: &str = "p.request_id, p.provider, p.buyer_id, p.listing_id, p.amount_cents, p.currency, \
     p.body_sha256, p.requirements, p.status, p.gateway_request_id";

pub struct NewPayment<'a> {
    pub request_id: &'a str,
    pub provider: &'a str,
    pub buyer_id: &'a str,
    pub listing_id: &'a str,
    pub seller_id: &'a str,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub body_sha256: &'a str,
    pub requirements: &'a str,
    pub now: i64,
}

pub async fn insert_payment(conn: &mut AnyConnection, p: &NewPayment<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO gateway_payments (request_id, provider, buyer_id, listing_id, seller_id, amount_cents, \
         currency, body_sha256, requirements, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'issued', $10)",
    )
    .bind(p.request_id)
    .bind(p.provider)
    .bind(p.buyer_id)
    .bind(p.listing_id)
    .bind(p.seller_id)
    .bind(p.amount_cents)
    .bind(p.currency)
    .bind(p.body_sha256)
    .bind(p.requirements)
    .bind(p.now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The key whose spend a gateway request's charge counted against, and when the call was
/// charged (Unix ms): what a refund gives the key's spend back to.
pub async fn paying_key(
    conn: &mut AnyConnection,
    gateway_request_id: &str,
) -> sqlx::Result<Option<(String, i64)>> {
    let row: Option<(Option<String>, i64)> = sqlx::query_as(
        "SELECT p.api_key_id, r.created_at FROM gateway_requests r \
         JOIN gateway_payments p ON p.request_id = r.relay_request_id WHERE r.id = $1",
    )
    .bind(gateway_request_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(|(key, at)| key.map(|k| (k, at))))
}

/// Reverses a paid call's charge in the caller's transaction: the mirrored ledger
/// entries, the refund to the buyer's balance, and the refund given back to the spend
/// of the key that paid (if it is still in the window the charge was counted in).
/// Returns the cents refunded.
pub async fn reverse_charge(
    conn: &mut AnyConnection,
    gateway_request_id: &str,
    now: i64,
) -> sqlx::Result<i64> {
    let refunded = crate::ledger::record_reversal(conn, gateway_request_id, now).await?;
    if refunded > 0
        && let Some((key, charged_at)) = paying_key(conn, gateway_request_id).await?
    {
        crate::identity::store::return_spend(conn, &key, refunded, charged_at).await?;
    }
    Ok(refunded)
}

pub async fn payment(pool: &AnyPool, request_id: &str) -> sqlx::Result<Option<PaymentRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PAYMENT_COLUMNS} FROM gateway_payments p WHERE p.request_id = $1"
    )))
    .bind(request_id)
    .fetch_optional(pool)
    .await
}

/// Records an Idempotency-Key; false when the buyer already used it.
pub async fn insert_idempotency(
    conn: &mut AnyConnection,
    buyer_id: &str,
    key: &str,
    listing_id: &str,
    body_sha256: &str,
    request_id: &str,
    now: i64,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO gateway_idempotency (buyer_id, idem_key, listing_id, body_sha256, request_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (buyer_id, idem_key) DO NOTHING RETURNING request_id",
    )
    .bind(buyer_id)
    .bind(key)
    .bind(listing_id)
    .bind(body_sha256)
    .bind(request_id)
    .bind(now)
    .fetch_optional(conn)
    .await?
    .is_some())
}

/// The payment an Idempotency-Key of this buyer points at (with the key's listing and body).
pub async fn idempotent_payment(
    pool: &AnyPool,
    buyer_id: &str,
    key: &str,
) -> sqlx::Result<Option<PaymentRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PAYMENT_COLUMNS} FROM gateway_idempotency i JOIN gateway_payments p ON p.request_id = i.request_id \
         WHERE i.buyer_id = $1 AND i.idem_key = $2"
    )))
    .bind(buyer_id)
    .bind(key)
    .fetch_optional(pool)
    .await
}

/// Consumes an issued payment for one gateway request, recording the key whose spend the
/// charge counts against (the caller's); false when it was already used.
pub async fn consume_payment(
    conn: &mut AnyConnection,
    request_id: &str,
    gateway_request_id: &str,
    api_key_id: Option<&str>,
    now: i64,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE gateway_payments SET status = 'consumed', gateway_request_id = $1, consumed_at = $2, \
         api_key_id = $4 WHERE request_id = $3 AND status = 'issued'",
    )
    .bind(gateway_request_id)
    .bind(now)
    .bind(request_id)
    .bind(api_key_id)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

pub struct NewRequest<'a> {
    pub id: &'a str,
    pub buyer_id: &'a str,
    pub seller_id: &'a str,
    pub listing_id: &'a str,
    pub relay_request_id: Option<&'a str>,
    pub billable: bool,
    pub charged_cents: i64,
    pub fee_cents: i64,
    pub currency: &'a str,
    pub request_bytes: usize,
    pub request_sha256: &'a str,
    pub now: i64,
    /// The forwarding lease: this host instance, until this time (Unix ms).
    pub lease_owner: &'a str,
    pub lease_until: i64,
}

/// Inserts a request row in state `forwarding`, leased by its first attempt.
pub async fn insert_request(conn: &mut AnyConnection, r: &NewRequest<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO gateway_requests (id, buyer_id, seller_id, listing_id, relay_request_id, status, billable, \
         charged_cents, fee_cents, seller_cents, currency, request_bytes, request_sha256, created_at, updated_at, \
         lease_owner, lease_until, attempts) \
         VALUES ($1, $2, $3, $4, $5, 'forwarding', $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15, 1)",
    )
    .bind(r.id)
    .bind(r.buyer_id)
    .bind(r.seller_id)
    .bind(r.listing_id)
    .bind(r.relay_request_id)
    .bind(i64::from(r.billable))
    .bind(r.charged_cents)
    .bind(r.fee_cents)
    .bind(r.charged_cents - r.fee_cents)
    .bind(r.currency)
    .bind(i64::try_from(r.request_bytes).unwrap_or(i64::MAX))
    .bind(r.request_sha256)
    .bind(r.now)
    .bind(r.lease_owner)
    .bind(r.lease_until)
    .execute(conn)
    .await?;
    Ok(())
}

/// Where a consumed payment's call stands.
#[derive(Debug, Clone, FromRow)]
pub struct CallState {
    #[sqlx(try_from = "String")]
    pub status: GatewayRequestStatus,
    pub lease_until: Option<i64>,
    pub attempts: i64,
}

/// The state of one request row.
pub async fn call_state(pool: &AnyPool, id: &str) -> sqlx::Result<Option<CallState>> {
    sqlx::query_as("SELECT status, lease_until, attempts FROM gateway_requests WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Takes over a `forwarding` row whose lease has passed (`now`), for a new attempt
/// leased until `lease_until`. Returns the new attempt number, or `None` when the row is
/// no longer forwarding or another attempt holds a live lease (only one racing retry
/// can win: the `UPDATE` is conditional on the attempt it read).
pub async fn take_over(
    pool: &AnyPool,
    id: &str,
    seen: &CallState,
    owner: &str,
    now: i64,
    lease_until: i64,
) -> sqlx::Result<Option<i64>> {
    let taken = sqlx::query(
        "UPDATE gateway_requests SET lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id = $4 AND status = 'forwarding' AND attempts = $5 AND COALESCE(lease_until, 0) <= $3",
    )
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .bind(id)
    .bind(seen.attempts)
    .execute(pool)
    .await?
    .rows_affected()
        == 1;
    Ok(taken.then_some(seen.attempts + 1))
}

/// How a forwarded request ended.
pub struct Finish<'a> {
    pub id: &'a str,
    /// The attempt that forwarded it; a row taken over since is not changed.
    pub attempt: i64,
    pub status: GatewayRequestStatus,
    pub response_bytes: Option<usize>,
    pub response_sha256: Option<&'a str>,
    pub seller_status_code: Option<u16>,
    pub latency_ms: i64,
    pub error_code: Option<&'a str>,
}

/// Records how a forwarded request ended, if it is still `forwarding` under the same
/// attempt; false when the call was resolved meanwhile (interrupted, or finished by a
/// later attempt).
pub async fn finish_request(conn: &mut AnyConnection, f: &Finish<'_>) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE gateway_requests SET status = $1, response_bytes = $2, response_sha256 = $3, \
         seller_status_code = $4, latency_ms = $5, error_code = $6, updated_at = $7, lease_until = NULL \
         WHERE id = $8 AND status = 'forwarding' AND attempts = $9",
    )
    .bind(f.status.as_str())
    .bind(f.response_bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)))
    .bind(f.response_sha256)
    .bind(f.seller_status_code.map(i64::from))
    .bind(f.latency_ms)
    .bind(f.error_code)
    .bind(now_ms())
    .bind(f.id)
    .bind(f.attempt)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Rows still `forwarding` whose lease passed before `cutoff` (oldest first, at most `limit`).
pub async fn abandoned(pool: &AnyPool, cutoff: i64, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT id FROM gateway_requests WHERE status = 'forwarding' AND COALESCE(lease_until, 0) < $1 \
         ORDER BY lease_until LIMIT $2",
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Marks an abandoned row `interrupted` (still forwarding, lease passed before `cutoff`);
/// false when a retry took it over or it finished meanwhile.
pub async fn mark_interrupted(
    conn: &mut AnyConnection,
    id: &str,
    cutoff: i64,
    now: i64,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE gateway_requests SET status = 'interrupted', error_code = 'GATEWAY_REQUEST_INTERRUPTED', \
         lease_until = NULL, updated_at = $1 \
         WHERE id = $2 AND status = 'forwarding' AND COALESCE(lease_until, 0) < $3",
    )
    .bind(now)
    .bind(id)
    .bind(cutoff)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// The caller's gateway history, newest first, and how many match (counted up to
/// [`Total::CAP`]).
pub async fn history(
    pool: &AnyPool,
    profile_id: &str,
    q: &HistoryQuery,
    page: Page,
) -> sqlx::Result<(Vec<GatewayRequestRow>, Total)> {
    let mut filter = "created_at >= $2 AND created_at < $3".to_owned();
    if let Some(status) = &q.status {
        filter.push_str(" AND status = $4");
        // Spelled out so that both planners see the partial index of calls that did
        // not complete applies (they cannot tell from a bound `$4`).
        if status != GatewayRequestStatus::Completed.as_str() {
            filter.push_str(" AND status <> 'completed'");
        }
    }
    // A call to one's own listing is both; the second branch leaves it to the first.
    let branches = match q.role.unwrap_or_default() {
        HistoryRole::Buyer => vec![format!("buyer_id = $1 AND {filter}")],
        HistoryRole::Seller => vec![format!("seller_id = $1 AND {filter}")],
        HistoryRole::All => vec![
            format!("buyer_id = $1 AND {filter}"),
            format!("seller_id = $1 AND buyer_id <> $1 AND {filter}"),
        ],
    };
    storage::newest_first(
        pool,
        "gateway_requests",
        "id, buyer_id, seller_id, listing_id, relay_request_id, status, billable, charged_cents, fee_cents, \
         seller_cents, currency, request_bytes, request_sha256, response_bytes, response_sha256, seller_status_code, \
         latency_ms, error_code, attempts, created_at, updated_at",
        &branches,
        profile_id,
        (q.from.unwrap_or(0), q.to.unwrap_or(i64::MAX)),
        q.status.as_deref(),
        page,
    )
    .await
}

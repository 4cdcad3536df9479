//! Score events: marketplace behaviour recorded as it happens, the raw material of the
//! Crochet Score.
//!
//! The gateway writes one event per forwarded call in the same transaction as the call's
//! history row (the batched recorder for unpaid calls, the settlement path for paid
//! ones); reviews write one with the review. A call event's id is its gateway request id,
//! so a retried write never counts a call twice. The batched writer folds the unpaid
//! calls of one batch that share kind, seller, buyer and listing into one row with a
//! count `n` (under load, one busy pair costs one row per batch, not one per call).

use sqlx::AnyConnection;

use crate::storage::{Backend, insert_runs};

/// Milliseconds in a UTC day: `day` = `created_at / DAY_MS`.
pub const DAY_MS: i64 = 86_400_000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The seller answered with JSON and a 2xx status.
    CallSucceeded,
    /// The seller answered an error status, or could not be reached.
    SellerError,
    /// The seller did not answer in time.
    SellerTimeout,
    /// The seller answered something unusable: not JSON, too large, or refused by its
    /// own adapter.
    InvalidResponse,
    /// A buyer reviewed one of the seller's listings.
    Review,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallSucceeded => "call_succeeded",
            Self::SellerError => "seller_error",
            Self::SellerTimeout => "seller_timeout",
            Self::InvalidResponse => "invalid_response",
            Self::Review => "review",
        }
    }
}

/// One event row.
#[derive(Debug, Clone)]
pub struct ScoreEvent<'a> {
    /// The gateway request id for calls, the review id for reviews.
    pub id: &'a str,
    pub kind: EventKind,
    /// Whose score it concerns first: the seller.
    pub subject_id: &'a str,
    /// Who acted: the buyer or reviewer.
    pub actor_id: &'a str,
    pub listing_id: &'a str,
    pub gateway_request_id: Option<&'a str>,
    /// How many events of this kind this row stands for: 1, except for unpaid calls
    /// between the same two agents on one listing recorded in one batch.
    pub n: i64,
    /// Cents charged in all (0 for free calls); for reviews, the qualifying call's charge.
    pub amount_cents: i64,
    pub rating: Option<i64>,
    /// When the event is recorded (ms), not when the call started: a score computed
    /// while a call was in flight must see the call's event as newer than itself, so
    /// that the background rescoring picks the agent up again.
    pub created_at: i64,
}

/// Appends an event; an event already recorded under the same id is left as it is.
pub async fn record(conn: &mut AnyConnection, e: &ScoreEvent<'_>) -> sqlx::Result<()> {
    record_many(conn, std::slice::from_ref(e)).await
}

/// Appends events in as few statements as possible (the batched history writer's
/// path); events already recorded under the same id are left as they are.
pub async fn record_many(conn: &mut AnyConnection, all: &[ScoreEvent<'_>]) -> sqlx::Result<()> {
    const TUPLE: &str = "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
    let backend = Backend::of(conn);
    for chunk in insert_runs(all) {
        let sql = format!(
            "INSERT INTO score_events (id, kind, subject_id, actor_id, listing_id, gateway_request_id, \
             n, amount_cents, rating, day, created_at) VALUES {} ON CONFLICT (id) DO NOTHING",
            backend.values_list(TUPLE, chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for e in chunk {
            q = q
                .bind(e.id)
                .bind(e.kind.as_str())
                .bind(e.subject_id)
                .bind(e.actor_id)
                .bind(e.listing_id)
                .bind(e.gateway_request_id)
                .bind(e.n)
                .bind(e.amount_cents)
                .bind(e.rating)
                .bind(e.created_at.div_euclid(DAY_MS))
                .bind(e.created_at);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

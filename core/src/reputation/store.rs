//! SQL for reviews, score snapshots and current scores. Every statement is portable
//! between SQLite and PostgreSQL (see `crate::storage`).

use sqlx::{AnyConnection, AnyPool, FromRow};

use super::model::{RatingSummary, Review};
use crate::catalog::store::ListingRow;
use crate::storage::{Page, rfc3339};

/// The buyer's qualifying call: a successful call to the listing since `since` (ms),
/// a paid one when there is one. Returns its id and charge.
pub async fn qualifying_call(
    pool: &AnyPool,
    buyer_id: &str,
    listing_id: &str,
    since: i64,
) -> sqlx::Result<Option<(String, i64)>> {
    sqlx::query_as(
        "SELECT id, charged_cents FROM gateway_requests \
         WHERE buyer_id = $1 AND listing_id = $2 AND status = 'completed' AND created_at >= $3 \
         ORDER BY charged_cents DESC, created_at DESC LIMIT 1",
    )
    .bind(buyer_id)
    .bind(listing_id)
    .bind(since)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, FromRow)]
pub struct ReviewRow {
    pub id: String,
    pub listing_id: String,
    pub seller_id: String,
    pub buyer_id: String,
    pub rating: i64,
    pub comment: Option<String>,
    pub gateway_request_id: String,
    pub paid: i64,
    pub created_at: i64,
}

impl From<ReviewRow> for Review {
    fn from(r: ReviewRow) -> Self {
        Review {
            id: r.id,
            listing_id: r.listing_id,
            seller_id: r.seller_id,
            buyer_id: r.buyer_id,
            rating: r.rating,
            comment: r.comment,
            verified_purchase: true,
            paid_purchase: r.paid != 0,
            created_at: rfc3339(r.created_at),
        }
    }
}

/// Whether this buyer has reviewed this listing.
pub async fn has_review(
    conn: &mut AnyConnection,
    listing_id: &str,
    buyer_id: &str,
) -> sqlx::Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM reviews WHERE listing_id = $1 AND buyer_id = $2")
            .bind(listing_id)
            .bind(buyer_id)
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

/// Inserts a review and adds it to its listing's rating summary.
pub async fn insert_review(conn: &mut AnyConnection, r: &ReviewRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO reviews (id, listing_id, seller_id, buyer_id, rating, comment, \
         gateway_request_id, paid, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&r.id)
    .bind(&r.listing_id)
    .bind(&r.seller_id)
    .bind(&r.buyer_id)
    .bind(r.rating)
    .bind(r.comment.as_deref())
    .bind(&r.gateway_request_id)
    .bind(r.paid)
    .bind(r.created_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE listings SET review_count = review_count + 1, rating_sum = rating_sum + $1 \
         WHERE id = $2",
    )
    .bind(r.rating)
    .bind(&r.listing_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A page of a listing's reviews, newest first.
pub async fn reviews(pool: &AnyPool, listing_id: &str, page: Page) -> sqlx::Result<Vec<Review>> {
    let rows: Vec<ReviewRow> = sqlx::query_as(
        "SELECT id, listing_id, seller_id, buyer_id, rating, comment, gateway_request_id, paid, \
         created_at FROM reviews WHERE listing_id = $1 ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
    )
    .bind(listing_id)
    .bind(i64::from(page.limit))
    .bind(page.offset())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Review::from).collect())
}

/// The rating summary of a listing (its review count and rating sum are kept on the
/// listing row).
pub async fn summary(pool: &AnyPool, listing: &ListingRow) -> sqlx::Result<RatingSummary> {
    let counts: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT rating, COUNT(*) FROM reviews WHERE listing_id = $1 GROUP BY rating",
    )
    .bind(&listing.id)
    .fetch_all(pool)
    .await?;
    let distribution = (1..=5)
        .map(|rating| {
            let n = counts
                .iter()
                .find(|(r, _)| *r == rating)
                .map_or(0, |(_, n)| *n);
            (rating.to_string(), n)
        })
        .collect();
    Ok(RatingSummary {
        review_count: listing.review_count,
        average_rating: RatingSummary::average(listing.review_count, listing.rating_sum),
        distribution,
    })
}

/// A stored score snapshot.
#[derive(Debug, FromRow)]
pub struct SnapshotRow {
    pub id: String,
    pub profile_id: String,
    pub score: i64,
    pub tier: String,
    pub scorer: String,
    pub inputs: String,
    pub components: String,
    pub computed_at: i64,
}

/// The agent's newest snapshot, as `agent_scores` points to it.
pub async fn latest_snapshot(
    pool: &AnyPool,
    profile_id: &str,
) -> sqlx::Result<Option<SnapshotRow>> {
    sqlx::query_as(
        "SELECT s.id, s.profile_id, s.score, s.tier, s.scorer, s.inputs, s.components, s.computed_at \
         FROM agent_scores a JOIN score_snapshots s ON s.id = a.snapshot_id WHERE a.profile_id = $1",
    )
    .bind(profile_id)
    .fetch_optional(pool)
    .await
}

/// Deletes up to `limit` snapshots computed before `before` that no agent's current
/// score points at; returns how many were deleted. (A snapshot that old never becomes
/// current again: `save_snapshot` only moves an agent to a newer one.)
pub async fn prune_snapshots(pool: &AnyPool, before: i64, limit: i64) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM score_snapshots WHERE id IN (SELECT id FROM score_snapshots \
         WHERE computed_at < $1 AND id NOT IN (SELECT snapshot_id FROM agent_scores) LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Keeps a snapshot and makes it the agent's current score (unless a newer one won).
pub async fn save_snapshot(conn: &mut AnyConnection, s: &SnapshotRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO score_snapshots (id, profile_id, score, tier, scorer, inputs, components, \
         computed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&s.id)
    .bind(&s.profile_id)
    .bind(s.score)
    .bind(&s.tier)
    .bind(&s.scorer)
    .bind(&s.inputs)
    .bind(&s.components)
    .bind(s.computed_at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO agent_scores (profile_id, score, snapshot_id, computed_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (profile_id) DO UPDATE SET score = excluded.score, \
         snapshot_id = excluded.snapshot_id, computed_at = excluded.computed_at \
         WHERE agent_scores.computed_at <= excluded.computed_at",
    )
    .bind(&s.profile_id)
    .bind(s.score)
    .bind(&s.id)
    .bind(s.computed_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// How much older than a score an event may be and still have been missed by it: events
/// are stamped when recorded but committed a moment later (a batch, a transaction).
const COMMIT_SLACK_MS: i64 = 5_000;

/// Whether a score event concerning the agent, as subject or actor, may be missing from a
/// score computed at `computed_at` (ms): one stamped later, or within the commit slack
/// before it. Reads only the agent's events of the last days (the `day` column leads the
/// indexes' range after the agent and kind).
pub async fn has_events_since(
    pool: &AnyPool,
    profile_id: &str,
    computed_at: i64,
) -> sqlx::Result<bool> {
    let since = computed_at.saturating_sub(COMMIT_SLACK_MS);
    let day = since.div_euclid(super::events::DAY_MS);
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM score_events WHERE subject_id = $1 AND kind IN ('call_succeeded', \
         'seller_error', 'seller_timeout', 'invalid_response', 'review') AND day >= $2 \
         AND created_at >= $3 \
         UNION ALL SELECT 1 FROM score_events WHERE actor_id = $1 AND kind IN ('call_succeeded', \
         'seller_error', 'seller_timeout', 'invalid_response', 'review') AND day >= $2 \
         AND created_at >= $3 LIMIT 1",
    )
    .bind(profile_id)
    .bind(day)
    .bind(since)
    .fetch_optional(pool)
    .await?;
    Ok(found.is_some())
}

/// Agents with score events since `since` (ms) that their current score may not
/// include, buyers and sellers alike; at most `limit`.
pub async fn stale_agents(pool: &AnyPool, since: i64, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT agent FROM ( \
             SELECT e.subject_id AS agent, MAX(e.created_at) AS last FROM score_events e \
             WHERE e.created_at >= $1 GROUP BY e.subject_id \
             UNION \
             SELECT e.actor_id AS agent, MAX(e.created_at) AS last FROM score_events e \
             WHERE e.created_at >= $1 GROUP BY e.actor_id \
         ) AS t LEFT JOIN agent_scores a ON a.profile_id = t.agent \
         WHERE a.computed_at IS NULL OR a.computed_at < t.last + $3 \
         GROUP BY agent LIMIT $2",
    )
    .bind(since)
    .bind(limit)
    .bind(COMMIT_SLACK_MS)
    .fetch_all(pool)
    .await
}

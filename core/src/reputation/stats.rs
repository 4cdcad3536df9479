//! Score events aggregated into the scorer's statistics, with the host's anti-gaming
//! rules applied before any formula sees them:
//!
//! - **self-dealing is invisible**: events where buyer and seller are the same profile
//!   count for nothing, on either side;
//! - **bursts are capped**: per counterparty and UTC day, at most [`DAILY_CAP`]
//!   successful calls (and as many paid ones) count, so a thousand tiny calls in a minute
//!   weigh what ten do, while failures always count in full (a burst of successes cannot
//!   wash out a seller's errors);
//! - **reach needs money**: `distinct_buyers` and `distinct_sellers` count only
//!   counterparties of paid, successful calls, so free sybil calls earn no reach;
//! - **reach needs an agent**: buyers known only by the wallet that paid (keyless x402
//!   purchases) add no reach, since a fresh wallet costs nothing: a seller paying itself
//!   from many wallets would otherwise buy reach for the price of its own listing;
//! - **sustained use**: `active_days` counts the days with successful calls in the last
//!   [`ACTIVE_WINDOW_DAYS`].
//!
//! Every statement is portable between SQLite and PostgreSQL; sums are cast to BIGINT so
//! PostgreSQL does not answer NUMERIC.

use sqlx::AnyPool;

use super::events::DAY_MS;
use super::model::ScoreInputs;

/// Successful (and paid) calls counted per counterparty per day, at most.
pub const DAILY_CAP: i64 = 10;
/// Days looked back for `active_days`.
pub const ACTIVE_WINDOW_DAYS: i64 = 30;

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn to_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// The statistics of `profile_id` as of `now` (ms); `None` when there is no such profile.
pub async fn aggregate(
    pool: &AnyPool,
    profile_id: &str,
    now: i64,
) -> sqlx::Result<Option<ScoreInputs>> {
    let Some(created_at) =
        sqlx::query_scalar::<_, i64>("SELECT created_at FROM profiles WHERE id = $1")
            .bind(profile_id)
            .fetch_optional(pool)
            .await?
    else {
        return Ok(None);
    };

    let (successful, paid, volume, buyers): (i64, i64, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(COALESCE(SUM(CASE WHEN n > {DAILY_CAP} THEN {DAILY_CAP} ELSE n END), 0) AS BIGINT), \
                CAST(COALESCE(SUM(CASE WHEN p > {DAILY_CAP} THEN {DAILY_CAP} ELSE p END), 0) AS BIGINT), \
                CAST(COALESCE(SUM(v), 0) AS BIGINT), \
                COUNT(DISTINCT CASE WHEN p > 0 AND NOT EXISTS \
                    (SELECT 1 FROM x402_buyers w WHERE w.profile_id = g.actor_id) THEN actor_id END) \
         FROM (SELECT actor_id, day, SUM(n) AS n, \
                      SUM(CASE WHEN amount_cents > 0 THEN n ELSE 0 END) AS p, \
                      SUM(amount_cents) AS v \
               FROM score_events \
               WHERE subject_id = $1 AND actor_id <> $1 AND kind = 'call_succeeded' \
               GROUP BY actor_id, day) AS g"
    )))
    .bind(profile_id)
    .fetch_one(pool)
    .await?;

    let failures: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, CAST(SUM(n) AS BIGINT) FROM score_events \
         WHERE subject_id = $1 AND actor_id <> $1 \
           AND kind IN ('seller_error', 'seller_timeout', 'invalid_response') \
         GROUP BY kind",
    )
    .bind(profile_id)
    .fetch_all(pool)
    .await?;
    let failed = |kind: &str| {
        failures
            .iter()
            .find(|(k, _)| k == kind)
            .map_or(0, |(_, n)| to_u64(*n))
    };

    let (reviews, rating_sum, paid_reviewers): (i64, i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT), CAST(COALESCE(SUM(rating * n), 0) AS BIGINT), \
                COUNT(DISTINCT CASE WHEN amount_cents > 0 THEN actor_id END) \
         FROM score_events WHERE subject_id = $1 AND actor_id <> $1 AND kind = 'review'",
    )
    .bind(profile_id)
    .fetch_one(pool)
    .await?;

    let (purchases, sellers): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(COALESCE(SUM(CASE WHEN n > {DAILY_CAP} THEN {DAILY_CAP} ELSE n END), 0) AS BIGINT), \
                COUNT(DISTINCT subject_id) \
         FROM (SELECT subject_id, day, SUM(n) AS n FROM score_events \
               WHERE actor_id = $1 AND subject_id <> $1 AND kind = 'call_succeeded' AND amount_cents > 0 \
               GROUP BY subject_id, day) AS g"
    )))
    .bind(profile_id)
    .fetch_one(pool)
    .await?;

    let today = now.div_euclid(DAY_MS);
    let active_days: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ( \
             SELECT day FROM score_events \
             WHERE subject_id = $1 AND actor_id <> $1 AND kind = 'call_succeeded' AND day > $2 \
             UNION \
             SELECT day FROM score_events \
             WHERE actor_id = $1 AND subject_id <> $1 AND kind = 'call_succeeded' AND day > $2 \
         ) AS d",
    )
    .bind(profile_id)
    .bind(today - ACTIVE_WINDOW_DAYS)
    .fetch_one(pool)
    .await?;

    Ok(Some(ScoreInputs {
        account_age_days: to_u32((now - created_at).div_euclid(DAY_MS)),
        successful_calls: to_u64(successful),
        paid_calls: to_u64(paid),
        paid_volume_cents: to_u64(volume),
        distinct_buyers: to_u64(buyers),
        active_days: to_u32(active_days),
        seller_errors: failed("seller_error"),
        timeouts: failed("seller_timeout"),
        invalid_responses: failed("invalid_response"),
        review_count: to_u32(reviews),
        rating_sum: to_u32(rating_sum),
        paid_reviewers: to_u32(paid_reviewers),
        purchases: to_u64(purchases),
        distinct_sellers: to_u64(sellers),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::events::{self, EventKind, ScoreEvent};
    use super::*;
    use crate::storage::Database;

    const NOW: i64 = 1_800_000_000_000;

    async fn db() -> (tempfile::TempDir, Database) {
        let (dir, db) = crate::storage::temp_sqlite().await;
        for (id, age_days) in [("seller", 45), ("buyer", 1), ("other", 1)] {
            sqlx::query(
                "INSERT INTO profiles (id, role, status, created_at, updated_at) \
                 VALUES ($1, 'both', 'active', $2, $2)",
            )
            .bind(id)
            .bind(NOW - age_days * DAY_MS)
            .execute(db.pool())
            .await
            .unwrap();
        }
        (dir, db)
    }

    /// Records `n` events of `kind` from `actor` to `subject`, `days_ago` days back.
    async fn events(
        db: &Database,
        kind: EventKind,
        subject: &str,
        actor: &str,
        cents: i64,
        days_ago: i64,
        n: usize,
    ) {
        let mut conn = db.pool().acquire().await.unwrap();
        for _ in 0..n {
            let id = uuid::Uuid::new_v4().to_string();
            events::record(
                &mut conn,
                &ScoreEvent {
                    id: &id,
                    kind,
                    subject_id: subject,
                    actor_id: actor,
                    listing_id: "listing",
                    gateway_request_id: None,
                    n: 1,
                    amount_cents: cents,
                    rating: (kind == EventKind::Review).then_some(5),
                    created_at: NOW - days_ago * DAY_MS,
                },
            )
            .await
            .unwrap();
        }
    }

    #[tokio::test]
    async fn unknown_profiles_have_no_statistics() {
        let (_dir, db) = db().await;
        assert!(aggregate(db.pool(), "nobody", NOW).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn self_dealing_counts_for_nothing() {
        let (_dir, db) = db().await;
        events(
            &db,
            EventKind::CallSucceeded,
            "seller",
            "seller",
            500,
            0,
            40,
        )
        .await;
        events(&db, EventKind::SellerError, "seller", "seller", 0, 0, 3).await;
        events(&db, EventKind::Review, "seller", "seller", 500, 0, 1).await;
        let s = aggregate(db.pool(), "seller", NOW).await.unwrap().unwrap();
        assert_eq!(
            s,
            ScoreInputs {
                account_age_days: 45,
                ..ScoreInputs::default()
            }
        );
    }

    #[tokio::test]
    async fn bursts_count_ten_per_buyer_and_day_but_failures_count_in_full() {
        let (_dir, db) = db().await;
        // A burst of 500 one-cent calls today, and 3 calls yesterday, from one buyer.
        events(&db, EventKind::CallSucceeded, "seller", "buyer", 1, 0, 500).await;
        events(&db, EventKind::CallSucceeded, "seller", "buyer", 1, 1, 3).await;
        // Free calls from another agent: successes, but no reach.
        events(&db, EventKind::CallSucceeded, "seller", "other", 0, 0, 2).await;
        events(&db, EventKind::SellerTimeout, "seller", "other", 0, 0, 12).await;
        events(&db, EventKind::InvalidResponse, "seller", "buyer", 1, 0, 2).await;
        let s = aggregate(db.pool(), "seller", NOW).await.unwrap().unwrap();
        assert_eq!(s.successful_calls, 10 + 3 + 2);
        assert_eq!(s.paid_calls, 10 + 3);
        assert_eq!(s.paid_volume_cents, 503);
        assert_eq!(s.distinct_buyers, 1);
        assert_eq!(s.active_days, 2);
        assert_eq!(s.timeouts, 12);
        assert_eq!(s.invalid_responses, 2);
        assert_eq!(s.seller_errors, 0);

        // The buyer's side: paid purchases, capped the same way.
        let b = aggregate(db.pool(), "buyer", NOW).await.unwrap().unwrap();
        assert_eq!((b.purchases, b.distinct_sellers), (13, 1));
        assert_eq!(b.active_days, 2);
        assert_eq!(b.successful_calls, 0);
    }

    #[tokio::test]
    async fn wallet_only_buyers_add_volume_but_no_reach() {
        let (_dir, db) = db().await;
        sqlx::query("INSERT INTO x402_buyers (address, profile_id, created_at) VALUES ('0xabc', 'other', 0)")
            .execute(db.pool())
            .await
            .unwrap();
        events(&db, EventKind::CallSucceeded, "seller", "buyer", 5, 0, 1).await;
        events(&db, EventKind::CallSucceeded, "seller", "other", 5, 0, 2).await;
        let s = aggregate(db.pool(), "seller", NOW).await.unwrap().unwrap();
        assert_eq!((s.paid_calls, s.paid_volume_cents), (3, 15));
        assert_eq!(s.distinct_buyers, 1, "the wallet-only buyer is not reach");
    }

    #[tokio::test]
    async fn folded_rows_count_as_many_events() {
        let (_dir, db) = db().await;
        let mut conn = db.pool().acquire().await.unwrap();
        for (id, kind, n) in [
            ("a", EventKind::CallSucceeded, 25),
            ("b", EventKind::SellerError, 7),
        ] {
            events::record(
                &mut conn,
                &ScoreEvent {
                    id,
                    kind,
                    subject_id: "seller",
                    actor_id: "buyer",
                    listing_id: "listing",
                    gateway_request_id: Some(id),
                    n,
                    amount_cents: 0,
                    rating: None,
                    created_at: NOW,
                },
            )
            .await
            .unwrap();
        }
        drop(conn);
        let s = aggregate(db.pool(), "seller", NOW).await.unwrap().unwrap();
        assert_eq!((s.successful_calls, s.seller_errors), (10, 7));
    }

    #[tokio::test]
    async fn active_days_look_back_thirty_days_and_reviews_weigh_by_payment() {
        let (_dir, db) = db().await;
        events(&db, EventKind::CallSucceeded, "seller", "buyer", 100, 29, 1).await;
        events(&db, EventKind::CallSucceeded, "seller", "buyer", 100, 30, 1).await;
        events(&db, EventKind::Review, "seller", "buyer", 100, 0, 1).await;
        events(&db, EventKind::Review, "seller", "other", 0, 0, 1).await;
        let s = aggregate(db.pool(), "seller", NOW).await.unwrap().unwrap();
        assert_eq!(s.active_days, 1);
        assert_eq!(s.paid_calls, 2);
        assert_eq!((s.review_count, s.rating_sum, s.paid_reviewers), (2, 10, 1));
    }
}

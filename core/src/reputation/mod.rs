//! Reputation: reviews and the Crochet Score.
//!
//! Owns the `reviews`, `score_events`, `score_snapshots` and `agent_scores` tables.
//!
//! - **Reviews** ([`Reputation::create_review`]): rating 1-5 and an optional comment, only
//!   from a buyer with a successful gateway call to the listing in the review window
//!   (30 days by default), never from the listing's seller, one per buyer and listing.
//!   The review, its listing's rating summary and its score event are one transaction.
//! - **Score events** ([`events`]): written as behaviour happens, by the gateway with
//!   each forwarded call and by reviews.
//! - **The score** ([`Reputation::score`]): events are aggregated with the host's
//!   anti-gaming rules ([`stats`]), the configured scorer plugin (bundled `scoring` by
//!   default) turns them into 0-1000, the host clamps the result, and each computation
//!   is kept as a snapshot; `agent_scores` points at each agent's newest one for listing
//!   sorts and verified marks. A score is recomputed when asked for if it is older than
//!   `score_max_age_seconds` or an event concerning the agent was recorded after it; a
//!   new agent is scored at registration; and a background task rescores agents with new events every
//!   `refresh_interval_seconds`. Snapshots older than `snapshot_retention_days` are
//!   pruned ([`Reputation::prune_snapshots`]), never an agent's current one.

mod error;
pub mod events;
pub mod http;
pub mod model;
pub mod stats;
mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::catalog::store::ListingRow;
use crate::identity::Principal;
use crate::plugins::scorer::ScorerSlot;
use crate::plugins::{AgentStats, ScoreInfo};
use crate::storage::{Database, Page, PendingWrites, now_ms};

pub use error::ReputationError;
use events::{EventKind, ScoreEvent};
use model::{
    AgentScore, CreateReviewRequest, RatingSummary, Review, ReviewQuery, ScoreComponent,
    ScoreInputs, tier,
};

pub type Result<T> = std::result::Result<T, ReputationError>;

/// How many cached scores the policy lookups keep before expired ones are dropped.
const BADGE_CACHE_PRUNE_AT: usize = 10_000;
/// Agents rescored per background pass, at most.
const REFRESH_BATCH: i64 = 500;
/// Snapshots deleted per statement when pruning (keeps each transaction short).
const PRUNE_BATCH: i64 = 1000;

/// The rules of the reputation domain (`[reputation]` in `crochet.toml`).
#[derive(Debug, Clone)]
pub struct ReputationSettings {
    pub review_window_days: u32,
    pub comment_max_chars: usize,
    /// Scores older than this are recomputed when asked for.
    pub score_max_age: Duration,
    /// Background rescoring period; zero turns it off.
    pub refresh_interval: Duration,
    /// How long snapshots other than an agent's current one are kept; `None`: forever.
    pub snapshot_retention: Option<Duration>,
}

impl From<&crate::config::ReputationConfig> for ReputationSettings {
    fn from(c: &crate::config::ReputationConfig) -> Self {
        Self {
            review_window_days: c.review_window_days,
            comment_max_chars: c.review_comment_max_chars,
            score_max_age: Duration::from_secs(c.score_max_age_seconds),
            refresh_interval: Duration::from_secs(c.refresh_interval_seconds),
            snapshot_retention: (c.snapshot_retention_days > 0)
                .then(|| Duration::from_secs(u64::from(c.snapshot_retention_days) * 86_400)),
        }
    }
}

/// The reputation service. Cheap to clone.
#[derive(Clone)]
pub struct Reputation(Arc<Inner>);

struct Inner {
    db: Database,
    /// The scorer in service; its source (`bundled:scoring`, or a path) is shown with
    /// scores.
    scorer: ScorerSlot,
    settings: ReputationSettings,
    /// The gateway's batched history writer: flushed before anything reads call events.
    recorder: Arc<dyn PendingWrites>,
    /// Scores for policy plugins, by agent, with when they were looked up; `None` when
    /// the lookup failed (not retried on every call while the scorer is down).
    badges: Mutex<HashMap<String, (Instant, Option<ScoreInfo>)>>,
}

impl Reputation {
    pub fn new(
        db: Database,
        scorer: ScorerSlot,
        settings: ReputationSettings,
        recorder: Arc<dyn PendingWrites>,
    ) -> Self {
        Self(Arc::new(Inner {
            db,
            scorer,
            settings,
            recorder,
            badges: Mutex::default(),
        }))
    }

    /// Records a review by the caller of the listing `listing_ref` (UUID or slug).
    pub async fn create_review(
        &self,
        who: &Principal,
        listing_ref: &str,
        req: CreateReviewRequest,
    ) -> Result<Review> {
        if !(1..=5).contains(&req.rating) {
            return Err(ReputationError::invalid(
                "rating",
                "must be an integer from 1 to 5",
            ));
        }
        let comment = req
            .comment
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        let max = self.0.settings.comment_max_chars;
        if comment.as_ref().is_some_and(|c| c.chars().count() > max) {
            return Err(ReputationError::invalid(
                "comment",
                format!("must be at most {max} characters"),
            ));
        }
        let pool = self.0.db.pool();
        let listing = listing(pool, listing_ref).await?;
        if listing.seller_id == who.profile_id {
            return Err(ReputationError::OwnListing);
        }
        let now = now_ms();
        let window = self.0.settings.review_window_days;
        let since = now - i64::from(window) * events::DAY_MS;
        // Unpaid calls are recorded in batches: make sure the buyer's latest one counts.
        self.0.recorder.flush().await;
        let (call_id, charged) = store::qualifying_call(pool, &who.profile_id, &listing.id, since)
            .await?
            .ok_or(ReputationError::PurchaseRequired(window))?;

        let row = store::ReviewRow {
            id: uuid::Uuid::new_v4().to_string(),
            listing_id: listing.id.clone(),
            seller_id: listing.seller_id.clone(),
            buyer_id: who.profile_id.clone(),
            rating: req.rating,
            comment,
            gateway_request_id: call_id,
            paid: i64::from(charged > 0),
            created_at: now,
        };
        let mut tx = self.0.db.begin().await?;
        if store::has_review(&mut tx, &listing.id, &who.profile_id).await? {
            return Err(ReputationError::DuplicateReview);
        }
        if let Err(e) = store::insert_review(&mut tx, &row).await {
            // A concurrent first review of the same pair won the unique constraint.
            let duplicate = e
                .as_database_error()
                .is_some_and(|d| d.is_unique_violation());
            return Err(if duplicate {
                ReputationError::DuplicateReview
            } else {
                e.into()
            });
        }
        events::record(
            &mut tx,
            &ScoreEvent {
                id: &row.id,
                kind: EventKind::Review,
                subject_id: &row.seller_id,
                actor_id: &row.buyer_id,
                listing_id: &row.listing_id,
                gateway_request_id: Some(&row.gateway_request_id),
                n: 1,
                amount_cents: charged,
                rating: Some(row.rating),
                created_at: now,
            },
        )
        .await?;
        tx.commit().await?;
        self.forget(&row.seller_id);
        Ok(row.into())
    }

    /// A page of the listing's reviews, how many there are, and its rating summary.
    pub async fn reviews(
        &self,
        listing_ref: &str,
        q: ReviewQuery,
    ) -> Result<(Vec<Review>, Page, RatingSummary)> {
        let pool = self.0.db.pool();
        let listing = listing(pool, listing_ref).await?;
        let page = Page::new(q.page, q.limit);
        let items = store::reviews(pool, &listing.id, page).await?;
        let summary = store::summary(pool, &listing).await?;
        Ok((items, page, summary))
    }

    /// The agent's Crochet Score: its newest snapshot while younger than
    /// `score_max_age` and no score event concerning the agent (as seller or as buyer)
    /// was recorded since, else a fresh computation. If the scorer fails and an older
    /// snapshot exists, that one is returned (and the failure logged).
    pub async fn score(&self, agent_id: &str) -> Result<AgentScore> {
        let pool = self.0.db.pool();
        let latest = store::latest_snapshot(pool, agent_id).await?;
        let max_age = i64::try_from(self.0.settings.score_max_age.as_millis()).unwrap_or(i64::MAX);
        if let Some(s) = &latest
            && now_ms().saturating_sub(s.computed_at) < max_age
        {
            // A snapshot is only reused while nothing happened to the agent since: its
            // own calls and reviews show in its next read, not a cache period later.
            self.0.recorder.flush().await;
            if !store::has_events_since(pool, agent_id, s.computed_at).await? {
                return snapshot_score(s);
            }
        }
        match (self.compute(agent_id).await, &latest) {
            (Err(ReputationError::Scorer(error)), Some(s)) => {
                tracing::warn!(%error, agent_id, "scorer failed; answering the last snapshot");
                snapshot_score(s)
            }
            (result, _) => result,
        }
    }

    /// Computes the agent's score now and keeps it as a snapshot.
    pub async fn compute(&self, agent_id: &str) -> Result<AgentScore> {
        self.0.recorder.flush().await;
        self.compute_flushed(agent_id).await
    }

    /// [`Reputation::compute`] once the history writer has been flushed.
    async fn compute_flushed(&self, agent_id: &str) -> Result<AgentScore> {
        let now = now_ms();
        let inputs = stats::aggregate(self.0.db.pool(), agent_id, now)
            .await?
            .ok_or(ReputationError::AgentNotFound)?;
        let scorer = self.0.scorer.current();
        let result = scorer.plugin.score(&agent_stats(&inputs)).await?;
        // The formula is the plugin's; the range is the host's promise.
        let score = result.score.min(1000);
        let components: Vec<ScoreComponent> = result
            .components
            .into_iter()
            .map(|c| ScoreComponent {
                name: c.name,
                points: c.points,
                detail: c.detail,
            })
            .collect();
        let row = store::SnapshotRow {
            id: uuid::Uuid::new_v4().to_string(),
            profile_id: agent_id.to_owned(),
            score: i64::from(score),
            tier: tier(score).to_owned(),
            scorer: scorer.info.source.clone(),
            inputs: serde_json::to_string(&inputs)
                .map_err(|e| ReputationError::Corrupt(e.to_string()))?,
            components: serde_json::to_string(&components)
                .map_err(|e| ReputationError::Corrupt(e.to_string()))?,
            computed_at: now,
        };
        let mut tx = self.0.db.begin().await?;
        store::save_snapshot(&mut tx, &row).await?;
        tx.commit().await?;
        self.remember(agent_id, Some(score));
        Ok(AgentScore::new(
            row.profile_id,
            score,
            inputs,
            components,
            row.scorer,
            now,
        ))
    }

    /// The agent's score and tier for policy plugins: cached for `score_max_age`, and
    /// `None` (logged, and remembered as long) when it cannot be had, so a scorer
    /// problem never blocks or slows every call.
    pub async fn badge(&self, agent_id: &str) -> Option<ScoreInfo> {
        let fresh = |at: &Instant| at.elapsed() < self.0.settings.score_max_age;
        if let Ok(badges) = self.0.badges.lock()
            && let Some((at, info)) = badges.get(agent_id)
            && fresh(at)
        {
            return info.clone();
        }
        match self.score(agent_id).await {
            Ok(s) => {
                self.remember(agent_id, Some(s.score));
                Some(ScoreInfo {
                    score: s.score,
                    tier: s.tier.to_owned(),
                })
            }
            Err(error) => {
                tracing::warn!(%error, agent_id, "no Crochet Score for the policy context");
                self.remember(agent_id, None);
                None
            }
        }
    }

    fn remember(&self, agent_id: &str, score: Option<u32>) {
        let ttl = self.0.settings.score_max_age;
        if let Ok(mut badges) = self.0.badges.lock() {
            if badges.len() >= BADGE_CACHE_PRUNE_AT {
                badges.retain(|_, (at, _)| at.elapsed() < ttl);
            }
            let info = score.map(|score| ScoreInfo {
                score,
                tier: tier(score).to_owned(),
            });
            badges.insert(agent_id.to_owned(), (Instant::now(), info));
        }
    }

    fn forget(&self, agent_id: &str) {
        if let Ok(mut badges) = self.0.badges.lock() {
            badges.remove(agent_id);
        }
    }

    /// Starts the background rescoring task, unless turned off.
    pub fn spawn_refresher(&self) -> Option<tokio::task::JoinHandle<()>> {
        let period = self.0.settings.refresh_interval;
        if period.is_zero() {
            return None;
        }
        let this = self.clone();
        Some(tokio::spawn(async move {
            // The first pass looks at every event; later ones at those since the last
            // pass, with a margin for rows committed late by the batched writer.
            let mut since = 0;
            let margin = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
            loop {
                tokio::time::sleep(period).await;
                let started = now_ms();
                match this.refresh(since).await {
                    Ok(n) if n > 0 => tracing::debug!(agents = n, "rescored agents"),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "background rescoring failed"),
                }
                since = started.saturating_sub(margin);
            }
        }))
    }

    /// Deletes the snapshots older than the retention window that are no agent's current
    /// score, a batch at a time; returns how many went. Run by the host's periodic
    /// janitor: at about one snapshot a minute per active agent, keeping them all would
    /// grow the database without bound.
    pub async fn prune_snapshots(&self) -> Result<u64> {
        let Some(retention) = self.0.settings.snapshot_retention else {
            return Ok(0);
        };
        let before =
            now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let mut pruned = 0;
        loop {
            let n = store::prune_snapshots(self.0.db.pool(), before, PRUNE_BATCH).await?;
            pruned += n;
            if n < PRUNE_BATCH.unsigned_abs() {
                return Ok(pruned);
            }
        }
    }

    /// Rescores agents with events since `since` newer than their score; returns how
    /// many were rescored.
    pub async fn refresh(&self, since: i64) -> Result<usize> {
        self.0.recorder.flush().await;
        let agents = store::stale_agents(self.0.db.pool(), since, REFRESH_BATCH).await?;
        let mut done = 0;
        for agent in agents {
            match self.compute_flushed(&agent).await {
                Ok(_) => done += 1,
                Err(ReputationError::AgentNotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

/// The listing `listing_ref` (UUID or slug) names, whatever its status.
async fn listing(pool: &sqlx::AnyPool, listing_ref: &str) -> Result<ListingRow> {
    crate::catalog::store::listing_by_ref(pool, listing_ref)
        .await?
        .map(|l| l.listing)
        .ok_or(ReputationError::ListingNotFound)
}

/// An [`AgentScore`] from a stored snapshot.
fn snapshot_score(s: &store::SnapshotRow) -> Result<AgentScore> {
    let corrupt = |e: serde_json::Error| ReputationError::Corrupt(e.to_string());
    let score = u32::try_from(s.score.clamp(0, 1000)).unwrap_or(0);
    Ok(AgentScore::new(
        s.profile_id.clone(),
        score,
        serde_json::from_str(&s.inputs).map_err(corrupt)?,
        serde_json::from_str(&s.components).map_err(corrupt)?,
        s.scorer.clone(),
        s.computed_at,
    ))
}

/// The scorer's record of the statistics.
fn agent_stats(i: &ScoreInputs) -> AgentStats {
    AgentStats {
        account_age_days: i.account_age_days,
        successful_calls: i.successful_calls,
        paid_calls: i.paid_calls,
        paid_volume_cents: i.paid_volume_cents,
        distinct_buyers: i.distinct_buyers,
        active_days: i.active_days,
        seller_errors: i.seller_errors,
        timeouts: i.timeouts,
        invalid_responses: i.invalid_responses,
        review_count: i.review_count,
        rating_sum: i.rating_sum,
        paid_reviewers: i.paid_reviewers,
        purchases: i.purchases,
        distinct_sellers: i.distinct_sellers,
    }
}

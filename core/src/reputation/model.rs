//! Wire types of the reputation routes.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::pagination::Pagination;

/// The verified checkmark starts here.
pub const VERIFIED_THRESHOLD: u32 = 800;

/// Score tier names and their lower bounds, highest first.
const TIERS: [(u32, &str); 5] = [
    (900, "Exceptional"),
    (800, "Elite"),
    (700, "Trusted"),
    (400, "Moderate"),
    (0, "Low"),
];

/// The tier of a 0-1000 score: Low 0-399, Moderate 400-699, Trusted 700-799, Elite
/// 800-899, Exceptional 900-1000.
pub fn tier(score: u32) -> &'static str {
    TIERS
        .iter()
        .find(|(min, _)| score >= *min)
        .map_or("Low", |(_, name)| name)
}

/// Whether a score carries the verified checkmark.
pub fn verified(score: u32) -> bool {
    score >= VERIFIED_THRESHOLD
}

/// `POST /reviews/{listing_id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReviewRequest {
    /// 1 to 5.
    pub rating: i64,
    /// At most 2000 characters (`reputation.review_comment_max_chars`).
    pub comment: Option<String>,
}

/// A review of a listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Review {
    pub id: String,
    pub listing_id: String,
    pub seller_id: String,
    pub buyer_id: String,
    pub rating: i64,
    pub comment: Option<String>,
    /// Always true: a review needs a successful gateway call to the listing.
    pub verified_purchase: bool,
    /// Whether the qualifying call was paid (paid reviews weigh in the score).
    pub paid_purchase: bool,
    pub created_at: String,
}

/// A listing's rating summary.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RatingSummary {
    pub review_count: i64,
    /// Mean rating, two decimals; `null` without reviews.
    pub average_rating: Option<f64>,
    /// How many reviews gave each rating, `"1"` to `"5"`.
    #[schema(value_type = Object)]
    pub distribution: std::collections::BTreeMap<String, i64>,
}

impl RatingSummary {
    /// The summary of `count` reviews whose ratings add up to `sum`.
    pub fn average(count: i64, sum: i64) -> Option<f64> {
        (count > 0).then(|| (sum as f64 / count as f64 * 100.0).round() / 100.0)
    }
}

/// `GET /reviews/{listing_id}`: a page of reviews, newest first, and the summary of all.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewPage {
    pub success: bool,
    pub data: Vec<Review>,
    pub pagination: Pagination,
    pub summary: RatingSummary,
}

/// `page` and `limit` of `GET /reviews/{listing_id}`.
#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReviewQuery {
    pub page: Option<u32>,
    /// At most 100.
    pub limit: Option<u32>,
}

/// One part of a score, as the scorer explained it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScoreComponent {
    pub name: String,
    pub points: i32,
    pub detail: String,
}

/// The statistics a score was computed from (the scorer's `agent-stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScoreInputs {
    pub account_age_days: u32,
    pub successful_calls: u64,
    pub paid_calls: u64,
    pub paid_volume_cents: u64,
    pub distinct_buyers: u64,
    pub active_days: u32,
    pub seller_errors: u64,
    pub timeouts: u64,
    pub invalid_responses: u64,
    pub review_count: u32,
    pub rating_sum: u32,
    pub paid_reviewers: u32,
    pub purchases: u64,
    pub distinct_sellers: u64,
}

/// `GET /agents/{id}/score`: the public Crochet Score.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentScore {
    pub agent_id: String,
    /// 0-1000.
    pub score: u32,
    /// Low, Moderate, Trusted, Elite or Exceptional.
    pub tier: &'static str,
    /// Score-based checkmark: score >= 800. A human claim does not set it.
    pub verified: bool,
    /// The statistics the scorer was given.
    pub inputs: ScoreInputs,
    /// The scorer's explanation, part by part.
    pub components: Vec<ScoreComponent>,
    /// The scoring plugin (`bundled:scoring` unless the operator swapped it).
    pub scorer: String,
    pub computed_at: String,
}

impl AgentScore {
    /// A score with its tier and verified mark derived from it.
    pub fn new(
        agent_id: String,
        score: u32,
        inputs: ScoreInputs,
        components: Vec<ScoreComponent>,
        scorer: String,
        computed_at_ms: i64,
    ) -> Self {
        Self {
            agent_id,
            score,
            tier: tier(score),
            verified: verified(score),
            inputs,
            components,
            scorer,
            computed_at: crate::storage::rfc3339(computed_at_ms),
        }
    }
}

/// A score as listings and profiles show it.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct ScoreBadge {
    pub score: u32,
    pub tier: &'static str,
    pub verified: bool,
}

impl ScoreBadge {
    /// The badge of a stored score (clamped, should a row hold something odd).
    pub fn of(score: i64) -> Self {
        let score = u32::try_from(score.clamp(0, 1000)).unwrap_or(0);
        Self {
            score,
            tier: tier(score),
            verified: verified(score),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_the_published_bands() {
        for (score, name) in [
            (0, "Low"),
            (399, "Low"),
            (400, "Moderate"),
            (699, "Moderate"),
            (700, "Trusted"),
            (799, "Trusted"),
            (800, "Elite"),
            (899, "Elite"),
            (900, "Exceptional"),
            (1000, "Exceptional"),
        ] {
            assert_eq!(tier(score), name, "{score}");
        }
        assert!(!verified(799));
        assert!(verified(800));
    }

    #[test]
    fn badges_clamp_stored_scores() {
        assert_eq!(ScoreBadge::of(-5).score, 0);
        assert_eq!(ScoreBadge::of(5000).score, 1000);
        assert!(ScoreBadge::of(850).verified);
    }

    #[test]
    fn averages_round_to_two_decimals() {
        assert_eq!(RatingSummary::average(0, 0), None);
        assert_eq!(RatingSummary::average(3, 13), Some(4.33));
    }
}

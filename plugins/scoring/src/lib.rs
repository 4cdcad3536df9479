//! The Crochet Score: 0-1000 from an agent's marketplace statistics.
//!
//! | component     | points                                                                       |
//! |---------------|------------------------------------------------------------------------------|
//! | `baseline`    | 300                                                                          |
//! | `volume`      | min(200, floor(50 × log10(1 + min(paid_calls, 25 × distinct_buyers))))      |
//! | `value`       | min(100, floor(25 × log10(1 + paid_volume_cents / 100)))                     |
//! | `reach`       | min(150, floor(75 × log10(1 + distinct_buyers)))                             |
//! | `consistency` | min(100, active_days × 100 / 30)                                             |
//! | `reliability` | 0 under 10 outcomes, else clamp(round((success rate − 0.95) × 2000), −400, 100) |
//! | `reviews`     | round((average rating − 3) × 75 × min(paid_reviewers, 10) / 10), 0 without reviews |
//! | `age`         | min(50, account_age_days × 50 / 90)                                          |
//! | `purchases`   | min(100, floor(40 × log10(1 + min(purchases, 25 × distinct_sellers))))      |
//!
//! The score is the sum, clamped to 0-1000. Integer divisions round down.

// The generated export glue takes one argument per field of `agent-stats`.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "scorer",
});

use crochet::plugin::types::ScoreComponent;

/// Scores one agent. Pure: the host's imports are not used.
pub fn score(stats: &AgentStats) -> ScoreResult {
    let components = vec![
        baseline(),
        volume(stats),
        value(stats),
        reach(stats),
        consistency(stats),
        reliability(stats),
        reviews(stats),
        age(stats),
        purchases(stats),
    ];
    let sum: i64 = components.iter().map(|c| i64::from(c.points)).sum();
    ScoreResult {
        score: sum.clamp(0, 1000) as u32,
        components,
    }
}

fn component(name: &str, points: i64, detail: String) -> ScoreComponent {
    ScoreComponent {
        name: name.to_owned(),
        points: points.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
        detail,
    }
}

/// `floor(factor × log10(1 + x))`, at most `cap`.
fn log_points(factor: f64, x: f64, cap: i64) -> i64 {
    ((factor * (1.0 + x).log10()).floor() as i64).min(cap)
}

fn baseline() -> ScoreComponent {
    component("baseline", 300, "every agent starts at 300".to_owned())
}

fn volume(stats: &AgentStats) -> ScoreComponent {
    let counted = stats
        .paid_calls
        .min(stats.distinct_buyers.saturating_mul(25));
    let points = log_points(50.0, counted as f64, 200);
    component(
        "volume",
        points,
        format!(
            "{counted} of {} paid calls counted (at most 25 per distinct buyer, {} buyers): \
             50 × log10(1 + {counted}), at most 200",
            stats.paid_calls, stats.distinct_buyers
        ),
    )
}

fn value(stats: &AgentStats) -> ScoreComponent {
    let dollars = stats.paid_volume_cents as f64 / 100.0;
    let points = log_points(25.0, dollars, 100);
    component(
        "value",
        points,
        format!("${dollars:.2} paid: 25 × log10(1 + {dollars:.2}), at most 100"),
    )
}

fn reach(stats: &AgentStats) -> ScoreComponent {
    let points = log_points(75.0, stats.distinct_buyers as f64, 150);
    component(
        "reach",
        points,
        format!(
            "{} distinct buyers: 75 × log10(1 + {}), at most 150",
            stats.distinct_buyers, stats.distinct_buyers
        ),
    )
}

fn consistency(stats: &AgentStats) -> ScoreComponent {
    let points = (i64::from(stats.active_days) * 100 / 30).min(100);
    component(
        "consistency",
        points,
        format!(
            "{} active days: 100 × days / 30, at most 100",
            stats.active_days
        ),
    )
}

fn reliability(stats: &AgentStats) -> ScoreComponent {
    let successful = stats.successful_calls;
    let total = successful
        .saturating_add(stats.seller_errors)
        .saturating_add(stats.timeouts)
        .saturating_add(stats.invalid_responses);
    if total < 10 {
        return component(
            "reliability",
            0,
            format!("{total} call outcomes, fewer than the 10 needed to count"),
        );
    }
    let rate = successful as f64 / total as f64;
    let points = (((rate - 0.95) * 2000.0).round() as i64).clamp(-400, 100);
    component(
        "reliability",
        points,
        format!(
            "{successful} of {total} calls succeeded ({:.2}%; {} seller errors, {} timeouts, \
             {} invalid responses): (rate − 0.95) × 2000, between −400 and 100",
            rate * 100.0,
            stats.seller_errors,
            stats.timeouts,
            stats.invalid_responses
        ),
    )
}

fn reviews(stats: &AgentStats) -> ScoreComponent {
    if stats.review_count == 0 {
        return component("reviews", 0, "no reviews".to_owned());
    }
    let average = f64::from(stats.rating_sum) / f64::from(stats.review_count);
    let weight = f64::from(stats.paid_reviewers.min(10)) / 10.0;
    let points = ((average - 3.0) * 75.0 * weight).round() as i64;
    component(
        "reviews",
        points,
        format!(
            "{} reviews averaging {average:.2}, {} from paying buyers (weight {weight:.1}): \
             (average − 3) × 75 × weight",
            stats.review_count, stats.paid_reviewers
        ),
    )
}

fn age(stats: &AgentStats) -> ScoreComponent {
    let points = (i64::from(stats.account_age_days) * 50 / 90).min(50);
    component(
        "age",
        points,
        format!(
            "account {} days old: 50 × days / 90, at most 50",
            stats.account_age_days
        ),
    )
}

fn purchases(stats: &AgentStats) -> ScoreComponent {
    let counted = stats
        .purchases
        .min(stats.distinct_sellers.saturating_mul(25));
    let points = log_points(40.0, counted as f64, 100);
    component(
        "purchases",
        points,
        format!(
            "{counted} of {} paid purchases counted (at most 25 per distinct seller, {} sellers): \
             40 × log10(1 + {counted}), at most 100",
            stats.purchases, stats.distinct_sellers
        ),
    )
}

struct Component;

impl Guest for Component {
    fn score(stats: AgentStats) -> ScoreResult {
        score(&stats)
    }
}

export!(Component);

#[cfg(test)]
mod tests {
    use super::*;

    fn zero() -> AgentStats {
        AgentStats {
            account_age_days: 0,
            successful_calls: 0,
            paid_calls: 0,
            paid_volume_cents: 0,
            distinct_buyers: 0,
            active_days: 0,
            seller_errors: 0,
            timeouts: 0,
            invalid_responses: 0,
            review_count: 0,
            rating_sum: 0,
            paid_reviewers: 0,
            purchases: 0,
            distinct_sellers: 0,
        }
    }

    fn points(result: &ScoreResult, name: &str) -> i32 {
        result
            .components
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no component {name}"))
            .points
    }

    #[test]
    fn a_new_agent_scores_300() {
        let result = score(&zero());
        assert_eq!(result.score, 300);
        let names: Vec<&str> = result.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "baseline",
                "volume",
                "value",
                "reach",
                "consistency",
                "reliability",
                "reviews",
                "age",
                "purchases"
            ]
        );
        assert!(result.components[1..].iter().all(|c| c.points == 0));
    }

    #[test]
    fn a_strong_seller_scores_at_least_800() {
        let stats = AgentStats {
            account_age_days: 365,
            successful_calls: 4995,
            paid_calls: 5000,
            paid_volume_cents: 500_000,
            distinct_buyers: 200,
            active_days: 30,
            seller_errors: 3,
            timeouts: 1,
            invalid_responses: 1,
            review_count: 50,
            rating_sum: 240,
            paid_reviewers: 40,
            purchases: 0,
            distinct_sellers: 0,
        };
        let result = score(&stats);
        assert!(result.score >= 800, "{result:?}");
        assert_eq!(points(&result, "volume"), 184); // floor(50 × log10(5001))
        assert_eq!(points(&result, "value"), 92); // floor(25 × log10(5001))
        assert_eq!(points(&result, "reach"), 150);
        assert_eq!(points(&result, "consistency"), 100);
        assert_eq!(points(&result, "reliability"), 98); // (0.999 − 0.95) × 2000
        assert_eq!(points(&result, "reviews"), 135); // 1.8 × 75
        assert_eq!(points(&result, "age"), 50);
        assert_eq!(result.score, 1000);
    }

    #[test]
    fn one_buyer_cannot_inflate_volume() {
        let stats = AgentStats {
            paid_calls: 10_000,
            successful_calls: 10_000,
            paid_volume_cents: 10_000,
            distinct_buyers: 1,
            ..zero()
        };
        let result = score(&stats);
        let cap = (50.0 * 26f64.log10()).floor() as i32;
        assert_eq!(cap, 70);
        assert_eq!(points(&result, "volume"), cap);
    }

    #[test]
    fn a_failing_seller_loses_400_on_reliability() {
        let stats = AgentStats {
            successful_calls: 70,
            seller_errors: 20,
            timeouts: 5,
            invalid_responses: 5,
            ..zero()
        };
        let result = score(&stats);
        assert_eq!(points(&result, "reliability"), -400);
        assert_eq!(result.score, 0);
    }

    #[test]
    fn reliability_needs_ten_outcomes_and_caps_at_100() {
        let few = AgentStats {
            seller_errors: 9,
            ..zero()
        };
        assert_eq!(points(&score(&few), "reliability"), 0);
        let perfect = AgentStats {
            successful_calls: 10,
            ..zero()
        };
        assert_eq!(points(&score(&perfect), "reliability"), 100);
        let exactly_95 = AgentStats {
            successful_calls: 95,
            seller_errors: 5,
            ..zero()
        };
        assert_eq!(points(&score(&exactly_95), "reliability"), 0);
    }

    #[test]
    fn reviews_are_weighted_by_paying_reviewers() {
        let stats = AgentStats {
            review_count: 4,
            rating_sum: 4,
            paid_reviewers: 2,
            ..zero()
        };
        // average 1, weight 0.2: (1 − 3) × 75 × 0.2 = −30
        assert_eq!(points(&score(&stats), "reviews"), -30);
        let unpaid = AgentStats {
            review_count: 100,
            rating_sum: 500,
            paid_reviewers: 0,
            ..zero()
        };
        assert_eq!(points(&score(&unpaid), "reviews"), 0);
    }

    #[test]
    fn integer_divisions_and_caps() {
        let stats = AgentStats {
            active_days: 29,
            account_age_days: 89,
            ..zero()
        };
        let result = score(&stats);
        assert_eq!(points(&result, "consistency"), 96);
        assert_eq!(points(&result, "age"), 49);
        let huge = AgentStats {
            account_age_days: u32::MAX,
            successful_calls: u64::MAX,
            paid_calls: u64::MAX,
            paid_volume_cents: u64::MAX,
            distinct_buyers: u64::MAX,
            active_days: u32::MAX,
            seller_errors: u64::MAX,
            timeouts: u64::MAX,
            invalid_responses: u64::MAX,
            review_count: u32::MAX,
            rating_sum: u32::MAX,
            paid_reviewers: u32::MAX,
            purchases: u64::MAX,
            distinct_sellers: u64::MAX,
        };
        let result = score(&huge);
        assert_eq!(points(&result, "volume"), 200);
        assert_eq!(points(&result, "value"), 100);
        assert_eq!(points(&result, "age"), 50);
        assert_eq!(points(&result, "purchases"), 100);
        assert!(result.score <= 1000);
    }

    #[test]
    fn purchases_count_at_most_25_per_seller() {
        let one_seller = AgentStats {
            purchases: 1_000,
            distinct_sellers: 1,
            ..zero()
        };
        // floor(40 × log10(26)) = 56
        assert_eq!(points(&score(&one_seller), "purchases"), 56);
        let four_sellers = AgentStats {
            purchases: 100,
            distinct_sellers: 4,
            account_age_days: 90,
            ..zero()
        };
        // floor(40 × log10(101)) = 80: a steady buyer of three months reaches Moderate.
        let result = score(&four_sellers);
        assert_eq!(points(&result, "purchases"), 80);
        assert_eq!(result.score, 430);
    }
}

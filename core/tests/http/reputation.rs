//! Reviews and the Crochet Score, built from real gateway traffic: buyers pay through the
//! mock provider, real local sellers answer (or fail), and the score follows.

use serde_json::{Value, json};

use crate::common::{
    Agent, Published, TestApp, Wallet, gateway_call, pay_and_call, poll_until, priced_listing,
};
use crate::on_both_backends;

on_both_backends!(
    reviews_need_a_recent_successful_call_and_come_once,
    good_and_bad_sellers_score_apart,
    self_dealing_and_bursts_do_not_pump_the_score,
    background_rescoring_follows_new_events,
    old_snapshots_are_pruned_but_never_the_current_one,
    own_actions_show_in_the_next_score_read,
);

/// The host again, recomputing scores on every request (no caching between steps).
async fn fresh_scores(app: TestApp) -> TestApp {
    app.restart(|c| c.reputation.score_max_age_seconds = 0)
        .await
}

async fn review(app: &TestApp, buyer: &Agent, listing: &str, body: Value) -> crate::common::Reply {
    app.post(&format!("/reviews/{listing}"), buyer.key(), body)
        .await
}

async fn score(app: &TestApp, agent: &str) -> Value {
    app.get(&format!("/agents/{agent}/score"), None)
        .await
        .expect(200)
        .data()
        .clone()
}

fn points(score: &Value, component: &str) -> i64 {
    score["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == component)
        .unwrap_or_else(|| panic!("no component {component} in {score}"))["points"]
        .as_i64()
        .unwrap()
}

/// `n` paid, successful (or not, depending on the seller path) calls by `buyer`.
async fn paid_calls(app: &TestApp, buyer: &Agent, listing: &Published, n: usize) {
    for i in 0..n {
        let body = json!({"task": "work", "input": {"n": i}});
        pay_and_call(app, buyer, &listing.id, &body).await;
    }
}

async fn reviews_need_a_recent_successful_call_and_come_once(app: TestApp) {
    let p = priced_listing(&app, Some(1.0), "/ok").await;
    let failing = priced_listing(&app, Some(1.0), "/fail").await;
    let free = priced_listing(&app, None, "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let five = json!({"rating": 5, "comment": "  fast and correct  "});

    // No purchase yet; the seller itself; bad input; unknown listing.
    let r = review(&app, &buyer, &p.id, five.clone())
        .await
        .expect_error(403, "REVIEW_PURCHASE_REQUIRED");
    assert_eq!(r.body["error"]["details"]["review_window_days"], 30);
    review(&app, &p.agent, &p.id, five.clone())
        .await
        .expect_error(403, "CANNOT_REVIEW_OWN_LISTING");
    for (body, field) in [
        (json!({"rating": 0}), "rating"),
        (json!({"rating": 6}), "rating"),
        (json!({"rating": 4, "comment": "x".repeat(2001)}), "comment"),
    ] {
        let r = review(&app, &buyer, &p.id, body)
            .await
            .expect_error(422, "VALIDATION_ERROR");
        assert_eq!(r.body["error"]["details"]["field"], field);
    }
    for body in [json!({"rating": "five"}), json!({"rating": 5, "stars": 5})] {
        review(&app, &buyer, &p.id, body)
            .await
            .expect_error(422, "VALIDATION_ERROR");
    }
    review(&app, &buyer, "no-such-listing", five.clone())
        .await
        .expect_error(404, "LISTING_NOT_FOUND");
    app.post(&format!("/reviews/{}", p.id), None, five.clone())
        .await
        .expect_error(401, "AUTH_REQUIRED");

    // A call the seller failed is no purchase evidence, even though it was paid.
    paid_calls(&app, &buyer, &failing, 1).await;
    review(&app, &buyer, &failing.id, five.clone())
        .await
        .expect_error(403, "REVIEW_PURCHASE_REQUIRED");

    // A paid, successful call is; the review is kept once.
    paid_calls(&app, &buyer, &p, 1).await;
    let created = review(&app, &buyer, &p.id, five.clone()).await.expect(201);
    let d = created.data();
    assert_eq!(d["rating"], 5);
    assert_eq!(d["comment"], "fast and correct");
    assert_eq!(d["buyer_id"], buyer.profile_id.as_str());
    assert_eq!(d["seller_id"], p.agent.profile_id.as_str());
    assert_eq!(d["verified_purchase"], true);
    assert_eq!(d["paid_purchase"], true);
    let again = review(&app, &buyer, &p.id, json!({"rating": 1}))
        .await
        .expect_error(409, "REVIEW_ALREADY_EXISTS");
    assert_eq!(again.next_action(), "do_not_retry_duplicate_review");
    assert_eq!(again.body["error"]["recovery"]["retryable"], false);

    // A free call qualifies too (an unpaid review), by slug.
    let second = app.register(Wallet::evm()).await;
    gateway_call(&app, &second, &free.id, &json!({"task": "t"}), &[])
        .await
        .expect(200);
    let slug = free.data["slug"].as_str().unwrap();
    let r = review(&app, &second, slug, json!({"rating": 2}))
        .await
        .expect(201);
    assert_eq!(r.data()["paid_purchase"], false);
    assert_eq!(r.data()["comment"], Value::Null);

    // A purchase older than the review window no longer qualifies.
    let third = app.register(Wallet::solana()).await;
    paid_calls(&app, &third, &p, 1).await;
    sqlx::query("UPDATE gateway_requests SET created_at = created_at - $1 WHERE buyer_id = $2")
        .bind(31 * 86_400_000_i64)
        .bind(&third.profile_id)
        .execute(app.state().db.pool())
        .await
        .unwrap();
    review(&app, &third, &p.id, json!({"rating": 3}))
        .await
        .expect_error(403, "REVIEW_PURCHASE_REQUIRED");

    // The list: newest first, paginated, with the summary of all reviews.
    let fourth = app.register(Wallet::evm()).await;
    paid_calls(&app, &fourth, &p, 1).await;
    review(&app, &fourth, &p.id, json!({"rating": 4}))
        .await
        .expect(201);
    let page = app
        .get(&format!("/reviews/{}?limit=1", p.id), None)
        .await
        .expect(200);
    assert_eq!(page.body["pagination"]["total"], 2);
    assert_eq!(page.body["pagination"]["limit"], 1);
    let items = page.body["data"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["buyer_id"], fourth.profile_id.as_str());
    let summary = &page.body["summary"];
    assert_eq!(summary["review_count"], 2);
    assert_eq!(summary["average_rating"], 4.5);
    assert_eq!(summary["distribution"]["5"], 1);
    assert_eq!(summary["distribution"]["4"], 1);
    assert_eq!(summary["distribution"]["1"], 0);
    let page2 = app
        .get(&format!("/reviews/{}?limit=1&page=2", p.id), None)
        .await
        .expect(200);
    assert_eq!(page2.body["data"][0]["buyer_id"], buyer.profile_id.as_str());
    app.get("/reviews/no-such-listing", None)
        .await
        .expect_error(404, "LISTING_NOT_FOUND");

    // The listing shows its rating.
    let shown = app
        .get(&format!("/listings/{}", p.id), None)
        .await
        .expect(200);
    assert_eq!(shown.data()["rating"]["review_count"], 2);
    assert_eq!(shown.data()["rating"]["average_rating"], 4.5);
}

async fn good_and_bad_sellers_score_apart(app: TestApp) {
    let app = fresh_scores(app).await;
    // A new agent starts at 300; unknown agents are 404.
    let newcomer = app.register(Wallet::evm()).await;
    let s = score(&app, &newcomer.profile_id).await;
    assert_eq!(s["score"], 300);
    assert_eq!(s["tier"], "Low");
    assert_eq!(s["verified"], false);
    assert_eq!(s["scorer"], "bundled:scoring");
    assert_eq!(s["inputs"]["successful_calls"], 0);
    assert!(s["computed_at"].as_str().unwrap().ends_with('Z'));
    app.get("/agents/00000000-0000-0000-0000-000000000000/score", None)
        .await
        .expect_error(404, "AGENT_NOT_FOUND");

    // Three buyers use a good seller and a failing one four times each.
    let good = priced_listing(&app, Some(1.0), "/ok").await;
    let bad = priced_listing(&app, Some(1.0), "/fail").await;
    let mut buyers = Vec::new();
    for _ in 0..3 {
        let buyer = app.register(Wallet::solana()).await;
        paid_calls(&app, &buyer, &good, 4).await;
        paid_calls(&app, &buyer, &bad, 4).await;
        review(&app, &buyer, &good.id, json!({"rating": 5}))
            .await
            .expect(201);
        buyers.push(buyer);
    }

    let g = score(&app, &good.agent.profile_id).await;
    assert_eq!(g["inputs"]["paid_calls"], 12);
    assert_eq!(g["inputs"]["paid_volume_cents"], 1200);
    assert_eq!(g["inputs"]["distinct_buyers"], 3);
    assert_eq!(g["inputs"]["review_count"], 3);
    assert_eq!(g["inputs"]["paid_reviewers"], 3);
    assert_eq!(points(&g, "reliability"), 100);
    assert!(points(&g, "reviews") > 0);
    let good_score = g["score"].as_i64().unwrap();
    assert!(good_score > 500, "{g}");
    assert_eq!(g["tier"], "Moderate");

    let b = score(&app, &bad.agent.profile_id).await;
    assert_eq!(b["inputs"]["seller_errors"], 12);
    assert_eq!(b["inputs"]["paid_calls"], 0);
    assert_eq!(points(&b, "reliability"), -400);
    assert_eq!(b["score"], 0, "clamped at 0: {b}");
    assert_eq!(b["tier"], "Low");

    // Buyers earn a little from their paid purchases (failed calls do not count).
    let buyer_score = score(&app, &buyers[0].profile_id).await;
    assert_eq!(buyer_score["inputs"]["purchases"], 4);
    assert_eq!(buyer_score["inputs"]["distinct_sellers"], 1);
    assert!(buyer_score["score"].as_i64().unwrap() > 300);

    // Listings and profiles show the scores; sorts by score and by rating.
    for sort in ["score", "rating"] {
        let list = app
            .get(&format!("/listings?sort={sort}&limit=100"), None)
            .await
            .expect(200);
        let ids: Vec<&str> = list.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap())
            .collect();
        let (gi, bi) = (
            ids.iter().position(|i| *i == good.id).unwrap(),
            ids.iter().position(|i| *i == bad.id).unwrap(),
        );
        assert!(gi < bi, "sort={sort}: {ids:?}");
        if sort == "score" {
            assert_eq!(gi, 0, "the best seller comes first");
        }
    }
    let shown = app
        .get(&format!("/listings/{}", good.id), None)
        .await
        .expect(200);
    assert_eq!(shown.data()["seller_score"]["score"], good_score);
    assert_eq!(shown.data()["seller_score"]["tier"], "Moderate");
    assert_eq!(shown.data()["seller_verified"], false);
    // A new listing of a scored seller shows the badge from its creation response on.
    let another = app
        .create_listing(
            &good.agent,
            crate::common::listing_body("Another", "http://127.0.0.1:9/run"),
        )
        .await
        .expect(201);
    assert_eq!(another.data()["seller_score"], shown.data()["seller_score"]);
    assert_eq!(shown.data()["rating"]["average_rating"], 5.0);
    app.get("/listings?sort=loudest", None).await.expect(400);
    let me = app.get("/me", good.agent.key()).await.expect(200);
    let profile = &me.data()["profile"];
    assert_eq!(profile["crochet_score"]["score"], good_score);
    assert_eq!(profile["verified"], false);

    // The verified mark follows the stored score alone: at 800 it is shown.
    sqlx::query("UPDATE agent_scores SET score = 850 WHERE profile_id = $1")
        .bind(&good.agent.profile_id)
        .execute(app.state().db.pool())
        .await
        .unwrap();
    let shown = app
        .get(&format!("/listings/{}", good.id), None)
        .await
        .expect(200);
    assert_eq!(shown.data()["seller_verified"], true);
    assert_eq!(shown.data()["seller_score"]["tier"], "Elite");

    // Snapshots are kept, one per computation.
    let snapshots: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM score_snapshots WHERE profile_id = $1")
            .bind(&good.agent.profile_id)
            .fetch_one(app.state().db.pool())
            .await
            .unwrap();
    assert!(snapshots >= 1);
}

async fn self_dealing_and_bursts_do_not_pump_the_score(app: TestApp) {
    let app = fresh_scores(app).await;
    // A seller buying from itself, many times, at a penny.
    let p = priced_listing(&app, Some(0.01), "/ok").await;
    let me = &p.agent;
    let sol = [("X-Crochet-Origin-Currency", "SOL")];
    for i in 0..12 {
        let body = json!({"task": "self", "input": {"n": i}});
        let r = gateway_call(&app, me, &p.id, &body, &sol).await;
        let relay = crate::common::settle(&app, me, &r, "settled").await;
        crate::common::retry(&app, me, &p.id, &body, &relay)
            .await
            .expect(200);
    }
    let s = score(&app, &me.profile_id).await;
    assert_eq!(s["inputs"]["successful_calls"], 0, "{s}");
    assert_eq!(s["inputs"]["purchases"], 0);
    assert_eq!(s["score"], 300);

    // One buyer's burst of 30 tiny free calls in a day counts as 10 successes; its
    // reach is nothing, as nothing was paid.
    let free = priced_listing(&app, None, "/ok").await;
    let buyer = app.register(Wallet::evm()).await;
    for i in 0..30 {
        gateway_call(&app, &buyer, &free.id, &json!({"n": i}), &[])
            .await
            .expect(200);
    }
    let s = score(&app, &free.agent.profile_id).await;
    assert_eq!(s["inputs"]["successful_calls"], 10, "{s}");
    assert_eq!(s["inputs"]["distinct_buyers"], 0);
    assert_eq!(points(&s, "volume"), 0);
    assert_eq!(points(&s, "reach"), 0);

    // A minimum buyer score on a listing reaches the policy plugin: the new buyer
    // (Low) is refused before any payment, a buyer lifted to Moderate is let in.
    let strict = priced_listing(&app, Some(1.0), "/ok").await;
    app.patch(
        &format!("/listings/{}", strict.id),
        strict.agent.key(),
        json!({"policy_config": {"request-validation": {"min_buyer_score": 400}}}),
    )
    .await
    .expect(200);
    let newcomer = app.register(Wallet::solana()).await;
    let refused = gateway_call(&app, &newcomer, &strict.id, &json!({"task": "t"}), &[])
        .await
        .expect_error(403, "BUYER_SCORE_TOO_LOW");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("(Low)"),
        "{}",
        refused.body
    );
    assert!(strict.seller.requests().is_empty());
    sqlx::query("UPDATE score_snapshots SET score = 450, tier = 'Moderate' WHERE profile_id = $1")
        .bind(&newcomer.profile_id)
        .execute(app.state().db.pool())
        .await
        .unwrap();
    let app = app
        .restart(|c| c.reputation.score_max_age_seconds = 3600)
        .await;
    gateway_call(&app, &newcomer, &strict.id, &json!({"task": "t"}), &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
}

async fn background_rescoring_follows_new_events(app: TestApp) {
    let app = app
        .restart(|c| c.reputation.refresh_interval_seconds = 1)
        .await;
    let p = priced_listing(&app, None, "/ok").await;
    let shown = app
        .get(&format!("/listings/{}", p.id), None)
        .await
        .expect(200);
    assert_eq!(
        shown.data()["seller_score"]["score"],
        300,
        "scored at registration"
    );
    let buyer = app.register(Wallet::evm()).await;
    for i in 0..3 {
        gateway_call(&app, &buyer, &p.id, &json!({"n": i}), &[])
            .await
            .expect(200);
    }
    // Nobody asks for the score, but the policy plugins had it computed at the first
    // call, before that call's event existed: the refresher must see the events as
    // newer and count them (1 active day: 3 points).
    let listing = format!("/listings/{}", p.id);
    let shown = poll_until(
        std::time::Duration::from_secs(10),
        async || app.get(&listing, None).await,
        |r| r.data()["seller_score"]["score"] == 303,
    )
    .await
    .expect(200);
    let scored = &shown.data()["seller_score"];
    assert_eq!(
        scored["score"], 303,
        "the seller was rescored in the background"
    );
    let me = app.get("/me", buyer.key()).await.expect(200);
    assert_eq!(me.data()["profile"]["crochet_score"]["tier"], "Low");
}

/// Inserts a snapshot of `agent` computed `days_ago`, that no score points at.
async fn old_snapshot(app: &TestApp, id: &str, agent: &str, days_ago: i64) {
    sqlx::query(
        "INSERT INTO score_snapshots (id, profile_id, score, tier, scorer, inputs, components, \
         computed_at) VALUES ($1, $2, 0, 'Low', 'bundled:scoring', '{}', '[]', $3)",
    )
    .bind(id)
    .bind(agent)
    .bind(crochet::storage::now_ms() - days_ago * 86_400_000)
    .execute(app.state().db.pool())
    .await
    .unwrap();
}

async fn snapshot_ids(app: &TestApp, agent: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT id FROM score_snapshots WHERE profile_id = $1 ORDER BY id")
        .bind(agent)
        .fetch_all(app.state().db.pool())
        .await
        .unwrap()
}

/// Snapshots past `snapshot_retention_days` (30 by default) are deleted, except an
/// agent's current one, however old; 0 keeps them all.
async fn old_snapshots_are_pruned_but_never_the_current_one(app: TestApp) {
    let app = fresh_scores(app).await;
    let busy = app.register(Wallet::solana()).await;
    let quiet = app.register(Wallet::evm()).await;
    // Registration scored each of them once.
    let busy_current = snapshot_ids(&app, &busy.profile_id).await;
    assert_eq!(busy_current.len(), 1);
    old_snapshot(&app, "old-1", &busy.profile_id, 31).await;
    old_snapshot(&app, "old-2", &busy.profile_id, 400).await;
    old_snapshot(&app, "recent", &busy.profile_id, 29).await;
    // The quiet agent's only snapshot, its current score, is past the window too.
    let ninety_days_ago = crochet::storage::now_ms() - 90 * 86_400_000;
    for table in ["score_snapshots", "agent_scores"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET computed_at = $1 WHERE profile_id = $2"
        )))
        .bind(ninety_days_ago)
        .bind(&quiet.profile_id)
        .execute(app.state().db.pool())
        .await
        .unwrap();
    }

    let reputation = &app.state().reputation;
    assert_eq!(reputation.prune_snapshots().await.unwrap(), 2);
    let mut kept = busy_current.clone();
    kept.push("recent".into());
    kept.sort();
    assert_eq!(snapshot_ids(&app, &busy.profile_id).await, kept);
    assert_eq!(snapshot_ids(&app, &quiet.profile_id).await.len(), 1);
    assert_eq!(reputation.prune_snapshots().await.unwrap(), 0);
    let still = score(&app, &quiet.profile_id).await;
    assert_eq!(still["tier"], "Low");

    // Retention 0: nothing is ever pruned.
    old_snapshot(&app, "old-3", &busy.profile_id, 365).await;
    let app = app
        .restart(|c| c.reputation.snapshot_retention_days = 0)
        .await;
    assert_eq!(app.state().reputation.prune_snapshots().await.unwrap(), 0);
    assert!(
        snapshot_ids(&app, &busy.profile_id)
            .await
            .contains(&"old-3".to_owned())
    );
}

/// The scorer is the operator's choice (`plugins.scorer`); one that is not a scorer
/// stops start-up with a message naming the setting.
#[tokio::test]
async fn a_scorer_of_the_wrong_world_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-scorer.wasm");
    std::fs::write(&file, crochet::plugins::bundled::RATE_LIMIT).unwrap();
    let mut config = crate::common::test_config(format!(
        "sqlite://{}",
        dir.path().join("crochet.db").display()
    ));
    config.plugins.scorer = file.display().to_string();
    let err = crochet::app::start(config).await.err().expect("refused");
    let text = format!("{err:#}");
    assert!(text.contains("plugins.scorer"), "{text}");
    assert!(text.contains("scorer"), "{text}");
}

/// With the default score cache (`score_max_age_seconds` 60, background rescoring every
/// 60 s), an agent is scored at registration, and a purchase and a review show in the
/// very next score read of the buyer and of the seller.
async fn own_actions_show_in_the_next_score_read(app: TestApp) {
    let p = priced_listing(&app, Some(1.0), "/ok").await;
    let seller = &p.agent.profile_id;

    let wallet = Wallet::solana();
    let mut proof = app.proof(&wallet, "register", None).await;
    proof["role"] = json!("buyer");
    let registered = app.post("/register", None, proof).await.expect(201);
    let badge = &registered.data()["profile"]["crochet_score"];
    assert_eq!(badge["score"], 300, "{}", registered.body);
    assert_eq!(badge["tier"], "Low");
    assert_eq!(registered.data()["profile"]["verified"], false);
    let buyer = Agent {
        api_key: registered.data()["api_key"].as_str().unwrap().to_owned(),
        profile_id: registered.data()["profile"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        wallet,
    };
    let me = app.get("/me", buyer.key()).await.expect(200);
    assert_eq!(me.data()["profile"]["crochet_score"]["score"], 300);

    // Both scores are now cached snapshots with every input at 0.
    assert_eq!(
        score(&app, &buyer.profile_id).await["inputs"]["purchases"],
        0
    );
    let before = score(&app, seller).await;
    assert_eq!(before["inputs"]["paid_calls"], 0);
    assert_eq!(before["inputs"]["review_count"], 0);

    paid_calls(&app, &buyer, &p, 1).await;
    let b = score(&app, &buyer.profile_id).await;
    assert_eq!(b["inputs"]["purchases"], 1, "{b}");
    assert_eq!(b["inputs"]["distinct_sellers"], 1, "{b}");
    let s = score(&app, seller).await;
    assert_eq!(s["inputs"]["paid_calls"], 1, "{s}");
    assert_eq!(s["inputs"]["successful_calls"], 1, "{s}");

    review(&app, &buyer, &p.id, json!({"rating": 4}))
        .await
        .expect(201);
    let s = score(&app, seller).await;
    assert_eq!(s["inputs"]["review_count"], 1, "{s}");
    assert_eq!(s["inputs"]["rating_sum"], 4, "{s}");
    assert_eq!(s["inputs"]["paid_reviewers"], 1, "{s}");
}

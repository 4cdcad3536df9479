//! Spend limits per API key, on both backends: each limit refuses at the right call
//! with nothing forwarded and nothing charged, racing calls never overshoot a cap, and
//! a limited key cannot lift its own limits.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::common::*;

crate::on_both_backends!(
    a_sub_agent_is_refused_at_the_51st_cent,
    a_refunded_call_gives_the_key_its_budget_back,
    racing_calls_never_overshoot_a_cap,
    scope_and_price_limits_refuse_before_any_payment,
    a_cap_counts_at_settlement_and_keeps_the_payment,
    limited_keys_cannot_manage_keys_and_expire,
    limits_are_validated_and_changed_by_the_profile,
);

crate::on_both_backends!(
    mod with_x402, configure = crate::common::with_x402;
    a_capped_key_does_not_pay_with_x402,
);

/// Issues a key of `parent`'s profile with `limits`; the sub-agent acting with it.
async fn sub_agent(app: &Client, parent: &Agent, limits: Value) -> Agent {
    let issued = app
        .post(
            "/api-keys",
            parent.key(),
            json!({"name": "sub-agent", "limits": limits}),
        )
        .await
        .expect(201);
    parent.with_key(issued.data()["api_key"].as_str().unwrap())
}

/// Publishes a listing in `category` at `price` USD.
async fn listing_in(app: &Client, category: &str, price: f64, path: &str) -> Published {
    app.publish_with("Capability", path, |body| {
        body["category"] = json!(category);
        body["pricing_amount"] = json!(price);
    })
    .await
}

/// The README's story: a parent gives a sub-agent a key limited to 50 cents a day and
/// one category; the sub-agent spends its 50 cents and is refused at the 51st.
async fn a_sub_agent_is_refused_at_the_51st_cent(app: TestApp) {
    let parent = app.register(Wallet::solana()).await;
    top_up(&app, &parent, 100).await;
    let sub = sub_agent(
        &app,
        &parent,
        json!({"daily_cents": 50, "categories": ["data"]}),
    )
    .await;
    let data = listing_in(&app, "data", 0.01, "/ok").await;
    let other = listing_in(&app, "ai-models", 0.01, "/ok").await;
    gateway_call(
        &app,
        &sub,
        &other.id,
        &json!({}),
        &[("X-Crochet-Pay-From", "balance")],
    )
    .await
    .expect_error(403, "LISTING_NOT_ALLOWED_FOR_KEY");
    for cent in 1..=50 {
        from_balance(&app, &sub, &data.id, &json!({"cent": cent}), None)
            .await
            .expect(200);
    }
    let refused = from_balance(&app, &sub, &data.id, &json!({"cent": 51}), None)
        .await
        .expect_error(403, "SPEND_LIMIT_EXCEEDED");
    let details = &refused.body["error"]["details"];
    assert_eq!(details["limit"], "daily_cents");
    assert_eq!(details["limit_cents"], 50);
    assert_eq!(details["spent_cents"], 50);
    assert_eq!(details["remaining_cents"], 0);
    assert_eq!(details["seller_endpoint_called"], false);
    assert!(details["resets_at"].as_str().is_some());
    assert_eq!(
        refused.body["error"]["recovery"]["next_action"],
        "wait_for_spend_window"
    );
    assert_eq!(data.seller.requests().len(), 50);
    assert_eq!(balance_of(&app, &parent).await, 50);
    // The parent's own key is not limited.
    from_balance(&app, &parent, &data.id, &json!({"cent": 51}), None)
        .await
        .expect(200);
    // GET /api-keys shows each key's limits and spend.
    let keys = app.get("/api-keys", parent.key()).await.expect(200);
    let sub_key = keys
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "sub-agent")
        .unwrap()
        .clone();
    assert_eq!(
        sub_key["limits"],
        json!({"daily_cents": 50, "categories": ["data"]})
    );
    assert_eq!(sub_key["spend"]["day"]["spent_cents"], 50);
    assert_eq!(sub_key["spend"]["day"]["remaining_cents"], 0);
    assert_eq!(sub_key["spend"]["month"]["limit_cents"], Value::Null);
    let parent_key = keys
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "default")
        .unwrap()
        .clone();
    assert!(parent_key.get("limits").is_none());
    assert_eq!(parent_key["spend"]["day"]["spent_cents"], 1);
    money_adds_up(&app).await;
}

/// A call the seller fails is refunded to the balance and gives the key's budget back.
async fn a_refunded_call_gives_the_key_its_budget_back(app: TestApp) {
    let parent = app.register(Wallet::solana()).await;
    top_up(&app, &parent, 200).await;
    let sub = sub_agent(&app, &parent, json!({"daily_cents": 100})).await;
    let failing = priced_listing(&app, Some(0.60), "/fail").await;
    let working = priced_listing(&app, Some(0.60), "/ok").await;
    from_balance(&app, &sub, &failing.id, &json!({}), None)
        .await
        .expect_error(502, "SELLER_ERROR_RESPONSE");
    let spent = async || {
        let keys = app.get("/api-keys", parent.key()).await.expect(200);
        keys.data()
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == "sub-agent")
            .unwrap()["spend"]["day"]["spent_cents"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(spent().await, 0);
    // With the 60 cents back, a 60-cent call still fits the 100-cent day.
    from_balance(&app, &sub, &working.id, &json!({}), None)
        .await
        .expect(200);
    assert_eq!(spent().await, 60);
    assert_eq!(balance_of(&app, &parent).await, 140);
    money_adds_up(&app).await;
}

async fn racing_calls_never_overshoot_a_cap(app: TestApp) {
    let parent = app.register(Wallet::solana()).await;
    top_up(&app, &parent, 1_000).await;
    let sub = Arc::new(sub_agent(&app, &parent, json!({"daily_cents": 10})).await);
    let p = priced_listing(&app, Some(0.01), "/ok").await;
    let codes = race_from_balance(&app, &sub, &p.id, 32).await;
    assert_eq!(codes.get("ok"), Some(&10), "{codes:?}");
    assert_eq!(codes.get("SPEND_LIMIT_EXCEEDED"), Some(&22), "{codes:?}");
    assert_eq!(p.seller.requests().len(), 10);
    assert_eq!(balance_of(&app, &parent).await, 990);
    // The 30-day cap is counted the same way.
    let monthly = sub_agent(&app, &parent, json!({"monthly_cents": 2})).await;
    for n in 0..2 {
        from_balance(&app, &monthly, &p.id, &json!({"m": n}), None)
            .await
            .expect(200);
    }
    let refused = from_balance(&app, &monthly, &p.id, &json!({"m": 2}), None)
        .await
        .expect_error(403, "SPEND_LIMIT_EXCEEDED");
    assert_eq!(refused.body["error"]["details"]["limit"], "monthly_cents");
    money_adds_up(&app).await;
}

async fn scope_and_price_limits_refuse_before_any_payment(app: TestApp) {
    let parent = app.register(Wallet::solana()).await;
    let cheap = listing_in(&app, "data", 0.20, "/ok").await;
    let dear = listing_in(&app, "data", 0.30, "/ok").await;
    let sub = sub_agent(
        &app,
        &parent,
        json!({"max_price_cents": 25, "seller_ids": [cheap.agent.profile_id]}),
    )
    .await;
    // Another seller: refused, even for a free listing.
    let free = priced_listing(&app, None, "/ok").await;
    let r = gateway_call(&app, &sub, &free.id, &json!({}), &[])
        .await
        .expect_error(403, "SELLER_NOT_ALLOWED_FOR_KEY");
    assert_eq!(r.body["error"]["details"]["charged"], false);
    assert!(free.seller.requests().is_empty());
    // The same seller, too dear: refused before a payment requirement exists.
    let sub2 = sub_agent(&app, &parent, json!({"max_price_cents": 25})).await;
    let r = gateway_call(&app, &sub2, &dear.id, &json!({}), &[])
        .await
        .expect_error(403, "PRICE_LIMIT_EXCEEDED");
    assert_eq!(r.body["error"]["details"]["limit_cents"], 25);
    assert_eq!(r.body["error"]["details"]["price_cents"], 30);
    // Within the limits: the usual 402.
    gateway_call(&app, &sub, &cheap.id, &json!({}), &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    // Named listings, by id or slug.
    let by_listing = sub_agent(&app, &parent, json!({"listing_ids": [cheap.id]})).await;
    gateway_call(&app, &by_listing, &dear.id, &json!({}), &[])
        .await
        .expect_error(403, "LISTING_NOT_ALLOWED_FOR_KEY");
    gateway_call(&app, &by_listing, &cheap.id, &json!({}), &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let payments: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM gateway_payments WHERE listing_id = $1")
            .bind(&dear.id)
            .fetch_one(app.state().db.pool())
            .await
            .unwrap();
    assert_eq!(payments, 0, "no requirement was issued for a refused call");
    money_adds_up(&app).await;
}

async fn a_cap_counts_at_settlement_and_keeps_the_payment(app: TestApp) {
    let parent = app.register(Wallet::solana()).await;
    let sub = sub_agent(&app, &parent, json!({"daily_cents": 100})).await;
    let p = priced_listing(&app, Some(1.00), "/ok").await;
    // Two requirements fit the cap while nothing is spent.
    let a = gateway_call(&app, &sub, &p.id, &json!({"n": 1}), &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let b = gateway_call(&app, &sub, &p.id, &json!({"n": 2}), &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let a_id = settle(&app, &sub, &a, "settled").await;
    let b_id = settle(&app, &sub, &b, "settled").await;
    retry(&app, &sub, &p.id, &json!({"n": 1}), &a_id)
        .await
        .expect(200);
    // The second is refused when it would be charged; its payment stays unused.
    let refused = retry(&app, &sub, &p.id, &json!({"n": 2}), &b_id)
        .await
        .expect_error(403, "SPEND_LIMIT_EXCEEDED");
    assert_eq!(refused.body["error"]["details"]["spent_cents"], 100);
    let status: String =
        sqlx::query_scalar("SELECT status FROM gateway_payments WHERE request_id = $1")
            .bind(&b_id)
            .fetch_one(app.state().db.pool())
            .await
            .unwrap();
    assert_eq!(status, "issued");
    assert_eq!(p.seller.requests().len(), 1);
    // A third is refused before its requirement.
    gateway_call(&app, &sub, &p.id, &json!({"n": 3}), &[])
        .await
        .expect_error(403, "SPEND_LIMIT_EXCEEDED");
    // Raising the cap lets the kept payment through.
    app.patch(
        &format!("/api-keys/{}", key_id(&app, &sub).await),
        parent.key(),
        json!({"limits": {"daily_cents": 200}}),
    )
    .await
    .expect(200);
    retry(&app, &sub, &p.id, &json!({"n": 2}), &b_id)
        .await
        .expect(200);
    money_adds_up(&app).await;
}

/// The id of the key `agent` calls with.
async fn key_id(app: &Client, agent: &Agent) -> String {
    app.get("/me", agent.key()).await.expect(200).data()["api_key"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn limited_keys_cannot_manage_keys_and_expire(app: TestApp) {
    let parent = app.register(Wallet::solana()).await;
    let sub = sub_agent(&app, &parent, json!({"daily_cents": 5})).await;
    app.post("/api-keys", sub.key(), json!({"name": "escape"}))
        .await
        .expect_error(403, "KEY_MANAGEMENT_NOT_ALLOWED");
    let own = key_id(&app, &sub).await;
    app.patch(
        &format!("/api-keys/{own}"),
        sub.key(),
        json!({"limits": null}),
    )
    .await
    .expect_error(403, "KEY_MANAGEMENT_NOT_ALLOWED");
    let parent_key = key_id(&app, &parent).await;
    app.delete(&format!("/api-keys/{parent_key}"), sub.key())
        .await
        .expect_error(403, "KEY_MANAGEMENT_NOT_ALLOWED");
    // It may give itself up.
    app.delete(&format!("/api-keys/{own}"), sub.key())
        .await
        .expect(200);
    app.get("/me", sub.key())
        .await
        .expect_error(401, "INVALID_API_KEY");
    // An expiring key stops working at its expiry.
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let expiring = sub_agent(&app, &parent, json!({"expires_at": soon})).await;
    app.get("/me", expiring.key()).await.expect(200);
    let expired = poll_until(
        std::time::Duration::from_secs(5),
        async || app.get("/me", expiring.key()).await,
        |r| r.status == 401,
    )
    .await
    .expect_error(401, "API_KEY_EXPIRED");
    assert_eq!(
        expired.body["error"]["recovery"]["next_action"],
        "ask_key_owner"
    );
    let keys = app.get("/api-keys", parent.key()).await.expect(200);
    assert!(
        keys.data()
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["status"] == "expired")
    );
}

async fn limits_are_validated_and_changed_by_the_profile(app: TestApp) {
    let parent = app.register(Wallet::solana()).await;
    for bad in [
        json!({"daily_cents": -1}),
        json!({"categories": []}),
        json!({"seller_ids": ["a b"]}),
        json!({"expires_at": "2001-01-01T00:00:00Z"}),
        json!({"expires_at": "tomorrow"}),
    ] {
        app.post("/api-keys", parent.key(), json!({"limits": bad}))
            .await
            .expect_error(422, "VALIDATION_ERROR");
    }
    app.post(
        "/api-keys",
        parent.key(),
        json!({"limits": {"weekly_cents": 5}}),
    )
    .await
    .expect_error(422, "VALIDATION_ERROR");
    let sub = sub_agent(&app, &parent, json!({"categories": ["data"]})).await;
    let ai = listing_in(&app, "ai-models", 0.10, "/ok").await;
    gateway_call(&app, &sub, &ai.id, &json!({}), &[])
        .await
        .expect_error(403, "LISTING_NOT_ALLOWED_FOR_KEY");
    let id = key_id(&app, &sub).await;
    let path = format!("/api-keys/{id}");
    // PATCH must say what the limits become.
    app.patch(&path, parent.key(), json!({}))
        .await
        .expect_error(422, "VALIDATION_ERROR");
    let changed = app
        .patch(
            &path,
            parent.key(),
            json!({"limits": {"categories": ["ai-models"]}}),
        )
        .await
        .expect(200);
    assert_eq!(
        changed.data()["limits"],
        json!({"categories": ["ai-models"]})
    );
    // Effective on the key's next request.
    gateway_call(&app, &sub, &ai.id, &json!({}), &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let lifted = app
        .patch(&path, parent.key(), json!({"limits": null}))
        .await
        .expect(200);
    assert!(lifted.data().get("limits").is_none());
    // A lifted key manages keys again.
    app.post("/api-keys", sub.key(), json!({"name": "now allowed"}))
        .await
        .expect(201);
    app.patch("/api-keys/nope", parent.key(), json!({"limits": null}))
        .await
        .expect_error(404, "API_KEY_NOT_FOUND");
}

/// x402 settles after the seller answered, too late to refuse a call past a cap: a
/// capped key pays another way, while price limits still apply to x402.
async fn a_capped_key_does_not_pay_with_x402(app: TestApp) {
    let parent = app.register(Wallet::evm()).await;
    let p = priced_listing(&app, Some(0.50), "/ok").await;
    let capped = sub_agent(&app, &parent, json!({"daily_cents": 500})).await;
    let offer = gateway_call(&app, &capped, &p.id, &json!({}), &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let requirements = payment_required(&offer).accepts[0].clone();
    let signature = sign_payment(&parent.wallet, &requirements, 600);
    let r = gateway_call(
        &app,
        &capped,
        &p.id,
        &json!({}),
        &[("PAYMENT-SIGNATURE", signature.as_str())],
    )
    .await
    .expect_error(403, "PAYMENT_FLOW_NOT_ALLOWED_FOR_KEY");
    assert_eq!(r.body["error"]["details"]["charged"], false);
    let priced = sub_agent(&app, &parent, json!({"max_price_cents": 10})).await;
    gateway_call(
        &app,
        &priced,
        &p.id,
        &json!({}),
        &[("PAYMENT-SIGNATURE", signature.as_str())],
    )
    .await
    .expect_error(403, "PRICE_LIMIT_EXCEEDED");
    assert!(p.seller.requests().is_empty());
    assert_eq!(facilitator().verifies(&parent.wallet.address()), 0);
}

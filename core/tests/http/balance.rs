//! The buyer's marketplace balance: refunds of paid calls that failed at the seller,
//! calls paid from the balance, and top-ups, on both backends. Every test ends by
//! checking the money: each operation's entries sum to zero, the whole ledger does, and
//! the balance equals its movements in the ledger.

use std::sync::Arc;

use serde_json::json;

use crate::common::*;

crate::on_both_backends!(
    a_seller_failure_after_settlement_is_refunded_once,
    a_call_paid_from_the_balance_writes_balanced_entries,
    racing_calls_cannot_spend_the_balance_twice,
    a_top_up_is_credited_once_under_racing_confirmations,
    deposits_refuse_bad_requests_and_wait_for_settlement,
    the_janitor_credits_a_paid_deposit_nobody_confirmed,
);

async fn a_seller_failure_after_settlement_is_refunded_once(app: TestApp) {
    let p = priced_listing(&app, Some(1.25), "/fail").await;
    let buyer = app.register(Wallet::solana()).await;
    let body = json!({"task": "fails"});
    let (relay_id, failed) = pay_and_call(&app, &buyer, &p.id, &body).await;
    let failed = failed.expect_error(502, "SELLER_ERROR_RESPONSE");
    let details = &failed.body["error"]["details"];
    assert_eq!(details["payment_settled"], true);
    assert_eq!(details["refund"]["amount_cents"], 125);
    assert_eq!(details["refund"]["to"], "balance");
    assert_eq!(
        failed.body["error"]["recovery"]["next_action"],
        "retry_from_balance_or_choose_another_seller"
    );
    let gr = details["request_id"].as_str().unwrap().to_owned();
    assert_eq!(balance_of(&app, &buyer).await, 125);
    // The ledger shows the charge and its reversal; the receipt says so.
    let ledger = app.get("/ledger?limit=100", buyer.key()).await.expect(200);
    let types: Vec<&str> = ledger
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry_type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"gateway_debit") && types.contains(&"gateway_refund"),
        "{types:?}"
    );
    let receipts = app.get("/receipts", buyer.key()).await.expect(200);
    let receipt = &receipts.data()[0];
    assert_eq!(receipt["gateway_request_id"], gr.as_str());
    assert_eq!(receipt["status"], "reversed");
    assert_eq!(
        receipt["refund"],
        json!({"amount_cents": 125, "to": "balance"})
    );
    // The seller's failure still counts against it.
    let h = app
        .get("/gateway-requests?role=buyer", buyer.key())
        .await
        .expect(200);
    assert_eq!(h.data()[0]["status"], "seller_error");
    // Retrying the spent payment refunds nothing more.
    retry(&app, &buyer, &p.id, &body, &relay_id)
        .await
        .expect_error(409, "PAYMENT_ALREADY_USED");
    assert_eq!(balance_of(&app, &buyer).await, 125);
    assert_eq!(p.seller.requests().len(), 1);
    money_adds_up(&app).await;
}

async fn a_call_paid_from_the_balance_writes_balanced_entries(app: TestApp) {
    let p = priced_listing(&app, Some(1.00), "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let body = json!({"task": "from balance"});
    // Nothing to pay with yet: refused, nothing forwarded.
    let short = from_balance(&app, &buyer, &p.id, &body, None)
        .await
        .expect_error(402, "INSUFFICIENT_BALANCE");
    assert_eq!(short.body["error"]["details"]["balance_cents"], 0);
    assert_eq!(short.body["error"]["details"]["price_cents"], 100);
    assert_eq!(
        short.body["error"]["recovery"]["next_action"],
        "top_up_balance"
    );
    top_up(&app, &buyer, 250).await;
    assert_eq!(balance_of(&app, &buyer).await, 250);

    let ok = from_balance(&app, &buyer, &p.id, &body, Some("once"))
        .await
        .expect(200);
    let d = ok.data();
    assert_eq!(d["billable"], true);
    assert_eq!(d["payment"]["flow"], "balance");
    assert_eq!(d["charged_amount"]["amount_cents"], 100);
    assert_eq!(d["fees"]["fee_amount_cents"], 5);
    assert_eq!(d["seller_response"]["echo"], body);
    assert_eq!(balance_of(&app, &buyer).await, 150);
    let seen = p.seller.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].signature_valid);
    // The call's entries: the balance's debit, the seller's credit, the fee.
    let gr = d["request_id"].as_str().unwrap();
    let entries: Vec<(String, i64)> = sqlx::query_as(
        "SELECT entry_type, amount_cents FROM ledger_entries WHERE gateway_request_id = $1 ORDER BY entry_type",
    )
    .bind(gr)
    .fetch_all(app.state().db.pool())
    .await
    .unwrap();
    assert_eq!(
        entries,
        vec![
            ("balance_debit".to_owned(), -100),
            ("marketplace_fee".to_owned(), 5),
            ("seller_credit".to_owned(), 95),
        ]
    );
    // A repeat with the same Idempotency-Key is never charged twice.
    from_balance(&app, &buyer, &p.id, &body, Some("once"))
        .await
        .expect_error(409, "PAYMENT_ALREADY_USED");
    from_balance(&app, &buyer, &p.id, &json!({"task": "other"}), Some("once"))
        .await
        .expect_error(409, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(balance_of(&app, &buyer).await, 150);
    assert_eq!(p.seller.requests().len(), 1);
    // A receipt like any paid call's.
    let receipts = app.get("/receipts", buyer.key()).await.expect(200);
    assert_eq!(receipts.data()[0]["status"], "charged");
    // One way to pay per call, and a header that says what it means.
    gateway_call(
        &app,
        &buyer,
        &p.id,
        &body,
        &[
            ("X-Crochet-Pay-From", "balance"),
            ("X-Crochet-Relay-Request-Id", "x"),
        ],
    )
    .await
    .expect_error(400, "CONFLICTING_PAYMENTS");
    gateway_call(
        &app,
        &buyer,
        &p.id,
        &body,
        &[("X-Crochet-Pay-From", "card")],
    )
    .await
    .expect_error(400, "INVALID_PAY_FROM");
    // A balance-paid call the seller fails is refunded to the balance.
    let failing = priced_listing(&app, Some(0.50), "/fail").await;
    from_balance(&app, &buyer, &failing.id, &body, None)
        .await
        .expect_error(502, "SELLER_ERROR_RESPONSE");
    assert_eq!(balance_of(&app, &buyer).await, 150);
    // A free listing ignores the header.
    let free = priced_listing(&app, None, "/ok").await;
    from_balance(&app, &buyer, &free.id, &body, None)
        .await
        .expect(200);
    assert_eq!(balance_of(&app, &buyer).await, 150);
    money_adds_up(&app).await;
}

async fn racing_calls_cannot_spend_the_balance_twice(app: TestApp) {
    let p = priced_listing(&app, Some(0.01), "/ok").await;
    let buyer = Arc::new(app.register(Wallet::solana()).await);
    top_up(&app, &buyer, 10).await;
    let codes = race_from_balance(&app, &buyer, &p.id, 32).await;
    assert_eq!(codes.get("ok"), Some(&10), "{codes:?}");
    assert_eq!(codes.get("INSUFFICIENT_BALANCE"), Some(&22), "{codes:?}");
    assert_eq!(balance_of(&app, &buyer).await, 0);
    assert_eq!(p.seller.requests().len(), 10);
    money_adds_up(&app).await;
}

async fn a_top_up_is_credited_once_under_racing_confirmations(app: TestApp) {
    let buyer = Arc::new(app.register(Wallet::solana()).await);
    let asked = app
        .post(
            "/balance/deposits",
            buyer.key(),
            json!({"amount_cents": 700}),
        )
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let payment = &asked.body["error"]["details"]["payment"];
    assert_eq!(payment["amount_cents"], 700);
    assert!(payment["deposit_id"].as_str().unwrap().starts_with("dep_"));
    assert_eq!(
        asked.body["error"]["recovery"]["next_action"],
        "complete_deposit_payment"
    );
    let relay_id = settle(&app, &buyer, &asked, "settled").await;
    let app = Arc::new(app);
    let mut confirms = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (app, buyer, relay_id) = (app.clone(), buyer.clone(), relay_id.clone());
        confirms.spawn(async move { confirm_deposit(&app, &buyer, &relay_id).await });
    }
    let mut credited = 0;
    let mut repeats = 0;
    while let Some(reply) = confirms.join_next().await {
        let reply = reply.unwrap();
        match reply.status.as_u16() {
            201 => {
                credited += 1;
                assert_eq!(reply.data()["credited_now"], true);
            }
            200 => {
                repeats += 1;
                assert_eq!(reply.data()["credited_now"], false);
                assert_eq!(reply.data()["deposit"]["status"], "credited");
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!((credited, repeats), (1, 15));
    assert_eq!(balance_of(&app, &buyer).await, 700);
    let deposits: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ledger_entries WHERE entry_type = 'deposit' AND relay_request_id = $1",
    )
    .bind(&relay_id)
    .fetch_one(app.state().db.pool())
    .await
    .unwrap();
    assert_eq!(deposits, 1);
    let ledger = app
        .get("/ledger?type=deposit", buyer.key())
        .await
        .expect(200);
    assert_eq!(ledger.data()[0]["amount_cents"], 700);
    money_adds_up(&app).await;
}

async fn deposits_refuse_bad_requests_and_wait_for_settlement(app: TestApp) {
    let buyer = app.register(Wallet::solana()).await;
    for bad in [
        json!({}),
        json!({"amount_cents": 0}),
        json!({"amount_cents": 2_000_000}),
    ] {
        app.post("/balance/deposits", buyer.key(), bad)
            .await
            .expect_error(422, "VALIDATION_ERROR");
    }
    app.post(
        "/balance/deposits",
        buyer.key(),
        json!({"amount_cents": 5, "currency": "EUR"}),
    )
    .await
    .expect_error(422, "VALIDATION_ERROR");
    app.post("/balance/deposits", None, json!({"amount_cents": 5}))
        .await
        .expect_error(401, "AUTH_REQUIRED");
    confirm_deposit(&app, &buyer, "no-such-payment")
        .await
        .expect_error(404, "DEPOSIT_NOT_FOUND");
    // Pending, then settled.
    let relay_id = pay_deposit(&app, &buyer, 40, "pending").await;
    let pending = confirm_deposit(&app, &buyer, &relay_id).await.expect(202);
    assert_eq!(pending.data()["status"], "pending");
    assert_eq!(balance_of(&app, &buyer).await, 0);
    // Another agent cannot confirm it.
    let other = app.register(Wallet::solana()).await;
    confirm_deposit(&app, &other, &relay_id)
        .await
        .expect_error(404, "DEPOSIT_NOT_FOUND");
    let reply = app
        .http
        .post(app.url("/balance/deposits"))
        .bearer_auth(&buyer.api_key)
        .header("X-Crochet-Relay-Request-Id", &relay_id)
        .json(&json!({"amount_cents": 41}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 409);
    // A failed payment credits nothing, and stays failed.
    let failed_id = pay_deposit(&app, &buyer, 30, "failed").await;
    confirm_deposit(&app, &buyer, &failed_id)
        .await
        .expect_error(402, "PAYMENT_FAILED");
    confirm_deposit(&app, &buyer, &failed_id)
        .await
        .expect_error(402, "PAYMENT_FAILED");
    assert_eq!(balance_of(&app, &buyer).await, 0);
    // The deposits, newest first: a paid one the client lost track of is found again.
    let listed = app.get("/balance/deposits", buyer.key()).await.expect(200);
    assert_eq!(statuses(&listed), ["failed", "awaiting_payment"]);
    assert_eq!(listed.data()[1]["relay_request_id"], relay_id.as_str());
    assert_eq!(listed.body["pagination"]["total"], 2);
    let others = app.get("/balance/deposits", other.key()).await.expect(200);
    assert_eq!(others.body["pagination"]["total"], 0);
    let b = app.get("/balance", buyer.key()).await.expect(200);
    assert_eq!(b.data()["currency"], "USD");
    assert_eq!(
        b.data()["movement_entry_types"],
        json!(["gateway_refund", "balance_debit", "deposit"])
    );
    money_adds_up(&app).await;
}

async fn the_janitor_credits_a_paid_deposit_nobody_confirmed(app: TestApp) {
    let buyer = app.register(Wallet::solana()).await;
    // Paid, then the client stopped before confirming; one still pending; one failed.
    let paid = pay_deposit(&app, &buyer, 90, "settled").await;
    pay_deposit(&app, &buyer, 20, "pending").await;
    pay_deposit(&app, &buyer, 30, "failed").await;
    let state = app.state();
    let sweep = async || {
        crochet::ledger::deposits::sweep(
            &state.db,
            state.payments.provider().as_ref(),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap()
    };
    assert_eq!(sweep().await, 1);
    assert_eq!(balance_of(&app, &buyer).await, 90);
    // Once: a second sweep and the owner's late confirmation credit nothing more.
    assert_eq!(sweep().await, 0);
    confirm_deposit(&app, &buyer, &paid).await.expect(200);
    assert_eq!(balance_of(&app, &buyer).await, 90);
    let listed = app.get("/balance/deposits", buyer.key()).await.expect(200);
    assert_eq!(
        statuses(&listed),
        ["failed", "awaiting_payment", "credited"]
    );
    money_adds_up(&app).await;
}

/// The statuses of a `GET /balance/deposits` page, in order.
fn statuses(listed: &Reply) -> Vec<&str> {
    listed
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect()
}

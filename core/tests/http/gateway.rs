//! `POST /gateway/{listing_id}`, `GET /gateway-requests` and `GET /ledger`, acted out by
//! buyers and real local sellers through the mock payment provider.

use serde_json::{Value, json};

use crate::common::{
    EXACT_JSON, Reply, TestApp, Wallet, gateway_call as call, pay_and_call,
    priced_listing as listing, retry, settle,
};
use crate::on_both_backends;

on_both_backends!(
    free_listing_forwards_signed_exact_body,
    paid_call_402_settle_200_with_fees_and_ledger,
    pending_then_failed_payment,
    route_minimum_never_calls_the_seller,
    relay_id_is_bound_to_buyer_listing_and_body,
    idempotency_key_returns_the_same_requirement,
    seller_failure_after_settlement_is_refunded_to_the_balance,
    concurrent_retries_of_one_payment_forward_once,
    refusals_before_payment,
    ledger_is_append_only,
    billable_calls_get_verifiable_receipts,
    batched_history_rows_are_never_lost,
    long_histories_page_in_order_and_cap_their_totals,
);

/// How many ledger entries a payment produced.
async fn ledger_entries_for(app: &TestApp, relay_id: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries WHERE relay_request_id = $1")
        .bind(relay_id)
        .fetch_one(app.state().db.pool())
        .await
        .unwrap()
}

async fn free_listing_forwards_signed_exact_body(app: TestApp) {
    let p = listing(&app, None, "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let body = json!({"task": "run the seller capability", "input": {"example": true}});
    let r = call(&app, &buyer, &p.id, &body, &[]).await.expect(200);
    let d = r.data();
    assert_eq!(d["billable"], false);
    assert_eq!(d["listing_id"], p.id.as_str());
    assert_eq!(d["charged_amount"]["amount_cents"], 0);
    assert_eq!(d["seller_status_code"], 200);
    assert_eq!(d["seller_response"]["echo"], body);
    assert!(d["request_id"].as_str().unwrap().starts_with("gw_req_"));
    let seen = p.seller.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].signature_valid);
    assert_eq!(
        serde_json::from_slice::<Value>(&seen[0].body).unwrap(),
        body,
        "exact body forwarded"
    );
    assert_eq!(seen[0].headers["x-crochet-buyer-id"], buyer.profile_id);
    assert_eq!(
        seen[0].headers["x-crochet-request-id"],
        d["request_id"].as_str().unwrap()
    );
    assert!(
        !seen[0].headers.values().any(|v| v.contains(&buyer.api_key)),
        "the buyer key never reaches the seller"
    );

    // Both sides see it in their history; nobody else does.
    let mine = app
        .get("/gateway-requests?role=buyer", buyer.key())
        .await
        .expect(200);
    assert_eq!(mine.body["pagination"]["total"], 1);
    assert_eq!(mine.data()[0]["status"], "completed");
    assert_eq!(
        mine.data()[0]["request_bytes"],
        serde_json::to_vec(&body).unwrap().len()
    );
    assert!(mine.data()[0].get("request_body").is_none());
    // The row as the batched writer stored it, every column.
    let row = &mine.data()[0];
    let sent = serde_json::to_vec(&body).unwrap();
    assert_eq!(row["id"], d["request_id"]);
    assert_eq!(row["buyer_id"], buyer.profile_id.as_str());
    assert_eq!(row["seller_id"], p.agent.profile_id.as_str());
    assert_eq!(row["listing_id"], p.id.as_str());
    assert!(row["relay_request_id"].is_null() && row["error_code"].is_null());
    assert_eq!(
        (&row["billable"], &row["charged_cents"], &row["fee_cents"]),
        (&json!(false), &json!(0), &json!(0))
    );
    assert_eq!(
        row["request_sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&sent))
    );
    assert_eq!(row["seller_status_code"], 200);
    assert!(row["response_bytes"].as_i64().unwrap() > 0);
    assert_eq!(row["response_sha256"].as_str().unwrap().len(), 64);
    assert!(row["latency_ms"].as_i64().unwrap() >= 0);
    assert_eq!(row["created_at"], row["updated_at"]);
    let created = row["created_at"].as_str().expect("created_at is a string");
    assert!(
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "created_at is RFC 3339: {created}"
    );
    let theirs = app
        .get("/gateway-requests?role=seller", p.agent.key())
        .await
        .expect(200);
    assert_eq!(theirs.body["pagination"]["total"], 1);
    let stranger = app.register(Wallet::evm()).await;
    assert_eq!(
        app.get("/gateway-requests", stranger.key()).await.body["pagination"]["total"],
        0
    );

    // The seller's JSON is relayed byte for byte, not re-encoded.
    let exact = listing(&app, None, "/exact").await;
    let text = app
        .http
        .post(app.url(&format!("/gateway/{}", exact.id)))
        .bearer_auth(&buyer.api_key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!(r#""seller_response":{EXACT_JSON}"#)),
        "{text}"
    );
}

async fn paid_call_402_settle_200_with_fees_and_ledger(app: TestApp) {
    let p = listing(&app, Some(1.00), "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let body = json!({"task": "summarize", "input": "..."});
    let r = call(
        &app,
        &buyer,
        &p.id,
        &body,
        &[("X-Crochet-Origin-Currency", "SOL")],
    )
    .await;
    let r = r.expect_error(402, "PAYMENT_REQUIRED");
    let payment = &r.body["error"]["details"]["payment"];
    assert_eq!(
        &r.body["data"]["payment"], payment,
        "payment object in both places"
    );
    assert_eq!(payment["requirements"]["scheme"], "mock");
    assert_eq!(payment["requirements"]["amount_cents"], 100);
    let relay_id = payment["relay_request_id"].as_str().unwrap().to_owned();
    assert_eq!(
        payment["retry_headers"]["X-Crochet-Relay-Request-Id"],
        relay_id.as_str()
    );
    assert_eq!(r.next_action(), "complete_gateway_payment");
    assert_eq!(
        r.body["error"]["recovery"]["preserve"],
        json!([
            "listing_id",
            "request_body",
            "idempotency_key",
            "relay_request_id"
        ])
    );
    assert!(
        p.seller.requests().is_empty(),
        "nothing forwarded before payment"
    );

    settle(&app, &buyer, &r, "settled").await;
    let ok = retry(&app, &buyer, &p.id, &body, &relay_id)
        .await
        .expect(200);
    let d = ok.data();
    assert_eq!(d["billable"], true);
    assert_eq!(
        d["payment"],
        json!({"status": "verified", "relay_request_id": relay_id})
    );
    assert_eq!(
        d["charged_amount"],
        json!({"amount_cents": 100, "currency": "USD"})
    );
    assert_eq!(
        d["fees"],
        json!({"fee_rate": 0.049, "fee_amount_cents": 5, "seller_receives_cents": 95})
    );
    assert_eq!(p.seller.requests().len(), 1);

    let buyer_ledger = app.get("/ledger", buyer.key()).await.expect(200);
    assert_eq!(buyer_ledger.body["pagination"]["total"], 1);
    assert_eq!(buyer_ledger.data()[0]["entry_type"], "gateway_debit");
    assert_eq!(buyer_ledger.data()[0]["amount_cents"], -100);
    let seller_ledger = app
        .get("/ledger?type=seller_credit", p.agent.key())
        .await
        .expect(200);
    assert_eq!(seller_ledger.data()[0]["amount_cents"], 95);
    // The three entries balance.
    let sum: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM ledger_entries WHERE relay_request_id = $1",
    )
    .bind(&relay_id)
    .fetch_one(app.state().db.pool())
    .await
    .unwrap();
    assert_eq!(sum, 0);
    let fee: i64 = sqlx::query_scalar("SELECT amount_cents FROM ledger_entries WHERE relay_request_id = $1 AND entry_type = 'marketplace_fee'")
        .bind(&relay_id)
        .fetch_one(app.state().db.pool())
        .await
        .unwrap();
    assert_eq!(fee, 5);

    // The payment is spent: a later retry points at the recorded request.
    let again = retry(&app, &buyer, &p.id, &body, &relay_id).await;
    let again = again.expect_error(409, "PAYMENT_ALREADY_USED");
    assert_eq!(
        again.body["error"]["details"]["gateway_request_id"],
        d["request_id"]
    );
    app.get("/ledger?type=bogus", buyer.key())
        .await
        .expect_error(400, "INVALID_QUERY");
}

async fn pending_then_failed_payment(app: TestApp) {
    let p = listing(&app, Some(0.50), "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let body = json!({"task": "x"});
    let r = call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let relay_id = settle(&app, &buyer, &r, "pending").await;
    let pending = retry(&app, &buyer, &p.id, &body, &relay_id)
        .await
        .expect(202);
    assert_eq!(pending.data()["status"], "pending");
    assert_eq!(pending.data()["retryable"], true);
    assert!(pending.data()["retry_after_seconds"].as_u64().unwrap() > 0);
    assert_eq!(pending.data()["next_action"], "retry_gateway_payment_later");
    settle(&app, &buyer, &r, "failed").await;
    let failed = retry(&app, &buyer, &p.id, &body, &relay_id).await;
    let failed = failed.expect_error(402, "PAYMENT_FAILED");
    assert_eq!(failed.next_action(), "choose_supported_payment_route");
    assert!(p.seller.requests().is_empty());
    assert_eq!(
        app.get("/ledger", buyer.key()).await.body["pagination"]["total"],
        0
    );
}

async fn route_minimum_never_calls_the_seller(app: TestApp) {
    let p = listing(&app, Some(0.05), "/ok").await;
    let buyer = app.register(Wallet::evm()).await;
    let body = json!({"task": "cheap"});
    for headers in [vec![], vec![("X-Crochet-Origin-Currency", "USDC")]] {
        let r = call(&app, &buyer, &p.id, &body, &headers)
            .await
            .expect_error(400, "PAYMENT_ROUTE_MINIMUM_NOT_MET");
        let e = &r.body["error"];
        assert_eq!(
            e["message"],
            "This payment route cannot support the listing's low per-call price."
        );
        assert_eq!(e["details"]["seller_endpoint_called"], false);
        assert_eq!(e["details"]["recommended_origin_currency"], "SOL");
        assert_eq!(
            e["details"]["recommended_gateway_headers"],
            json!({"X-Crochet-Origin-Currency": "SOL"})
        );
        assert_eq!(
            e["recovery"]["next_action"],
            "retry_with_solana_payment_route"
        );
        assert_eq!(e["recovery"]["discard"], json!(["idempotency_key"]));
        assert_eq!(e["recovery"]["retry_same_route"], false);
        assert_eq!(e["recovery"]["use_new_idempotency_key"], true);
    }
    // The recommended route works.
    call(
        &app,
        &buyer,
        &p.id,
        &body,
        &[
            ("X-Crochet-Origin-Currency", "SOL"),
            ("Idempotency-Key", "k2"),
        ],
    )
    .await
    .expect_error(402, "PAYMENT_REQUIRED");
    assert!(p.seller.requests().is_empty(), "seller never called");
    call(
        &app,
        &buyer,
        &p.id,
        &body,
        &[("X-Crochet-Origin-Currency", "BTC")],
    )
    .await
    .expect_error(400, "INVALID_PAYMENT_ROUTE");
    call(
        &app,
        &buyer,
        &p.id,
        &body,
        &[("X-Crochet-Origin-Wallet-Id", "nope")],
    )
    .await
    .expect_error(400, "INVALID_PAYMENT_ROUTE");
}

async fn relay_id_is_bound_to_buyer_listing_and_body(app: TestApp) {
    let p = listing(&app, Some(0.25), "/ok").await;
    let other_listing = listing(&app, Some(0.25), "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let thief = app.register(Wallet::solana()).await;
    let body = json!({"task": "original"});
    let r = call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let relay_id = settle(&app, &buyer, &r, "settled").await;
    let h = [("X-Crochet-Relay-Request-Id", relay_id.as_str())];
    call(&app, &buyer, &p.id, &json!({"task": "different"}), &h)
        .await
        .expect_error(409, "PAYMENT_BODY_MISMATCH");
    call(&app, &thief, &p.id, &body, &h)
        .await
        .expect_error(404, "PAYMENT_REQUEST_NOT_FOUND");
    call(&app, &buyer, &other_listing.id, &body, &h)
        .await
        .expect_error(404, "PAYMENT_REQUEST_NOT_FOUND");
    call(
        &app,
        &buyer,
        &p.id,
        &body,
        &[("X-Crochet-Relay-Request-Id", "mock_unknown")],
    )
    .await
    .expect_error(404, "PAYMENT_REQUEST_NOT_FOUND");
    // The refusals spent nothing: the right body still goes through, once.
    call(&app, &buyer, &p.id, &body, &h).await.expect(200);
    assert_eq!(p.seller.requests().len(), 1);
    assert!(other_listing.seller.requests().is_empty());
}

async fn idempotency_key_returns_the_same_requirement(app: TestApp) {
    let p = listing(&app, Some(0.25), "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let body = json!({"task": "same"});
    let h = [("Idempotency-Key", "client-key-1")];
    let a = call(&app, &buyer, &p.id, &body, &h)
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let b = call(&app, &buyer, &p.id, &body, &h)
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let id = |r: &Reply| r.body["error"]["details"]["payment"]["relay_request_id"].clone();
    assert_eq!(id(&a), id(&b), "a repeat returns the same relay request id");
    let c = call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    assert_ne!(
        id(&a),
        id(&c),
        "without the key a new requirement is issued"
    );
    call(&app, &buyer, &p.id, &json!({"task": "other"}), &h)
        .await
        .expect_error(409, "IDEMPOTENCY_KEY_REUSED");
    // Another buyer's keys are their own.
    let other = app.register(Wallet::solana()).await;
    let d = call(&app, &other, &p.id, &body, &h)
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    assert_ne!(id(&a), id(&d));
}

async fn seller_failure_after_settlement_is_refunded_to_the_balance(app: TestApp) {
    let buyer = app.register(Wallet::solana()).await;
    for (path, code) in [
        ("/fail", "SELLER_ERROR_RESPONSE"),
        ("/text", "SELLER_INVALID_RESPONSE"),
        ("/slow", "SELLER_TIMEOUT"),
    ] {
        let p = listing(&app, Some(1.00), path).await;
        if path == "/slow" {
            let ep = format!("/listings/{}/endpoint", p.id);
            app.send(
                reqwest::Method::PUT,
                &ep,
                p.agent.key(),
                Some(&json!({"timeout_ms": 200})),
            )
            .await
            .expect(200);
        }
        let body = json!({"task": path});
        let (relay_id, failed) = pay_and_call(&app, &buyer, &p.id, &body).await;
        let failed = failed.expect_error(502, code);
        let details = &failed.body["error"]["details"];
        assert_eq!(details["relay_request_id"], relay_id.as_str());
        assert_eq!(details["charged_amount"]["amount_cents"], 100);
        assert_eq!(details["payment_settled"], true);
        assert!(
            details["request_id"]
                .as_str()
                .unwrap()
                .starts_with("gw_req_")
        );
        assert_eq!(details["refunded"], true);
        assert_eq!(
            details["refund"],
            json!({"amount_cents": 100, "currency": "USD", "to": "balance"})
        );
        assert!(
            failed.body["error"]["recovery"]["summary"]
                .as_str()
                .unwrap()
                .contains("Do not pay again")
        );
        assert!(
            failed.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("the seller failed after payment")
        );
        let entries = ledger_entries_for(&app, &relay_id).await;
        assert_eq!(
            entries, 6,
            "{path}: the settled money is accounted, then reversed"
        );
    }
    // Each failed charge went back to the buyer's balance.
    let balance = app.get("/balance", buyer.key()).await.expect(200);
    assert_eq!(balance.data()["available_cents"], 300);
    // The same failure on a free listing speaks of no payment.
    let free = listing(&app, None, "/slow").await;
    app.send(
        reqwest::Method::PUT,
        &format!("/listings/{}/endpoint", free.id),
        free.agent.key(),
        Some(&json!({"timeout_ms": 200})),
    )
    .await
    .expect(200);
    let failed = call(&app, &buyer, &free.id, &json!({"task": "free"}), &[])
        .await
        .expect_error(502, "SELLER_TIMEOUT");
    let error = &failed.body["error"];
    assert_eq!(error["details"]["payment_settled"], false);
    assert!(
        !error["message"].as_str().unwrap().contains("payment"),
        "{error}"
    );
    assert_eq!(error["recovery"]["retryable"], true);
    assert_eq!(
        error["recovery"]["next_action"],
        "retry_gateway_request_later"
    );
    let h = app
        .get("/gateway-requests?status=seller_timeout", buyer.key())
        .await
        .expect(200);
    assert_eq!(h.body["pagination"]["total"], 2);
    assert_eq!(h.data()[0]["error_code"], "SELLER_TIMEOUT");
}

async fn concurrent_retries_of_one_payment_forward_once(app: TestApp) {
    let p = listing(&app, Some(1.00), "/ok").await;
    let buyer = std::sync::Arc::new(app.register(Wallet::solana()).await);
    let body = json!({"task": "race"});
    let r = call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let relay_id = settle(&app, &buyer, &r, "settled").await;
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (client, buyer, id, relay, body) = (
                app.client.clone(),
                buyer.clone(),
                p.id.clone(),
                relay_id.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                let resp = client
                    .http
                    .post(client.url(&format!("/gateway/{id}")))
                    .bearer_auth(&buyer.api_key)
                    .header("X-Crochet-Relay-Request-Id", relay)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let v: Value = resp.json().await.unwrap();
                (status, v)
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let (status, v) = t.await.unwrap();
        match status {
            200 => ok += 1,
            // Used while being forwarded, or after: never forwarded a second time.
            409 => assert!(
                ["PAYMENT_ALREADY_USED", "GATEWAY_REQUEST_IN_PROGRESS"]
                    .contains(&v["error"]["code"].as_str().unwrap_or("")),
                "{v}"
            ),
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(ok, 1, "exactly one forward");
    assert_eq!(p.seller.requests().len(), 1, "the seller was called once");
    let entries = ledger_entries_for(&app, &relay_id).await;
    assert_eq!(entries, 3, "one set of ledger entries");
}

async fn refusals_before_payment(app: TestApp) {
    let p = listing(&app, Some(0.25), "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let body = json!({"task": "x"});
    // Not JSON.
    let resp = app
        .http
        .post(app.url(&format!("/gateway/{}", p.id)))
        .bearer_auth(&buyer.api_key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "INVALID_JSON"
    );
    app.post(&format!("/gateway/{}", p.id), None, body.clone())
        .await
        .expect_error(401, "AUTH_REQUIRED");
    call(&app, &buyer, "no-such-listing", &body, &[])
        .await
        .expect_error(404, "LISTING_NOT_FOUND");
    // A paused endpoint is refused before any payment requirement exists.
    let ep = format!("/listings/{}/endpoint", p.id);
    app.send(
        reqwest::Method::PUT,
        &ep,
        p.agent.key(),
        Some(&json!({"status": "paused"})),
    )
    .await
    .expect(200);
    let r = call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect_error(503, "SELLER_ENDPOINT_UNAVAILABLE");
    assert!(r.headers.contains_key("retry-after"));
    app.send(
        reqwest::Method::PUT,
        &ep,
        p.agent.key(),
        Some(&json!({"status": "active", "max_request_bytes": 8})),
    )
    .await
    .expect(200);
    call(
        &app,
        &buyer,
        &p.id,
        &json!({"task": "too long for eight bytes"}),
        &[],
    )
    .await
    .expect_error(413, "PAYLOAD_TOO_LARGE");
    // A suspended listing is refused.
    app.delete(&format!("/listings/{}", p.id), p.agent.key())
        .await
        .expect(200);
    call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect_error(409, "LISTING_NOT_ACTIVE");
    let payments: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gateway_payments")
        .fetch_one(app.state().db.pool())
        .await
        .unwrap();
    assert_eq!(payments, 0, "no requirement was issued for refused calls");
}

async fn ledger_is_append_only(app: TestApp) {
    let p = listing(&app, Some(1.00), "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let body = json!({"task": "x"});
    pay_and_call(&app, &buyer, &p.id, &body).await.1.expect(200);
    let pool = app.state().db.pool();
    assert!(
        sqlx::query("UPDATE ledger_entries SET amount_cents = 0")
            .execute(pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM ledger_entries")
            .execute(pool)
            .await
            .is_err()
    );
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(n, 3);
}

async fn billable_calls_get_verifiable_receipts(app: TestApp) {
    use base64::Engine as _;
    let p = listing(&app, Some(1.00), "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let stranger = app.register(Wallet::evm()).await;
    let body = json!({"task": "receipt"});
    let (relay_id, done) = pay_and_call(&app, &buyer, &p.id, &body).await;
    let done = done.expect(200);

    let list = app.get("/receipts", buyer.key()).await.expect(200);
    assert_eq!(list.body["pagination"]["total"], 1);
    let receipt = list.data()[0].clone();
    let c = &receipt["content"];
    assert_eq!(c["type"], "crochet.receipt.v1");
    assert_eq!(c["gateway_request_id"], done.data()["request_id"]);
    assert_eq!(c["relay_request_id"], relay_id.as_str());
    assert_eq!(
        (
            c["charged_amount_cents"].clone(),
            c["fee_amount_cents"].clone(),
            c["seller_receives_cents"].clone()
        ),
        (json!(100), json!(5), json!(95))
    );
    assert_eq!(c["buyer_id"], buyer.profile_id.as_str());
    assert_eq!(c["issuer"], app.base.as_str());
    let id = receipt["id"].as_str().unwrap();
    app.get(&format!("/receipts/{id}"), p.agent.key())
        .await
        .expect(200);
    app.get(&format!("/receipts/{id}"), stranger.key())
        .await
        .expect_error(404, "RECEIPT_NOT_FOUND");

    // Offline verification with the published key.
    let keys: Value = app
        .http
        .get(format!("{}/.well-known/crochet-receipt-keys", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &keys["data"][0];
    assert_eq!(key["status"], "current");
    assert_eq!(key["key_id"], receipt["key_id"]);
    let public: [u8; 32] = hex::decode(key["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let public = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(receipt["signature"].as_str().unwrap())
        .unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
    let payload = receipt["payload"].as_str().unwrap();
    assert!(public.verify_strict(payload.as_bytes(), &sig).is_ok());
    let forged = payload.replace("\"charged_amount_cents\":100", "\"charged_amount_cents\":1");
    assert_ne!(forged, payload);
    assert!(
        public.verify_strict(forged.as_bytes(), &sig).is_err(),
        "a changed receipt does not verify"
    );

    // Free calls are not billable and get no receipt.
    let free = listing(&app, None, "/ok").await;
    call(&app, &buyer, &free.id, &body, &[]).await.expect(200);
    assert_eq!(
        app.get("/receipts", buyer.key()).await.body["pagination"]["total"],
        1
    );
}

async fn batched_history_rows_are_never_lost(app: TestApp) {
    let p = listing(&app, None, "/ok").await;
    let buyer = std::sync::Arc::new(app.register(Wallet::solana()).await);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let (client, buyer, id) = (app.client.clone(), buyer.clone(), p.id.clone());
            tokio::spawn(async move {
                let r = client
                    .http
                    .post(client.url(&format!("/gateway/{id}")))
                    .bearer_auth(&buyer.api_key)
                    .json(&json!({"n": i}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Shutdown commits what is still queued; counted straight from the table.
    let app = app.restart(|_| {}).await;
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM gateway_requests WHERE status = 'completed'")
            .fetch_one(app.state().db.pool())
            .await
            .unwrap();
    assert_eq!(rows, 100);
    assert_eq!(p.seller.requests().len(), 100);
}

/// Writes `n` finished calls into the store, one second apart (newest last), as
/// `buyer` of `seller`, with ids `{tag}-{i}` and ledger debits of the buyer beside them.
async fn seed_calls(app: &TestApp, tag: &str, buyer: &str, seller: &str, n: i64, start: i64) {
    // The numbers 1..=n as rows `s(i)`, n being the statement's parameter `count`.
    let series = |count: &str| match app.backend {
        crate::common::Backend::Postgres => format!("generate_series(1, {count}) AS s(i)"),
        crate::common::Backend::Sqlite => format!(
            "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {count}) \
             SELECT i FROM s) AS s"
        ),
    };
    let pool = app.state().db.pool();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO gateway_requests (id, buyer_id, seller_id, listing_id, status, billable, \
         charged_cents, fee_cents, seller_cents, currency, request_bytes, request_sha256, created_at, updated_at) \
         SELECT $1 || '-' || CAST(s.i AS TEXT), $2, $3, 'listing', \
         CASE WHEN s.i % 10 = 0 THEN 'seller_error' ELSE 'completed' END, 0, 0, 0, 0, 'USD', 0, '', \
         $5 + s.i * 1000, $5 + s.i * 1000 FROM {}",
        series("$4")
    )))
    .bind(tag)
    .bind(buyer)
    .bind(seller)
    .bind(n)
    .bind(start)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO ledger_entries (id, gateway_request_id, profile_id, entry_type, amount_cents, \
         currency, created_at) \
         SELECT $1 || '-' || CAST(s.i AS TEXT), NULL, $2, 'adjustment', 1, 'USD', $4 + s.i * 1000 \
         FROM {}",
        series("$3")
    )))
    .bind(tag)
    .bind(buyer)
    .bind(n)
    .bind(start)
    .execute(pool)
    .await
    .unwrap();
}

/// An agent with more history than a total counts (1,000): pages still come in order to the
/// last one, from both sides of the agent's calls, and the total says it is a floor.
async fn long_histories_page_in_order_and_cap_their_totals(app: TestApp) {
    let agent = app.register(Wallet::solana()).await;
    let other = app.register(Wallet::evm()).await;
    let me = agent.profile_id.as_str();
    // 10,040 calls as buyer (odd seconds) and 20 as seller (even seconds, the newest).
    seed_calls(
        &app,
        "bought",
        me,
        &other.profile_id,
        10_040,
        1_000_000_000_000,
    )
    .await;
    seed_calls(
        &app,
        "sold",
        &other.profile_id,
        me,
        20,
        1_000_000_000_000 + 10_040_000,
    )
    .await;

    let r = app
        .get("/gateway-requests?limit=100", agent.key())
        .await
        .expect(200);
    assert_eq!(
        r.body["pagination"],
        json!({"page": 1, "limit": 100, "total": 1_000, "total_exact": false})
    );
    let ids = |r: &Reply| -> Vec<String> {
        r.data()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = ids(&r);
    assert_eq!(first[0], "sold-20", "newest first, whichever side");
    assert_eq!(first[19], "sold-1");
    assert_eq!(first[20], "bought-10040");

    // The last page, past the counted total: the oldest calls, in order.
    let r = app
        .get("/gateway-requests?limit=100&page=101", agent.key())
        .await
        .expect(200);
    let last = ids(&r);
    assert_eq!(last.len(), 60);
    assert_eq!(last.first().unwrap(), "bought-60");
    assert_eq!(last.last().unwrap(), "bought-1");
    assert!(
        app.get("/gateway-requests?limit=100&page=102", agent.key())
            .await
            .expect(200)
            .data()
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Filters narrow both the rows and the count; a small count is exact.
    let r = app
        .get(
            "/gateway-requests?role=buyer&status=seller_error&limit=3",
            agent.key(),
        )
        .await
        .expect(200);
    assert_eq!(
        r.body["pagination"],
        json!({"page": 1, "limit": 3, "total": 1_000, "total_exact": false})
    );
    assert_eq!(
        ids(&r),
        vec!["bought-10040", "bought-10030", "bought-10020"]
    );
    // Completed calls, which the index of the other outcomes leaves out.
    let r = app
        .get(
            "/gateway-requests?role=all&status=completed&limit=3&page=2",
            agent.key(),
        )
        .await
        .expect(200);
    assert_eq!(ids(&r), vec!["sold-16", "sold-15", "sold-14"]);
    let r = app
        .get("/gateway-requests?status=seller_error&limit=2", agent.key())
        .await
        .expect(200);
    assert_eq!(ids(&r), vec!["sold-20", "sold-10"]);
    let r = app
        .get("/gateway-requests?role=seller&limit=5&page=4", agent.key())
        .await
        .expect(200);
    assert_eq!(r.body["pagination"]["total"], 20);
    assert_eq!(
        ids(&r),
        vec!["sold-5", "sold-4", "sold-3", "sold-2", "sold-1"]
    );
    let from = 1_000_000_000_000i64 + 10_000 * 1000;
    let r = app
        .get(
            &format!("/gateway-requests?role=buyer&from={from}"),
            agent.key(),
        )
        .await
        .expect(200);
    assert_eq!(
        r.body["pagination"],
        json!({"page": 1, "limit": 20, "total": 41, "total_exact": true}),
        "calls 10000 to 10040"
    );

    // The ledger pages the same way.
    let r = app
        .get("/ledger?limit=100&page=101", agent.key())
        .await
        .expect(200);
    assert_eq!(r.body["pagination"]["total_exact"], false);
    let entries = ids(&r);
    assert_eq!(entries.len(), 40);
    assert_eq!(entries.last().unwrap(), "bought-1");
    let r = app
        .get("/ledger?type=gateway_debit", agent.key())
        .await
        .expect(200);
    assert_eq!(
        r.body["pagination"],
        json!({"page": 1, "limit": 20, "total": 0, "total_exact": true})
    );
}

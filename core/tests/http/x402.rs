//! x402 through the real host, on both backends, against a local facilitator that
//! verifies real EIP-3009 signatures made with real keys: the offer in the 402, a paid
//! call settled only after the seller answered well, every refusal before the seller
//! is called, racing retries, a failing seller or settlement, keyless buyers, a
//! facilitator that is down or loses an answer, and the discovery feed.

use std::time::Duration;

use crochet::config::Config;
use crochet_payment_x402::{PaymentPayload, SettleResponse, decode_header, encode_header};
use serde_json::{Value, json};

use crate::common::*;
use crate::on_both_backends;

on_both_backends!(
    mod x402_on, configure = crate::common::with_x402;
    the_402_carries_an_x402_offer,
    a_paid_call_is_settled_after_the_seller_answered,
    refused_payments_never_reach_the_seller,
    racing_retries_of_one_payment_forward_once,
    a_failing_seller_settles_nothing,
    a_refused_settlement_withholds_the_answer,
    keyless_buyers_are_told_by_their_wallet,
    a_keyed_buyer_pays_from_its_own_wallets,
    one_idempotency_key_one_outcome,
    the_discovery_feed_lists_paid_listings,
);

on_both_backends!(
    mod x402_down, configure = crate::common::with_x402_down;
    a_facilitator_that_is_down_charges_nothing,
);

on_both_backends!(
    mod x402_janitor, configure = crate::x402::quick_janitor;
    a_lost_settlement_answer_is_settled_by_the_janitor,
    a_lost_settlement_refused_later_is_left_unconfirmed,
);

on_both_backends!(mod x402_off, configure = crate::x402::no_x402; without_x402_nothing_changes,);

pub fn quick_janitor(config: &mut Config) {
    with_x402(config);
    config.gateway.lease_grace_seconds = 1;
    config.gateway.interrupted_after_seconds = 2;
}

pub fn no_x402(_: &mut Config) {}

const BODY: &str = r#"{"input": "route this"}"#;

fn body() -> Value {
    serde_json::from_str(BODY).unwrap()
}

/// A buyer registered with an EVM wallet (its payer wallet).
async fn evm_buyer(app: &TestApp) -> Agent {
    app.register(Wallet::evm()).await
}

/// The 402 of a keyed call, and the offer it carries for Base.
async fn offer(
    app: &TestApp,
    buyer: &Agent,
    listing: &str,
) -> (Reply, crochet_payment_x402::PaymentRequirements) {
    let r = gateway_call(app, buyer, listing, &body(), &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let required = payment_required(&r);
    let base = required
        .accepts
        .iter()
        .find(|a| a.network == "eip155:8453")
        .cloned()
        .expect("an offer on Base");
    (r, base)
}

/// The ledger entries of one gateway request: how many, and their sum.
async fn entries(app: &TestApp, gateway_request_id: &str) -> (i64, i64) {
    let pool = app.state().db.pool();
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries WHERE gateway_request_id = $1")
            .bind(gateway_request_id)
            .fetch_one(pool)
            .await
            .unwrap();
    let sum: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(amount_cents) AS BIGINT) FROM ledger_entries WHERE gateway_request_id = $1",
    )
    .bind(gateway_request_id)
    .fetch_one(pool)
    .await
    .unwrap();
    (n, sum.unwrap_or(0))
}

async fn history_status(app: &TestApp, who: &Agent, gateway_request_id: &str) -> Option<Value> {
    let r = app
        .get("/gateway-requests?limit=100", who.key())
        .await
        .expect(200);
    r.data()
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["id"] == gateway_request_id)
        .cloned()
}

async fn the_402_carries_an_x402_offer(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/ok").await;
    let buyer = evm_buyer(&app).await;
    let (r, base) = offer(&app, &buyer, &listing.id).await;
    let required = payment_required(&r);
    assert_eq!(required.x402_version, 2);
    assert!(
        required
            .resource
            .url
            .ends_with(&format!("/api/v1/gateway/{}", listing.id)),
        "{}",
        required.resource.url
    );
    assert_eq!(
        required.resource.mime_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(base.scheme, "exact");
    assert_eq!(base.asset, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
    // 25 cents in USDC's six decimals, exactly.
    assert_eq!(base.amount, "250000");
    assert_eq!(base.pay_to, TREASURY);
    assert_eq!(base.max_timeout_seconds, 300);
    assert_eq!(base.extra.as_ref().unwrap()["name"], "USD Coin");
    assert_eq!(base.extra.as_ref().unwrap()["version"], "2");
    // The body's payment object names both flows and carries the same offer.
    let payment = &r.body["error"]["details"]["payment"];
    assert_eq!(payment["flows"], json!(["mock", "x402"]));
    assert_eq!(payment["x402"]["accepts"][0]["amount"], "250000");
    assert!(payment["relay_request_id"].is_string());
    // The raw header is standard base64 of the JSON.
    let raw = r.headers["payment-required"].to_str().unwrap();
    let decoded: Value = decode_header(raw).unwrap();
    assert_eq!(decoded["accepts"][0]["payTo"], TREASURY);
}

async fn a_paid_call_is_settled_after_the_seller_answered(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/ok").await;
    let buyer = evm_buyer(&app).await;
    let (_, base) = offer(&app, &buyer, &listing.id).await;
    let payment = sign_payment(&buyer.wallet, &base, 300);
    let r = gateway_call(
        &app,
        &buyer,
        &listing.id,
        &body(),
        &[("PAYMENT-SIGNATURE", &payment)],
    )
    .await
    .expect(200);
    let data = r.data();
    assert_eq!(data["billable"], true);
    assert_eq!(data["payment"]["status"], "settled");
    assert_eq!(data["payment"]["flow"], "x402");
    assert_eq!(data["payment"]["payer"], buyer.wallet.address());
    assert_eq!(data["charged_amount"]["amount_cents"], 25);
    assert_eq!(data["fees"]["fee_amount_cents"], 1);
    assert_eq!(data["seller_response"]["echo"], body());
    let settled: SettleResponse =
        decode_header(r.headers["payment-response"].to_str().unwrap()).unwrap();
    assert!(settled.success);
    assert_eq!(settled.network, "eip155:8453");
    assert_eq!(
        settled.payer.as_deref(),
        Some(buyer.wallet.address().as_str())
    );
    assert!(settled.transaction.starts_with("0x"));
    assert_eq!(data["payment"]["transaction"], settled.transaction);

    let seen = listing.seller.requests();
    assert_eq!(seen.len(), 1, "forwarded once");
    assert!(seen[0].signature_valid);
    assert_eq!(facilitator().settles(&buyer.wallet.address()), 1);

    let request_id = data["request_id"].as_str().unwrap();
    assert_eq!(
        entries(&app, request_id).await,
        (3, 0),
        "three entries that balance"
    );
    let row = history_status(&app, &buyer, request_id).await.unwrap();
    assert_eq!(row["status"], "completed");
    assert_eq!(row["billable"], true);
    let receipts = app.get("/receipts", buyer.key()).await.expect(200);
    assert_eq!(
        receipts.data().as_array().unwrap().len(),
        1,
        "{}",
        receipts.body
    );
    // The seller's ledger shows its credit.
    let ledger = app.get("/ledger", listing.agent.key()).await.expect(200);
    assert!(
        ledger
            .data()
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["entry_type"] == "seller_credit"),
        "{}",
        ledger.body
    );
}

async fn refused_payments_never_reach_the_seller(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/ok").await;
    let buyer = evm_buyer(&app).await;
    let (_, base) = offer(&app, &buyer, &listing.id).await;
    let refuse = async |payment: String, reason: &str| {
        let r = gateway_call(
            &app,
            &buyer,
            &listing.id,
            &body(),
            &[("PAYMENT-SIGNATURE", &payment)],
        )
        .await
        .expect_error(402, "PAYMENT_INVALID");
        assert_eq!(r.body["error"]["details"]["reason"], reason, "{}", r.body);
        assert_eq!(r.next_action(), "sign_new_x402_payment");
        assert!(
            r.headers.contains_key("payment-required"),
            "a new offer comes with it"
        );
    };
    let mut cheaper = base.clone();
    cheaper.amount = "240000".into();
    refuse(
        sign_payment(&buyer.wallet, &cheaper, 300),
        "invalid_exact_evm_payload_amount_mismatch",
    )
    .await;
    let mut elsewhere = base.clone();
    elsewhere.pay_to = "0x000000000000000000000000000000000000dead".into();
    refuse(
        sign_payment(&buyer.wallet, &elsewhere, 300),
        "invalid_exact_evm_payload_recipient_mismatch",
    )
    .await;
    let mut testnet = base.clone();
    testnet.network = "eip155:84532".into();
    refuse(
        sign_payment(&buyer.wallet, &testnet, 300),
        "invalid_network",
    )
    .await;
    // Valid for 10 s: it would expire before the seller's answer could be settled.
    refuse(
        sign_payment(&buyer.wallet, &base, 10),
        "invalid_exact_evm_payload_authorization_valid_before",
    )
    .await;
    // Signed by another key, claiming to come from the buyer's wallet.
    let forged = sign_payment(&Wallet::evm(), &base, 300);
    let mut payload: PaymentPayload = decode_header(&forged).unwrap();
    payload.payload["authorization"]["from"] = json!(buyer.wallet.address());
    refuse(
        encode_header(&payload),
        "invalid_exact_evm_payload_signature",
    )
    .await;
    refuse("not base64 at all!".into(), "invalid_payload").await;
    assert_eq!(
        facilitator().verifies(&buyer.wallet.address()),
        0,
        "refused locally"
    );

    // Refused by the facilitator's verify.
    facilitator().behave(&buyer.wallet.address(), Behavior::VerifyRefused);
    refuse(
        sign_payment(&buyer.wallet, &base, 300),
        "insufficient_funds",
    )
    .await;
    assert_eq!(facilitator().verifies(&buyer.wallet.address()), 1);

    assert!(
        listing.seller.requests().is_empty(),
        "the seller was never called"
    );
    assert_eq!(facilitator().settles(&buyer.wallet.address()), 0);
    assert_eq!(count_rows(&app, "ledger_entries").await, 0);
}

async fn racing_retries_of_one_payment_forward_once(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/ok").await;
    let buyer = evm_buyer(&app).await;
    let (_, base) = offer(&app, &buyer, &listing.id).await;
    let payment = sign_payment(&buyer.wallet, &base, 300);
    let body = body();
    let headers = [("PAYMENT-SIGNATURE", payment.as_str())];
    let calls = (0..32).map(|_| gateway_call(&app, &buyer, &listing.id, &body, &headers));
    let replies = futures_util::future::join_all(calls).await;
    let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(ok.len(), 1, "exactly one retry forwards");
    let request_id = ok[0].data()["request_id"].as_str().unwrap();
    for r in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(r.status, 409, "{}", r.body);
        assert_eq!(r.code(), "PAYMENT_ALREADY_USED");
        assert_eq!(r.body["error"]["details"]["gateway_request_id"], request_id);
    }
    assert_eq!(listing.seller.requests().len(), 1);
    assert_eq!(facilitator().settles(&buyer.wallet.address()), 1);
    assert_eq!(entries(&app, request_id).await, (3, 0));
    assert_eq!(count_rows(&app, "ledger_entries").await, 3);
}

async fn a_failing_seller_settles_nothing(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/fail").await;
    let buyer = evm_buyer(&app).await;
    let (_, base) = offer(&app, &buyer, &listing.id).await;
    let payment = sign_payment(&buyer.wallet, &base, 300);
    let r = gateway_call(
        &app,
        &buyer,
        &listing.id,
        &body(),
        &[("PAYMENT-SIGNATURE", &payment)],
    )
    .await
    .expect_error(502, "SELLER_ERROR_RESPONSE");
    let details = &r.body["error"]["details"];
    assert_eq!(details["payment_settled"], false);
    assert_eq!(details["charged_amount"]["amount_cents"], 0);
    assert_eq!(listing.seller.requests().len(), 1);
    assert_eq!(
        facilitator().settles(&buyer.wallet.address()),
        0,
        "nothing settled"
    );
    assert_eq!(count_rows(&app, "ledger_entries").await, 0);
    let request_id = details["request_id"].as_str().unwrap();
    let row = history_status(&app, &buyer, request_id).await.unwrap();
    assert_eq!(row["status"], "seller_error");
    assert_eq!(row["billable"], false);
}

async fn a_refused_settlement_withholds_the_answer(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/ok").await;
    let buyer = evm_buyer(&app).await;
    facilitator().behave(&buyer.wallet.address(), Behavior::SettleRefused);
    let (_, base) = offer(&app, &buyer, &listing.id).await;
    let payment = sign_payment(&buyer.wallet, &base, 300);
    let r = gateway_call(
        &app,
        &buyer,
        &listing.id,
        &body(),
        &[("PAYMENT-SIGNATURE", &payment)],
    )
    .await
    .expect_error(402, "PAYMENT_SETTLEMENT_FAILED");
    assert_eq!(r.body["error"]["details"]["seller_response_withheld"], true);
    assert!(r.body["data"].is_null() || r.body["data"].get("seller_response").is_none());
    assert!(
        !r.body.to_string().contains("route this"),
        "no trace of the seller's answer"
    );
    let settled: SettleResponse =
        decode_header(r.headers["payment-response"].to_str().unwrap()).unwrap();
    assert!(!settled.success);
    assert_eq!(settled.error_reason.as_deref(), Some("insufficient_funds"));
    assert_eq!(listing.seller.requests().len(), 1);
    assert_eq!(count_rows(&app, "ledger_entries").await, 0);
    let request_id = r.body["error"]["details"]["gateway_request_id"]
        .as_str()
        .unwrap();
    let row = history_status(&app, &buyer, request_id).await.unwrap();
    assert_eq!(row["status"], "served_unpaid");
    assert_eq!(row["error_code"], "PAYMENT_SETTLEMENT_FAILED");
}

async fn keyless_buyers_are_told_by_their_wallet(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/ok").await;
    // A stock x402 client: no API key. The first call gets the offer only.
    let r = x402_call(&app, &listing.id, &body(), None)
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let payment = &r.body["error"]["details"]["payment"];
    assert_eq!(payment["flows"], json!(["x402"]));
    assert!(payment.get("relay_request_id").is_none());
    let offer = payment_required(&r).accepts[0].clone();

    // A wallet nobody registered buys as its own wallet-only buyer.
    let wallet = Wallet::evm();
    let first = x402_call(
        &app,
        &listing.id,
        &body(),
        Some(&sign_payment(&wallet, &offer, 300)),
    )
    .await
    .expect(200);
    assert!(first.headers.contains_key("payment-response"));
    let second = x402_call(
        &app,
        &listing.id,
        &body(),
        Some(&sign_payment(&wallet, &offer, 300)),
    )
    .await
    .expect(200);
    let buyer_of = async |reply: &Reply| -> String {
        let id = reply.data()["request_id"].as_str().unwrap().to_owned();
        sqlx::query_scalar("SELECT buyer_id FROM gateway_requests WHERE id = $1")
            .bind(id)
            .fetch_one(app.state().db.pool())
            .await
            .unwrap()
    };
    let wallet_buyer = buyer_of(&first).await;
    assert_eq!(
        wallet_buyer,
        buyer_of(&second).await,
        "one buyer per wallet"
    );
    let profile = app
        .get(&format!("/agents/{wallet_buyer}"), None)
        .await
        .expect(200);
    assert_eq!(profile.data()["role"], "buyer", "{}", profile.body);
    assert_eq!(count_rows(&app, "x402_buyers").await, 1);

    // A wallet linked to a registered agent buys as that agent.
    let agent = evm_buyer(&app).await;
    let r = x402_call(
        &app,
        &listing.id,
        &body(),
        Some(&sign_payment(&agent.wallet, &offer, 300)),
    )
    .await
    .expect(200);
    let request_id = r.data()["request_id"].as_str().unwrap();
    assert!(history_status(&app, &agent, request_id).await.is_some());
    assert_eq!(count_rows(&app, "x402_buyers").await, 1);

    // A free listing still needs an API key.
    let free = priced_listing(&app, None, "/ok").await;
    x402_call(&app, &free.id, &body(), None)
        .await
        .expect_error(401, "AUTH_REQUIRED");
    assert_eq!(listing.seller.requests().len(), 3);
}

async fn a_keyed_buyer_pays_from_its_own_wallets(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/ok").await;
    let buyer = evm_buyer(&app).await;
    let (_, base) = offer(&app, &buyer, &listing.id).await;
    let stranger = Wallet::evm();
    let r = gateway_call(
        &app,
        &buyer,
        &listing.id,
        &body(),
        &[("PAYMENT-SIGNATURE", &sign_payment(&stranger, &base, 300))],
    )
    .await
    .expect_error(403, "PAYER_WALLET_NOT_LINKED");
    assert_eq!(r.body["error"]["details"]["payer"], stranger.address());
    // Both payment headers at once are refused.
    gateway_call(
        &app,
        &buyer,
        &listing.id,
        &body(),
        &[
            (
                "PAYMENT-SIGNATURE",
                &sign_payment(&buyer.wallet, &base, 300),
            ),
            ("X-Crochet-Relay-Request-Id", "mock_req_1"),
        ],
    )
    .await
    .expect_error(400, "CONFLICTING_PAYMENTS");
    assert!(listing.seller.requests().is_empty());
}

async fn one_idempotency_key_one_outcome(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/ok").await;
    let buyer = evm_buyer(&app).await;
    let (_, base) = offer(&app, &buyer, &listing.id).await;
    let call = async |body: &Value| {
        let payment = sign_payment(&buyer.wallet, &base, 300);
        let headers = [
            ("Idempotency-Key", "order-7"),
            ("PAYMENT-SIGNATURE", payment.as_str()),
        ];
        gateway_call(&app, &buyer, &listing.id, body, &headers).await
    };
    let first = call(&body()).await.expect(200);
    // A second payment under the same key is not verified, forwarded or settled.
    let again = call(&body())
        .await
        .expect_error(409, "PAYMENT_ALREADY_USED");
    assert_eq!(
        again.body["error"]["details"]["gateway_request_id"],
        first.data()["request_id"]
    );
    // Under the same key, another body is a conflict.
    call(&json!({"other": 1}))
        .await
        .expect_error(409, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(facilitator().verifies(&buyer.wallet.address()), 1);
    assert_eq!(listing.seller.requests().len(), 1);
}

async fn the_discovery_feed_lists_paid_listings(app: TestApp) {
    let paid = priced_listing(&app, Some(0.25), "/ok").await;
    let other = priced_listing(&app, Some(1.5), "/ok").await;
    let _free = priced_listing(&app, None, "/ok").await;
    let r = app.get("/discovery/resources", None).await.expect(200);
    assert_eq!(r.body["x402Version"], 2);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "paid listings only: {}", r.body);
    // Newest first.
    assert!(items[0]["resource"].as_str().unwrap().ends_with(&other.id));
    assert_eq!(items[0]["type"], "http");
    assert_eq!(items[0]["accepts"][0]["amount"], "1500000");
    assert_eq!(items[1]["accepts"][0]["amount"], "250000");
    assert_eq!(items[1]["metadata"]["listingId"], paid.id);
    assert!(items[1]["lastUpdated"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(r.body["pagination"]["total"], 2);
    let second = app
        .get("/discovery/resources?limit=1&offset=1", None)
        .await
        .expect(200);
    let items = second.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metadata"]["listingId"], paid.id);
}

async fn a_facilitator_that_is_down_charges_nothing(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/ok").await;
    let buyer = evm_buyer(&app).await;
    let (_, base) = offer(&app, &buyer, &listing.id).await;
    let payment = sign_payment(&buyer.wallet, &base, 300);
    let r = gateway_call(
        &app,
        &buyer,
        &listing.id,
        &body(),
        &[("PAYMENT-SIGNATURE", &payment)],
    )
    .await
    .expect_error(503, "PAYMENT_PROVIDER_UNAVAILABLE");
    assert_eq!(r.next_action(), "retry_gateway_payment_later");
    assert!(listing.seller.requests().is_empty());
    assert_eq!(
        count_rows(&app, "x402_payments").await,
        0,
        "the claim is released"
    );
    assert_eq!(count_rows(&app, "ledger_entries").await, 0);
}

async fn a_lost_settlement_answer_is_settled_by_the_janitor(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/ok").await;
    let buyer = evm_buyer(&app).await;
    let payer = buyer.wallet.address();
    facilitator().behave(&payer, Behavior::SettleAnswerLost);
    let (_, base) = offer(&app, &buyer, &listing.id).await;
    let payment = sign_payment(&buyer.wallet, &base, 300);
    let r = gateway_call(
        &app,
        &buyer,
        &listing.id,
        &body(),
        &[("PAYMENT-SIGNATURE", &payment)],
    )
    .await
    .expect_error(502, "PAYMENT_SETTLEMENT_UNCONFIRMED");
    let request_id = r.body["error"]["details"]["gateway_request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        count_rows(&app, "ledger_entries").await,
        0,
        "not recorded while unknown"
    );
    // The facilitator answers again; the janitor settles the same authorization.
    facilitator().behave(&payer, Behavior::Honest);
    let settled = poll_until(
        Duration::from_secs(20),
        async || app.get("/gateway-requests?limit=100", buyer.key()).await,
        |r| {
            r.data().as_array().is_some_and(|rows| {
                rows.iter()
                    .any(|row| row["id"] == request_id.as_str() && row["status"] == "completed")
            })
        },
    )
    .await;
    assert!(
        settled
            .data()
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row["id"] == request_id.as_str()),
        "{}",
        settled.body
    );
    assert_eq!(entries(&app, &request_id).await, (3, 0));
    assert_eq!(facilitator().settles(&payer), 2, "sent twice");
    assert_eq!(listing.seller.requests().len(), 1, "forwarded once");
}

async fn a_lost_settlement_refused_later_is_left_unconfirmed(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/ok").await;
    let buyer = evm_buyer(&app).await;
    let payer = buyer.wallet.address();
    facilitator().behave(&payer, Behavior::SettleAnswerLost);
    let (_, base) = offer(&app, &buyer, &listing.id).await;
    let payment = sign_payment(&buyer.wallet, &base, 300);
    gateway_call(
        &app,
        &buyer,
        &listing.id,
        &body(),
        &[("PAYMENT-SIGNATURE", &payment)],
    )
    .await
    .expect_error(502, "PAYMENT_SETTLEMENT_UNCONFIRMED");
    // Sent again, the settlement is refused: it may have gone through the first time, so
    // nothing is recorded either way and the payment waits for the operator.
    facilitator().behave(&payer, Behavior::SettleRefused);
    let status = async || -> String {
        sqlx::query_scalar("SELECT status FROM x402_payments")
            .fetch_one(app.state().db.pool())
            .await
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while status().await == "settling" && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status().await, "unconfirmed");
    assert_eq!(count_rows(&app, "ledger_entries").await, 0);
    assert_eq!(facilitator().settles(&payer), 2);
}

async fn without_x402_nothing_changes(app: TestApp) {
    let listing = priced_listing(&app, Some(0.25), "/ok").await;
    let buyer = evm_buyer(&app).await;
    let r = gateway_call(&app, &buyer, &listing.id, &body(), &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    assert!(!r.headers.contains_key("payment-required"));
    assert_eq!(
        r.body["error"]["details"]["payment"]["flows"],
        json!(["mock"])
    );
    gateway_call(
        &app,
        &buyer,
        &listing.id,
        &body(),
        &[("PAYMENT-SIGNATURE", "e30=")],
    )
    .await
    .expect_error(400, "X402_NOT_OFFERED");
    x402_call(&app, &listing.id, &body(), None)
        .await
        .expect_error(401, "AUTH_REQUIRED");
    app.get("/discovery/resources", None)
        .await
        .expect_error(400, "X402_NOT_OFFERED");
}

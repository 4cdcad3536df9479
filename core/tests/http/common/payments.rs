//! Gateway calls and the paid flow: the 402, settling the mock payment, the retry,
//! paying from the balance and topping it up, checking that the money adds up, and
//! polling for effects that arrive asynchronously.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;

/// A gateway call with optional extra headers.
pub async fn gateway_call(
    app: &Client,
    buyer: &Agent,
    listing: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = app
        .http
        .post(app.url(&format!("/gateway/{listing}")))
        .bearer_auth(&buyer.api_key)
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap();
    Reply {
        status,
        body,
        headers,
    }
}

/// The same call again, paying with `relay_id` (`X-Crochet-Relay-Request-Id`).
pub async fn retry(
    app: &Client,
    buyer: &Agent,
    listing: &str,
    body: &Value,
    relay_id: &str,
) -> Reply {
    gateway_call(
        app,
        buyer,
        listing,
        body,
        &[("X-Crochet-Relay-Request-Id", relay_id)],
    )
    .await
}

/// The whole paid flow: 402, settle, retry with the relay request id. Returns the relay
/// request id and the retry's reply (whatever its status).
pub async fn pay_and_call(
    app: &Client,
    buyer: &Agent,
    listing: &str,
    body: &Value,
) -> (String, Reply) {
    let r = gateway_call(app, buyer, listing, body, &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let relay_id = settle(app, buyer, &r, "settled").await;
    let reply = retry(app, buyer, listing, body, &relay_id).await;
    (relay_id, reply)
}

/// Completes the mock payment of a 402 with `outcome`.
pub async fn settle(app: &Client, buyer: &Agent, reply: &Reply, outcome: &str) -> String {
    let payment = &reply.body["error"]["details"]["payment"];
    let url = payment["requirements"]["settle_url"].as_str().unwrap();
    let path = &url[app.base.len()..];
    app.post(path, buyer.key(), json!({"outcome": outcome}))
        .await
        .expect(200);
    payment["relay_request_id"].as_str().unwrap().to_owned()
}

/// Calls `call` until `done` holds for its reply or `within` has passed (for effects
/// that arrive asynchronously: another instance's invalidation, a background task);
/// returns the last reply, for the caller to assert on.
pub async fn poll_until(
    within: Duration,
    mut call: impl AsyncFnMut() -> Reply,
    done: impl Fn(&Reply) -> bool,
) -> Reply {
    let deadline = std::time::Instant::now() + within;
    loop {
        let reply = call().await;
        if done(&reply) || std::time::Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks the money after a test: the ledger sums to zero per call and overall, no
/// balance is negative, and each balance equals the sum of its movements.
pub async fn money_adds_up(app: &TestApp) {
    let pool = app.state().db.pool();
    let total: Option<i64> =
        sqlx::query_scalar("SELECT CAST(SUM(amount_cents) AS BIGINT) FROM ledger_entries")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(total.unwrap_or(0), 0, "the ledger sums to zero");
    let unbalanced: Vec<(Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT gateway_request_id, CAST(SUM(amount_cents) AS BIGINT) FROM ledger_entries \
         WHERE gateway_request_id IS NOT NULL GROUP BY gateway_request_id \
         HAVING SUM(amount_cents) <> 0",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        unbalanced.is_empty(),
        "calls that do not sum to zero: {unbalanced:?}"
    );
    let mismatched: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT b.profile_id, b.amount_cents, \
         (SELECT CAST(SUM(e.amount_cents) AS BIGINT) FROM ledger_entries e WHERE e.profile_id = b.profile_id \
          AND e.currency = b.currency AND e.entry_type IN ('gateway_refund', 'balance_debit', 'deposit')) \
         FROM balances b",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (profile, balance, movements) in mismatched {
        assert!(balance >= 0);
        assert_eq!(
            balance,
            movements.unwrap_or(0),
            "{profile}'s balance is the sum of its movements"
        );
    }
}

/// Asks for a deposit of `cents` and completes its mock payment with `outcome`, without
/// confirming it; returns its relay request id.
pub async fn pay_deposit(app: &Client, buyer: &Agent, cents: i64, outcome: &str) -> String {
    let asked = app
        .post(
            "/balance/deposits",
            buyer.key(),
            json!({"amount_cents": cents}),
        )
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    settle(app, buyer, &asked, outcome).await
}

/// Tops `buyer`'s balance up by `cents` through the mock provider.
pub async fn top_up(app: &Client, buyer: &Agent, cents: i64) {
    let relay_id = pay_deposit(app, buyer, cents, "settled").await;
    confirm_deposit(app, buyer, &relay_id).await.expect(201);
}

/// The confirming request of a deposit (`X-Crochet-Relay-Request-Id`).
pub async fn confirm_deposit(app: &Client, buyer: &Agent, relay_id: &str) -> Reply {
    let resp = app
        .http
        .post(app.url("/balance/deposits"))
        .bearer_auth(&buyer.api_key)
        .header("X-Crochet-Relay-Request-Id", relay_id)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    Reply {
        status,
        body: resp.json().await.unwrap(),
        headers,
    }
}

/// The buyer's balance in USD cents.
pub async fn balance_of(app: &Client, buyer: &Agent) -> i64 {
    app.get("/balance", buyer.key()).await.expect(200).data()["available_cents"]
        .as_i64()
        .unwrap()
}

/// A call paid from the balance.
pub async fn from_balance(
    app: &Client,
    buyer: &Agent,
    listing: &str,
    body: &Value,
    idempotency_key: Option<&str>,
) -> Reply {
    let mut headers = vec![("X-Crochet-Pay-From", "balance")];
    if let Some(k) = idempotency_key {
        headers.push(("Idempotency-Key", k));
    }
    gateway_call(app, buyer, listing, body, &headers).await
}

/// `n` calls of `listing` paid from the balance, all at once, each with its own body;
/// how many answered 200 (`ok`) and how many with each error code.
pub async fn race_from_balance(
    app: &Client,
    buyer: &std::sync::Arc<Agent>,
    listing: &str,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..n {
        let (client, buyer, id) = (app.clone(), buyer.clone(), listing.to_owned());
        calls
            .spawn(async move { from_balance(&client, &buyer, &id, &json!({"n": i}), None).await });
    }
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    while let Some(reply) = calls.join_next().await {
        let reply = reply.unwrap();
        let key = match reply.status.as_u16() {
            200 => "ok".to_owned(),
            _ => reply.code().to_owned(),
        };
        *codes.entry(key).or_default() += 1;
    }
    codes
}

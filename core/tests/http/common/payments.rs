//! Gateway calls and the paid flow: the 402, settling the mock payment, the retry, and
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

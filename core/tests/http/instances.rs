//! Several host instances on one database, as stateless hosts behind a load balancer
//! run: the hot path's caches must never let one instance honour what another has
//! revoked, suspended or rotated.

use serde_json::json;

use crate::common::{
    Backend, Reply, TestApp, Wallet, gateway_call, poll_until, priced_listing, test_redis_url,
};

/// How long a peer may take to hear an invalidation (a pub/sub or NOTIFY message,
/// milliseconds in practice); far below the caches' 30 s expiry, so a lost message
/// still fails the test.
const PROPAGATION: std::time::Duration = std::time::Duration::from_secs(2);

/// `call`'s reply once it answers `status`, or its last one after [`PROPAGATION`].
async fn within_propagation(call: impl AsyncFnMut() -> Reply, status: u16) -> Reply {
    poll_until(PROPAGATION, call, |r| r.status == status).await
}

/// One instance changes things; the other, whose caches hold the old state, must
/// honour every change as soon as the invalidation message reaches it (the writing
/// instance publishes before it answers; delivery to the peer is asynchronous).
async fn changes_reach_the_other_instance(app: TestApp) {
    let peer = app.peer().await;
    let p = priced_listing(&app, None, "/ok").await;
    let buyer = app.register(Wallet::evm()).await;
    let body = json!({"task": "t"});
    let via_peer = || gateway_call(&peer, &buyer, &p.id, &body, &[]);

    // Fill the peer's caches (key and listing).
    via_peer().await.expect(200);
    via_peer().await.expect(200);

    // Rotating the signing secret on one instance: the other signs with the new one.
    let rotated = app
        .post(
            &format!("/listings/{}/endpoint/rotate-secret", p.id),
            p.agent.key(),
            json!({}),
        )
        .await
        .expect(200);
    p.seller
        .set_secret(rotated.data()["signing_secret"].as_str().unwrap());
    let signed_anew = |_: &Reply| p.seller.requests().last().unwrap().signature_valid;
    poll_until(PROPAGATION, async || via_peer().await, signed_anew)
        .await
        .expect(200);
    assert!(
        p.seller.requests().last().unwrap().signature_valid,
        "the peer signed with the rotated secret"
    );

    // Pausing the endpoint on one instance: the other refuses at once.
    app.send(
        reqwest::Method::PUT,
        &format!("/listings/{}/endpoint", p.id),
        p.agent.key(),
        Some(&json!({"status": "paused"})),
    )
    .await
    .expect(200);
    let mut calls_before = 0;
    within_propagation(
        async || {
            calls_before = p.seller.requests().len();
            via_peer().await
        },
        503,
    )
    .await
    .expect_error(503, "SELLER_ENDPOINT_UNAVAILABLE");
    assert_eq!(
        p.seller.requests().len(),
        calls_before,
        "refused unforwarded"
    );
    app.send(
        reqwest::Method::PUT,
        &format!("/listings/{}/endpoint", p.id),
        p.agent.key(),
        Some(&json!({"status": "active"})),
    )
    .await
    .expect(200);
    within_propagation(async || via_peer().await, 200)
        .await
        .expect(200);

    // Revoking the key on one instance: the other refuses it on the next request.
    let me = app.get("/me", buyer.key()).await.expect(200);
    let key_id = me.data()["api_key"]["id"].as_str().unwrap().to_owned();
    app.delete(&format!("/api-keys/{key_id}"), buyer.key())
        .await
        .expect(200);
    within_propagation(async || via_peer().await, 401)
        .await
        .expect_error(401, "INVALID_API_KEY");

    // Suspending the listing on one instance: the other refuses it.
    let other = app.register(Wallet::solana()).await;
    gateway_call(&peer, &other, &p.id, &body, &[])
        .await
        .expect(200);
    app.delete(&format!("/listings/{}", p.id), p.agent.key())
        .await
        .expect(200);
    let r = within_propagation(
        async || gateway_call(&peer, &other, &p.id, &body, &[]).await,
        409,
    )
    .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_share_invalidations_through_notify() {
    let Some(app) = TestApp::start(Backend::Postgres, |_| {}).await else {
        return;
    };
    changes_reach_the_other_instance(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_invalidations_through_redis() {
    let Some(redis) = test_redis_url() else {
        return;
    };
    let app = TestApp::start(Backend::Sqlite, |c| c.redis_url = Some(redis))
        .await
        .unwrap();
    changes_reach_the_other_instance(app).await;
}

/// Without its invalidation channel an instance must not trust its caches: it keeps
/// serving, reading every call from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_channel_means_no_caching_not_stale_answers() {
    let app = TestApp::start(Backend::Sqlite, |c| {
        c.redis_url = Some("redis://127.0.0.1:1".into());
        // The rate limiter would (rightly) fail closed without its counters.
        c.plugins.policy = Some(Vec::new());
    })
    .await
    .unwrap();
    assert!(!app.state().bus.is_live());
    // A second instance on the same file, also cut off from the channel.
    let peer = app.peer().await;
    let p = app.publish("Cut off", "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let body = json!({"task": "t"});
    gateway_call(&peer, &buyer, &p.id, &body, &[])
        .await
        .expect(402);
    let me = app.get("/me", buyer.key()).await.expect(200);
    let key_id = me.data()["api_key"]["id"].as_str().unwrap().to_owned();
    app.delete(&format!("/api-keys/{key_id}"), buyer.key())
        .await
        .expect(200);
    gateway_call(&peer, &buyer, &p.id, &body, &[])
        .await
        .expect_error(401, "INVALID_API_KEY");
}

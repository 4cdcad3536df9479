//! Policy plugins and seller adapters through the real host: the bundled components,
//! built for wasm32-wasip2 by the build script, run in the wasmtime sandbox.

use serde_json::{Value, json};

use crate::common::{
    Backend, Reply, TestApp, Wallet, count_rows, gateway_call, pay_and_call, per_buyer_limit,
    policy_plugin, priced_listing, retry, test_redis_url,
};
use crate::on_both_backends;

on_both_backends!(
    rate_limit_refuses_past_its_limit_before_the_seller,
    validation_refuses_bad_bodies_before_any_payment,
    seller_adapter_reshapes_the_request_and_the_reply,
    uploaded_adapters_are_checked_before_they_are_stored,
    policies_of_1_0_and_1_1_serve_side_by_side,
    a_purchase_counts_once_against_the_rate_limit,
);

async fn rate_limit_refuses_past_its_limit_before_the_seller(app: TestApp) {
    let app = app.restart(per_buyer_limit(3)).await;
    let p = priced_listing(&app, None, "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let body = json!({"task": "t"});
    for _ in 0..3 {
        gateway_call(&app, &buyer, &p.id, &body, &[])
            .await
            .expect(200);
    }
    let refused = gateway_call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect_error(429, "RATE_LIMITED");
    assert_eq!(refused.next_action(), "retry_after_delay");
    let wait = refused.body["error"]["recovery"]["retry_after_seconds"]
        .as_u64()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(
        refused.headers["retry-after"].to_str().unwrap(),
        wait.to_string()
    );
    assert_eq!(refused.body["error"]["details"]["plugin"], "rate-limit");
    assert_eq!(
        p.seller.requests().len(),
        3,
        "refused calls never reach the seller"
    );

    // Another buyer has a limit of its own.
    let other = app.register(Wallet::evm()).await;
    gateway_call(&app, &other, &p.id, &body, &[])
        .await
        .expect(200);

    // A paid listing: the refusal comes before any payment requirement exists.
    let paid = priced_listing(&app, Some(0.5), "/ok").await;
    let payments = count_rows(&app, "gateway_payments").await;
    gateway_call(&app, &buyer, &paid.id, &body, &[])
        .await
        .expect_error(429, "RATE_LIMITED");
    assert_eq!(count_rows(&app, "gateway_payments").await, payments);
}

/// What the echo component (`crochet:plugin@1.1.0`) was told: the context's headers,
/// attempt and payment flow.
fn echoed(reply: Reply) -> Value {
    let reply = reply.expect_error(409, "CONTEXT_ECHO");
    serde_json::from_str(reply.body["error"]["message"].as_str().unwrap()).unwrap()
}

/// A 1.1 policy and a 1.0 policy in one chain: each gets the context of its version,
/// the 1.1 one with the headers the operator forwards, the attempt and the payment flow.
async fn policies_of_1_0_and_1_1_serve_side_by_side(app: TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let echo = file("echo.wasm", crochet::plugins::bundled::testing::ECHO);
    let legacy = file("legacy.wasm", crochet::plugins::bundled::testing::HOSTILE);
    // Agents and listings first: the legacy policy refuses every call, auth routes too.
    let free = priced_listing(&app, None, "/ok").await;
    let paid = priced_listing(&app, Some(0.5), "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let app = app
        .restart(|c| {
            c.plugins.forward_headers = vec!["x-agent-team".into()];
            c.plugins.policy = Some(vec![
                policy_plugin("echo", &echo, json!({})),
                policy_plugin("legacy", &legacy, json!({"mode": "refuse"})),
            ]);
        })
        .await;
    let loaded: Vec<_> = app
        .state()
        .plugins
        .describe()
        .into_iter()
        .map(|p| (p.name, p.wit_version))
        .collect();
    assert_eq!(
        loaded[..2],
        [
            ("echo".to_owned(), Some("1.1.0")),
            ("legacy".to_owned(), Some("1.0.0"))
        ]
    );

    let asks = json!({"echo": true});
    let team = [("x-agent-team", "blue"), ("x-other", "hidden")];
    assert_eq!(
        echoed(gateway_call(&app, &buyer, &free.id, &asks, &team).await),
        json!({"headers": [["x-agent-team", "blue"]], "attempt": "first", "payment": "free"})
    );
    assert_eq!(
        echoed(gateway_call(&app, &buyer, &paid.id, &asks, &[]).await),
        json!({"headers": [], "attempt": "first", "payment": "requirement"})
    );
    // The policies run before the payment is looked at: any id marks the paid retry.
    assert_eq!(
        echoed(retry(&app, &buyer, &paid.id, &asks, "relay-not-checked-yet").await),
        json!({"headers": [], "attempt": "paid-retry", "payment": "requirement"})
    );

    // The echo allows other bodies; the 1.0 policy after it refuses, from its context.
    let refused = gateway_call(&app, &buyer, &free.id, &json!({"task": "t"}), &team)
        .await
        .expect_error(403, "HOSTILE_REFUSED");
    assert_eq!(
        refused.body["error"]["message"],
        format!(
            "refused POST /api/v1/gateway/{{listing_id}} for buyer {} on listing {}",
            buyer.profile_id, free.id
        )
    );
    assert_eq!(refused.body["error"]["details"]["plugin"], "legacy");
    assert!(free.seller.requests().is_empty());
}

/// The bundled rate limit counts the 402 attempt and the paid retry apart, so a
/// purchase takes one call of the limit.
async fn a_purchase_counts_once_against_the_rate_limit(app: TestApp) {
    let app = app
        .restart(|c| {
            c.plugins.policy = Some(vec![policy_plugin(
                "rate-limit",
                "bundled:rate-limit",
                json!({"gateway": {
                    "per_buyer": {"limit": 2, "window_seconds": 60, "burst": null},
                    "per_listing": null
                }}),
            )]);
        })
        .await;
    let p = priced_listing(&app, Some(0.5), "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let body = json!({"task": "t"});
    for _ in 0..2 {
        let (_, reply) = pay_and_call(&app, &buyer, &p.id, &body).await;
        reply.expect(200);
    }
    gateway_call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect_error(429, "RATE_LIMITED");
    assert_eq!(p.seller.requests().len(), 2);
}

async fn validation_refuses_bad_bodies_before_any_payment(app: TestApp) {
    let p = priced_listing(&app, Some(0.5), "/ok").await;
    let schema = json!({"request-validation": {"schema": {
        "type": "object",
        "required": ["task"],
        "properties": {
            "task": {"type": "string", "maxLength": 10},
            "input": {"type": "object"}
        }
    }}});
    app.patch(
        &format!("/listings/{}", p.id),
        p.agent.key(),
        json!({"policy_config": schema}),
    )
    .await
    .expect(200);
    let shown = app
        .get(&format!("/listings/{}", p.id), None)
        .await
        .expect(200);
    assert_eq!(
        shown.data()["policy_config"],
        schema,
        "buyers can read the rules"
    );

    let buyer = app.register(Wallet::solana()).await;
    for (body, field) in [
        (json!({"input": {}}), "/task"),
        (json!({"task": "far too long a task"}), "/task"),
        (json!({"task": "ok", "input": 5}), "/input"),
    ] {
        let r = gateway_call(&app, &buyer, &p.id, &body, &[])
            .await
            .expect_error(422, "VALIDATION_FAILED");
        assert_eq!(r.body["error"]["details"]["field"], field, "{}", r.body);
        assert_eq!(r.body["error"]["details"]["plugin"], "request-validation");
    }
    assert_eq!(
        count_rows(&app, "gateway_payments").await,
        0,
        "no 402 issued"
    );
    // Too deep for the operator's limit, whatever the listing says.
    let mut deep = json!("x");
    for _ in 0..40 {
        deep = json!({ "d": deep });
    }
    gateway_call(
        &app,
        &buyer,
        &p.id,
        &json!({"task": "ok", "deep": deep}),
        &[],
    )
    .await
    .expect_error(422, "VALIDATION_FAILED");

    gateway_call(&app, &buyer, &p.id, &json!({"task": "ok"}), &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    assert_eq!(count_rows(&app, "gateway_payments").await, 1);
    assert!(p.seller.requests().is_empty());
}

async fn seller_adapter_reshapes_the_request_and_the_reply(app: TestApp) {
    let p = priced_listing(&app, None, "/chat").await;
    let path = format!("/listings/{}/adapter", p.id);
    app.get(&path, p.agent.key())
        .await
        .expect_error(404, "ADAPTER_NOT_FOUND");
    let buyer = app.register(Wallet::solana()).await;
    app.send(
        reqwest::Method::PUT,
        &path,
        buyer.key(),
        Some(&json!({"bundled": "chat-adapter"})),
    )
    .await
    .expect_error(403, "NOT_LISTING_OWNER");
    let info = app
        .send(
            reqwest::Method::PUT,
            &path,
            p.agent.key(),
            Some(&json!({"bundled": "chat-adapter", "config": {"model": "m-1"}})),
        )
        .await
        .expect(200);
    assert_eq!(info.data()["source"], "bundled:chat-adapter");
    let listing = app.get(&format!("/listings/{}", p.id), None).await;
    assert_eq!(listing.data()["adapter"], "bundled:chat-adapter");

    let r = gateway_call(
        &app,
        &buyer,
        &p.id,
        &json!({"task": "shout", "input": "hello"}),
        &[],
    )
    .await
    .expect(200);
    assert_eq!(r.data()["seller_response"]["output"], "HELLO");
    assert_eq!(r.data()["seller_response"]["model"], "m-1");
    let seen = p.seller.requests();
    let sent: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(sent["model"], "m-1");
    assert_eq!(sent["messages"][0]["content"], "shout");
    assert_eq!(sent["messages"][1]["content"], "hello");
    assert!(
        seen[0].signature_valid,
        "the adapted body is what is signed"
    );

    // A body the adapter cannot use is refused before the seller (and any payment).
    gateway_call(&app, &buyer, &p.id, &json!({"input": "no task"}), &[])
        .await
        .expect_error(422, "ADAPTER_REJECTED_REQUEST");
    assert_eq!(p.seller.requests().len(), 1);

    // Changing only the configuration takes effect on the next call.
    app.send(
        reqwest::Method::PUT,
        &path,
        p.agent.key(),
        Some(&json!({"config": {"model": "m-2"}})),
    )
    .await
    .expect(200);
    let r = gateway_call(
        &app,
        &buyer,
        &p.id,
        &json!({"task": "t", "input": "x"}),
        &[],
    )
    .await
    .expect(200);
    assert_eq!(r.data()["seller_response"]["model"], "m-2");

    // Detached: the body goes through unchanged again.
    app.delete(&path, p.agent.key()).await.expect(200);
    let r = gateway_call(
        &app,
        &buyer,
        &p.id,
        &json!({"task": "t", "input": "x"}),
        &[],
    )
    .await
    .expect(200);
    assert!(
        r.data()["seller_response"]["choices"].is_array(),
        "the raw reply"
    );
    let last: Value = serde_json::from_slice(&p.seller.requests().last().unwrap().body).unwrap();
    assert_eq!(last, json!({"task": "t", "input": "x"}));
}

async fn uploaded_adapters_are_checked_before_they_are_stored(app: TestApp) {
    use crochet::plugins::bundled;
    let p = priced_listing(&app, None, "/chat").await;
    let path = format!("/listings/{}/adapter/component", p.id);
    let upload = |bytes: &'static [u8], content_type: &'static str| {
        app.http
            .put(app.url(&path))
            .bearer_auth(&p.agent.api_key)
            .header("content-type", content_type)
            .body(bytes)
            .send()
    };
    let code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    };
    assert_eq!(
        code(
            upload(bundled::CHAT_ADAPTER, "application/json")
                .await
                .unwrap()
        )
        .await,
        (415, "UNSUPPORTED_MEDIA_TYPE".into())
    );
    for wrong in [
        bundled::SCORING,
        bundled::RATE_LIMIT,
        b"not wasm at all".as_slice(),
    ] {
        assert_eq!(
            code(upload(wrong, "application/wasm").await.unwrap()).await,
            (422, "INVALID_ADAPTER_COMPONENT".into())
        );
    }
    assert_eq!(count_rows(&app, "listing_adapters").await, 0);
    let ok = upload(bundled::CHAT_ADAPTER, "application/wasm")
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let info = app
        .get(&format!("/listings/{}/adapter", p.id), p.agent.key())
        .await
        .expect(200);
    assert_eq!(info.data()["source"], "upload");
    assert_eq!(
        info.data()["component_bytes"],
        bundled::CHAT_ADAPTER.len() as u64
    );
    let buyer = app.register(Wallet::solana()).await;
    let r = gateway_call(
        &app,
        &buyer,
        &p.id,
        &json!({"task": "t", "input": "up"}),
        &[],
    )
    .await
    .expect(200);
    assert_eq!(r.data()["seller_response"]["output"], "UP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_share_one_limit() {
    let Some(redis) = test_redis_url() else {
        return;
    };
    let app = TestApp::start(Backend::Sqlite, |c| {
        c.redis_url = Some(redis);
        per_buyer_limit(4)(c);
    })
    .await
    .unwrap();
    let peer = app.peer().await;
    let p = priced_listing(&app, None, "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let body = json!({"task": "t"});
    for client in [&app.client, &peer.client, &app.client, &peer.client] {
        gateway_call(client, &buyer, &p.id, &body, &[])
            .await
            .expect(200);
    }
    gateway_call(&peer, &buyer, &p.id, &body, &[])
        .await
        .expect_error(429, "RATE_LIMITED");
    gateway_call(&app, &buyer, &p.id, &body, &[])
        .await
        .expect_error(429, "RATE_LIMITED");
    assert_eq!(p.seller.requests().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_routes_are_limited_per_address() {
    let app = TestApp::start(Backend::Sqlite, |c| {
        c.plugins.policy = Some(vec![policy_plugin(
            "rate-limit",
            "bundled:rate-limit",
            json!({"auth": {"per_ip": {"limit": 3, "window_seconds": 60, "burst": 100}}}),
        )]);
    })
    .await
    .unwrap();
    let address = Wallet::evm().address();
    let ask = || app.post("/auth/challenge", None, json!({"wallet_address": address}));
    for _ in 0..3 {
        ask().await.expect(200);
    }
    ask().await.expect_error(429, "RATE_LIMITED");
}

/// Hostile components are contained: the call fails as configured and the host goes on
/// serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_policy_fails_closed_or_open_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hostile.wasm");
    std::fs::write(&file, crochet::plugins::bundled::testing::HOSTILE).unwrap();
    for (mode, failure, status) in [
        ("loop", crochet::config::FailureMode::Closed, 503),
        ("memory", crochet::config::FailureMode::Closed, 503),
        ("trap", crochet::config::FailureMode::Open, 200),
        ("recurse", crochet::config::FailureMode::Open, 200),
    ] {
        let source = file.display().to_string();
        // Agents and listing first: the hostile policy also guards the auth routes.
        let app = TestApp::start(Backend::Sqlite, |_| {}).await.unwrap();
        let p = priced_listing(&app, None, "/ok").await;
        let buyer = app.register(Wallet::solana()).await;
        let app = app
            .restart(|c| {
                let mut plugin = policy_plugin("hostile", &source, json!({"mode": mode}));
                plugin.failure = failure;
                c.plugins.policy = Some(vec![plugin]);
            })
            .await;
        for _ in 0..2 {
            let r = gateway_call(&app, &buyer, &p.id, &json!({"task": "t"}), &[]).await;
            assert_eq!(r.status, status, "{mode}: {}", r.body);
            if status == 503 {
                assert_eq!(r.code(), "PLUGIN_UNAVAILABLE");
                assert_eq!(r.body["error"]["details"]["plugin"], "hostile");
            }
        }
        app.get("/health", None).await.expect(200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_of_the_wrong_world_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("scoring.wasm", crochet::plugins::bundled::SCORING),
        ("evil.wasm", crochet::plugins::bundled::testing::EVIL_IMPORT),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let mut config = crate::common::test_config(format!(
            "sqlite://{}",
            dir.path().join("crochet.db").display()
        ));
        config.plugins.policy = Some(vec![policy_plugin(
            "bad",
            &file.display().to_string(),
            json!({}),
        )]);
        let err = crochet::app::start(config).await.err().expect("refused");
        let text = format!("{err:#}");
        assert!(text.contains("policy plugin `bad`"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_refusals_name_the_configuration_file_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not a component").unwrap();
    let hostile = dir.path().join("hostile.wasm");
    std::fs::write(&hostile, crochet::plugins::bundled::testing::HOSTILE).unwrap();
    let named = dir.path().join("gateway.toml");
    let config_with = |policies: Vec<crochet::config::PolicyPluginConfig>| {
        let mut config = crate::common::test_config(format!(
            "sqlite://{}",
            dir.path().join("crochet.db").display()
        ));
        config.file = Some(named.clone());
        config.plugins.policy = Some(policies);
        config
    };
    let mut pinned = policy_plugin("pinned", "bundled:template", json!({}));
    pinned.sha256 = Some("0".repeat(64));
    let cases = [
        (
            vec![policy_plugin(
                "junk",
                &garbage.display().to_string(),
                json!({}),
            )],
            "not WebAssembly",
        ),
        (vec![pinned], "not the pinned"),
        (
            vec![
                policy_plugin("twin", "bundled:template", json!({})),
                policy_plugin("twin", "bundled:template", json!({})),
            ],
            "named `twin`; names must be unique",
        ),
        // A typo in a bundled plugin's configuration: its `validate-config` refuses it,
        // so it never runs on defaults.
        (
            vec![policy_plugin(
                "rate-limit",
                "bundled:rate-limit",
                json!({"gateway": {"per_buyer": {"limt": 5}}}),
            )],
            "plugin `rate-limit` refused its configuration: invalid rate-limit configuration: \
             unknown key `limt`",
        ),
        (
            vec![policy_plugin(
                "request-validation",
                "bundled:request-validation",
                json!({"max_depht": 3}),
            )],
            "plugin `request-validation` refused its configuration",
        ),
        // A plugin without `validate-config` that answers 5xx on the trial call.
        (
            vec![policy_plugin(
                "hostile",
                &hostile.display().to_string(),
                json!({"mode": "nope"}),
            )],
            "cannot work with its configuration (HOSTILE_BAD_MODE)",
        ),
    ];
    let mut secret_header = config_with(vec![]);
    secret_header.plugins.forward_headers = vec!["authorization".into()];
    let configs = cases
        .into_iter()
        .map(|(policies, reason)| (config_with(policies), reason))
        .chain([(
            secret_header,
            "plugins.forward_headers: `authorization` is never shown to plugins",
        )]);
    for (config, reason) in configs {
        let err = crochet::app::start(config).await.err().expect("refused");
        let text = format!("{err:#}");
        assert!(text.contains(reason), "{text}");
        assert!(text.contains("gateway.toml"), "names the file used: {text}");
        assert!(!text.contains("crochet.toml"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }
}

//! Prometheus metrics and the gateway's log lines.
//!
//! Every in-process host of this test binary shares one process-wide recorder and runs
//! beside the others, so in-process tests only check the shape of `/metrics`. The exact
//! changes that known calls make are checked on the real binary, a process of its own.

use serde_json::{Value, json};

use crate::common::{
    Backend, Client, Deployment, Host, TestApp, Wallet, gateway_call, metric_delta, metric_types,
    metric_value, pay_and_call, priced_listing,
};
use crate::on_both_backends;

on_both_backends!(metrics_are_served_on_the_main_listener);
on_both_backends!(mod own_listener, configure = crate::metrics::own_metrics_listener; a_metrics_listener_of_its_own_serves_them_alone);

/// `GET /metrics` on a host, as text, with its status and content type.
async fn scrape(base: &str) -> (u16, String, String) {
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, resp.text().await.unwrap())
}

async fn metrics_are_served_on_the_main_listener(app: TestApp) {
    app.get("/health", None).await.expect(200);
    app.get("/nowhere/at/all", None).await.expect(404);
    let (status, content_type, text) = scrape(&app.base).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let types = metric_types(&text);
    assert_eq!(types["crochet_http_requests_total"], "counter", "{text}");
    assert_eq!(types["crochet_http_request_duration_seconds"], "histogram");
    assert_eq!(types["crochet_db_pool_connections"], "gauge");
    assert_eq!(types["crochet_cache_lookups_total"], "counter");
    assert!(text.contains("# HELP crochet_gateway_calls_total"));
    let health = [
        ("route", "/api/v1/health"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert!(metric_value(&text, "crochet_http_requests_total", &health) >= 1.0);
    // Unmatched paths share one label; the raw path never becomes one.
    let unmatched = [("route", "unmatched"), ("status", "404")];
    assert!(metric_value(&text, "crochet_http_requests_total", &unmatched) >= 1.0);
    assert!(!text.contains("/nowhere/at/all"));
    let max = metric_value(&text, "crochet_db_pool_max_connections", &[]);
    assert!(max >= 8.0, "{max}");
    // Every name is the host's.
    for name in types.keys() {
        assert!(name.starts_with("crochet_"), "{name}");
    }
    // The scrape route is not an API operation.
    let doc = app.get("/api/openapi.json", None).await.expect(200).body;
    assert!(doc["paths"].get("/metrics").is_none());
}

pub(crate) fn own_metrics_listener(config: &mut crochet::config::Config) {
    config.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
}

async fn a_metrics_listener_of_its_own_serves_them_alone(app: TestApp) {
    let running = app.running.as_ref().unwrap();
    let metrics_addr = running.metrics_addr.expect("a metrics listener");
    assert_ne!(metrics_addr, running.addr);
    app.get("/health", None).await.expect(200);
    // The main listener does not serve them.
    let (status, _, body) = scrape(&app.base).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "ROUTE_NOT_FOUND"
    );
    // Its own listener does, and nothing else.
    let base = format!("http://{metrics_addr}");
    let (status, content_type, text) = scrape(&base).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(text.contains("# TYPE crochet_http_requests_total counter"));
    let health = reqwest::get(format!("{base}/api/v1/health")).await.unwrap();
    assert_eq!(health.status(), 404);
    let post = reqwest::Client::new()
        .post(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    let body: Value = post.json().await.unwrap();
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");
}

/// A host whose only policy plugin is `request-validation`, logging JSON.
async fn validating_host(dep: &Deployment) -> Host {
    let toml = format!(
        "[[plugins.policy]]\nname = \"request-validation\"\nsource = \"bundled:request-validation\"\n\n\
         [plugins]\ncache_dir = \"{}\"\n",
        dep.plugin_cache()
    );
    dep.host_with_config(&toml, &[("CROCHET_LOG_FORMAT", "json")])
        .await
}

/// Makes `listing` require a string `task` in every body (the validation plugin's
/// per-listing configuration).
async fn require_task(c: &Client, listing: &crate::common::Published) {
    let schema = json!({"request-validation": {"schema": {
        "type": "object",
        "required": ["task"],
        "properties": {"task": {"type": "string"}}
    }}});
    c.patch(
        &format!("/listings/{}", listing.id),
        listing.agent.key(),
        json!({"policy_config": schema}),
    )
    .await
    .expect(200);
}

/// After a 402, its settled paid retry and a policy refusal, the counters rise by
/// exactly what those calls did: on the real binary, whose recorder nothing else uses.
async fn known_calls_move_the_metrics_by_exactly_their_amounts(backend: Backend) {
    let Some(dep) = Deployment::new(backend).await else {
        return;
    };
    let host = validating_host(&dep).await;
    let c = host.client.clone();
    let paid = priced_listing(&c, Some(10.0), "/ok").await;
    require_task(&c, &paid).await;
    let buyer = c.register(Wallet::solana()).await;
    let body = json!({"task": "count me"});

    let before = host.metrics().await;
    let (_, reply) = pay_and_call(&c, &buyer, &paid.id, &body).await;
    let reply = reply.expect(200);
    assert_eq!(reply.data()["charged_amount"]["amount_cents"], 1000);
    assert_eq!(reply.data()["fees"]["fee_amount_cents"], 49);
    gateway_call(&c, &buyer, &paid.id, &json!({"input": {}}), &[])
        .await
        .expect_error(422, "VALIDATION_FAILED");
    // History reads flush the batched writer first.
    c.get("/gateway-requests", buyer.key()).await.expect(200);
    let after = host.metrics().await;
    let delta = |name: &str, labels: &[(&str, &str)]| metric_delta(&before, &after, name, labels);

    let calls = "crochet_gateway_calls_total";
    let by = |outcome, code, seller_status| {
        [
            ("outcome", outcome),
            ("code", code),
            ("seller_status", seller_status),
        ]
    };
    assert_eq!(
        delta(calls, &by("payment_required", "PAYMENT_REQUIRED", "none")),
        1.0,
        "{after}"
    );
    assert_eq!(delta(calls, &by("forwarded", "none", "2xx")), 1.0);
    assert_eq!(
        delta(calls, &by("policy_refused", "VALIDATION_FAILED", "none")),
        1.0
    );
    assert_eq!(delta(calls, &[]), 3.0, "nothing else was counted");

    let payments = "crochet_payments_total";
    let event = |e| [("provider", "mock"), ("event", e)];
    assert_eq!(delta(payments, &event("requirement_issued")), 1.0);
    assert_eq!(delta(payments, &event("settled")), 1.0);
    assert_eq!(delta(payments, &event("pending")), 0.0);
    assert_eq!(delta(payments, &event("failed")), 0.0);

    // Ten dollars: 4.9 % to the marketplace, the rest to the seller.
    let cents = |entry| delta("crochet_ledger_cents_total", &[("entry_type", entry)]);
    assert_eq!(cents("gateway_debit"), 1000.0);
    assert_eq!(cents("marketplace_fee"), 49.0);
    assert_eq!(cents("seller_credit"), 951.0);
    assert_eq!(cents("gateway_refund"), 0.0);

    let requests = "crochet_http_requests_total";
    let gateway = |status| {
        [
            ("route", "/api/v1/gateway/{listing_id}"),
            ("method", "POST"),
            ("status", status),
        ]
    };
    assert_eq!(delta(requests, &gateway("402")), 1.0);
    assert_eq!(delta(requests, &gateway("200")), 1.0);
    assert_eq!(delta(requests, &gateway("422")), 1.0);
    let settle = [
        ("route", "/api/v1/payments/mock/{request_id}/settle"),
        ("status", "200"),
    ];
    assert_eq!(delta(requests, &settle), 1.0);
    let gateway_time = [
        ("route", "/api/v1/gateway/{listing_id}"),
        ("method", "POST"),
    ];
    assert_eq!(
        delta("crochet_http_request_duration_seconds_count", &gateway_time),
        3.0
    );

    let plugin = |result| {
        [
            ("plugin", "request-validation"),
            ("kind", "policy"),
            ("result", result),
        ]
    };
    assert_eq!(delta("crochet_plugin_calls_total", &plugin("ok")), 2.0);
    assert_eq!(delta("crochet_plugin_calls_total", &plugin("denied")), 1.0);
    assert_eq!(delta("crochet_plugin_calls_total", &plugin("trap")), 0.0);
    let denial = [
        ("plugin", "request-validation"),
        ("code", "VALIDATION_FAILED"),
    ];
    assert_eq!(delta("crochet_plugin_denials_total", &denial), 1.0);
    let validation_time = [("plugin", "request-validation"), ("kind", "policy")];
    assert_eq!(
        delta(
            "crochet_plugin_call_duration_seconds_count",
            &validation_time
        ),
        3.0
    );

    assert_eq!(
        delta("crochet_gateway_seller_duration_seconds_count", &[]),
        1.0
    );
    // The 402's history row went through the batched writer.
    assert!(delta("crochet_gateway_history_batch_rows_count", &[]) >= 1.0);
    assert!(delta("crochet_gateway_history_flush_duration_seconds_count", &[]) >= 1.0);
    assert_eq!(delta("crochet_gateway_history_rows_lost_total", &[]), 0.0);
    // The payment's and the call's transactions.
    assert!(delta("crochet_db_transaction_begin_duration_seconds_count", &[]) >= 2.0);
    let lookups = delta("crochet_cache_lookups_total", &[("cache", "api_keys")]);
    assert!(lookups >= 4.0, "{lookups}");
    assert!(
        delta(
            "crochet_cache_lookups_total",
            &[("cache", "listings"), ("result", "hit")]
        ) >= 1.0
    );
    assert_eq!(metric_value(&after, "crochet_cache_bus_live", &[]), 1.0);
    let max = match backend {
        Backend::Sqlite => 8.0,
        Backend::Postgres => 16.0,
    };
    assert_eq!(
        metric_value(&after, "crochet_db_pool_max_connections", &[]),
        max
    );
    let pooled = metric_value(&after, "crochet_db_pool_connections", &[]);
    assert!((1.0..=max).contains(&pooled), "{pooled}");

    let (status, logs) = host.stop("TERM").await;
    assert!(status.success(), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_calls_move_the_metrics_by_exactly_their_amounts_sqlite() {
    known_calls_move_the_metrics_by_exactly_their_amounts(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_calls_move_the_metrics_by_exactly_their_amounts_postgres() {
    known_calls_move_the_metrics_by_exactly_their_amounts(Backend::Postgres).await;
}

/// The `gateway call` lines of a JSON log.
fn gateway_lines(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "gateway call")
        .collect()
}

/// One line per gateway call, with the ids that tie it to the request, the listing, the
/// buyer and the seller's request, its outcome and error code; and no secret.
async fn each_gateway_call_logs_one_line(backend: Backend) {
    let Some(dep) = Deployment::new(backend).await else {
        return;
    };
    let host = validating_host(&dep).await;
    let c = host.client.clone();
    let paid = priced_listing(&c, Some(0.25), "/ok").await;
    require_task(&c, &paid).await;
    let failing = priced_listing(&c, None, "/fail").await;
    let buyer = c.register(Wallet::evm()).await;
    let body = json!({"task": "log me"});

    let (_, reply) = pay_and_call(&c, &buyer, &paid.id, &body).await;
    reply.expect(200);
    gateway_call(&c, &buyer, &paid.id, &json!({"input": {}}), &[])
        .await
        .expect_error(422, "VALIDATION_FAILED");
    gateway_call(&c, &buyer, &failing.id, &body, &[])
        .await
        .expect_error(502, "SELLER_ERROR_RESPONSE");
    let forwarded_to = paid.seller.requests()[0].headers.clone();
    let failed_to = failing.seller.requests()[0].headers.clone();

    let (status, logs) = host.stop("TERM").await;
    assert!(status.success(), "{logs}");
    let lines = gateway_lines(&logs);
    assert_eq!(lines.len(), 4, "one line per call:\n{logs}");
    let line = |outcome: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {outcome} line:\n{logs}"))
            .clone()
    };
    for l in &lines {
        let f = &l["fields"];
        assert_eq!(f["buyer_id"], buyer.profile_id.as_str(), "{l}");
        assert!(f["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{l}");
        // The HTTP request id of the request the call came in.
        assert!(
            l["span"]["request_id"]
                .as_str()
                .is_some_and(|id| id.len() >= 32),
            "{l}"
        );
    }

    let required = line("payment_required");
    assert_eq!(required["level"], "INFO");
    assert_eq!(required["fields"]["error_code"], "PAYMENT_REQUIRED");
    assert_eq!(required["fields"]["listing_id"], paid.id.as_str());

    let forwarded = line("forwarded");
    assert_eq!(forwarded["level"], "INFO");
    let f = &forwarded["fields"];
    assert_eq!(
        f["gateway_request_id"],
        forwarded_to["x-crochet-request-id"].as_str()
    );
    assert_eq!(f["listing_id"], paid.id.as_str());
    assert_eq!(f["seller_status"], 200);
    assert!(f.get("error_code").is_none(), "{forwarded}");

    let refused = line("policy_refused");
    assert_eq!(refused["level"], "WARN");
    assert_eq!(refused["fields"]["error_code"], "VALIDATION_FAILED");
    assert_eq!(refused["fields"]["listing_id"], paid.id.as_str());
    assert!(refused["fields"].get("gateway_request_id").is_none());

    let failed = line("seller_failed");
    assert_eq!(failed["level"], "WARN");
    let f = &failed["fields"];
    assert_eq!(f["error_code"], "SELLER_ERROR_RESPONSE");
    assert_eq!(
        f["gateway_request_id"],
        failed_to["x-crochet-request-id"].as_str()
    );
    assert_eq!(f["listing_id"], failing.id.as_str());
    assert_eq!(f["seller_status"], 500);

    // No secret reaches the log: keys, signing secrets, endpoints, signatures.
    let endpoints = [paid.seller.url("/ok"), failing.seller.url("/fail")];
    let secrets = [
        buyer.api_key.as_str(),
        paid.agent.api_key.as_str(),
        paid.data["gateway_endpoint"]["signing_secret"]
            .as_str()
            .unwrap(),
        failing.data["gateway_endpoint"]["signing_secret"]
            .as_str()
            .unwrap(),
        endpoints[0].as_str(),
        endpoints[1].as_str(),
        forwarded_to["x-crochet-signature"].as_str(),
        failed_to["x-crochet-signature"].as_str(),
    ];
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} appears in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gateway_call_logs_one_line_sqlite() {
    each_gateway_call_logs_one_line(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gateway_call_logs_one_line_postgres() {
    each_gateway_call_logs_one_line(Backend::Postgres).await;
}

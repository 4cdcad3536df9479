//! The bundled plugins through the real sandbox: each iteration is what one gateway call
//! pays for a plugin.
//!
//! - `policy/<name>/call`: one `check` with a typical gateway context (in-memory
//!   counters) on a fresh instance (a fresh store, instantiation from the pre-linked
//!   component, the call, teardown); `policy/<name>/reuse`: the same on a warm instance
//!   (the default isolation);
//! - `scorer/scoring`: one score;
//! - `adapter/chat-adapter`: one `adapt-request`;
//! - `compile/*`: loading a component when the compile cache is warm (in memory).
//!
//! Target: a policy check adds under 20 µs at p50 to a gateway call. Figures: README.md.

use criterion::{Criterion, criterion_group, criterion_main};
use crochet::plugins::{
    AgentStats, Attempt, CallContext, CallKind, HostSettings, Isolation, PaymentFlow, PluginHost,
    bundled,
};

fn context() -> CallContext {
    let body = r#"{"task":"classify","input":{"text":"a short request"}}"#;
    CallContext {
        kind: CallKind::Gateway,
        route: "POST /api/v1/gateway/{listing_id}".into(),
        client_ip: "127.0.0.1".into(),
        buyer_id: Some("0b9c1f9e-2f6e-4a53-9d2e-6a7c1b1e0d11".into()),
        seller_id: Some("5a1d6c3e-8b7f-4e2a-9c1d-3e4f5a6b7c8d".into()),
        listing_id: Some("9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a".into()),
        price_cents: 50,
        currency: "USD".into(),
        origin_currency: None,
        origin_chain_id: None,
        origin_wallet_id: None,
        body_size: body.len() as u64,
        body_sha256: "0".repeat(64),
        body_json: body.into(),
        buyer_score: None,
        seller_score: None,
        listing_config: Some(
            r#"{"schema":{"type":"object","required":["task"],"properties":{"task":{"type":"string","maxLength":100}}}}"#
                .into(),
        ),
        headers: Vec::new(),
        attempt: Attempt::First,
        payment: PaymentFlow::Requirement,
    }
}

fn plugins(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let host = PluginHost::new(HostSettings::default()).unwrap();
    let ctx = context();
    let huge = r#"{"gateway":{"per_buyer":{"limit":1000000000,"window_seconds":60,"burst":1000000000},"per_listing":{"limit":1000000000,"window_seconds":60,"burst":1000000000}}}"#;

    let mut g = c.benchmark_group("policy");
    for (name, wasm, config) in [
        ("rate-limit", bundled::RATE_LIMIT, huge),
        ("request-validation", bundled::REQUEST_VALIDATION, "{}"),
        ("template", bundled::TEMPLATE, "{}"),
    ] {
        // `call`: a fresh instance per call; `reuse` (the default): a warm one.
        for isolation in [Isolation::Call, Isolation::Reuse] {
            let plugin = host
                .policy_with(name, wasm, config.into(), isolation)
                .unwrap();
            g.bench_function(format!("{name}/{}", isolation.as_str()), |b| {
                b.to_async(&rt)
                    .iter(|| async { plugin.check(&ctx).await.unwrap() })
            });
        }
    }
    g.finish();

    let scorer = host
        .scorer("scoring", bundled::SCORING, "{}".into())
        .unwrap();
    let stats = AgentStats {
        account_age_days: 120,
        successful_calls: 5000,
        paid_calls: 4800,
        paid_volume_cents: 250_000,
        distinct_buyers: 180,
        active_days: 28,
        seller_errors: 12,
        timeouts: 3,
        invalid_responses: 1,
        review_count: 40,
        rating_sum: 186,
        paid_reviewers: 35,
        purchases: 60,
        distinct_sellers: 6,
    };
    c.bench_function("scorer/scoring", |b| {
        b.to_async(&rt)
            .iter(|| async { scorer.score(&stats).await.unwrap() })
    });

    let adapter = host.adapter("chat-adapter", bundled::CHAT_ADAPTER).unwrap();
    let body = r#"{"task":"summarize","input":"a short text to summarize"}"#;
    c.bench_function("adapter/chat-adapter", |b| {
        b.to_async(&rt).iter(|| async {
            adapter
                .adapt_request(r#"{"model":"m"}"#, body)
                .await
                .unwrap()
        })
    });

    c.bench_function("compile/rate-limit-warm", |b| {
        b.iter(|| {
            host.policy("rate-limit", bundled::RATE_LIMIT, "{}".into())
                .unwrap()
        })
    });
}

criterion_group!(benches, plugins);
criterion_main!(benches);

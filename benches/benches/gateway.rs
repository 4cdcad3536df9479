//! The forwarding hot path: a buyer's call to a free listing through the in-process
//! gateway (authenticate, resolve listing and endpoint, sign, forward, record) beside
//! the same request sent straight to the same local seller. The ratio of the two is the
//! gateway's cost. `through_mcp` is the same call as MCP's `call_listing` (one JSON-RPC
//! `tools/call` POST to `/mcp`, as any MCP client sends it once connected): its
//! difference from `through_gateway` is what the MCP door adds. `through_mcp_sdk` is
//! the same request with an `Accept` the host leaves to the MCP SDK's own stateless
//! service (which builds a service per request) instead of answering it inline.
//! Figures in README.md.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use crochet::devwallet::{DevWallet, solve_pow};
use crochet::identity::crypto::Chain;
use serde_json::{Value, json};

struct Fixture {
    _dir: tempfile::TempDir,
    _host: crochet::app::Running,
    seller_url: String,
    gateway_url: String,
    mcp_url: String,
    key: String,
    body: Vec<u8>,
    /// The same call as MCP's `tools/call` of `call_listing`.
    mcp_body: Vec<u8>,
}

async fn seller() -> String {
    let app = axum::Router::new()
        .fallback(|| async { axum::Json(json!({"result": "ok", "score": 0.97})) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/run", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn post(client: &reqwest::Client, url: &str, key: Option<&str>, body: Value) -> Value {
    let mut req = client.post(url).json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().await.unwrap().json().await.unwrap()
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let seller_url = seller().await;
    // The forwarding path alone, without policy plugins.
    let config = crochet_benches::bench_config(format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ));
    let host = crochet::app::start(config).await.unwrap();
    let api = format!("http://{}/api/v1", host.addr);
    let client = reqwest::Client::new();

    let wallet = DevWallet::generate(Chain::Solana);
    let challenge = post(
        &client,
        &format!("{api}/auth/challenge"),
        None,
        json!({"wallet_address": wallet.address}),
    )
    .await;
    let registered = post(
        &client,
        &format!("{api}/register"),
        None,
        wallet.prove(&challenge).unwrap(),
    )
    .await;
    let key = registered["data"]["api_key"].as_str().unwrap().to_owned();
    let c = post(
        &client,
        &format!("{api}/listings/challenge"),
        Some(&key),
        json!({}),
    )
    .await;
    let pow = solve_pow(c["data"]["challenge"].as_str().unwrap(), 1);
    let listing = post(
        &client,
        &format!("{api}/listings"),
        Some(&key),
        json!({"pow_nonce": pow, "name": "Bench", "description": "bench", "pricing_model": "free",
               "private_endpoint_url": seller_url, "status": "active"}),
    )
    .await;
    let id = listing["data"]["id"].as_str().unwrap();
    let input = json!({"task": "classify", "input": {"text": "a short request"}});
    let mcp_body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "call_listing", "arguments": {"listing": id, "input": input}}});
    Fixture {
        gateway_url: format!("{api}/gateway/{id}"),
        mcp_url: format!("http://{}/mcp", host.addr),
        seller_url,
        key,
        body: serde_json::to_vec(&input).unwrap(),
        mcp_body: serde_json::to_vec(&mcp_body).unwrap(),
        _dir: dir,
        _host: host,
    }
}

fn forwarding(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = rt.block_on(fixture());
    let client = reqwest::Client::new();
    // One JSON POST and its whole answer; `mcp` adds the headers an MCP client sends
    // (`accept`: a weighted one sends the call through the SDK's own service).
    let send = |url: &str, key: Option<&str>, body: &[u8], mcp: Option<&str>| {
        let mut req = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(accept) = mcp {
            req = req
                .header("accept", accept)
                .header("mcp-protocol-version", "2025-06-18");
        }
        async move {
            let r = req.send().await.unwrap();
            assert!(r.status().is_success());
            r.bytes().await.unwrap()
        }
    };
    let mut g = c.benchmark_group("forward");
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("direct_to_seller", |b| {
        b.to_async(&rt)
            .iter(|| send(&f.seller_url, None, &f.body, None))
    });
    g.bench_function("through_gateway", |b| {
        b.to_async(&rt)
            .iter(|| send(&f.gateway_url, Some(&f.key), &f.body, None))
    });
    for (name, accept) in [
        ("through_mcp", "application/json, text/event-stream"),
        ("through_mcp_sdk", "application/json;q=1, text/event-stream"),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let answer = send(&f.mcp_url, Some(&f.key), &f.mcp_body, Some(accept)).await;
                let text = String::from_utf8_lossy(&answer);
                assert!(text.contains("\"isError\":false"), "{text}");
                answer
            })
        });
    }
    g.finish();
}

criterion_group!(benches, forwarding);
criterion_main!(benches);

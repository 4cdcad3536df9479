//! Criterion benches: see `benches/`. Helpers the load tools in `src/bin` share.

use crochet::devwallet::DevWallet;
use crochet::identity::crypto::Chain;
use serde_json::{Value, json};

/// A host for a bench on `database_url`: any free port, proof of work at difficulty 1, a
/// fresh encryption key, and no policy plugins (the default rate limit would rightly
/// refuse a bench's thousands of calls; plugins have a bench of their own).
pub fn bench_config(database_url: String) -> crochet::config::Config {
    crochet::config::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(database_url),
        pow_difficulty: Some(1),
        encryption_key: Some(crochet::secrets::MasterKey::generate().to_base64()),
        plugins: crochet::config::PluginsConfig {
            policy: Some(Vec::new()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// POSTs `body` as JSON and reads the answer's JSON.
pub async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    client
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A new agent registered through the API (a fresh Solana wallet): its API key and
/// profile id.
pub async fn register(client: &reqwest::Client, api: &str) -> (String, String) {
    let wallet = DevWallet::generate(Chain::Solana);
    let challenge = post_json(
        client,
        &format!("{api}/auth/challenge"),
        &json!({"wallet_address": wallet.address}),
    )
    .await;
    let proof = wallet.prove(&challenge).unwrap();
    let registered = post_json(client, &format!("{api}/register"), &proof).await;
    let data = &registered["data"];
    (
        data["api_key"].as_str().unwrap().to_owned(),
        data["profile"]["id"].as_str().unwrap().to_owned(),
    )
}

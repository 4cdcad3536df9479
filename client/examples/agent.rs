//! A buying agent: registers with a fresh wallet (or the one in `AGENT_WALLET`), finds a
//! paid listing by words, calls it through the mock payment provider, verifies the
//! receipt offline, reviews the listing and prints the seller's Crochet Score.
//!
//! ```sh
//! cargo run -p crochet-client --example agent -- http://127.0.0.1:8080/api/v1 router
//! ```
//!
//! Exits non-zero, with the host's error code and advice, when anything is refused.

use std::process::ExitCode;

use crochet_client::{
    CallOptions, Client, ClientError, ListingQuery, MockPayer, PageQuery, Wallet, receipts,
};
use serde_json::json;

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080/api/v1".into());
    let words = args.next().unwrap_or_else(|| "router".into());
    match run(&base, &words).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent: {e}");
            if let Some(next) = e.next_action() {
                eprintln!("agent: the host advises: {next}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(base: &str, words: &str) -> Result<(), ClientError> {
    let wallet = match std::env::var("AGENT_WALLET") {
        Ok(path) => Wallet::load(path)?,
        Err(_) => Wallet::generate_solana(),
    };
    let host = Client::new(base);
    let me = host
        .register(&wallet, "buyer", Some("example agent"))
        .await?;
    println!("registered {} ({})", me.profile.id, wallet.address());
    let buyer = host.with_key(&me.api_key);

    let query = ListingQuery {
        pricing_model: Some("per_call".into()),
        ..ListingQuery::text(words)
    };
    let listing = buyer
        .search_listings(&query)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Payment(format!("no paid listing matches {words:?}")))?;
    println!(
        "calling {} ({}, {} cents)",
        listing.name, listing.id, listing.price_cents
    );

    let result = buyer
        .call(
            &listing.id,
            &json!({"task": "summarize", "input": "an example agent's request"}),
            &MockPayer::default(),
            CallOptions::default(),
        )
        .await?;
    println!(
        "paid {} cents; the seller answered {}",
        result.charged_cents, result.seller_response
    );

    // One fetch of the host's keys; the check itself is offline.
    let keys = buyer.receipt_keys().await?;
    let receipt = buyer
        .receipts(PageQuery::default())
        .await?
        .into_iter()
        .find(|r| r.gateway_request_id == result.request_id)
        .ok_or_else(|| ClientError::Receipt("no receipt for the call".into()))?;
    receipts::verify_receipt(&receipt, &keys).map_err(|e| ClientError::Receipt(e.to_string()))?;
    println!("receipt {} verified (key {})", receipt.id, receipt.key_id);

    buyer
        .review(&listing.id, 5, Some("answered as described"))
        .await?;
    let score = buyer.score(&listing.seller_id).await?;
    println!(
        "seller {} scores {} ({})",
        score.agent_id, score.score, score.tier
    );
    Ok(())
}

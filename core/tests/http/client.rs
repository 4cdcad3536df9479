//! The Rust client (`crochet-client`) against the real host: an agent registers, sells
//! and buys with it, paying through the mock provider and through x402.

use serde_json::json;

use crate::common::{Seller, TestApp, facilitator};
use crate::on_both_backends;
use crochet_client::{
    CallOptions, Client, ClientError, ListingQuery, MockPayer, NewListing, Wallet, X402Payer,
};

on_both_backends!(an_agent_registers_sells_and_buys_with_the_client);
on_both_backends!(mod x402_host, configure = crate::common::with_x402; an_agent_buys_with_x402_through_the_client);

fn api(app: &TestApp) -> Client {
    Client::new(format!("{}/api/v1", app.base))
}

/// A seller agent (EVM wallet) publishing a 25-cent listing at a live local seller.
async fn publish(host: &Client, name: &str) -> (Seller, crochet_client::CreatedListing) {
    let wallet = Wallet::generate_evm();
    let me = host
        .register(&wallet, "seller", Some("seller"))
        .await
        .unwrap();
    assert!(me.api_key.starts_with("am_k_"));
    assert_eq!(me.authorization_header, format!("Bearer {}", me.api_key));
    let seller = Seller::start().await;
    let created = host
        .clone()
        .with_key(&me.api_key)
        .create_listing(&NewListing::per_call(
            name,
            "Routes buyer JSON requests to a specialist agent.",
            0.25,
            seller.url("/ok"),
        ))
        .await
        .unwrap();
    assert!(created.signing_secret.starts_with("cgs_"));
    assert_eq!(created.listing.seller_id, me.profile_id);
    seller.set_secret(&created.signing_secret);
    (seller, created)
}

async fn an_agent_registers_sells_and_buys_with_the_client(app: TestApp) {
    let host = api(&app);
    let (seller, created) = publish(&host, "Signal Router").await;

    let buyer_wallet = Wallet::generate_solana();
    let me = host
        .register(&buyer_wallet, "buyer", Some("buyer"))
        .await
        .unwrap();
    assert_eq!(me.role, "buyer");
    let buyer = host.clone().with_key(&me.api_key);

    let found = buyer
        .search_listings(&ListingQuery {
            q: Some("router".into()),
            pricing_model: Some("per_call".into()),
            ..ListingQuery::default()
        })
        .await
        .unwrap();
    let listing = found
        .iter()
        .find(|l| l.id == created.id)
        .expect("the listing is found");
    assert_eq!(listing.price_cents, 25);
    assert_eq!(listing.pricing_model, "per_call");
    assert!(listing.gateway_url.is_some());
    let by_slug = buyer.get_listing(&listing.slug).await.unwrap();
    assert_eq!(by_slug.id, created.id);

    let body = json!({"task": "summarize", "input": "..."});
    let result = buyer
        .call(
            &listing.id,
            &body,
            &MockPayer::default(),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(result.charged_cents, listing.price_cents);
    assert!(result.billable);
    assert_eq!(result.seller_response["echo"], body);
    assert_eq!(result.payment.as_ref().unwrap()["status"], "verified");
    let seen = seller.requests();
    assert_eq!(seen.len(), 1, "the seller is called once");
    assert!(seen[0].signature_valid);
    assert_eq!(seen[0].headers["x-crochet-request-id"], result.request_id);

    let err = buyer
        .call(
            "no-such-listing",
            &body,
            &MockPayer::default(),
            CallOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Api { status: 404, .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), Some("LISTING_NOT_FOUND"));
    let err = buyer.get_listing("no-such-listing").await.unwrap_err();
    assert_eq!(err.code(), Some("LISTING_NOT_FOUND"));
}

async fn an_agent_buys_with_x402_through_the_client(app: TestApp) {
    let host = api(&app);
    let (seller, created) = publish(&host, "Paid Router").await;

    let wallet = Wallet::generate_evm();
    let address = wallet.address();
    let me = host.register(&wallet, "buyer", None).await.unwrap();
    let buyer = host.clone().with_key(&me.api_key);
    let payer = X402Payer { wallet };
    let body = json!({"task": "x402"});
    let result = buyer
        .call(&created.id, &body, &payer, CallOptions::default())
        .await
        .unwrap();
    assert_eq!(result.charged_cents, 25);
    let payment = result.payment.unwrap();
    assert_eq!(payment["flow"], "x402");
    assert_eq!(payment["status"], "settled");
    assert_eq!(payment["payer"].as_str().unwrap().to_lowercase(), address);
    assert_eq!(facilitator().settles(&address), 1);
    assert_eq!(seller.requests().len(), 1);
    assert!(seller.requests()[0].signature_valid);
}

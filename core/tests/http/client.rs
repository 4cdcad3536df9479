//! The Rust client (`crochet-client`) against the real host: an agent registers with
//! EVM and Solana wallets, sells, buys through the mock provider and through x402,
//! verifies its receipts and reviews; and the client's types agree with the host's
//! OpenAPI document, field for field.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::common::{Seller, TestApp, facilitator};
use crate::on_both_backends;
use crochet_client::{
    CallOptions, Client, ClientError, EndpointUpdate, KeyLimits, ListingQuery, ListingUpdate,
    MockPayer, NewListing, PageQuery, Payer, Retry, Wallet, WalletPermissions, X402Payer,
};

on_both_backends!(
    an_agent_registers_sells_and_buys_with_the_client,
    a_seller_manages_its_listing_and_a_buyer_verifies_and_reviews,
    an_agent_manages_its_keys_and_wallets_and_recovers,
    a_call_resumes_once_the_caller_paid_on_its_own,
    a_parent_funds_a_limited_sub_agent_with_the_client,
    the_client_types_match_the_openapi_document,
);
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
    assert!(
        !format!("{me:?}").contains(&me.api_key),
        "Debug hides the key"
    );
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
    assert_eq!(created.listing.seller_id, me.profile.id);
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
    assert_eq!(me.profile.role, "buyer");
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

/// A Solana buyer with a key, and its client.
async fn buyer(host: &Client) -> (Client, String) {
    let me = host
        .register(&Wallet::generate_solana(), "buyer", Some("buyer"))
        .await
        .unwrap();
    (host.clone().with_key(&me.api_key), me.profile.id)
}

async fn a_seller_manages_its_listing_and_a_buyer_verifies_and_reviews(app: TestApp) {
    let host = api(&app);
    let seller_wallet = Wallet::generate_evm();
    let me = host.register(&seller_wallet, "seller", None).await.unwrap();
    let seller_api = host.clone().with_key(&me.api_key);
    let seller = Seller::start().await;
    let created = seller_api
        .create_listing(&NewListing::per_call(
            "Ledger Auditor",
            "Audits ledgers.",
            0.40,
            seller.url("/ok"),
        ))
        .await
        .unwrap();
    seller.set_secret(&created.signing_secret);

    // Update, endpoint settings, a signed test, a rotated secret.
    let updated = seller_api
        .update_listing(
            &created.id,
            &ListingUpdate {
                description: Some("Audits ledgers, line by line.".into()),
                pricing_amount: Some(0.30),
                ..ListingUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.price_cents, 30);
    let endpoint = seller_api.endpoint(&created.id).await.unwrap();
    assert!(endpoint.configured);
    let endpoint = seller_api
        .update_endpoint(
            &created.id,
            &EndpointUpdate {
                timeout_ms: Some(5_000),
                ..EndpointUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(endpoint.timeout_ms, 5_000);
    let test = seller_api.test_endpoint(&created.id).await.unwrap();
    assert!(test.ok && test.json, "{test:?}");
    let rotated = seller_api.rotate_secret(&created.id).await.unwrap();
    assert_ne!(rotated.signing_secret, created.signing_secret);
    assert!(!format!("{rotated:?}").contains(&rotated.signing_secret));
    seller.set_secret(&rotated.signing_secret);

    // A buyer calls; the seller checks the forward with the crate's verifier.
    let (buyer_api, buyer_id) = buyer(&host).await;
    let body = json!({"ledger": [1, 2, 3]});
    let result = buyer_api
        .call(
            &created.id,
            &body,
            &MockPayer::default(),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(result.charged_cents, 30);
    let seen = seller.requests().pop().unwrap();
    let lookup = |name: &str| {
        seen.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let verified = crochet_client::seller::verify_request(
        &rotated.signing_secret,
        lookup,
        &seen.body,
        now,
        300,
    )
    .unwrap();
    assert_eq!(verified.request_id, result.request_id);
    assert_eq!(verified.buyer_id.as_deref(), Some(buyer_id.as_str()));
    assert!(
        crochet_client::seller::verify_request(
            &created.signing_secret,
            lookup,
            &seen.body,
            now,
            300
        )
        .is_err(),
        "the rotated-out secret no longer verifies"
    );

    // Receipts: fetched, verified against the published keys, and a forgery refused.
    let receipts = buyer_api.receipts(PageQuery::default()).await.unwrap();
    assert_eq!(receipts.len(), 1);
    let receipt = buyer_api.receipt(&receipts[0].id).await.unwrap();
    assert_eq!(receipt.gateway_request_id, result.request_id);
    assert_eq!(receipt.content["charged_amount_cents"], 30);
    buyer_api.verify_receipt(&receipt).await.unwrap();
    let keys = buyer_api.receipt_keys().await.unwrap();
    let mut forged = receipt.clone();
    forged.payload = forged
        .payload
        .replace("\"charged_amount_cents\":30", "\"charged_amount_cents\":3");
    assert_ne!(forged.payload, receipt.payload);
    assert_eq!(
        crochet_client::receipts::verify_receipt(&forged, &keys),
        Err(crochet_client::receipts::ReceiptError::BadSignature)
    );
    assert!(matches!(
        buyer_api.verify_receipt(&forged).await,
        Err(ClientError::Receipt(_))
    ));
    // The seller sees the same receipt.
    assert_eq!(
        seller_api.receipts(PageQuery::default()).await.unwrap()[0].id,
        receipt.id
    );

    // History and ledger.
    let history = buyer_api
        .gateway_requests(PageQuery::default())
        .await
        .unwrap();
    assert_eq!(history[0].id, result.request_id);
    assert_eq!(history[0].status, "completed");
    assert!(history[0].billable);
    let ledger = buyer_api.ledger(PageQuery::default()).await.unwrap();
    assert!(ledger.iter().any(|e| e.amount_cents == -30), "{ledger:?}");

    // A review, then the public score.
    let review = buyer_api
        .review(&created.id, 5, Some("Exact and fast."))
        .await
        .unwrap();
    assert!(review.verified_purchase && review.paid_purchase);
    let reviews = host
        .reviews(&created.listing.slug, PageQuery::default())
        .await
        .unwrap();
    assert_eq!(reviews[0].id, review.id);
    let err = buyer_api.review(&created.id, 9, None).await.unwrap_err();
    assert_eq!(err.code(), Some("VALIDATION_ERROR"), "{err:?}");
    let score = host.score(&me.profile.id).await.unwrap();
    assert_eq!(score.agent_id, me.profile.id);
    assert!(score.score <= 1000 && !score.components.is_empty());
    assert_eq!(score.inputs["paid_calls"], 1);
    let err = host.score("no-such-agent").await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");

    // Seller adapters: an uploaded component, its config, a bundled one, detached.
    let chat = crochet::plugins::bundled::CHAT_ADAPTER;
    let uploaded = seller_api
        .upload_adapter(&created.id, chat.to_vec())
        .await
        .unwrap();
    assert_eq!(
        (uploaded.source.as_str(), uploaded.component_bytes),
        ("upload", chat.len() as i64)
    );
    let err = seller_api
        .upload_adapter(&created.id, b"not wasm".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("INVALID_ADAPTER_COMPONENT"), "{err:?}");
    let bundled = seller_api
        .set_adapter(&created.id, Some("chat-adapter"), None)
        .await
        .unwrap();
    assert_eq!(bundled.source, "bundled:chat-adapter");
    assert_eq!(
        seller_api.adapter(&created.id).await.unwrap().source,
        bundled.source
    );
    seller_api.remove_adapter(&created.id).await.unwrap();
    let err = seller_api.adapter(&created.id).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
    let err = buyer_api.adapter(&created.id).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "only the owner sees it: {err:?}");
}

async fn an_agent_manages_its_keys_and_wallets_and_recovers(app: TestApp) {
    let host = api(&app);
    let wallet = Wallet::generate_evm();
    let first = host
        .register(&wallet, "both", Some("keeper"))
        .await
        .unwrap();
    let agent = host.clone().with_key(&first.api_key);

    let me = agent.me().await.unwrap();
    assert_eq!(me.profile.id, first.profile.id);
    assert_eq!(me.wallets.len(), 1);
    assert_eq!(me.wallets[0].wallet_address, wallet.address());
    assert_eq!(me.api_key.id, first.api_key_info.id);

    let second = agent.create_api_key(Some("ci")).await.unwrap();
    assert_ne!(second.api_key, first.api_key);
    let keys = agent.api_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    let revoked = agent.revoke_api_key(&second.api_key_info.id).await.unwrap();
    assert_eq!(revoked.status, "revoked");
    let err = host
        .clone()
        .with_key(&second.api_key)
        .me()
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");

    // A Solana wallet joins, able to recover the profile.
    let solana = Wallet::generate_solana();
    let linked = agent
        .link_wallet(
            &me.profile.id,
            &wallet,
            &solana,
            &WalletPermissions {
                label: Some("cold".into()),
                can_recover: Some(true),
                ..WalletPermissions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(linked.chain, "solana");
    assert_eq!(linked.wallet_address, solana.address());
    assert_eq!(agent.wallets().await.unwrap().len(), 2);

    let recovered = host.recover(&solana).await.unwrap();
    assert_eq!(recovered.profile.id, me.profile.id);
    let again = host
        .clone()
        .with_key(&recovered.api_key)
        .me()
        .await
        .unwrap();
    assert_eq!(again.profile.id, me.profile.id);
    // A wallet nobody registered recovers nothing.
    let err = host.recover(&Wallet::generate_evm()).await.unwrap_err();
    assert!(err.code().is_some() && err.status() != Some(201), "{err:?}");
}

/// Hands the payment back to the caller, as a Relay buyer paying with its own tools
/// would get it.
struct PayMyself;

#[async_trait::async_trait]
impl Payer for PayMyself {
    async fn pay(&self, _client: &Client, payment: &Value) -> Result<Retry, ClientError> {
        Err(ClientError::PaymentSteps {
            relay_request_id: payment["relay_request_id"].as_str().unwrap().to_owned(),
            steps: payment["requirements"].clone(),
            idempotency_key: String::new(),
        })
    }
}

async fn a_call_resumes_once_the_caller_paid_on_its_own(app: TestApp) {
    let host = api(&app);
    let (seller, created) = publish(&host, "Resumable").await;
    let (buyer_api, _) = buyer(&host).await;
    let body = json!({"task": "resume"});
    let err = buyer_api
        .call(&created.id, &body, &PayMyself, CallOptions::default())
        .await
        .unwrap_err();
    let ClientError::PaymentSteps {
        relay_request_id,
        steps,
        idempotency_key,
    } = err
    else {
        panic!("{err:?}")
    };
    assert!(
        idempotency_key.starts_with("crochet-client-"),
        "the call's key is handed back"
    );
    assert!(seller.requests().is_empty());

    // The caller pays on its own (here: the mock's settle URL), then resumes.
    MockPayer::default()
        .pay(
            &buyer_api,
            &json!({"requirements": steps, "relay_request_id": relay_request_id}),
        )
        .await
        .unwrap();
    let result = buyer_api
        .call(
            &created.id,
            &body,
            &PayMyself,
            CallOptions {
                idempotency_key: Some(idempotency_key.clone()),
                paid: Some(Retry::Relay {
                    relay_request_id: relay_request_id.clone(),
                }),
                ..CallOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(result.charged_cents, 25);
    assert_eq!(result.idempotency_key, idempotency_key);
    assert_eq!(seller.requests().len(), 1);
}

/// The field names a `Deserialize` struct reads, found by asking it to deserialize
/// from a probe that records the field list serde hands over.
fn fields_of<T: serde::de::DeserializeOwned>() -> BTreeSet<String> {
    use serde::de::{Error as _, Visitor, value::Error};
    struct Probe(Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for &mut Probe {
        type Error = Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            self.0 = Some(fields);
            Err(Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut probe = Probe(None);
    let _ = T::deserialize(&mut probe);
    probe
        .0
        .expect("a struct")
        .iter()
        .map(|f| f.to_string())
        .collect()
}

async fn the_client_types_match_the_openapi_document(app: TestApp) {
    use crochet_client as c;
    let doc = crate::common::Client::new(app.base.clone())
        .get("/api/openapi.json", None)
        .await
        .expect(200)
        .body;
    let schemas = &doc["components"]["schemas"];
    let properties = |name: &str| -> BTreeSet<String> {
        let schema = &schemas[name];
        let mut props: BTreeSet<String> = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no schema {name}"))
            .keys()
            .cloned()
            .collect();
        props.retain(|p| {
            ![
                "pow_nonce",
                "pow_challenge",
                "existing_wallet",
                "new_wallet",
            ]
            .contains(&p.as_str())
        });
        props
    };
    // Answers: exactly the documented fields.
    let answers: Vec<(&str, BTreeSet<String>)> = vec![
        ("Profile", fields_of::<c::Profile>()),
        ("ScoreBadge", fields_of::<c::ScoreBadge>()),
        ("IssuedKey", fields_of::<c::IssuedKey>()),
        ("ApiKeyInfo", fields_of::<c::ApiKeyInfo>()),
        ("WalletSummary", fields_of::<c::WalletSummary>()),
        ("Me", fields_of::<c::Me>()),
        ("ListingRating", fields_of::<c::ListingRating>()),
        ("Listing", fields_of::<c::Listing>()),
        ("EndpointInfo", fields_of::<c::EndpointInfo>()),
        ("SigningSecret", fields_of::<c::SigningSecret>()),
        ("EndpointTestResult", fields_of::<c::EndpointTestResult>()),
        ("AdapterInfo", fields_of::<c::AdapterInfo>()),
        ("GatewayRequestRow", fields_of::<c::GatewayRequest>()),
        ("Receipt", fields_of::<c::Receipt>()),
        ("Review", fields_of::<c::Review>()),
        ("ScoreComponent", fields_of::<c::ScoreComponent>()),
        ("AgentScore", fields_of::<c::AgentScore>()),
        ("LedgerEntry", fields_of::<c::LedgerEntry>()),
        ("ApiKeyLimits", fields_of::<c::KeyLimits>()),
        ("KeySpend", fields_of::<c::KeySpend>()),
        ("SpendWindow", fields_of::<c::SpendWindow>()),
        ("Balance", fields_of::<c::Balance>()),
        ("CurrencyBalance", fields_of::<c::CurrencyBalance>()),
        ("Deposit", fields_of::<c::Deposit>()),
        ("DepositConfirmation", fields_of::<c::DepositConfirmation>()),
        // Requests: every field the host takes (proofs and proof-of-work are the
        // client's own doing).
        ("CreateListingRequest", fields_of::<c::NewListing>()),
        ("UpdateListingRequest", fields_of::<c::ListingUpdate>()),
        ("UpdateEndpointRequest", fields_of::<c::EndpointUpdate>()),
        ("LinkWalletRequest", fields_of::<c::WalletPermissions>()),
    ];
    for (schema, client_fields) in answers {
        assert_eq!(
            client_fields,
            properties(schema),
            "crochet-client's {schema}"
        );
    }
}

async fn a_parent_funds_a_limited_sub_agent_with_the_client(app: TestApp) {
    let host = api(&app);
    let (_seller, created) = publish(&host, "Budgeted").await;
    let me = host
        .register(&Wallet::generate_solana(), "buyer", Some("parent"))
        .await
        .unwrap();
    let parent = host.clone().with_key(&me.api_key);
    let confirmed = parent
        .deposit(
            60,
            &MockPayer::default(),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(confirmed.credited_now);
    assert_eq!(confirmed.balance_cents, 60);
    // Confirming again credits nothing more.
    let again = parent
        .confirm_deposit(
            &confirmed.deposit.relay_request_id,
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(!again.credited_now);
    let deposits = parent.deposits(PageQuery::default()).await.unwrap();
    assert_eq!(deposits.len(), 1);
    assert_eq!(deposits[0].status, "credited");
    let limits = KeyLimits {
        daily_cents: Some(30),
        listing_ids: Some(vec![created.id.clone()]),
        ..KeyLimits::default()
    };
    let issued = parent
        .create_limited_key(Some("sub-agent"), &limits)
        .await
        .unwrap();
    assert_eq!(issued.api_key_info.limits.as_ref(), Some(&limits));
    let sub = host.clone().with_key(&issued.api_key);
    let body = json!({"task": "budgeted"});
    let paid = sub
        .call(
            &created.id,
            &body,
            &MockPayer::default(),
            CallOptions::from_balance(),
        )
        .await
        .unwrap();
    assert_eq!(paid.charged_cents, 25);
    assert_eq!(parent.balance().await.unwrap().available_cents, 35);
    // The second call would pass the 30-cent day: refused, nothing charged.
    match sub
        .call(
            &created.id,
            &body,
            &MockPayer::default(),
            CallOptions::from_balance(),
        )
        .await
    {
        Err(ClientError::Api { code, .. }) => assert_eq!(code, "SPEND_LIMIT_EXCEEDED"),
        other => panic!("{other:?}"),
    }
    assert_eq!(parent.balance().await.unwrap().available_cents, 35);
    let keys = parent.api_keys().await.unwrap();
    let key = keys
        .iter()
        .find(|k| k.id == issued.api_key_info.id)
        .unwrap();
    assert_eq!(key.spend.day.spent_cents, 25);
    assert_eq!(key.spend.day.remaining_cents, Some(5));
    let lifted = parent
        .set_key_limits(&issued.api_key_info.id, None)
        .await
        .unwrap();
    assert!(lifted.limits.is_none());
    sub.call(
        &created.id,
        &body,
        &MockPayer::default(),
        CallOptions::from_balance(),
    )
    .await
    .unwrap();
    assert_eq!(parent.balance().await.unwrap().available_cents, 10);
}

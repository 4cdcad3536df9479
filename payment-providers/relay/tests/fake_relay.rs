//! The Relay provider against a local fake of Relay's API (`/quote/v2`,
//! `/intents/status/v3`, `/requests/v3`), an axum server on 127.0.0.1:0 whose answers
//! and observations the tests control through shared state.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use crochet_payment::{
    OriginCurrency, PaymentChain, PaymentError, PaymentProvider, RequirementRequest, Route,
    SOLANA_CHAIN_ID, Settlement, SettlementQuery, WalletRef,
};
use crochet_payment_relay::{EVM_NATIVE, RelayConfig, RelayProvider, SOL_ADDRESS, SOLANA_USDC};
use serde_json::{Value, json};

const TREASURY: &str = "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV";
const SOL_PAYER: &str = "BuyerSo1anaWa11et1111111111111111111111111";
const EVM_PAYER: &str = "0x1111111111111111111111111111111111111111";
const BASE_USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const API_KEY: &str = "relay-test-key-5f3a";
const REQUEST_ID: &str = "0x5a1d0e8c2b";

// ---------------------------------------------------------------- the fake

/// One canned answer.
#[derive(Clone)]
struct Canned {
    status: u16,
    body: Value,
    retry_after: Option<&'static str>,
    delay: Duration,
}

fn reply(status: u16, body: Value) -> Canned {
    Canned {
        status,
        body,
        retry_after: None,
        delay: Duration::ZERO,
    }
}

/// One endpoint: what it saw and what it answers (the script first, then `default`).
#[derive(Default)]
struct Endpoint {
    calls: usize,
    api_keys: Vec<Option<String>>,
    bodies: Vec<Value>,
    queries: Vec<HashMap<String, String>>,
    script: VecDeque<Canned>,
    default: Option<Canned>,
}

#[derive(Default)]
struct FakeState {
    quote: Endpoint,
    status: Endpoint,
    requests: Endpoint,
}

type Shared = Arc<Mutex<FakeState>>;

struct Fake {
    state: Shared,
    url: String,
}

impl Fake {
    async fn start() -> Self {
        let state = Shared::default();
        let app = axum::Router::new()
            .route("/quote/v2", post(quote))
            .route("/intents/status/v3", get(status))
            .route("/requests/v3", get(requests))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { state, url }
    }

    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Answers the status endpoint with these status words, in order.
    fn script_statuses(&self, words: &[&str]) {
        self.with(|s| {
            for w in words {
                s.status.script.push_back(reply(
                    200,
                    json!({"status": w, "inTxHashes": ["0xin1"], "txHashes": ["out1"], "updatedAt": 1}),
                ));
            }
        });
    }
}

async fn quote(State(s): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    respond(&s, |st| &mut st.quote, &headers, Some(body), HashMap::new()).await
}

async fn status(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    respond(&s, |st| &mut st.status, &headers, None, q).await
}

async fn requests(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    respond(&s, |st| &mut st.requests, &headers, None, q).await
}

async fn respond(
    s: &Shared,
    pick: fn(&mut FakeState) -> &mut Endpoint,
    headers: &HeaderMap,
    body: Option<Value>,
    query: HashMap<String, String>,
) -> Response {
    let canned = {
        let mut st = s.lock().unwrap();
        let ep = pick(&mut st);
        ep.calls += 1;
        ep.api_keys.push(
            headers
                .get("x-api-key")
                .map(|v| v.to_str().unwrap().to_owned()),
        );
        ep.bodies.extend(body);
        ep.queries.push(query);
        ep.script
            .pop_front()
            .or_else(|| ep.default.clone())
            .unwrap_or_else(|| reply(404, json!({"message": "no"})))
    };
    tokio::time::sleep(canned.delay).await;
    let mut resp = (
        StatusCode::from_u16(canned.status).unwrap(),
        Json(canned.body),
    )
        .into_response();
    if let Some(ra) = canned.retry_after {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static(ra));
    }
    resp
}

fn quote_ok() -> Value {
    json!({
        "steps": [
            {"id": "approve", "action": "Approve", "description": "Approve USDC", "kind": "transaction",
             "items": [{"status": "incomplete", "data": {"to": "0xToken", "data": "0x095ea7b3"}}]},
            {"id": "deposit", "action": "Confirm transaction", "description": "Deposit", "kind": "transaction",
             "requestId": REQUEST_ID,
             "items": [{"status": "incomplete", "data": {"to": "0xDepository", "value": "0"},
                        "check": {"endpoint": format!("/intents/status?requestId={REQUEST_ID}"), "method": "GET"}}]}
        ],
        "fees": {"gas": {"amount": "5000"}, "relayer": {"amount": "120"}},
        "details": {"operation": "swap", "timeEstimate": 4}
    })
}

fn request_record(recipient: &str, amount: &str) -> Value {
    json!({"requests": [{
        "id": REQUEST_ID, "status": "success", "user": SOL_PAYER, "recipient": recipient,
        "data": {"inTxs": [{"hash": "0xin1"}], "outTxs": [{"hash": "out1"}],
                 "metadata": {"recipient": recipient,
                              "currencyOut": {"amount": amount,
                                              "currency": {"address": SOLANA_USDC, "chainId": SOLANA_CHAIN_ID}}}}
    }]})
}

// ---------------------------------------------------------------- helpers

fn config(fake: &Fake, api_key: Option<&str>) -> RelayConfig {
    let mut c = RelayConfig {
        base_url: fake.url.clone(),
        api_key: api_key.map(Into::into),
        ..RelayConfig::default()
    };
    c.recipients
        .insert(SOLANA_CHAIN_ID.to_string(), TREASURY.into());
    c.timeout_ms = 2_000;
    c
}

fn provider(c: RelayConfig) -> RelayProvider {
    RelayProvider::new(c)
        .unwrap()
        .with_backoff(Duration::from_millis(1), Duration::from_millis(20))
}

fn requirement(
    amount_cents: i64,
    currency: Option<OriginCurrency>,
    chain_id: Option<u64>,
) -> RequirementRequest {
    let chain = if currency == Some(OriginCurrency::Sol) || chain_id == Some(SOLANA_CHAIN_ID) {
        PaymentChain::Solana
    } else {
        PaymentChain::Evm
    };
    let address = if chain == PaymentChain::Solana {
        SOL_PAYER
    } else {
        EVM_PAYER
    };
    RequirementRequest {
        buyer_id: "buyer_1".into(),
        listing_id: "listing_1".into(),
        seller_id: "seller_1".into(),
        seller_payout: None,
        amount_cents,
        currency: "USD".into(),
        route: Route {
            origin_currency: currency,
            origin_chain_id: chain_id,
            payer: Some(WalletRef {
                id: "wallet_1".into(),
                address: address.into(),
                chain,
            }),
        },
    }
}

fn query(amount_cents: i64) -> SettlementQuery {
    SettlementQuery {
        request_id: REQUEST_ID.into(),
        amount_cents,
        currency: "USD".into(),
    }
}

fn pending(secs: u64, word: &str) -> Settlement {
    Settlement::Pending {
        retry_after_seconds: secs,
        provider_status: word.into(),
    }
}

// ---------------------------------------------------------------- quotes

#[tokio::test]
async fn quote_for_sol_on_solana() {
    let fake = Fake::start().await;
    fake.with(|s| s.quote.default = Some(reply(200, quote_ok())));
    let relay = provider(config(&fake, Some(API_KEY)));
    assert_eq!(relay.name(), "relay");

    let req = relay
        .create_requirement(&requirement(1, Some(OriginCurrency::Sol), None))
        .await
        .unwrap();
    let sent = fake.with(|s| (s.quote.bodies.clone(), s.quote.api_keys.clone()));
    assert_eq!(
        sent.0,
        vec![json!({
            "user": SOL_PAYER,
            "recipient": TREASURY,
            "originChainId": SOLANA_CHAIN_ID,
            "destinationChainId": SOLANA_CHAIN_ID,
            "originCurrency": SOL_ADDRESS,
            "destinationCurrency": SOLANA_USDC,
            "amount": "10000",
            "tradeType": "EXACT_OUTPUT",
        })]
    );
    assert_eq!(sent.1, vec![Some(API_KEY.to_owned())]);

    assert_eq!(
        req.request_id, REQUEST_ID,
        "the first step with a requestId"
    );
    let r = &req.requirements;
    assert_eq!(r["scheme"], "relay");
    assert_eq!(r["network"], "multi-chain");
    assert_eq!(r["request_id"], REQUEST_ID);
    assert_eq!(r["origin_chain_id"], SOLANA_CHAIN_ID);
    assert_eq!(r["origin_currency"], SOL_ADDRESS);
    assert_eq!(r["destination_chain_id"], SOLANA_CHAIN_ID);
    assert_eq!(r["destination_currency"], SOLANA_USDC);
    assert_eq!(r["amount"], "10000");
    assert_eq!(r["amount_cents"], 1);
    assert_eq!(r["recipient"], TREASURY);
    assert_eq!(
        r["steps"],
        quote_ok()["steps"],
        "steps are passed on verbatim"
    );
    assert_eq!(r["fees"], quote_ok()["fees"]);
}

#[tokio::test]
async fn quote_for_usdc_on_base_without_an_api_key() {
    let fake = Fake::start().await;
    let mut body = quote_ok();
    body.as_object_mut().unwrap().remove("fees");
    fake.with(|s| s.quote.default = Some(reply(200, body.clone())));
    let relay = provider(config(&fake, None));

    let req = relay
        .create_requirement(&requirement(25, Some(OriginCurrency::Usdc), Some(8453)))
        .await
        .unwrap();
    let (bodies, keys) = fake.with(|s| (s.quote.bodies.clone(), s.quote.api_keys.clone()));
    assert_eq!(
        bodies,
        vec![json!({
            "user": EVM_PAYER,
            "recipient": TREASURY,
            "originChainId": 8453,
            "destinationChainId": SOLANA_CHAIN_ID,
            "originCurrency": BASE_USDC,
            "destinationCurrency": SOLANA_USDC,
            "amount": "250000",
            "tradeType": "EXACT_OUTPUT",
        })]
    );
    assert_eq!(keys, vec![None], "no x-api-key without a configured key");
    assert_eq!(req.requirements["steps"], body["steps"]);
    assert_eq!(req.requirements["origin_currency"], BASE_USDC);
    assert!(req.requirements.get("fees").is_none());

    // ETH without a chain id goes to the default EVM chain, as the native token.
    relay
        .create_requirement(&requirement(25, Some(OriginCurrency::Eth), None))
        .await
        .unwrap();
    let last = fake.with(|s| s.quote.bodies.last().cloned().unwrap());
    assert_eq!(
        (&last["originChainId"], &last["originCurrency"]),
        (&json!(8453), &json!(EVM_NATIVE))
    );
}

#[tokio::test]
async fn quote_refusals_map_to_payment_errors() {
    let fake = Fake::start().await;
    let relay = provider(config(&fake, Some(API_KEY)));
    let too_low = || {
        reply(
            400,
            json!({"message": "Amount too low to cover fees", "errorCode": "AMOUNT_TOO_LOW"}),
        )
    };

    fake.with(|s| s.quote.script.push_back(too_low()));
    match relay
        .create_requirement(&requirement(12, Some(OriginCurrency::Usdc), Some(8453)))
        .await
    {
        Err(PaymentError::RouteMinimum {
            minimum_cents: None,
            on_solana: false,
            message,
        }) => {
            assert!(message.contains("Amount too low"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    fake.with(|s| s.quote.script.push_back(too_low()));
    match relay
        .create_requirement(&requirement(1, Some(OriginCurrency::Sol), None))
        .await
    {
        Err(PaymentError::RouteMinimum {
            on_solana: true, ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // The message alone is enough.
    fake.with(|s| {
        s.quote
            .script
            .push_back(reply(400, json!({"message": "Swap amount too low"})))
    });
    assert!(matches!(
        relay
            .create_requirement(&requirement(1, Some(OriginCurrency::Sol), None))
            .await,
        Err(PaymentError::RouteMinimum {
            on_solana: true,
            ..
        })
    ));

    fake.with(|s| {
        s.quote.script.push_back(reply(
            400,
            json!({"message": "No routes found", "errorCode": "NO_SWAP_ROUTES_FOUND"}),
        ))
    });
    match relay
        .create_requirement(&requirement(50, Some(OriginCurrency::Eth), Some(1)))
        .await
    {
        Err(PaymentError::UnsupportedRoute(m)) => assert!(m.contains("No routes found"), "{m}"),
        other => panic!("{other:?}"),
    }
    fake.with(|s| {
        s.quote
            .script
            .push_back(reply(401, json!({"message": "Invalid API key"})))
    });
    assert_eq!(
        relay
            .create_requirement(&requirement(50, Some(OriginCurrency::Sol), None))
            .await
            .unwrap_err(),
        PaymentError::Misconfigured("Relay rejected the API key".into())
    );
    fake.with(|s| {
        s.quote.script.push_back(reply(
            200,
            json!({"steps": [{"id": "deposit", "items": []}]}),
        ))
    });
    assert!(matches!(
        relay.create_requirement(&requirement(50, Some(OriginCurrency::Sol), None)).await,
        Err(PaymentError::Unavailable(m)) if m.contains("requestId")
    ));
    assert_eq!(fake.with(|s| s.quote.calls), 6);
}

#[tokio::test]
async fn unusable_routes_are_refused_without_calling_relay() {
    let fake = Fake::start().await;
    fake.with(|s| s.quote.default = Some(reply(200, quote_ok())));
    let relay = provider(config(&fake, None));

    let mut no_payer = requirement(50, Some(OriginCurrency::Usdc), Some(8453));
    no_payer.route.payer = None;
    match relay.create_requirement(&no_payer).await {
        Err(PaymentError::UnsupportedRoute(m)) => assert!(m.contains("no payer wallet"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut eur = requirement(50, Some(OriginCurrency::Sol), None);
    eur.currency = "EUR".into();
    assert!(matches!(
        relay.create_requirement(&eur).await,
        Err(PaymentError::UnsupportedRoute(_))
    ));
    let polygon = requirement(50, Some(OriginCurrency::Usdc), Some(137));
    assert!(matches!(
        relay.create_requirement(&polygon).await,
        Err(PaymentError::UnsupportedRoute(_))
    ));
    assert_eq!(fake.with(|s| s.quote.calls), 0);
}

// ---------------------------------------------------------------- settlement

#[tokio::test]
async fn a_payment_walks_to_success() {
    let fake = Fake::start().await;
    let relay = provider(config(&fake, None));
    fake.script_statuses(&["waiting", "pending", "submitted", "success"]);

    for word in ["waiting", "pending", "submitted"] {
        assert_eq!(relay.settlement(&query(1)).await.unwrap(), pending(5, word));
    }
    assert_eq!(
        relay.settlement(&query(1)).await.unwrap(),
        Settlement::Settled {
            amount_cents: 1,
            currency: "USD".into(),
            payer: None,
            tx_refs: vec!["0xin1".into(), "out1".into()],
        }
    );
    let (queries, requests_calls) = fake.with(|s| (s.status.queries.clone(), s.requests.calls));
    assert!(
        queries
            .iter()
            .all(|q| q.get("requestId").map(String::as_str) == Some(REQUEST_ID))
    );
    assert_eq!(
        requests_calls, 0,
        "without an API key the status is trusted"
    );
}

#[tokio::test]
async fn delayed_failed_refunded_and_unknown_statuses() {
    let fake = Fake::start().await;
    let relay = provider(config(&fake, Some(API_KEY)));
    fake.script_statuses(&["delayed", "depositing", "failure", "refund", "teleported"]);

    assert_eq!(
        relay.settlement(&query(1)).await.unwrap(),
        pending(15, "delayed")
    );
    assert_eq!(
        relay.settlement(&query(1)).await.unwrap(),
        pending(5, "depositing")
    );
    assert!(matches!(
        relay.settlement(&query(1)).await.unwrap(),
        Settlement::Failed {
            refunded: false,
            ..
        }
    ));
    assert!(matches!(
        relay.settlement(&query(1)).await.unwrap(),
        Settlement::Failed { refunded: true, .. }
    ));
    assert_eq!(
        relay.settlement(&query(1)).await.unwrap(),
        pending(30, "teleported")
    );

    fake.with(|s| {
        s.status
            .script
            .push_back(reply(404, json!({"message": "not found"})))
    });
    assert_eq!(
        relay.settlement(&query(1)).await.unwrap_err(),
        PaymentError::UnknownRequest
    );
    assert_eq!(fake.with(|s| s.requests.calls), 0);
}

#[tokio::test]
async fn success_is_confirmed_with_the_requests_api() {
    let fake = Fake::start().await;
    let relay = provider(config(&fake, Some(API_KEY)));

    // Confirmed: the right treasury got at least the price.
    fake.script_statuses(&["success"]);
    fake.with(|s| {
        s.requests
            .script
            .push_back(reply(200, request_record(TREASURY, "10000")))
    });
    assert_eq!(
        relay.settlement(&query(1)).await.unwrap(),
        Settlement::Settled {
            amount_cents: 1,
            currency: "USD".into(),
            payer: Some(SOL_PAYER.into()),
            tx_refs: vec!["0xin1".into(), "out1".into()],
        }
    );
    let (keys, queries) = fake.with(|s| (s.requests.api_keys.clone(), s.requests.queries.clone()));
    assert_eq!(keys, vec![Some(API_KEY.to_owned())]);
    assert_eq!(queries[0].get("id").map(String::as_str), Some(REQUEST_ID));

    // Paid to someone else.
    fake.script_statuses(&["success"]);
    fake.with(|s| {
        s.requests.script.push_back(reply(
            200,
            request_record("SomeoneE1se1111111111111111111111", "10000"),
        ))
    });
    match relay.settlement(&query(1)).await.unwrap() {
        Settlement::Failed {
            reason,
            refunded: false,
        } => assert!(reason.contains("recipient/amount mismatch"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // Paid too little (2 cents expected = 20000 units).
    fake.script_statuses(&["success"]);
    fake.with(|s| {
        s.requests
            .script
            .push_back(reply(200, request_record(TREASURY, "19999")))
    });
    assert!(matches!(
        relay.settlement(&query(2)).await.unwrap(),
        Settlement::Failed {
            refunded: false,
            ..
        }
    ));

    // Not indexed yet: still pending.
    fake.script_statuses(&["success", "success"]);
    fake.with(|s| {
        s.requests
            .script
            .push_back(reply(200, json!({"requests": []})));
        s.requests
            .script
            .push_back(reply(200, json!({"requests": [{"id": "0xother"}]})));
    });
    assert_eq!(
        relay.settlement(&query(1)).await.unwrap(),
        pending(5, "success")
    );
    assert_eq!(
        relay.settlement(&query(1)).await.unwrap(),
        pending(5, "success")
    );

    // A rejected key is the operator's problem.
    fake.script_statuses(&["success"]);
    fake.with(|s| {
        s.requests
            .script
            .push_back(reply(403, json!({"message": "forbidden"})))
    });
    assert!(matches!(
        relay.settlement(&query(1)).await,
        Err(PaymentError::Misconfigured(_))
    ));
}

// ---------------------------------------------------------------- reliability

#[tokio::test]
async fn rate_limited_twice_then_served() {
    let fake = Fake::start().await;
    fake.with(|s| {
        s.quote
            .script
            .push_back(reply(429, json!({"message": "slow down"})));
        s.quote.script.push_back(Canned {
            retry_after: Some("1"),
            ..reply(429, json!({}))
        });
        s.quote.default = Some(reply(200, quote_ok()));
    });
    let relay = provider(config(&fake, Some(API_KEY)));
    let req = relay
        .create_requirement(&requirement(1, Some(OriginCurrency::Sol), None))
        .await
        .unwrap();
    assert_eq!(req.request_id, REQUEST_ID);
    assert_eq!(fake.with(|s| s.quote.calls), 3);
}

#[tokio::test]
async fn persistent_server_errors_become_unavailable() {
    let fake = Fake::start().await;
    fake.with(|s| s.status.default = Some(reply(500, json!({"message": "boom"}))));
    let relay = provider(config(&fake, Some(API_KEY)));
    match relay.settlement(&query(1)).await {
        Err(PaymentError::Unavailable(m)) => {
            assert!(
                m.contains("status") && m.contains("HTTP 500") && m.contains("4 attempts"),
                "{m}"
            );
            assert!(!m.contains(API_KEY));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.with(|s| s.status.calls), 4, "max_retries (3) + 1");
}

#[tokio::test]
async fn slow_answers_time_out() {
    let fake = Fake::start().await;
    fake.with(|s| {
        s.status.default = Some(Canned {
            delay: Duration::from_secs(2),
            ..reply(200, json!({"status": "success"}))
        })
    });
    let mut c = config(&fake, None);
    c.timeout_ms = 150;
    c.max_retries = 1;
    let relay = provider(c);
    match relay.settlement(&query(1)).await {
        Err(PaymentError::Unavailable(m)) => {
            assert!(m.contains("status") && m.contains("timeout"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.with(|s| s.status.calls), 2);
}

#[tokio::test]
async fn persistent_rate_limits_are_reported() {
    let fake = Fake::start().await;
    fake.with(|s| {
        s.quote.default = Some(Canned {
            retry_after: Some("7"),
            ..reply(429, json!({}))
        })
    });
    let mut c = config(&fake, None);
    c.max_retries = 2;
    let relay = provider(c);
    assert_eq!(
        relay
            .create_requirement(&requirement(1, Some(OriginCurrency::Sol), None))
            .await
            .unwrap_err(),
        PaymentError::RateLimited {
            retry_after_seconds: 7
        }
    );
    assert_eq!(fake.with(|s| s.quote.calls), 3);
}

#[tokio::test]
async fn the_client_side_quote_limit_spares_relay() {
    let fake = Fake::start().await;
    fake.with(|s| s.quote.default = Some(reply(200, quote_ok())));
    let mut c = config(&fake, None);
    c.quotes_per_minute = 2;
    let relay = provider(c);
    let req = requirement(1, Some(OriginCurrency::Sol), None);
    relay.create_requirement(&req).await.unwrap();
    relay.create_requirement(&req).await.unwrap();
    match relay.create_requirement(&req).await {
        Err(PaymentError::RateLimited {
            retry_after_seconds,
        }) => assert!((1..=60).contains(&retry_after_seconds)),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.with(|s| s.quote.calls), 2);
}

// ---------------------------------------------------------------- configuration

#[tokio::test]
async fn configuration_is_checked_and_the_key_stays_secret() {
    let fake = Fake::start().await;
    let mut c = config(&fake, Some(API_KEY));
    assert!(!format!("{c:?}").contains(API_KEY));
    assert!(!format!("{:?}", provider(c.clone())).contains(API_KEY));
    assert!(serde_json::to_string(&c).unwrap().find(API_KEY).is_none());

    c.recipients.clear();
    match RelayProvider::new(c.clone()) {
        Err(PaymentError::Misconfigured(m)) => assert!(m.contains("recipients"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A treasury for another chain does not help.
    c.recipients.insert("8453".into(), EVM_PAYER.into());
    assert!(matches!(
        RelayProvider::new(c.clone()),
        Err(PaymentError::Misconfigured(_))
    ));
    c.recipients
        .insert(SOLANA_CHAIN_ID.to_string(), TREASURY.into());
    c.base_url = "not a url".into();
    assert!(matches!(
        RelayProvider::new(c),
        Err(PaymentError::Misconfigured(_))
    ));
}

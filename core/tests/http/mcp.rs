//! The marketplace over MCP (`/mcp`), driven by the official Rust SDK's client against
//! the real host on both backends: the tools, a free call and a paid one through the
//! same gateway as REST (one forward, a balanced ledger), the same refusal codes as
//! REST, rate limits shared between REST and MCP, and x402 payments in `_meta`.

use serde_json::{Value, json};

use crate::common::*;
use crate::on_both_backends;

on_both_backends!(
    an_mcp_client_finds_listings_and_calls_a_free_one,
    a_paid_listing_is_bought_over_mcp,
    a_call_is_paid_from_the_balance_over_mcp,
    refusals_carry_the_same_codes_as_rest,
    a_plain_tool_call_is_answered_as_the_sdk_answers_it,
);
on_both_backends!(mod limited, configure = crate::mcp::two_calls_a_minute; rest_and_mcp_calls_share_one_rate_limit);
on_both_backends!(mod x402_host, configure = crate::common::with_x402; an_x402_payment_travels_in_meta);

pub fn two_calls_a_minute(config: &mut crochet::config::Config) {
    per_buyer_limit(2)(config);
}

async fn an_mcp_client_finds_listings_and_calls_a_free_one(app: TestApp) {
    let free = priced_listing(&app, None, "/ok").await;
    let anonymous = mcp_client(&app, None).await;
    let info = anonymous.peer_info().expect("the server introduced itself");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("crochet")
    );

    let tools = anonymous.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "call_listing",
            "get_listing",
            "get_receipt",
            "list_gateway_requests",
            "search_listings"
        ]
    );
    let search = tools.iter().find(|t| t.name == "search_listings").unwrap();
    assert!(search.output_schema.as_ref().unwrap()["$defs"]["Listing"].is_object());

    // Search and get need no key, and answer what REST answers.
    let found = mcp_call(
        &anonymous,
        "search_listings",
        json!({"pricing_model": "free"}),
        None,
    )
    .await;
    assert_eq!(found.is_error, Some(false), "{found:?}");
    let rest = app
        .get("/listings?pricing_model=free", None)
        .await
        .expect(200);
    assert_eq!(structured(&found)["listings"], rest.body["data"]);
    assert_eq!(structured(&found)["pagination"], rest.body["pagination"]);
    let slug = free.data["slug"].as_str().unwrap();
    let got = mcp_call(&anonymous, "get_listing", json!({"id": slug}), None).await;
    assert_eq!(structured(&got)["id"], free.id.as_str());

    // A call needs a key, as over REST.
    let body = json!({"task": "summarize", "input": "mcp"});
    let no_key = mcp_call(
        &anonymous,
        "call_listing",
        json!({"listing": free.id, "input": body}),
        None,
    )
    .await;
    let rest_no_key = app
        .post(&format!("/gateway/{}", free.id), None, body.clone())
        .await;
    mcp_refused(&no_key, rest_no_key.status.as_u16(), rest_no_key.code());
    assert!(free.seller.requests().is_empty());

    let buyer = app.register(Wallet::solana()).await;
    let client = mcp_client(&app, buyer.key()).await;
    let called = mcp_call(
        &client,
        "call_listing",
        json!({"listing": free.id, "input": body}),
        None,
    )
    .await;
    assert_eq!(called.is_error, Some(false), "{called:?}");
    let data = structured(&called);
    assert_eq!(data["seller_response"]["echo"], body);
    assert_eq!(data["charged_amount"]["amount_cents"], 0);
    let text = called.content[0]
        .as_text()
        .expect("a text block")
        .text
        .clone();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["echo"],
        body,
        "the text is the seller's JSON"
    );
    let seen = free.seller.requests();
    assert_eq!(seen.len(), 1, "the seller is called once");
    assert!(seen[0].signature_valid);
    assert_eq!(seen[0].headers["x-crochet-buyer-id"], buyer.profile_id);

    let history = mcp_call(
        &client,
        "list_gateway_requests",
        json!({"role": "buyer"}),
        None,
    )
    .await;
    assert_eq!(
        structured(&history)["requests"][0]["id"],
        data["request_id"]
    );
    anonymous.cancel().await.unwrap();
    client.cancel().await.unwrap();
}

async fn a_paid_listing_is_bought_over_mcp(app: TestApp) {
    let paid = priced_listing(&app, Some(0.25), "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let client = mcp_client(&app, buyer.key()).await;
    let args =
        json!({"listing": paid.id, "input": {"task": "paid"}, "idempotency_key": "mcp-key-1"});

    let first = mcp_call(&client, "call_listing", args.clone(), None).await;
    let required = mcp_refused(&first, 402, "PAYMENT_REQUIRED");
    let payment = &required["error"]["details"]["payment"];
    assert_eq!(payment["amount_cents"], 25);
    let relay_request_id = payment["relay_request_id"].as_str().unwrap().to_owned();
    assert!(first.meta.is_none(), "no x402 offer while x402 is off");
    assert!(paid.seller.requests().is_empty());

    // Pay with the mock provider, then call again with the same input and key.
    let settle_url = payment["requirements"]["settle_url"].as_str().unwrap();
    let settled = app
        .http
        .post(settle_url)
        .bearer_auth(&buyer.api_key)
        .json(&json!({"outcome": "settled"}))
        .send()
        .await
        .unwrap();
    assert!(settled.status().is_success());
    let mut retry = args.clone();
    retry["relay_request_id"] = json!(relay_request_id);
    let done = mcp_call(&client, "call_listing", retry.clone(), None).await;
    assert_eq!(done.is_error, Some(false), "{done:?}");
    let data = structured(&done).clone();
    assert_eq!(data["charged_amount"]["amount_cents"], 25);
    assert_eq!(data["billable"], true);
    // The payment is spent: a repeat is refused as over REST, naming the call it paid.
    let again = mcp_call(&client, "call_listing", retry, None).await;
    let used = mcp_refused(&again, 409, "PAYMENT_ALREADY_USED");
    assert_eq!(
        used["error"]["details"]["gateway_request_id"],
        data["request_id"]
    );
    assert_eq!(paid.seller.requests().len(), 1, "one forward");

    let request_id = data["request_id"].as_str().unwrap();
    let pool = app.state().db.pool();
    let sum: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM ledger_entries WHERE gateway_request_id = $1",
    )
    .bind(request_id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(sum, 0, "the call's ledger entries balance");
    let entries: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM ledger_entries WHERE gateway_request_id = $1")
            .bind(request_id)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(entries, 3);

    let receipts = app.get("/receipts", buyer.key()).await.expect(200);
    let receipt_id = receipts.body["data"][0]["id"].as_str().unwrap();
    let receipt = mcp_call(&client, "get_receipt", json!({"id": receipt_id}), None).await;
    assert_eq!(structured(&receipt)["gateway_request_id"], request_id);
    client.cancel().await.unwrap();
}

async fn refusals_carry_the_same_codes_as_rest(app: TestApp) {
    let cheap = priced_listing(&app, Some(0.05), "/ok").await;
    let evm_buyer = app.register(Wallet::evm()).await;
    let client = mcp_client(&app, evm_buyer.key()).await;
    let body = json!({"task": "t"});

    // Below what an EVM payment route carries: the REST code, details and recovery.
    let over_mcp = mcp_call(
        &client,
        "call_listing",
        json!({"listing": cheap.id, "input": body}),
        None,
    )
    .await;
    let over_rest = gateway_call(&app, &evm_buyer, &cheap.id, &body, &[]).await;
    let refused = mcp_refused(
        &over_mcp,
        over_rest.status.as_u16(),
        "PAYMENT_ROUTE_MINIMUM_NOT_MET",
    );
    assert_eq!(refused["error"], over_rest.body["error"]);
    assert!(refused["error"]["recovery"].is_object());

    let unknown = mcp_call(
        &client,
        "call_listing",
        json!({"listing": "no-such-listing", "input": body}),
        None,
    )
    .await;
    mcp_refused(&unknown, 404, "LISTING_NOT_FOUND");
    let missing = mcp_call(
        &client,
        "get_listing",
        json!({"id": "no-such-listing"}),
        None,
    )
    .await;
    mcp_refused(&missing, 404, "LISTING_NOT_FOUND");
    let no_input = mcp_call(&client, "call_listing", json!({"listing": cheap.id}), None).await;
    mcp_refused(&no_input, 422, "VALIDATION_ERROR");
    let unknown_field = mcp_call(&client, "search_listings", json!({"colour": "red"}), None).await;
    mcp_refused(&unknown_field, 422, "VALIDATION_ERROR");
    let bad_sort = mcp_call(
        &client,
        "search_listings",
        json!({"sort": "sideways"}),
        None,
    )
    .await;
    assert_eq!(bad_sort.is_error, Some(true));
    let control = mcp_call(&client, "search_listings", json!({"q": "a\u{0001}b"}), None).await;
    mcp_refused(&control, 400, "INVALID_CHARACTER");
    let receipt = mcp_call(&client, "get_receipt", json!({"id": "rcpt_nope"}), None).await;
    mcp_refused(&receipt, 404, "RECEIPT_NOT_FOUND");
    assert!(cheap.seller.requests().is_empty(), "nothing was forwarded");

    let anonymous = mcp_client(&app, None).await;
    let history = mcp_call(&anonymous, "list_gateway_requests", json!({}), None).await;
    let rest = app.get("/gateway-requests", None).await;
    mcp_refused(&history, 401, rest.code());
    // A wrong key is refused as over REST.
    let wrong = mcp_client(&app, Some("am_k_not_a_real_key")).await;
    let call = mcp_call(
        &wrong,
        "call_listing",
        json!({"listing": cheap.id, "input": body}),
        None,
    )
    .await;
    let rest = app.get("/me", Some("am_k_not_a_real_key")).await;
    mcp_refused(&call, 401, rest.code());
    // An unknown tool is a protocol error, not a tool result.
    let params = rmcp::model::CallToolRequestParams::new("no_such_tool");
    assert!(client.call_tool(params).await.is_err());
}

async fn rest_and_mcp_calls_share_one_rate_limit(app: TestApp) {
    let free = priced_listing(&app, None, "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let client = mcp_client(&app, buyer.key()).await;
    let body = json!({"task": "t"});
    gateway_call(&app, &buyer, &free.id, &body, &[])
        .await
        .expect(200);
    let second = mcp_call(
        &client,
        "call_listing",
        json!({"listing": free.id, "input": body}),
        None,
    )
    .await;
    assert_eq!(second.is_error, Some(false), "{second:?}");
    let third = mcp_call(
        &client,
        "call_listing",
        json!({"listing": free.id, "input": body}),
        None,
    )
    .await;
    let rest = gateway_call(&app, &buyer, &free.id, &body, &[]).await;
    assert_eq!(rest.status.as_u16(), 429, "{}", rest.body);
    mcp_refused(&third, 429, rest.code());
    assert_eq!(free.seller.requests().len(), 2);
}

async fn an_x402_payment_travels_in_meta(app: TestApp) {
    let paid = priced_listing(&app, Some(0.25), "/ok").await;
    let wallet = Wallet::evm();
    let Wallet::Evm(key) = &wallet else {
        unreachable!()
    };
    let buyer = app.register(Wallet::Evm(key.clone())).await;
    let client = mcp_client(&app, buyer.key()).await;
    let args = json!({"listing": paid.id, "input": {"task": "x402"}});

    let first = mcp_call(&client, "call_listing", args.clone(), None).await;
    mcp_refused(&first, 402, "PAYMENT_REQUIRED");
    let offer = first
        .meta
        .as_ref()
        .expect("the x402 requirement in _meta")
        .0["x402/payment"]
        .clone();
    let offer: crochet_payment_x402::PaymentRequired = serde_json::from_value(offer).unwrap();
    let signature = sign_payment(&wallet, &offer.accepts[0], 300);
    let payload: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, signature).unwrap(),
    )
    .unwrap();

    let paid_call = mcp_call(
        &client,
        "call_listing",
        args,
        Some(json!({"x402/payment": payload})),
    )
    .await;
    assert_eq!(paid_call.is_error, Some(false), "{paid_call:?}");
    let data = structured(&paid_call);
    assert_eq!(data["payment"]["flow"], "x402");
    assert_eq!(data["payment"]["status"], "settled");
    let settlement =
        &paid_call.meta.as_ref().expect("the settlement in _meta").0["x402/payment-response"];
    assert_eq!(settlement["success"], true, "{settlement}");
    assert_eq!(facilitator().settles(&wallet.address()), 1);
    assert_eq!(paid.seller.requests().len(), 1);
}

async fn a_call_is_paid_from_the_balance_over_mcp(app: TestApp) {
    let paid = priced_listing(&app, Some(0.25), "/ok").await;
    let buyer = app.register(Wallet::solana()).await;
    let client = mcp_client(&app, buyer.key()).await;
    let args = json!({"listing": paid.id, "input": {"q": 1}, "pay_from": "balance"});
    let short = mcp_call(&client, "call_listing", args.clone(), None).await;
    mcp_refused(&short, 402, "INSUFFICIENT_BALANCE");
    top_up(&app, &buyer, 30).await;
    let ok = mcp_call(&client, "call_listing", args.clone(), None).await;
    assert_eq!(ok.is_error, Some(false), "{ok:?}");
    assert_eq!(structured(&ok)["payment"]["flow"], "balance");
    assert_eq!(structured(&ok)["charged_amount"]["amount_cents"], 25);
    assert_eq!(balance_of(&app, &buyer).await, 5);
    assert_eq!(paid.seller.requests().len(), 1);
    let bad = json!({"listing": paid.id, "input": {}, "pay_from": "card"});
    mcp_refused(
        &mcp_call(&client, "call_listing", bad, None).await,
        400,
        "INVALID_PAY_FROM",
    );
    money_adds_up(&app).await;
}

/// The host answers a plain `tools/call` itself and leaves every other request to the
/// SDK; both answers must be the same. An `Accept` with a weight is valid for the
/// transport but sends the request to the SDK, so each call is made both ways.
async fn a_plain_tool_call_is_answered_as_the_sdk_answers_it(app: TestApp) {
    let free = priced_listing(&app, None, "/ok").await;
    let buyer = app.register(Wallet::evm()).await;
    let key = buyer.key();
    let sdk_accept = "application/json;q=1, text/event-stream";
    let call = |id: Value, name: &str, arguments: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": name, "arguments": arguments}})
    };
    let both = async |message: &Value| {
        let inline = mcp_post(&app, key, MCP_ACCEPT, &[], message).await;
        let sdk = mcp_post(&app, key, sdk_accept, &[], message).await;
        assert_eq!(inline.0, 200, "{}", inline.1);
        assert_eq!(sdk.0, 200, "{}", sdk.1);
        (inline.1, sdk.1)
    };

    // Answers that do not change between two calls are the same, byte for byte.
    for message in [
        call(
            json!(7),
            "search_listings",
            json!({"pricing_model": "free"}),
        ),
        call(json!("a-string-id"), "get_listing", json!({"id": free.id})),
        call(json!(8), "get_listing", json!({"id": "no-such-listing"})),
        call(json!(9), "call_listing", json!({"listing": free.id})),
        call(json!(10), "search_listings", json!({"colour": "red"})),
        call(json!(11), "get_receipt", json!({"id": "rcpt_nope"})),
    ] {
        let (inline, sdk) = both(&message).await;
        assert_eq!(inline, sdk, "{message}");
        assert_eq!(inline["id"], message["id"]);
    }

    // A forwarded call: the same seller answer, and the same fields around it.
    let input = json!({"task": "summarize"});
    let message = call(
        json!(12),
        "call_listing",
        json!({"listing": free.id, "input": input}),
    );
    let (inline, sdk) = both(&message).await;
    for answer in [&inline, &sdk] {
        assert_eq!(answer["result"]["isError"], false, "{answer}");
    }
    assert_eq!(
        inline["result"]["content"], sdk["result"]["content"],
        "the seller's answer"
    );
    let keys = |v: &Value| {
        let mut keys: Vec<String> = v["result"]["structuredContent"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&inline), keys(&sdk));
    assert_eq!(free.seller.requests().len(), 2, "each call forwarded once");

    // Inline, the seller gets the client's text of `input`, as over REST; the answer
    // carries the seller's JSON as it wrote it.
    let text = format!(
        r#"{{"jsonrpc": "2.0", "id": 15, "method": "tools/call", "params": {{"name": "call_listing",
            "arguments": {{"input": {{"z": 1, "a": [ 2.50 ]}}, "listing": "{}"}}}}}}"#,
        free.id
    );
    let (status, answer) = mcp_post_text(&app, key, MCP_ACCEPT, &[], text).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let seen = free.seller.requests().pop().unwrap();
    assert_eq!(seen.body, br#"{"z": 1, "a": [ 2.50 ]}"#.as_slice());
    let seller_text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(seller_text).unwrap(),
        answer["result"]["structuredContent"]["seller_response"]
    );

    // What the SDK refuses, it still refuses: an unknown tool, another host.
    let unknown = call(json!(13), "no_such_tool", json!({}));
    let (inline, sdk) = both(&unknown).await;
    assert_eq!(inline, sdk);
    assert!(inline["error"].is_object(), "{inline}");
    let search = call(json!(14), "search_listings", json!({}));
    let (status, _) = mcp_post(&app, key, MCP_ACCEPT, &[("host", "evil.example")], &search).await;
    assert_eq!(status, 403, "DNS rebinding protection");
}

//! Input rules at the boundary: control characters in paths, queries and JSON bodies,
//! JSON media types and UTF-8, names without invisible characters, endpoint host names
//! resolved when set, and arbitrary bytes that must always get a 4xx envelope.

use proptest::prelude::*;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Agent, Reply, TestApp, Wallet, listing_body, priced_listing};
use crate::on_both_backends;

on_both_backends!(
    control_characters_are_refused_in_every_path_query_and_body,
    every_body_route_requires_a_json_content_type,
    the_gateway_takes_utf8_json_only_and_forwards_its_escapes,
    names_refuse_invisible_formatting_characters,
    arbitrary_bytes_and_headers_always_get_a_4xx_envelope,
);

on_both_backends!(
    mod production_dns,
    configure = crate::input::production_with_pinned_names;
    endpoint_names_are_resolved_when_set,
);

/// Percent-encoded values with a control character: NUL, C0, DEL and C1.
const PATH_CONTROLS: &[&str] = &[
    "%00", "a%00b", "%01", "%0A", "%1B", "%7F", "%C2%85", "%C2%9F",
];

/// JSON string values with a refused control character, escaped or raw.
const JSON_CONTROLS: &[&str] = &[
    r#""\u0000""#,
    r#""x\u0000y""#,
    r#""\u001b""#,
    r#""\b""#,
    r#""\f""#,
    r#""\u007F""#,
    r#""\u0085""#,
    "\"\u{7f}\"",
    "\"\u{9b}\"",
];

/// The path with every `{param}` replaced by `value`.
fn fill(path: &str, value: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { value } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// A refusal for a control character: 400 INVALID_CHARACTER, never retryable.
#[track_caller]
fn assert_invalid_character(r: &Reply, location: &str, field: Option<&str>, what: &str) {
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (400, "INVALID_CHARACTER"),
        "{what}: {}",
        r.body
    );
    let error = &r.body["error"];
    assert_eq!(error["details"]["in"], location, "{what}: {}", r.body);
    if let Some(field) = field {
        assert_eq!(error["details"]["field"], field, "{what}: {}", r.body);
    }
    assert_eq!(error["recovery"]["retryable"], false, "{what}: {}", r.body);
}

async fn control_characters_are_refused_in_every_path_query_and_body(app: TestApp) {
    let agent = app.register(Wallet::evm()).await;
    let ops = app.operations().await;
    let with_body = |m: &Method| [Method::POST, Method::PUT, Method::PATCH].contains(m);

    // Every path parameter of every route.
    let mut path_routes = 0;
    for (method, path, _) in &ops {
        if !path.contains('{') {
            continue;
        }
        path_routes += 1;
        for control in PATH_CONTROLS {
            let url = fill(path, control);
            let (ct, body) = if with_body(method) {
                (Some("application/json"), b"{}".to_vec())
            } else {
                (None, Vec::new())
            };
            let r = app
                .send_raw(method.clone(), &url, agent.key(), ct, &[], body)
                .await;
            assert_invalid_character(&r, "path", None, &format!("{method} {url}"));
        }
    }
    assert!(
        path_routes >= 20,
        "{path_routes} routes with path parameters"
    );

    // Every query parameter of every route (the category, delivery_type and status
    // filters among them).
    let mut query_params = Vec::new();
    for (method, path, op) in &ops {
        for param in op["parameters"].as_array().into_iter().flatten() {
            if param["in"] == "query" {
                let name = param["name"].as_str().unwrap().to_owned();
                query_params.push((method.clone(), fill(path, "x"), name));
            }
        }
    }
    for wanted in ["category", "delivery_type", "status", "q", "page"] {
        assert!(
            query_params.iter().any(|(_, _, n)| n == wanted),
            "{wanted} is among {query_params:?}"
        );
    }
    for (method, path, name) in &query_params {
        for control in PATH_CONTROLS {
            let url = format!("{path}?{name}={control}");
            let r = app
                .send_raw(method.clone(), &url, agent.key(), None, &[], Vec::new())
                .await;
            assert_invalid_character(&r, "query", Some(name), &format!("{method} {url}"));
        }
    }

    // Every JSON body (the gateway forwards its body as is: see below).
    let mut body_routes = 0;
    for (method, path, op) in &ops {
        let json_body = op["requestBody"]["content"]
            .as_object()
            .is_some_and(|c| c.keys().any(|k| k.contains("json")));
        if !json_body || path.contains("/gateway/") {
            continue;
        }
        body_routes += 1;
        let url = fill(path, "x");
        for control in JSON_CONTROLS {
            let body = format!(r#"{{"nonce": {control}, "pow_nonce": "1"}}"#);
            let r = app
                .send_raw(
                    method.clone(),
                    &url,
                    agent.key(),
                    Some("application/json"),
                    &[],
                    body.into_bytes(),
                )
                .await;
            assert_invalid_character(&r, "body", Some("nonce"), &format!("{method} {url}"));
        }
    }
    assert!(body_routes >= 12, "{body_routes} routes with JSON bodies");

    // The real shapes: a register, recover and claim proof whose nonce holds a NUL.
    let wallet = Wallet::evm();
    for (path, purpose) in [
        ("/register".to_owned(), "register"),
        ("/auth/recover".to_owned(), "recover"),
        (format!("/agents/{}/claim", agent.profile_id), "claim"),
    ] {
        let mut proof = match purpose {
            "register" => app.proof(&wallet, purpose, None).await,
            "recover" => app.proof(&agent.wallet, purpose, None).await,
            _ => {
                app.proof(&agent.wallet, purpose, Some(&agent.profile_id))
                    .await
            }
        };
        proof["nonce"] = json!("\u{0}");
        proof["claimant_name"] = json!("Operator");
        if purpose != "claim" {
            proof.as_object_mut().unwrap().remove("claimant_name");
        }
        let r = app.post(&path, None, proof).await;
        assert_invalid_character(&r, "body", Some("nonce"), &path);
    }

    // Free text keeps its tabs and line breaks.
    let seller = app.register_as(Wallet::evm(), "seller").await;
    let mut body = listing_body("Multi-line", "http://127.0.0.1:9/");
    body["description"] = json!("First line.\nSecond line:\tindented.\r\n");
    app.create_listing(&seller, body).await.expect(201);
}

async fn every_body_route_requires_a_json_content_type(app: TestApp) {
    let agent = app.register(Wallet::evm()).await;
    let mut checked = Vec::new();
    for (method, path, op) in app.operations().await {
        let Some(content) = op["requestBody"]["content"].as_object() else {
            continue;
        };
        let url = fill(&path, "00000000-0000-0000-0000-000000000000");
        for ct in [
            Some("text/plain"),
            None,
            Some("application/x-www-form-urlencoded"),
        ] {
            let r = app
                .send_raw(
                    method.clone(),
                    &url,
                    agent.key(),
                    ct,
                    &[],
                    br#"{"outcome": "settled"}"#.to_vec(),
                )
                .await;
            r.expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
        }
        if content.keys().any(|k| k.contains("json")) {
            // Invalid UTF-8 is not JSON, whatever the parser would skip.
            let r = app
                .send_raw(
                    method.clone(),
                    &url,
                    agent.key(),
                    Some("application/json"),
                    &[],
                    b"{\"outcome\": \"\xff\xfe\"}".to_vec(),
                )
                .await;
            // The gateway checks its body after finding the listing (404 here).
            if !path.contains("/gateway/") {
                r.expect_error(400, "INVALID_JSON");
            }
            // A JSON type with parameters, or a +json type, is JSON.
            for ct in [
                "application/json; charset=utf-8",
                "application/vnd.api+json",
            ] {
                let r = app
                    .send_raw(
                        method.clone(),
                        &url,
                        agent.key(),
                        Some(ct),
                        &[],
                        b"{}".to_vec(),
                    )
                    .await;
                assert_ne!(
                    r.status.as_u16(),
                    415,
                    "{method} {path} with {ct}: {}",
                    r.body
                );
            }
        }
        checked.push(format!("{method} {path}"));
    }
    assert!(checked.len() >= 14, "{checked:?}");
    assert!(
        checked
            .iter()
            .any(|c| c.contains("/gateway/") || c.contains("/settle")),
        "{checked:?}"
    );

    // The optional body of the mock settle route.
    let buyer = app.register(Wallet::evm()).await;
    let listing = priced_listing(&app, Some(0.5), "/ok").await;
    let pending = crate::common::gateway_call(&app, &buyer, &listing.id, &json!({}), &[])
        .await
        .expect_error(402, "PAYMENT_REQUIRED");
    let settle_url = pending.body["error"]["details"]["payment"]["requirements"]["settle_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let settle = &settle_url[app.base.len()..];
    let send = |ct: Option<&'static str>, body: &'static [u8]| {
        app.send_raw(Method::POST, settle, buyer.key(), ct, &[], body.to_vec())
    };
    let not_json: [(Option<&'static str>, &'static [u8]); 4] = [
        (Some("text/plain"), b""),
        (Some("text/plain"), br#"{"outcome":"pending"}"#),
        (None, br#"{"outcome":"pending"}"#),
        (None, b" "),
    ];
    for (ct, body) in not_json {
        send(ct, body)
            .await
            .expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    }
    send(Some("application/json"), b"  \n")
        .await
        .expect_error(400, "INVALID_JSON");
    // An empty body without a type, or with a JSON one, is "no body": settled.
    let r = send(Some("application/json"), b"").await.expect(200);
    assert_eq!(r.data()["status"], "settled");
    let r = send(None, b"").await.expect(200);
    assert_eq!(r.data()["status"], "settled");
}

async fn the_gateway_takes_utf8_json_only_and_forwards_its_escapes(app: TestApp) {
    let listing = priced_listing(&app, None, "/ok").await;
    let buyer = app.register(Wallet::evm()).await;
    let url = format!("/gateway/{}", listing.id);
    let call = |ct: Option<&'static str>, body: &[u8]| {
        app.send_raw(Method::POST, &url, buyer.key(), ct, &[], body.to_vec())
    };
    call(Some("text/plain"), br#"{"task":"x"}"#)
        .await
        .expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    call(None, br#"{"task":"x"}"#)
        .await
        .expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    call(Some("application/json"), b"{\"task\":\"\xff\xfe\"}")
        .await
        .expect_error(400, "INVALID_JSON");
    assert!(
        listing.seller.requests().is_empty(),
        "nothing refused reached the seller"
    );
    // The buyer's exact JSON goes to the seller, escapes included: the host never stores
    // it, and what it may contain is between buyer and seller.
    let exact = br#"{"task":"a\u0000b\u001b","raw":"\u00e9"}"#;
    call(Some("application/json; charset=utf-8"), exact)
        .await
        .expect(200);
    call(Some("application/vnd.task+json"), exact)
        .await
        .expect(200);
    let seen = listing.seller.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|r| r.body == exact.to_vec()));
}

async fn names_refuse_invisible_formatting_characters(app: TestApp) {
    let invisible = [
        "\u{202E}", "\u{202A}", "\u{2066}", "\u{2069}", "\u{200B}", "\u{200F}", "\u{FEFF}",
        "\u{2028}", "\u{00AD}",
    ];
    let seller = app.register_as(Wallet::evm(), "seller").await;
    let created = app
        .create_listing(&seller, listing_body("Plain Name", "http://127.0.0.1:9/"))
        .await
        .expect(201);
    let id = created.data()["id"].as_str().unwrap().to_owned();
    for c in invisible {
        let name = format!("Safe{c}Name");

        let body = json!({
            "wallet_address": Wallet::evm().address(),
            "nonce": "n", "signature": "s", "pow_nonce": "p",
            "display_name": name,
        });
        let r = app.post("/register", None, body).await;
        expect_field(r, "display_name");

        let r = app
            .create_listing(&seller, listing_body(&name, "http://127.0.0.1:9/"))
            .await;
        expect_field(r, "name");
        let r = app
            .patch(
                &format!("/listings/{id}"),
                seller.key(),
                json!({"name": name}),
            )
            .await;
        expect_field(r, "name");

        let r = app
            .post(
                &format!("/agents/{}/claim", seller.profile_id),
                None,
                json!({
                    "wallet_address": seller.wallet.address(),
                    "nonce": "n", "signature": "s", "pow_nonce": "p",
                    "claimant_name": name,
                }),
            )
            .await;
        expect_field(r, "claimant_name");
    }
    // Visible text in any script still passes.
    let r = app
        .patch(
            &format!("/listings/{id}"),
            seller.key(),
            json!({"name": "Übersetzer 翻訳 مترجم"}),
        )
        .await
        .expect(200);
    assert_eq!(r.data()["name"], "Übersetzer 翻訳 مترجم");
}

#[track_caller]
fn expect_field(r: Reply, field: &str) {
    let r = r.expect_error(422, "VALIDATION_ERROR");
    assert_eq!(r.body["error"]["details"]["field"], field, "{}", r.body);
}

/// Production, with `seller.test` pinned to a private address, `public.test` to a public
/// one and `mixed.test` to both.
pub fn production_with_pinned_names(config: &mut crochet::config::Config) {
    crate::common::production(config);
    let pin = |addrs: &[&str]| addrs.iter().map(|a| a.parse().unwrap()).collect();
    config
        .dns_overrides
        .insert("seller.test".into(), pin(&["10.0.0.7"]));
    config
        .dns_overrides
        .insert("public.test".into(), pin(&["93.184.215.14"]));
    config
        .dns_overrides
        .insert("mixed.test".into(), pin(&["93.184.215.14", "127.0.0.1"]));
}

async fn endpoint_names_are_resolved_when_set(app: TestApp) {
    let seller = app.register_as(Wallet::evm(), "seller").await;
    for url in ["https://seller.test/x", "https://MIXED.test./x"] {
        let r = app
            .create_listing(&seller, listing_body("Pinned", url))
            .await;
        r.expect_error(422, "ENDPOINT_ADDRESS_NOT_ALLOWED");
    }
    let created = app
        .create_listing(&seller, listing_body("Public", "https://public.test/x"))
        .await
        .expect(201);
    let id = created.data()["id"].as_str().unwrap();
    let r = app
        .send(
            Method::PUT,
            &format!("/listings/{id}/endpoint"),
            seller.key(),
            Some(&json!({"private_endpoint_url": "https://seller.test:8443/"})),
        )
        .await;
    let r = r.expect_error(422, "ENDPOINT_ADDRESS_NOT_ALLOWED");
    assert_eq!(r.body["error"]["details"]["field"], "private_endpoint_url");
    assert!(
        !r.body.to_string().contains("seller.test"),
        "the URL is not echoed"
    );
    app.patch(
        &format!("/listings/{id}"),
        seller.key(),
        json!({"private_endpoint_url": "https://seller.test/y"}),
    )
    .await
    .expect_error(422, "ENDPOINT_ADDRESS_NOT_ALLOWED");
}

/// One request of the HTTP property: a route, who calls, extra headers and a body.
#[derive(Debug, Clone)]
struct Arbitrary {
    route: usize,
    auth: Option<Vec<u8>>,
    content_type: Option<Vec<u8>>,
    headers: Vec<(usize, Vec<u8>)>,
    body: Vec<u8>,
}

const HEADER_NAMES: &[&str] = &[
    "idempotency-key",
    "x-crochet-relay-request-id",
    "x-crochet-origin-currency",
    "x-crochet-origin-chain-id",
    "x-crochet-origin-wallet-id",
    "x-request-id",
];

fn arbitrary_request() -> impl Strategy<Value = Arbitrary> {
    let bytes = |n| proptest::collection::vec(any::<u8>(), 0..n);
    let content_type = prop_oneof![
        Just(None),
        Just(Some(b"application/json".to_vec())),
        bytes(40).prop_map(Some),
    ];
    let body = prop_oneof![
        bytes(200),
        ".{0,100}".prop_map(String::into_bytes),
        "\\{\"[a-z_]{1,12}\": ?\"(\\\\u00[0-9a-f]{2}|[^\"\\\\]){0,12}\"\\}"
            .prop_map(String::into_bytes),
    ];
    (
        0..4usize,
        proptest::option::of(bytes(60)),
        content_type,
        proptest::collection::vec((0..HEADER_NAMES.len(), bytes(40)), 0..3),
        body,
    )
        .prop_map(|(route, auth, content_type, headers, body)| Arbitrary {
            route,
            auth,
            content_type,
            headers,
            body,
        })
}

async fn arbitrary_bytes_and_headers_always_get_a_4xx_envelope(app: TestApp) {
    let buyer = app.register(Wallet::evm()).await;
    let listing = priced_listing(&app, None, "/ok").await;
    let routes = [
        (Method::POST, "/register".to_owned()),
        (Method::POST, "/listings".to_owned()),
        (Method::POST, format!("/gateway/{}", listing.id)),
        (Method::PATCH, "/me/wallets/x".to_owned()),
    ];
    let handle = tokio::runtime::Handle::current();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&arbitrary_request(), |case| {
        let reply = tokio::task::block_in_place(|| {
            handle.block_on(send_arbitrary(&app, &buyer, &routes, &case))
        });
        let status = reply.status.as_u16();
        // The free gateway listing forwards any valid JSON; nothing else may succeed.
        let may_succeed = case.route == 2 && serde_json::from_slice::<Value>(&case.body).is_ok();
        prop_assert!(status < 500, "{case:?}: {status} {}", reply.body);
        if !(may_succeed && status == 200) {
            prop_assert!(
                (400..500).contains(&status),
                "{case:?}: {status} {}",
                reply.body
            );
            prop_assert_eq!(&reply.body["success"], &json!(false));
            prop_assert!(reply.code().len() > 2, "{case:?}: {}", reply.body);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

async fn send_arbitrary(
    app: &TestApp,
    buyer: &Agent,
    routes: &[(Method, String)],
    case: &Arbitrary,
) -> Reply {
    let (method, path) = &routes[case.route];
    let mut headers: Vec<(&str, &[u8])> = case
        .headers
        .iter()
        .map(|(i, v)| (HEADER_NAMES[*i], v.as_slice()))
        .collect();
    if let Some(ct) = &case.content_type {
        headers.push(("content-type", ct));
    }
    let bearer = format!("Bearer {}", buyer.api_key);
    match &case.auth {
        Some(auth) => headers.push(("authorization", auth)),
        None => headers.push(("authorization", bearer.as_bytes())),
    }
    app.send_raw(
        method.clone(),
        path,
        None,
        None,
        &headers,
        case.body.clone(),
    )
    .await
}

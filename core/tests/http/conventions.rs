//! API conventions: envelopes for every malformed request, health, request
//! ids, and an OpenAPI document that matches the router.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::json;

use crate::common::{Backend, TestApp, Wallet};
use crate::on_both_backends;

on_both_backends!(health_reports_the_database);

async fn health_reports_the_database(app: TestApp) {
    let r = app.get("/health", None).await.expect(200);
    assert_eq!(r.data()["status"], "ok");
    assert_eq!(r.data()["database"], "ok");
    assert!(r.headers.contains_key("x-request-id"));
}

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut req = app.http.request(method, app.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        resp.headers().contains_key("x-request-id"),
        "{path}: request id header"
    );
    let text = resp.text().await.unwrap();
    assert_eq!(
        ct.as_deref(),
        Some("application/json"),
        "{path} answered {status} {text}"
    );
    (status, serde_json::from_str(&text).unwrap())
}

#[tokio::test]
async fn malformed_requests_get_precise_envelopes() {
    let app = TestApp::start(Backend::Sqlite, |c| c.max_body_bytes = 4096)
        .await
        .unwrap();
    let json_ct = Some("application/json");
    // (method, path, content type, body, expected status, expected code)
    type Case<'a> = (Method, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/auth/challenge",
            json_ct,
            b"{not json".to_vec(),
            400,
            "INVALID_JSON",
        ),
        (
            Method::POST,
            "/auth/challenge",
            json_ct,
            b"".to_vec(),
            400,
            "INVALID_JSON",
        ),
        (
            Method::POST,
            "/auth/challenge",
            json_ct,
            br#"{"wallet_address": 42}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            Method::POST,
            "/auth/challenge",
            json_ct,
            br#"{}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            Method::POST,
            "/auth/challenge",
            json_ct,
            br#"{"wallet_address": "0x00", "extra": 1}"#.to_vec(),
            422,
            "VALIDATION_ERROR",
        ),
        (
            Method::POST,
            "/auth/challenge",
            None,
            br#"{"wallet_address": "x"}"#.to_vec(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            Method::POST,
            "/auth/challenge",
            Some("text/plain"),
            br#"{"wallet_address": "x"}"#.to_vec(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            Method::POST,
            "/register",
            json_ct,
            vec![b' '; 10_000],
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            Method::GET,
            "/api-keys?page=abc",
            None,
            vec![],
            401,
            "AUTH_REQUIRED",
        ),
        (
            Method::GET,
            "/nowhere",
            None,
            vec![],
            404,
            "ROUTE_NOT_FOUND",
        ),
        (
            Method::GET,
            "/api/v2/health",
            None,
            vec![],
            404,
            "ROUTE_NOT_FOUND",
        ),
        (
            Method::PUT,
            "/register",
            json_ct,
            b"{}".to_vec(),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            Method::DELETE,
            "/me",
            None,
            vec![],
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ];
    for (method, path, ct, body, status, code) in cases {
        let (got, body) = raw(&app, method.clone(), path, ct, body).await;
        assert_eq!(
            (got, body["error"]["code"].as_str().unwrap()),
            (status, code),
            "{method} {path}: {body}"
        );
        assert_eq!(body["success"], false);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }

    // With a valid key, bad query and path parameters are refused precisely too.
    let agent = app.register(Wallet::evm()).await;
    let r = app.get("/api-keys?page=abc", agent.key()).await;
    r.expect_error(400, "INVALID_QUERY");
    let r = app.get("/api-keys?limit=-1", agent.key()).await;
    r.expect_error(400, "INVALID_QUERY");
    let r = app.get("/me/wallets/%FF%FE", agent.key()).await;
    r.expect_error(400, "INVALID_PATH_PARAMETER");
    // Oversized limits are clamped to 100.
    let r = app
        .get("/api-keys?limit=1000", agent.key())
        .await
        .expect(200);
    assert_eq!(r.body["pagination"]["limit"], 100);
}

/// Every route so far, as (method, OpenAPI path).
const EXPECTED_ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/health"),
    ("post", "/api/v1/auth/challenge"),
    ("post", "/api/v1/register"),
    ("post", "/api/v1/auth/recover"),
    ("get", "/api/v1/me"),
    ("get", "/api/v1/me/wallets"),
    ("post", "/api/v1/me/wallets"),
    ("get", "/api/v1/me/wallets/{id}"),
    ("patch", "/api/v1/me/wallets/{id}"),
    ("get", "/api/v1/api-keys"),
    ("post", "/api/v1/api-keys"),
    ("delete", "/api/v1/api-keys/{id}"),
    ("patch", "/api/v1/api-keys/{id}"),
    ("post", "/api/v1/agents/{id}/claim"),
    ("get", "/api/v1/agents/{id}"),
    ("get", "/api/v1/categories"),
    ("get", "/api/v1/discovery/resources"),
    ("get", "/api/v1/listings"),
    ("post", "/api/v1/listings"),
    ("post", "/api/v1/listings/challenge"),
    ("get", "/api/v1/listings/{id}"),
    ("patch", "/api/v1/listings/{id}"),
    ("delete", "/api/v1/listings/{id}"),
    ("get", "/api/v1/listings/{id}/endpoint"),
    ("put", "/api/v1/listings/{id}/endpoint"),
    ("post", "/api/v1/listings/{id}/endpoint/test"),
    ("post", "/api/v1/listings/{id}/endpoint/rotate-secret"),
    ("get", "/api/v1/listings/{id}/adapter"),
    ("put", "/api/v1/listings/{id}/adapter"),
    ("delete", "/api/v1/listings/{id}/adapter"),
    ("put", "/api/v1/listings/{id}/adapter/component"),
    ("post", "/api/v1/payments/mock/{request_id}/settle"),
    ("post", "/api/v1/gateway/{listing_id}"),
    ("get", "/api/v1/gateway-requests"),
    ("get", "/api/v1/ledger"),
    ("get", "/api/v1/balance"),
    ("post", "/api/v1/balance/deposits"),
    ("get", "/api/v1/balance/deposits"),
    ("get", "/api/v1/receipts"),
    ("get", "/api/v1/receipts/{id}"),
    ("get", "/api/v1/reviews/{listing_id}"),
    ("post", "/api/v1/reviews/{listing_id}"),
    ("get", "/api/v1/agents/{id}/score"),
];

#[tokio::test]
async fn openapi_documents_exactly_the_routes_the_router_serves() {
    let app = TestApp::start(Backend::Sqlite, |_| {}).await.unwrap();
    let doc = app.get("/api/openapi.json", None).await.expect(200).body;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((method.clone(), path.clone()));
                let op = &item[method];
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} documents responses"
                );
            }
        }
    }
    for (m, p) in EXPECTED_ROUTES {
        assert!(
            documented.contains(&(m.to_string(), p.to_string())),
            "{m} {p} is documented"
        );
    }
    // Each documented operation is served by the real router (not the 404/405 fallbacks).
    for (method, path) in &documented {
        let concrete: Vec<&str> = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    "00000000-0000-0000-0000-000000000000"
                } else {
                    seg
                }
            })
            .collect();
        let concrete = concrete.join("/");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let ct = (m != Method::GET && m != Method::DELETE).then_some("application/json");
        let body = if ct.is_some() { b"{}".to_vec() } else { vec![] };
        let (status, body) = raw(&app, m, &concrete, ct, body).await;
        let code = body["error"]["code"].as_str().unwrap_or("");
        assert!(
            code != "ROUTE_NOT_FOUND" && code != "METHOD_NOT_ALLOWED",
            "{method} {path} is documented but not routed ({status} {body})"
        );
    }
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    assert_eq!(
        json!(documented.len()),
        json!(EXPECTED_ROUTES.len()),
        "no undocumented extras: {documented:?}"
    );
}

#[tokio::test]
async fn production_refuses_the_mock_provider_and_missing_key() {
    let mut config = crate::common::test_config("sqlite://unused.db".into());
    config.environment = crochet::config::Environment::Production;
    let err = crochet::app::start(config.clone())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("CROCHET_PAYMENT_PROVIDER") && err.contains("Fix:"),
        "{err}"
    );
    config.payment_provider = crochet::config::PaymentProviderKind::Relay;
    config.encryption_key = None;
    let err = crochet::app::start(config).await.err().unwrap().to_string();
    assert!(err.contains("CROCHET_ENCRYPTION_KEY"), "{err}");
    assert!(!std::path::Path::new("unused.db").exists());
}

#[tokio::test]
async fn default_pow_difficulty_is_four_in_development() {
    let app = TestApp::start(Backend::Sqlite, |c| c.pow_difficulty = None)
        .await
        .unwrap();
    let c = app.challenge(&Wallet::evm(), "register", None).await;
    assert_eq!(c["pow"]["difficulty"], 4);
    // A real agent still registers at the default difficulty.
    app.register(Wallet::solana()).await;
}

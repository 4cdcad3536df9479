//! The payment provider layer through the real host: the mock provider's requirement and
//! settle route, its persistence, and provider selection by configuration.

use serde_json::json;

use crate::common::{Agent, Backend, TestApp, Wallet};
use crate::on_both_backends;
use crochet::payments::{
    OriginCurrency, PaymentError, RequirementRequest, Route, Settlement, SettlementQuery,
};

on_both_backends!(
    mock_settle_route_completes_payments,
    mock_state_survives_a_restart
);

fn requirement_for(
    buyer: &Agent,
    amount_cents: i64,
    currency: OriginCurrency,
) -> RequirementRequest {
    RequirementRequest {
        buyer_id: buyer.profile_id.clone(),
        listing_id: "listing-1".into(),
        seller_id: "seller-1".into(),
        seller_payout: None,
        amount_cents,
        currency: "USD".into(),
        route: Route {
            origin_currency: Some(currency),
            ..Route::default()
        },
    }
}

fn query(id: &str, amount_cents: i64) -> SettlementQuery {
    SettlementQuery {
        request_id: id.into(),
        amount_cents,
        currency: "USD".into(),
    }
}

/// The settle path of a requirement, relative to the host (its settle_url is absolute).
fn settle_path(app: &TestApp, settle_url: &serde_json::Value) -> String {
    let url = settle_url.as_str().unwrap();
    assert!(
        url.starts_with(&app.base),
        "{url} is built from the public URL"
    );
    url[app.base.len()..].to_owned()
}

async fn mock_settle_route_completes_payments(app: TestApp) {
    let buyer = app.register(Wallet::solana()).await;
    let other = app.register(Wallet::evm()).await;
    let provider = app.state().payments.provider().clone();
    assert_eq!(provider.name(), "mock");
    let req = provider
        .create_requirement(&requirement_for(&buyer, 100, OriginCurrency::Sol))
        .await
        .unwrap();
    assert_eq!(req.requirements["scheme"], "mock");
    assert_eq!(req.requirements["amount_cents"], 100);
    assert_eq!(req.requirements["currency"], "USD");
    let path = settle_path(&app, &req.requirements["settle_url"]);

    app.post(&path, None, json!({}))
        .await
        .expect_error(401, "AUTH_REQUIRED");
    app.post(&path, other.key(), json!({}))
        .await
        .expect_error(404, "PAYMENT_NOT_FOUND");
    app.post(&path, buyer.key(), json!({"outcome": "refund_me"}))
        .await
        .expect_error(422, "VALIDATION_ERROR");

    let r = app
        .post(&path, buyer.key(), json!({"outcome": "pending"}))
        .await
        .expect(200);
    assert_eq!(r.data()["status"], "pending");
    match provider
        .settlement(&query(&req.request_id, 100))
        .await
        .unwrap()
    {
        Settlement::Pending {
            retry_after_seconds,
            ..
        } => assert!(retry_after_seconds > 0),
        other => panic!("{other:?}"),
    }
    // No body at all means `settled`.
    let resp = app
        .http
        .post(app.url(&path))
        .bearer_auth(&buyer.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(matches!(
        provider
            .settlement(&query(&req.request_id, 100))
            .await
            .unwrap(),
        Settlement::Settled { .. }
    ));
    app.post(&path, buyer.key(), json!({"outcome": "failed"}))
        .await
        .expect_error(409, "PAYMENT_ALREADY_FINAL");

    // A failed payment reports failure.
    let failing = provider
        .create_requirement(&requirement_for(&buyer, 250, OriginCurrency::Usdc))
        .await
        .unwrap();
    let path = settle_path(&app, &failing.requirements["settle_url"]);
    app.post(&path, buyer.key(), json!({"outcome": "failed"}))
        .await
        .expect(200);
    assert!(matches!(
        provider
            .settlement(&query(&failing.request_id, 250))
            .await
            .unwrap(),
        Settlement::Failed { .. }
    ));

    // EVM below 10 cents is refused like Relay does; Solana carries it.
    match provider
        .create_requirement(&requirement_for(&buyer, 5, OriginCurrency::Usdc))
        .await
    {
        Err(PaymentError::RouteMinimum {
            on_solana: false, ..
        }) => {}
        other => panic!("{other:?}"),
    }
    provider
        .create_requirement(&requirement_for(&buyer, 5, OriginCurrency::Sol))
        .await
        .unwrap();
}

async fn mock_state_survives_a_restart(app: TestApp) {
    let buyer = app.register(Wallet::solana()).await;
    let provider = app.state().payments.provider().clone();
    let req = provider
        .create_requirement(&requirement_for(&buyer, 100, OriginCurrency::Sol))
        .await
        .unwrap();
    let app = app.restart(|_| {}).await;
    // The settle URL names the new address; the payment is still there.
    let path = format!("/payments/mock/{}/settle", req.request_id);
    app.post(&path, buyer.key(), json!({})).await.expect(200);
    let provider = app.state().payments.provider().clone();
    assert!(matches!(
        provider
            .settlement(&query(&req.request_id, 100))
            .await
            .unwrap(),
        Settlement::Settled { .. }
    ));
}

#[tokio::test]
async fn production_uses_relay_and_has_no_mock_route() {
    let app = TestApp::start(Backend::Sqlite, crate::common::production)
        .await
        .unwrap();
    assert_eq!(app.state().payments.provider().name(), "relay");
    assert!(app.state().payments.mock().is_none());
    let buyer = app.register(Wallet::solana()).await;
    app.post("/payments/mock/mock_abc/settle", buyer.key(), json!({}))
        .await
        .expect_error(404, "ROUTE_NOT_FOUND");
    let doc = app.get("/api/openapi.json", None).await.body;
    assert!(
        doc["paths"]
            .get("/api/v1/payments/mock/{request_id}/settle")
            .is_none()
    );
}

#[tokio::test]
async fn relay_without_a_treasury_address_refuses_to_start() {
    let mut config = crate::common::test_config("sqlite://unused-relay.db".into());
    let dir = tempfile::tempdir().unwrap();
    config.database_url = Some(format!("sqlite://{}", dir.path().join("r.db").display()));
    config.payment_provider = crochet::config::PaymentProviderKind::Relay;
    let err = crochet::app::start(config).await.err().unwrap();
    assert!(format!("{err:#}").contains("payment provider"), "{err:#}");
}

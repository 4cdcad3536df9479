//! x402 for the tests: a local facilitator and buyers that sign real EIP-3009 payments.
//!
//! The facilitator is an axum server (`/supported`, `/verify`, `/settle`) around the
//! crate's built-in facilitator, so it really checks EIP-712 signatures made with real
//! keys; the host reaches it through its HTTP facilitator client, as it would a
//! production one. It runs on a thread of its own, shared by every test of the binary:
//! a test picks how it behaves for *its* buyer's wallet ([`Facilitator::behave`]) and
//! reads the calls made for that wallet, so tests running at once do not interfere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crochet::config::Config;
use crochet_payment_x402::facilitator::{BuiltinFacilitator, Facilitator as _};
use crochet_payment_x402::{
    FacilitatorRequest, PaymentPayload, PaymentRequired, PaymentRequirements, SettleResponse,
    decode_header, encode_header,
};
use serde_json::{Value, json};

use super::*;

/// The operator's treasury the test hosts offer as `payTo`.
pub const TREASURY: &str = "0x209693bc6afc0c5328ba36faf03c514ef312287c";

/// How the local facilitator treats one payer's payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behavior {
    /// Verifies and settles as the built-in facilitator does.
    #[default]
    Honest,
    /// Verifies, then refuses to settle (`insufficient_funds`).
    SettleRefused,
    /// Settles, but answers 500: the host cannot tell whether it settled.
    SettleAnswerLost,
    /// Refuses at verify (`insufficient_funds`).
    VerifyRefused,
}

#[derive(Default)]
struct State {
    behavior: HashMap<String, Behavior>,
    verifies: HashMap<String, usize>,
    settles: HashMap<String, usize>,
}

/// The shared local facilitator.
pub struct Facilitator {
    pub url: String,
    state: Arc<Mutex<State>>,
}

/// The test hosts' facilitator, started on first use.
pub fn facilitator() -> &'static Facilitator {
    static FACILITATOR: OnceLock<Facilitator> = OnceLock::new();
    FACILITATOR.get_or_init(start_facilitator)
}

fn payer_of(payload: &PaymentPayload) -> String {
    payload.payload["authorization"]["from"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn start_facilitator() -> Facilitator {
    use axum::extract::State as Axum;
    use axum::routing::{get, post};
    type Shared = (Arc<Mutex<State>>, Arc<BuiltinFacilitator>);
    let state = Arc::new(Mutex::new(State::default()));
    let inner = Arc::new(BuiltinFacilitator::new(vec!["eip155:8453".into()]));
    let shared: Shared = (state.clone(), inner);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            async fn supported(Axum((_, f)): Axum<Shared>) -> axum::Json<Value> {
                axum::Json(serde_json::to_value(f.supported().await.unwrap()).unwrap())
            }
            async fn verify(
                Axum((s, f)): Axum<Shared>,
                axum::Json(req): axum::Json<FacilitatorRequest>,
            ) -> axum::Json<Value> {
                let payer = payer_of(&req.payment_payload);
                let behavior = {
                    let mut s = s.lock().unwrap();
                    *s.verifies.entry(payer.clone()).or_default() += 1;
                    s.behavior.get(&payer).copied().unwrap_or_default()
                };
                let mut answer = f
                    .verify(&req.payment_payload, &req.payment_requirements)
                    .await
                    .unwrap();
                if behavior == Behavior::VerifyRefused {
                    answer.is_valid = false;
                    answer.invalid_reason = Some("insufficient_funds".into());
                }
                axum::Json(serde_json::to_value(answer).unwrap())
            }
            async fn settle(
                Axum((s, f)): Axum<Shared>,
                axum::Json(req): axum::Json<FacilitatorRequest>,
            ) -> axum::response::Response {
                use axum::response::IntoResponse;
                let payer = payer_of(&req.payment_payload);
                let behavior = {
                    let mut s = s.lock().unwrap();
                    *s.settles.entry(payer.clone()).or_default() += 1;
                    s.behavior.get(&payer).copied().unwrap_or_default()
                };
                if behavior == Behavior::SettleRefused {
                    let refused = SettleResponse {
                        success: false,
                        error_reason: Some("insufficient_funds".into()),
                        payer: Some(payer),
                        transaction: String::new(),
                        network: req.payment_requirements.network.clone(),
                        amount: None,
                    };
                    return axum::Json(refused).into_response();
                }
                let answer = f
                    .settle(&req.payment_payload, &req.payment_requirements)
                    .await
                    .unwrap();
                if behavior == Behavior::SettleAnswerLost {
                    return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "lost").into_response();
                }
                axum::Json(answer).into_response()
            }
            let app = axum::Router::new()
                .route("/supported", get(supported))
                .route("/verify", post(verify))
                .route("/settle", post(settle))
                .with_state(shared);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let url = rx.recv().expect("facilitator starts");
    Facilitator { url, state }
}

impl Facilitator {
    /// How payments from `payer` are treated from now on.
    pub fn behave(&self, payer: &str, behavior: Behavior) {
        self.state
            .lock()
            .unwrap()
            .behavior
            .insert(payer.to_ascii_lowercase(), behavior);
    }

    /// `/verify` calls made for `payer`'s payments.
    pub fn verifies(&self, payer: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.verifies
            .get(&payer.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// `/settle` calls made for `payer`'s payments.
    pub fn settles(&self, payer: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.settles
            .get(&payer.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }
}

/// Turns x402 on, with the shared local facilitator.
pub fn with_x402(config: &mut Config) {
    config.x402.facilitator_url = Some(facilitator().url.clone());
    config.x402.pay_to_evm = Some(TREASURY.into());
}

/// Turns x402 on with a facilitator that is not there (a closed port).
pub fn with_x402_down(config: &mut Config) {
    config.x402.facilitator_url = Some("http://127.0.0.1:9".into());
    config.x402.pay_to_evm = Some(TREASURY.into());
}

/// The decoded `PAYMENT-REQUIRED` header of a 402.
pub fn payment_required(reply: &Reply) -> PaymentRequired {
    let header = reply
        .headers
        .get("payment-required")
        .expect("a PAYMENT-REQUIRED header")
        .to_str()
        .unwrap();
    decode_header(header).expect("PAYMENT-REQUIRED decodes")
}

/// A real EIP-3009 payment of `requirements` by an EVM wallet, valid from a minute ago
/// for `valid_for` seconds, with a random nonce; as a `PAYMENT-SIGNATURE` value.
pub fn sign_payment(wallet: &Wallet, requirements: &PaymentRequirements, valid_for: i64) -> String {
    let Wallet::Evm(key) = wallet else {
        panic!("x402 payments here are signed by EVM wallets")
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut nonce = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    let payload = crochet_payment_x402::evm::sign_exact_evm(
        key,
        requirements,
        None,
        (now - 60) as u64,
        (now + valid_for) as u64,
        nonce,
    );
    encode_header(&payload)
}

/// A keyless x402 call (no API key) with optional `PAYMENT-SIGNATURE`.
pub async fn x402_call(app: &Client, listing: &str, body: &Value, payment: Option<&str>) -> Reply {
    let mut req = app
        .http
        .post(app.url(&format!("/gateway/{listing}")))
        .json(body);
    if let Some(p) = payment {
        req = req.header("PAYMENT-SIGNATURE", p);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(json!(null));
    Reply {
        status,
        body,
        headers,
    }
}

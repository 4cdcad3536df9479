//! The sellers' side: a live seller that checks every signed forward, and listings
//! published against it.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::*;

/// A request the test seller received.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub path: String,
    pub headers: std::collections::HashMap<String, String>,
    pub body: Vec<u8>,
    /// Body hash and HMAC signature check out under the seller's current secret.
    pub signature_valid: bool,
}

#[derive(Default)]
pub struct SellerState {
    secret: std::sync::Mutex<Option<String>>,
    seen: std::sync::Mutex<Vec<SeenRequest>>,
    /// While set, `/hold` never answers (a seller stuck mid-call).
    hold: std::sync::atomic::AtomicBool,
}

/// What the test seller's `/exact` path answers: JSON that a parse into a tree and
/// back would change (a number beyond `f64`, a duplicate key).
pub const EXACT_JSON: &str = r#"{"n":123456789012345678901234567890,"k":1,"k":2}"#;

/// A real seller: an axum server on an ephemeral port that verifies the gateway's HMAC
/// headers on every request (computed here, independently of the host's signer).
///
/// Routes: `/ok` answers JSON echoing the request, `/fail` 500 JSON, `/text` plain text,
/// `/exact` [`EXACT_JSON`], `/slow` sleeps 2 s, `/redirect` 302 to `/ok`, `/big` 64 KiB
/// of JSON, `/hold` never answers while [`Seller::hold`] is on (else as `/ok`).
pub struct Seller {
    pub base: String,
    pub state: std::sync::Arc<SellerState>,
}

impl Seller {
    pub async fn start() -> Self {
        use axum::extract::State;
        use axum::http::{HeaderMap, Uri};
        use axum::response::IntoResponse;
        let state = std::sync::Arc::new(SellerState::default());
        async fn handle(
            State(state): State<std::sync::Arc<SellerState>>,
            uri: Uri,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> axum::response::Response {
            let headers: std::collections::HashMap<String, String> = headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let secret = state.secret.lock().unwrap().clone().unwrap_or_default();
            let signature_valid = verify_signature(&secret, &headers, &body);
            let path = uri.path().to_owned();
            state.seen.lock().unwrap().push(SeenRequest {
                path: path.clone(),
                headers,
                body: body.to_vec(),
                signature_valid,
            });
            match path.as_str() {
                "/fail" => (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"error": "boom"})),
                )
                    .into_response(),
                "/text" => "plain text, not JSON".into_response(),
                "/exact" => (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    EXACT_JSON,
                )
                    .into_response(),
                "/slow" => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    axum::Json(json!({"late": true})).into_response()
                }
                "/redirect" => {
                    (axum::http::StatusCode::FOUND, [("location", "/ok")]).into_response()
                }
                "/big" => axum::Json(json!({"blob": "x".repeat(64 * 1024)})).into_response(),
                "/hold" if state.hold.load(std::sync::atomic::Ordering::SeqCst) => {
                    std::future::pending::<axum::response::Response>().await
                }
                // A chat-completions style seller: answers with the last message upper-cased.
                "/chat" => {
                    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let last = req["messages"]
                        .as_array()
                        .and_then(|m| m.last())
                        .and_then(|m| m["content"].as_str())
                        .unwrap_or("")
                        .to_uppercase();
                    axum::Json(json!({
                        "model": req["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": last}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1}
                    }))
                    .into_response()
                }
                _ => {
                    let echo: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    axum::Json(json!({"result": "ok", "echo": echo})).into_response()
                }
            }
        }
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The signing secret the seller verifies with.
    pub fn set_secret(&self, secret: &str) {
        *self.state.secret.lock().unwrap() = Some(secret.to_owned());
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Makes `/hold` hang (true) or answer (false).
    pub fn hold(&self, on: bool) {
        self.state
            .hold
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The seller-side check of the gateway's signature: HMAC-SHA256, under the listing's
/// secret, of timestamp, request id, listing id and body hash.
pub fn verify_signature(
    secret: &str,
    headers: &std::collections::HashMap<String, String>,
    body: &[u8],
) -> bool {
    use hmac::{Hmac, Mac};
    let get = |k: &str| headers.get(k).cloned().unwrap_or_default();
    let body_sha = hex::encode(Sha256::digest(body));
    if get("x-crochet-body-sha256") != body_sha {
        return false;
    }
    let payload = format!(
        "{}.{}.{}.{}",
        get("x-crochet-timestamp"),
        get("x-crochet-request-id"),
        get("x-crochet-listing-id"),
        body_sha
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(payload.as_bytes());
    let Ok(sig) = hex::decode(get("x-crochet-signature")) else {
        return false;
    };
    mac.verify_slice(&sig).is_ok()
}

impl Client {
    /// Solves a fresh listing challenge and creates a listing from `body` (the documented
    /// example fields); returns the whole reply.
    pub async fn create_listing(&self, seller: &Agent, mut body: Value) -> Reply {
        let c = self
            .post("/listings/challenge", seller.key(), json!({}))
            .await
            .expect(200);
        let pow = c.data()["challenge"].as_str().unwrap();
        body["pow_nonce"] = json!(solve_pow(
            pow,
            c.data()["difficulty"].as_u64().unwrap() as usize
        ));
        self.post("/listings", seller.key(), body).await
    }
}

/// A seller agent, its live local seller and one active `per_call` listing.
pub struct Published {
    pub seller: Seller,
    pub agent: Agent,
    pub id: String,
    /// `data` of the creation response (with the one-time signing secret).
    pub data: Value,
}

impl Client {
    /// Starts a local seller, registers a seller agent and publishes `name` pointing at the
    /// seller's `path`; the seller verifies signatures with the returned secret.
    pub async fn publish(&self, name: &str, path: &str) -> Published {
        self.publish_with(name, path, |_| {}).await
    }

    /// [`Client::publish`] with the listing body adjusted by `edit` first.
    pub async fn publish_with(
        &self,
        name: &str,
        path: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Published {
        let seller = Seller::start().await;
        let agent = self.register_as(Wallet::evm(), "seller").await;
        let mut body = listing_body(name, &seller.url(path));
        edit(&mut body);
        let data = self
            .create_listing(&agent, body)
            .await
            .expect(201)
            .data()
            .clone();
        seller.set_secret(data["gateway_endpoint"]["signing_secret"].as_str().unwrap());
        Published {
            id: data["id"].as_str().unwrap().to_owned(),
            seller,
            agent,
            data,
        }
    }
}

/// A published listing with the given price in USD (None = free) and seller path.
pub async fn priced_listing(app: &Client, price: Option<f64>, path: &str) -> Published {
    app.publish_with("Capability", path, |body| match price {
        Some(p) => body["pricing_amount"] = json!(p),
        None => {
            body["pricing_model"] = json!("free");
            body.as_object_mut().unwrap().remove("pricing_amount");
        }
    })
    .await
}

/// The documented listing example, pointed at `endpoint`.
pub fn listing_body(name: &str, endpoint: &str) -> Value {
    json!({
        "name": name,
        "description": "Routes buyer JSON requests to a specialist agent.",
        "delivery_type": "api",
        "auth_method": "none",
        "formats": ["json"],
        "connection_instructions": "Call through Crochet gateway_url. Do not call seller directly.",
        "pricing_model": "per_call",
        "pricing_amount": 0.01,
        "pricing_currency": "USD",
        "private_endpoint_url": endpoint,
        "status": "active"
    })
}

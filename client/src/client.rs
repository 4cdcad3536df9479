//! The HTTP client: registration, listings and paid gateway calls.

use std::time::{Duration, Instant};

use rand::RngCore as _;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use crate::error::truncate;
use crate::models::{CallResult, CreatedListing, Listing, ListingQuery, NewListing, Registered};
use crate::pay::{Payer, Retry};
use crate::pow::solve_pow;
use crate::{ClientError, Wallet};

/// Proof-of-work difficulties above this are refused rather than solved forever.
const MAX_POW_DIFFICULTY: u64 = 8;

/// A client of one Crochet host, optionally authenticated with an `am_k_` key.
/// Cloning is cheap (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// How [`Client::call`] behaves.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Sent as `Idempotency-Key` on every attempt; a random one when `None`.
    pub idempotency_key: Option<String>,
    /// How long to keep retrying while the payment is pending or the call is in progress.
    pub deadline: Duration,
    /// Extra request headers (`X-Crochet-Origin-Currency`, ...).
    pub headers: Vec<(String, String)>,
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            idempotency_key: None,
            deadline: Duration::from_secs(60),
            headers: Vec::new(),
        }
    }
}

/// A parsed answer: status, headers and JSON body.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// `data` of a success envelope, or the error.
    fn data(self) -> Result<Value, ClientError> {
        if (200..300).contains(&self.status) && self.body["success"] != json!(false) {
            Ok(self.body.get("data").cloned().unwrap_or(Value::Null))
        } else {
            Err(ClientError::from_envelope(self.status, &self.body))
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, ClientError> {
    serde_json::from_value(value).map_err(|e| ClientError::Unexpected {
        status: 200,
        message: format!("{what}: {e}"),
    })
}

fn str_field(v: &Value, name: &str) -> Result<String, ClientError> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Unexpected {
            status: 200,
            message: format!("no `{name}` in {}", truncate(&v.to_string())),
        })
}

fn difficulty(v: &Value) -> Result<u8, ClientError> {
    v.get("difficulty")
        .and_then(Value::as_u64)
        .filter(|d| *d <= MAX_POW_DIFFICULTY)
        .map(|d| d as u8)
        .ok_or_else(|| ClientError::Unexpected {
            status: 200,
            message: format!("unsupported proof-of-work difficulty in {v}"),
        })
}

impl Client {
    /// A client of the API at `base`, e.g. `http://127.0.0.1:8080/api/v1`.
    pub fn new(base: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            key: None,
            http,
        }
    }

    /// The same client authenticated with `key` (`am_k_…`).
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The API base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether the client sends an API key.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// A request to `url` (absolute) with the client's key, if any.
    pub(crate) fn request_url(&self, method: Method, url: &str) -> RequestBuilder {
        let req = self.http.request(method, url);
        match &self.key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_url(method, &format!("{}{path}", self.base))
    }

    /// `path` + one percent-encoded segment.
    fn request_segment(
        &self,
        method: Method,
        prefix: &str,
        segment: &str,
    ) -> Result<RequestBuilder, ClientError> {
        let mut url = reqwest::Url::parse(&format!("{}{prefix}", self.base))
            .map_err(|e| ClientError::Http(format!("bad base URL {}: {e}", self.base)))?;
        url.path_segments_mut()
            .map_err(|_| ClientError::Http(format!("bad base URL {}", self.base)))?
            .pop_if_empty()
            .push(segment);
        Ok(self.request_url(method, url.as_str()))
    }

    pub(crate) async fn send(req: RequestBuilder) -> Result<Answer, ClientError> {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).map_err(|_| ClientError::Unexpected {
            status,
            message: format!("not JSON: {}", truncate(&text)),
        })?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Registers `wallet` as a new agent (`role`: `buyer`, `seller` or `both`): asks for
    /// a challenge, signs its message, solves its proof-of-work and registers. Use the
    /// returned key with [`Client::with_key`].
    pub async fn register(
        &self,
        wallet: &Wallet,
        role: &str,
        display_name: Option<&str>,
    ) -> Result<Registered, ClientError> {
        let challenge = Self::send(
            self.request(Method::POST, "/auth/challenge")
                .json(&json!({"wallet_address": wallet.address(), "purpose": "register"})),
        )
        .await?
        .data()?;
        let pow = challenge.get("pow").cloned().unwrap_or(Value::Null);
        let mut body = json!({
            "wallet_address": wallet.address(),
            "nonce": str_field(&challenge, "nonce")?,
            "signature": wallet.sign(&str_field(&challenge, "message")?),
            "pow_nonce": solve_pow(&str_field(&pow, "challenge")?, difficulty(&pow)?),
            "role": role,
        });
        if let Some(name) = display_name {
            body["display_name"] = json!(name);
        }
        let data = Self::send(self.request(Method::POST, "/register").json(&body))
            .await?
            .data()?;
        let profile = data.get("profile").cloned().unwrap_or(Value::Null);
        Ok(Registered {
            profile_id: str_field(&profile, "id")?,
            api_key: str_field(&data, "api_key")?,
            authorization_header: str_field(&data, "authorization_header")?,
            role: profile["role"].as_str().unwrap_or(role).to_owned(),
            display_name: profile["display_name"].as_str().map(str::to_owned),
            profile,
        })
    }

    /// `GET /listings`: the first page of listings matching `query`.
    pub async fn search_listings(&self, query: &ListingQuery) -> Result<Vec<Listing>, ClientError> {
        let data = Self::send(self.request(Method::GET, "/listings").query(query))
            .await?
            .data()?;
        decode(data, "listings")
    }

    /// `GET /listings/{id}` by id or slug.
    pub async fn get_listing(&self, id_or_slug: &str) -> Result<Listing, ClientError> {
        let data = Self::send(self.request_segment(Method::GET, "/listings/", id_or_slug)?)
            .await?
            .data()?;
        decode(data, "listing")
    }

    /// Creates a listing (needs a seller key): solves a fresh listing proof-of-work and
    /// posts `listing`. The answer carries the endpoint's one-time signing secret.
    pub async fn create_listing(
        &self,
        listing: &NewListing,
    ) -> Result<CreatedListing, ClientError> {
        let challenge = Self::send(
            self.request(Method::POST, "/listings/challenge")
                .json(&json!({})),
        )
        .await?
        .data()?;
        let pow_challenge = str_field(&challenge, "challenge")?;
        let mut body =
            serde_json::to_value(listing).map_err(|e| ClientError::Http(e.to_string()))?;
        body["pow_nonce"] = json!(solve_pow(&pow_challenge, difficulty(&challenge)?));
        body["pow_challenge"] = json!(pow_challenge);
        let data = Self::send(self.request(Method::POST, "/listings").json(&body))
            .await?
            .data()?;
        let signing_secret = str_field(&data["gateway_endpoint"], "signing_secret")?;
        let listing: Listing = decode(data, "listing")?;
        Ok(CreatedListing {
            id: listing.id.clone(),
            listing,
            signing_secret,
        })
    }

    /// Calls a listing (id or slug) through the gateway with `body`.
    ///
    /// A `402 PAYMENT_REQUIRED` is handed to `payer`, and the call is retried with the
    /// same body and idempotency key plus the payment's header. While the payment is
    /// pending (202) or the call is being forwarded by another attempt
    /// (`409 GATEWAY_REQUEST_IN_PROGRESS`) it waits as the host says and retries, until
    /// `opts.deadline` ([`ClientError::PaymentPending`] then). Any other error is
    /// [`ClientError::Api`] with the host's `recovery`.
    pub async fn call(
        &self,
        listing: &str,
        body: &Value,
        payer: &dyn Payer,
        opts: CallOptions,
    ) -> Result<CallResult, ClientError> {
        let deadline = Instant::now() + opts.deadline;
        let idempotency_key = opts.idempotency_key.clone().unwrap_or_else(|| {
            let mut bytes = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            format!("crochet-client-{}", hex::encode(bytes))
        });
        let mut payment: Option<Retry> = None;
        loop {
            let mut req = self
                .request_segment(Method::POST, "/gateway/", listing)?
                .header("Idempotency-Key", &idempotency_key)
                .json(body);
            for (name, value) in &opts.headers {
                req = req.header(name.as_str(), value.as_str());
            }
            match &payment {
                Some(Retry::Relay { relay_request_id }) => {
                    req = req.header("X-Crochet-Relay-Request-Id", relay_request_id);
                }
                Some(Retry::X402 { payment_signature }) => {
                    req = req.header("PAYMENT-SIGNATURE", payment_signature);
                }
                None => {}
            }
            let answer = Self::send(req).await?;
            let code = answer.body["error"]["code"].as_str().unwrap_or_default();
            let wait = match (answer.status, code) {
                (200, _) => return call_result(answer.body, idempotency_key),
                (402, "PAYMENT_REQUIRED") if payment.is_none() => {
                    let object = &answer.body["error"]["details"]["payment"];
                    if !object.is_object() {
                        return Err(ClientError::from_envelope(answer.status, &answer.body));
                    }
                    payment = Some(payer.pay(self, object).await?);
                    continue;
                }
                (202, _) => answer.body["data"]["retry_after_seconds"].as_u64(),
                (409, "GATEWAY_REQUEST_IN_PROGRESS") => {
                    answer.body["error"]["details"]["retry_after_seconds"]
                        .as_u64()
                        .or_else(|| {
                            answer
                                .headers
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse().ok())
                        })
                }
                _ => return Err(ClientError::from_envelope(answer.status, &answer.body)),
            };
            let wait = wait.unwrap_or(1).max(1);
            if Instant::now() + Duration::from_secs(wait) > deadline {
                let relay_request_id = match &payment {
                    Some(Retry::Relay { relay_request_id }) => Some(relay_request_id.clone()),
                    _ => None,
                };
                return Err(ClientError::PaymentPending {
                    retry_after_seconds: wait,
                    relay_request_id,
                    idempotency_key,
                });
            }
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
    }
}

fn call_result(body: Value, idempotency_key: String) -> Result<CallResult, ClientError> {
    let data = body.get("data").cloned().unwrap_or(Value::Null);
    Ok(CallResult {
        request_id: str_field(&data, "request_id")?,
        listing_id: data["listing_id"].as_str().unwrap_or_default().to_owned(),
        seller_response: data["seller_response"].clone(),
        charged_cents: data["charged_amount"]["amount_cents"].as_i64().unwrap_or(0),
        currency: data["charged_amount"]["currency"]
            .as_str()
            .unwrap_or("USD")
            .to_owned(),
        billable: data["billable"].as_bool().unwrap_or(false),
        payment: data.get("payment").filter(|p| !p.is_null()).cloned(),
        idempotency_key,
        data,
    })
}

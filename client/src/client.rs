//! The HTTP client: its transport, the error envelope, and paid gateway calls.

use std::time::{Duration, Instant};

use rand::RngCore as _;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use crate::ClientError;
use crate::error::truncate;
use crate::models::CallResult;
use crate::pay::{Payer, Retry};

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

/// Told each time [`Client::call`] waits: the state it waits on (`pending`,
/// `in_progress`) and the seconds until the next attempt.
pub type WaitObserver = std::sync::Arc<dyn Fn(&str, u64) + Send + Sync>;

/// How [`Client::call`] behaves.
#[derive(Clone)]
pub struct CallOptions {
    /// Sent as `Idempotency-Key` on every attempt; a random one when `None`.
    pub idempotency_key: Option<String>,
    /// How long to keep retrying while the payment is pending or the call is in progress.
    pub deadline: Duration,
    /// Extra request headers (`X-Crochet-Origin-Currency`, ...).
    pub headers: Vec<(String, String)>,
    /// A payment already made for this call (resuming after
    /// [`ClientError::PaymentSteps`] or [`ClientError::PaymentPending`]): the first
    /// attempt carries it instead of waiting for a 402.
    pub paid: Option<Retry>,
    /// Called before each wait (a progress line, a log record).
    pub on_wait: Option<WaitObserver>,
    /// Pay from the marketplace balance (`X-Crochet-Pay-From: balance`): one request,
    /// no payment round trip. See [`CallOptions::from_balance`].
    pub pay_from_balance: bool,
}

impl CallOptions {
    /// Options that pay the call from the caller's balance.
    pub fn from_balance() -> Self {
        Self {
            pay_from_balance: true,
            ..Self::default()
        }
    }
}

impl std::fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallOptions")
            .field("idempotency_key", &self.idempotency_key)
            .field("deadline", &self.deadline)
            .field("headers", &self.headers)
            .field("paid", &self.paid)
            .field("on_wait", &self.on_wait.is_some())
            .field("pay_from_balance", &self.pay_from_balance)
            .finish()
    }
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            idempotency_key: None,
            deadline: Duration::from_secs(60),
            headers: Vec::new(),
            paid: None,
            on_wait: None,
            pay_from_balance: false,
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
    pub(crate) fn data(self) -> Result<Value, ClientError> {
        if (200..300).contains(&self.status) && self.body["success"] != json!(false) {
            Ok(self.body.get("data").cloned().unwrap_or(Value::Null))
        } else {
            Err(ClientError::from_envelope(self.status, &self.body))
        }
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    value: Value,
    what: &str,
) -> Result<T, ClientError> {
    serde_json::from_value(value).map_err(|e| ClientError::Unexpected {
        status: 200,
        message: format!("{what}: {e}"),
    })
}

pub(crate) fn str_field(v: &Value, name: &str) -> Result<String, ClientError> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Unexpected {
            status: 200,
            message: format!("no `{name}` in {}", truncate(&v.to_string())),
        })
}

pub(crate) fn difficulty(v: &Value) -> Result<u8, ClientError> {
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

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_url(method, &format!("{}{path}", self.base))
    }

    /// A request to the base URL plus `segments`, each percent-encoded as one path
    /// segment (an id or slug can never reach another route).
    pub(crate) fn at(
        &self,
        method: Method,
        segments: &[&str],
    ) -> Result<RequestBuilder, ClientError> {
        let mut url = reqwest::Url::parse(&self.base)
            .map_err(|e| ClientError::Http(format!("bad base URL {}: {e}", self.base)))?;
        url.path_segments_mut()
            .map_err(|_| ClientError::Http(format!("bad base URL {}", self.base)))?
            .pop_if_empty()
            .extend(segments);
        Ok(self.request_url(method, url.as_str()))
    }

    /// A request to `path` on the host's origin (outside the API base).
    pub(crate) fn at_origin(
        &self,
        method: Method,
        path: &str,
    ) -> Result<RequestBuilder, ClientError> {
        let url = reqwest::Url::parse(&self.base)
            .and_then(|base| base.join(path))
            .map_err(|e| ClientError::Http(format!("bad base URL {}: {e}", self.base)))?;
        Ok(self.request_url(method, url.as_str()))
    }

    /// Sends `req` and returns the success's `data`, or the host's error.
    pub(crate) async fn data(req: RequestBuilder) -> Result<Value, ClientError> {
        Self::send(req).await?.data()
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
        let mut payment: Option<Retry> = opts.paid.clone();
        loop {
            let mut req = self
                .at(Method::POST, &["gateway", listing])?
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
                None if opts.pay_from_balance => {
                    req = req.header("X-Crochet-Pay-From", "balance");
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
                    payment = Some(payer.pay(self, object).await.map_err(|e| match e {
                        ClientError::PaymentSteps {
                            relay_request_id,
                            steps,
                            ..
                        } => ClientError::PaymentSteps {
                            relay_request_id,
                            steps,
                            idempotency_key: idempotency_key.clone(),
                        },
                        other => other,
                    })?);
                    continue;
                }
                (202, _) => answer.body["data"]["retry_after_seconds"]
                    .as_u64()
                    .map(|w| ("pending", w)),
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
                        .map(|w| ("in_progress", w))
                }
                _ => return Err(ClientError::from_envelope(answer.status, &answer.body)),
            };
            let (state, wait) = wait.unwrap_or(("pending", 1));
            let wait = wait.max(1);
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
            if let Some(observe) = &opts.on_wait {
                observe(state, wait);
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

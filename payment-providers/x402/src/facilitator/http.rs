//! A facilitator reached over HTTP (`GET /supported`, `POST /verify`, `POST /settle`).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;

use super::{Facilitator, FacilitatorError};
use crate::types::{
    FacilitatorRequest, PaymentPayload, PaymentRequirements, SettleResponse, SupportedResponse,
    VerifyResponse, X402_VERSION,
};

/// Longest connect phase, capped by the overall timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Waits before the 2nd and 3rd attempt of a request that may be repeated.
const BACKOFF: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(300)];
/// Largest answer read from a facilitator.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest facilitator text quoted in an error.
const MAX_QUOTE_CHARS: usize = 300;

/// A facilitator at an HTTP(S) base URL.
///
/// `supported` and `verify` change nothing at the facilitator, so they are retried (up
/// to 2 more times, after 100 ms and 300 ms) when the facilitator could not be reached,
/// timed out, or answered 5xx. `settle` is retried **only** when the connection could
/// not be made, i.e. the request was certainly never delivered: after a request may have
/// been delivered, a retry could settle the payment twice, so the error is
/// [`FacilitatorError::NoAnswer`] and the caller decides. Redirects are not followed
/// (a followed redirect re-sends the request elsewhere).
pub struct HttpFacilitator {
    client: reqwest::Client,
    /// Base URL without a trailing slash.
    base: String,
    host: String,
    auth: Option<HeaderValue>,
}

impl fmt::Debug for HttpFacilitator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpFacilitator")
            .field("base", &self.base)
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Whether a failed attempt may be repeated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// The request was never delivered: always safe to repeat.
    NotDelivered,
    /// Possibly delivered; transient (timeout, broken connection, 5xx).
    Transient,
    /// Repeating would not help.
    Never,
}

/// Which failures a route may retry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Retry anything transient (the route changes nothing).
    Idempotent,
    /// Retry only what was never delivered.
    OnlyUndelivered,
}

impl HttpFacilitator {
    /// A facilitator at `base_url` (e.g. `https://x402.org/facilitator`). `auth_header`
    /// is a complete `Authorization` header value sent with every request; `timeout`
    /// bounds each attempt (the connect phase at most 3 s).
    ///
    /// Fails with [`FacilitatorError::Rejected`] when the URL is not an absolute
    /// http(s) URL without credentials, query or fragment, or the header value is not a
    /// valid header value.
    pub fn new(
        base_url: &str,
        auth_header: Option<String>,
        timeout: Duration,
    ) -> Result<Self, FacilitatorError> {
        // The URL itself is not echoed: it may carry a secret.
        let invalid =
            |why: &str| FacilitatorError::Rejected(format!("invalid facilitator URL: {why}"));
        let url = Url::parse(base_url.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("it has no host"))?
            .to_string();
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FacilitatorError::Rejected(
                "invalid facilitator URL: it must not contain credentials; pass them as the Authorization header"
                    .into(),
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("it must not have a query or fragment"));
        }
        let auth = auth_header
            .map(|value| {
                let mut value = HeaderValue::from_str(&value).map_err(|_| {
                    FacilitatorError::Rejected(
                        "the facilitator Authorization header value contains invalid characters"
                            .into(),
                    )
                })?;
                value.set_sensitive(true);
                Ok(value)
            })
            .transpose()?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("crochet-payment-x402/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                FacilitatorError::Rejected(format!("cannot build the HTTP client: {e}"))
            })?;
        Ok(Self {
            client,
            base: url.as_str().trim_end_matches('/').to_string(),
            host,
            auth,
        })
    }

    /// Sends one request and reads its answer.
    async fn attempt<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&FacilitatorRequest>,
        result_on_4xx: bool,
    ) -> Result<T, (FacilitatorError, Retry)> {
        let what = format!("{method} {path} at {}", self.host);
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request.send().await.map_err(|e| {
            if e.is_connect() || e.is_builder() {
                (
                    FacilitatorError::Unreachable(format!("{what}: {}", describe(e))),
                    Retry::NotDelivered,
                )
            } else {
                (
                    FacilitatorError::NoAnswer(format!("{what}: {}", describe(e))),
                    Retry::Transient,
                )
            }
        })?;
        let status = response.status();

        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err((
                            FacilitatorError::NoAnswer(format!(
                                "{what}: the answer is larger than 1 MiB"
                            )),
                            Retry::Never,
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err((
                        FacilitatorError::NoAnswer(format!(
                            "{what}: HTTP {status}, reading the answer failed: {}",
                            describe(e)
                        )),
                        Retry::Transient,
                    ));
                }
            }
        }
        let text = || quote(&String::from_utf8_lossy(&bytes));

        if status.is_success() || (result_on_4xx && status.is_client_error()) {
            match serde_json::from_slice::<T>(&bytes) {
                Ok(value) => return Ok(value),
                Err(e) if status.is_success() => {
                    return Err((
                        FacilitatorError::NoAnswer(format!(
                            "{what}: HTTP {status} with an unexpected body ({e}): {}",
                            text()
                        )),
                        Retry::Never,
                    ));
                }
                Err(_) => {}
            }
        }
        if status.is_client_error() {
            return Err((
                FacilitatorError::Rejected(format!(
                    "the x402 facilitator refused {what}: HTTP {status}: {}",
                    text()
                )),
                Retry::Never,
            ));
        }
        let retry = if status.is_server_error() {
            Retry::Transient
        } else {
            Retry::Never
        };
        Err((
            FacilitatorError::NoAnswer(format!("{what}: HTTP {status}: {}", text())),
            retry,
        ))
    }

    /// Sends a request, repeating it as `policy` allows.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&FacilitatorRequest>,
        result_on_4xx: bool,
        policy: Policy,
    ) -> Result<T, FacilitatorError> {
        let mut backoff = BACKOFF.iter();
        loop {
            let (error, retry) = match self
                .attempt(method.clone(), path, body, result_on_4xx)
                .await
            {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let may_repeat = match retry {
                Retry::NotDelivered => true,
                Retry::Transient => policy == Policy::Idempotent,
                Retry::Never => false,
            };
            match backoff.next() {
                Some(wait) if may_repeat => tokio::time::sleep(*wait).await,
                _ => return Err(error),
            }
        }
    }
}

/// A reqwest error and its causes, without the URL (which may carry a key in its path).
fn describe(error: reqwest::Error) -> String {
    let timed_out = error.is_timeout();
    let error = error.without_url();
    let mut text = String::new();
    let mut cause: Option<&dyn std::error::Error> = Some(&error);
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        cause = e.source();
    }
    if timed_out && !text.contains("timed out") {
        text.push_str(" (timed out)");
    }
    quote(&text)
}

/// At most [`MAX_QUOTE_CHARS`] characters of `s`.
fn quote(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

fn request_body(
    payload: &PaymentPayload,
    requirements: &PaymentRequirements,
) -> FacilitatorRequest {
    FacilitatorRequest {
        x402_version: X402_VERSION,
        payment_payload: payload.clone(),
        payment_requirements: requirements.clone(),
    }
}

#[async_trait]
impl Facilitator for HttpFacilitator {
    fn name(&self) -> &str {
        &self.host
    }

    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        self.call(Method::GET, "/supported", None, false, Policy::Idempotent)
            .await
    }

    async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let body = request_body(payload, requirements);
        self.call(
            Method::POST,
            "/verify",
            Some(&body),
            true,
            Policy::Idempotent,
        )
        .await
    }

    async fn settle(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<SettleResponse, FacilitatorError> {
        let body = request_body(payload, requirements);
        self.call(
            Method::POST,
            "/settle",
            Some(&body),
            true,
            Policy::OnlyUndelivered,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::requirements;
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Json;
    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode as AxStatus};
    use axum::routing::{get, post};
    use serde_json::{Value, json};

    use super::*;

    #[derive(Default)]
    struct Fake {
        supported_hits: AtomicUsize,
        verify_hits: AtomicUsize,
        settle_hits: AtomicUsize,
        auth_seen: Mutex<Vec<Option<String>>>,
        last_body: Mutex<Option<Value>>,
        /// What /settle answers after its first (500) answer.
        settle_mode: Mutex<&'static str>,
    }

    impl Fake {
        fn saw(&self, headers: &HeaderMap) {
            let auth = headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string());
            self.auth_seen.lock().unwrap().push(auth);
        }
    }

    async fn supported(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Json<Value> {
        fake.saw(&headers);
        fake.supported_hits.fetch_add(1, Ordering::SeqCst);
        Json(json!({
            "kinds": [{"x402Version": 2, "scheme": "exact", "network": "eip155:84532"}],
            "extensions": [],
            "signers": {"eip155:*": ["0x1234567890abcdef1234567890abcdef12345678"]}
        }))
    }

    async fn verify(
        State(fake): State<Arc<Fake>>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> (AxStatus, Json<Value>) {
        fake.saw(&headers);
        *fake.last_body.lock().unwrap() = Some(body);
        if fake.verify_hits.fetch_add(1, Ordering::SeqCst) == 0 {
            return (
                AxStatus::INTERNAL_SERVER_ERROR,
                Json(json!({"error": "busy"})),
            );
        }
        (
            AxStatus::OK,
            Json(
                json!({"isValid": false, "invalidReason": "insufficient_funds", "payer": "0xabc"}),
            ),
        )
    }

    async fn settle(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> (AxStatus, String) {
        fake.saw(&headers);
        if fake.settle_hits.fetch_add(1, Ordering::SeqCst) == 0 {
            return (AxStatus::INTERNAL_SERVER_ERROR, "x".repeat(5000));
        }
        let mode = *fake.settle_mode.lock().unwrap();
        match mode {
            "failed-400" => (
                AxStatus::BAD_REQUEST,
                json!({"success": false, "errorReason": "invalid_exact_evm_payload_signature",
                       "transaction": "", "network": "eip155:84532"})
                .to_string(),
            ),
            "garbage-400" => (AxStatus::BAD_REQUEST, "bad request: missing body".into()),
            "garbage-200" => (AxStatus::OK, "<html>".into()),
            _ => (
                AxStatus::OK,
                json!({"success": true, "transaction": "0xfeed", "network": "eip155:84532",
                       "payer": "0xabc", "amount": "10000"})
                .to_string(),
            ),
        }
    }

    async fn serve(fake: Arc<Fake>) -> String {
        let app = Router::new()
            .route("/fac/supported", get(supported))
            .route("/fac/verify", post(verify))
            .route("/fac/settle", post(settle))
            .with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        format!("http://{addr}/fac/")
    }

    fn payload() -> PaymentPayload {
        PaymentPayload {
            x402_version: 2,
            resource: None,
            accepted: requirements(),
            payload: json!({"signature": "0x00"}),
            extensions: None,
        }
    }

    const SECRET: &str = "Bearer s3cret-token";

    fn client(base: &str) -> HttpFacilitator {
        HttpFacilitator::new(base, Some(SECRET.into()), Duration::from_secs(5)).unwrap()
    }

    #[tokio::test]
    async fn routes_auth_and_retries() {
        let fake = Arc::new(Fake::default());
        let base = serve(fake.clone()).await;
        let f = client(&base);
        assert_eq!(f.name(), "127.0.0.1");

        let kinds = f.supported().await.unwrap();
        assert_eq!(kinds.kinds[0].network, "eip155:84532");
        assert_eq!(kinds.signers["eip155:*"].len(), 1);

        // /verify answers 500 first: verify is retried and gets the 200 answer.
        let v = f.verify(&payload(), &requirements()).await.unwrap();
        assert!(!v.is_valid);
        assert_eq!(v.invalid_reason.as_deref(), Some("insufficient_funds"));
        assert_eq!(fake.verify_hits.load(Ordering::SeqCst), 2);
        let body = fake.last_body.lock().unwrap().clone().unwrap();
        assert_eq!(body["x402Version"], 2);
        assert_eq!(body["paymentRequirements"]["amount"], "10000");
        assert_eq!(
            body["paymentPayload"]["accepted"]["network"],
            "eip155:84532"
        );

        // /settle answers 500 first: settle is NOT retried (it may have settled).
        let err = f.settle(&payload(), &requirements()).await.unwrap_err();
        match &err {
            FacilitatorError::NoAnswer(msg) => {
                assert!(msg.contains("500"), "{msg}");
                assert!(msg.chars().count() < 400, "error text is truncated");
            }
            other => panic!("expected NoAnswer, got {other:?}"),
        }
        assert_eq!(fake.settle_hits.load(Ordering::SeqCst), 1);
        // A later, separate settle call gets the success.
        let s = f.settle(&payload(), &requirements()).await.unwrap();
        assert!(s.success);
        assert_eq!(s.transaction, "0xfeed");
        assert_eq!(s.amount.as_deref(), Some("10000"));
        assert_eq!(fake.settle_hits.load(Ordering::SeqCst), 2);

        // Every request carried the Authorization header.
        let seen = fake.auth_seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 5);
        assert!(seen.iter().all(|a| a.as_deref() == Some(SECRET)));
    }

    #[tokio::test]
    async fn settle_answers_in_4xx_and_garbage() {
        let fake = Arc::new(Fake::default());
        fake.settle_hits.store(1, Ordering::SeqCst); // skip the initial 500
        let base = serve(fake.clone()).await;
        let f = client(&base);

        *fake.settle_mode.lock().unwrap() = "failed-400";
        let s = f.settle(&payload(), &requirements()).await.unwrap();
        assert!(!s.success);
        assert_eq!(
            s.error_reason.as_deref(),
            Some("invalid_exact_evm_payload_signature")
        );

        *fake.settle_mode.lock().unwrap() = "garbage-400";
        let err = f.settle(&payload(), &requirements()).await.unwrap_err();
        assert!(
            matches!(&err, FacilitatorError::Rejected(m) if m.contains("missing body")),
            "{err:?}"
        );

        *fake.settle_mode.lock().unwrap() = "garbage-200";
        let err = f.settle(&payload(), &requirements()).await.unwrap_err();
        assert!(matches!(err, FacilitatorError::NoAnswer(_)), "{err:?}");
        assert_eq!(fake.settle_hits.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let f = client(&format!("http://127.0.0.1:{port}"));
        for err in [
            f.settle(&payload(), &requirements()).await.unwrap_err(),
            f.verify(&payload(), &requirements()).await.unwrap_err(),
            f.supported().await.unwrap_err(),
        ] {
            assert!(matches!(err, FacilitatorError::Unreachable(_)), "{err:?}");
            assert!(!err.to_string().contains("s3cret"));
        }
    }

    #[tokio::test]
    async fn timeout_after_sending_is_no_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket); // never answer
            }
        });
        let f = HttpFacilitator::new(&format!("http://{addr}"), None, Duration::from_millis(200))
            .unwrap();
        let err = f.settle(&payload(), &requirements()).await.unwrap_err();
        assert!(matches!(err, FacilitatorError::NoAnswer(_)), "{err:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "settle is not retried");
    }

    #[test]
    fn construction_and_debug() {
        let f = client("https://facilitator.example.com/x402/");
        assert_eq!(f.name(), "facilitator.example.com");
        assert_eq!(f.base, "https://facilitator.example.com/x402");
        let debug = format!("{f:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");

        for bad in [
            "not a url",
            "ftp://example.com",
            "https://user:pw@example.com",
            "https://example.com/?key=1",
        ] {
            let err = HttpFacilitator::new(bad, None, Duration::from_secs(1)).unwrap_err();
            assert!(matches!(err, FacilitatorError::Rejected(_)), "{bad}");
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
        let err = HttpFacilitator::new(
            "https://example.com",
            Some("Bearer bad\nvalue".into()),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("bad\nvalue"));
    }
}

//! The HTTP side: one shared client, bounded retries with exponential backoff, and
//! error messages that say what failed without ever carrying the API key.

use std::fmt;
use std::time::Duration;

use crochet_payment::PaymentError;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

/// Largest response body read from Relay (quotes with many steps stay far below it).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// What a persistent 429 without a numeric `Retry-After` reports.
const DEFAULT_RATE_LIMIT_WAIT_SECS: u64 = 30;

/// The Relay call being made, named in logs and error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Operation {
    Quote,
    Status,
    Requests,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Quote => "quote",
            Operation::Status => "status",
            Operation::Requests => "requests lookup",
        })
    }
}

/// A response that was not retried: any status except 429 and 5xx, with its body.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json<T: DeserializeOwned>(&self, op: Operation) -> Result<T, PaymentError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            PaymentError::Unavailable(format!("Relay {op} failed: unexpected response ({e})"))
        })
    }
}

/// Retry delays: `base * 2^n`, at most `cap`; `cap` also bounds `Retry-After` waits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    fn delay(&self, failures: u32, retry_after: Option<u64>) -> Duration {
        match retry_after {
            Some(secs) => Duration::from_secs(secs).min(self.cap),
            None => {
                let factor = 1u32
                    .checked_shl(failures.saturating_sub(1))
                    .unwrap_or(u32::MAX);
                self.base.saturating_mul(factor).min(self.cap)
            }
        }
    }
}

/// Why one attempt failed.
enum Failure {
    Status {
        status: StatusCode,
        retry_after: Option<u64>,
    },
    Timeout,
    Transport(&'static str),
    /// Not worth retrying.
    Fatal(String),
}

impl Failure {
    fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            Failure::Timeout
        } else if e.is_builder() {
            Failure::Fatal("the request could not be built".into())
        } else if e.is_connect() {
            Failure::Transport("connection failed")
        } else {
            Failure::Transport("transport error")
        }
    }

    fn describe(&self, timeout_ms: u64) -> String {
        match self {
            Failure::Status { status, .. } => format!("HTTP {}", status.as_u16()),
            Failure::Timeout => format!("timeout ({timeout_ms} ms per attempt)"),
            Failure::Transport(what) => (*what).to_owned(),
            Failure::Fatal(what) => what.clone(),
        }
    }
}

/// The shared client and its retry policy.
pub(crate) struct Http {
    client: Client,
    /// Marked sensitive, so it is never printed.
    api_key: Option<HeaderValue>,
    timeout_ms: u64,
    max_retries: u32,
    pub backoff: Backoff,
}

impl Http {
    pub(crate) fn new(
        api_key: Option<&str>,
        timeout_ms: u64,
        max_retries: u32,
    ) -> Result<Self, PaymentError> {
        let api_key = match api_key {
            Some(key) => {
                let mut value = HeaderValue::from_str(key).map_err(|_| {
                    PaymentError::Misconfigured(
                        "relay.api_key contains characters not allowed in an HTTP header".into(),
                    )
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let timeout = Duration::from_millis(timeout_ms);
        let client = Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("crochet-gateway-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                PaymentError::Misconfigured(format!("cannot build the Relay HTTP client: {e}"))
            })?;
        Ok(Self {
            client,
            api_key,
            timeout_ms,
            max_retries,
            backoff: Backoff {
                base: Duration::from_millis(200),
                cap: Duration::from_secs(5),
            },
        })
    }

    pub(crate) fn has_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    /// Sends a request built by `build`, retrying 429, 5xx, connection errors and
    /// timeouts up to `max_retries` times. Any other response is returned as is.
    pub(crate) async fn send(
        &self,
        op: Operation,
        build: impl Fn(&Client) -> RequestBuilder + Send + Sync,
    ) -> Result<Reply, PaymentError> {
        let attempts = self.max_retries.saturating_add(1);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut request = build(&self.client);
            if let Some(key) = &self.api_key {
                request = request.header("x-api-key", key.clone());
            }
            let failure = match request.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                        Failure::Status {
                            status,
                            retry_after: retry_after(resp.headers()),
                        }
                    } else {
                        match read_body(resp).await {
                            Ok(body) => return Ok(Reply { status, body }),
                            Err(failure) => failure,
                        }
                    }
                }
                Err(e) => Failure::from_reqwest(&e),
            };
            let what = failure.describe(self.timeout_ms);
            if let Failure::Fatal(_) = failure {
                return Err(PaymentError::Unavailable(format!(
                    "Relay {op} failed: {what}"
                )));
            }
            if attempt >= attempts {
                tracing::warn!(operation = %op, attempts, failure = %what, "Relay call failed");
                return Err(match failure {
                    Failure::Status {
                        status: StatusCode::TOO_MANY_REQUESTS,
                        retry_after,
                    } => PaymentError::RateLimited {
                        retry_after_seconds: retry_after
                            .unwrap_or(DEFAULT_RATE_LIMIT_WAIT_SECS)
                            .clamp(1, 3600),
                    },
                    _ => PaymentError::Unavailable(format!(
                        "Relay {op} failed: {what} after {attempts} attempts"
                    )),
                });
            }
            let retry_after = match failure {
                Failure::Status { retry_after, .. } => retry_after,
                _ => None,
            };
            let delay = self.backoff.delay(attempt, retry_after);
            tracing::debug!(operation = %op, attempt, failure = %what, ?delay, "retrying Relay call");
            tokio::time::sleep(delay).await;
        }
    }
}

fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

async fn read_body(mut resp: Response) -> Result<Vec<u8>, Failure> {
    let too_large = || {
        Failure::Fatal(format!(
            "response larger than {} MiB",
            MAX_BODY_BYTES / (1024 * 1024)
        ))
    };
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| Failure::from_reqwest(&e))? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let b = Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
        };
        assert_eq!(b.delay(1, None), Duration::from_millis(200));
        assert_eq!(b.delay(2, None), Duration::from_millis(400));
        assert_eq!(b.delay(4, None), Duration::from_millis(1600));
        assert_eq!(b.delay(10, None), Duration::from_secs(5));
        assert_eq!(b.delay(40, None), Duration::from_secs(5));
        assert_eq!(b.delay(1, Some(2)), Duration::from_secs(2));
        assert_eq!(b.delay(1, Some(60)), Duration::from_secs(5));
    }

    #[test]
    fn the_api_key_is_never_printed() {
        let http = Http::new(Some("sekret-key"), 1000, 0).unwrap();
        let key = http.api_key.as_ref().unwrap();
        assert!(key.is_sensitive());
        assert!(!format!("{key:?}").contains("sekret"));
    }
}

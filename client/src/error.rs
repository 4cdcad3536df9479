//! What can go wrong: the host's error envelope, transport failures, wallets.

use serde_json::Value;

/// An error from the client or from the host.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The host answered with its error envelope
    /// `{"success": false, "error": {"code", "message", "details", "recovery"}}`.
    #[error("{status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        details: Option<Value>,
        /// What to do next (`next_action`, ...), as the host advises.
        recovery: Option<Value>,
    },
    /// The request could not be sent, or its answer could not be read.
    #[error("http: {0}")]
    Http(String),
    /// The host answered something that is not the documented shape.
    #[error("unexpected answer ({status}): {message}")]
    Unexpected { status: u16, message: String },
    /// A wallet could not be made, read or written.
    #[error("wallet: {0}")]
    Wallet(String),
    /// A wallet file is readable by group or others; fix with `chmod 600`.
    #[error(
        "wallet file {path} has mode {mode:o}: it must be readable by its owner only (chmod 600)"
    )]
    WalletPermissions { path: String, mode: u32 },
    /// The payment was still pending when the call's deadline passed: retry the same
    /// call (same idempotency key) later.
    #[error("payment still pending (retry after {retry_after_seconds} s)")]
    PaymentPending {
        retry_after_seconds: u64,
        relay_request_id: Option<String>,
        idempotency_key: String,
    },
    /// The payment's steps are the caller's to carry out (a [`crate::RelayPayer`] with
    /// no executor): carry them out, then call again with the same idempotency key and
    /// `CallOptions::paid` set to this request id.
    #[error("payment steps to carry out for Relay request {relay_request_id}")]
    PaymentSteps {
        relay_request_id: String,
        steps: Value,
        /// The call's idempotency key, to call again with.
        idempotency_key: String,
    },
    /// A receipt did not verify against the host's published keys.
    #[error("receipt: {0}")]
    Receipt(String),
    /// The payer cannot pay this requirement (no flow it supports, wrong wallet kind).
    #[error("payment: {0}")]
    Payment(String),
}

impl ClientError {
    /// The host's error code (`LISTING_NOT_FOUND`, ...) for [`ClientError::Api`].
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status for [`ClientError::Api`] and [`ClientError::Unexpected`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// `recovery.next_action`, when the host gave one.
    pub fn next_action(&self) -> Option<&str> {
        match self {
            ClientError::Api {
                recovery: Some(r), ..
            } => r.get("next_action").and_then(Value::as_str),
            _ => None,
        }
    }

    /// Builds an [`ClientError::Api`] from a status and a parsed body.
    pub(crate) fn from_envelope(status: u16, body: &Value) -> Self {
        let error = &body["error"];
        match error["code"].as_str() {
            Some(code) => ClientError::Api {
                status,
                code: code.to_owned(),
                message: error["message"].as_str().unwrap_or_default().to_owned(),
                details: error.get("details").filter(|v| !v.is_null()).cloned(),
                recovery: error.get("recovery").filter(|v| !v.is_null()).cloned(),
            },
            None => ClientError::Unexpected {
                status,
                message: truncate(&body.to_string()),
            },
        }
    }
}

pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        ClientError::Http(e.to_string())
    }
}

//! The gateway's error type; its HTTP form is decided in `crate::http::error`.

use serde_json::Value;

use super::model::PaymentObject;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("listing not found")]
    ListingNotFound,
    #[error("the listing is {0} and cannot be called")]
    ListingNotActive(String),
    #[error(
        "the listing's seller is suspended by the marketplace's operator; the listing cannot be called"
    )]
    SellerSuspended,
    #[error("the seller's endpoint is not configured or is paused")]
    EndpointUnavailable,
    #[error("the request body must be JSON: {0}")]
    InvalidBody(String),
    #[error("the request body is larger than this listing accepts ({0} bytes)")]
    BodyTooLarge(usize),
    #[error("{header} is invalid: {message}")]
    InvalidRoute {
        header: &'static str,
        message: String,
    },
    #[error("the payment route cannot carry this listing's price: {message}")]
    RouteMinimum {
        on_solana: bool,
        minimum_cents: Option<i64>,
        message: String,
    },
    #[error("no supported payment route: {0}")]
    UnsupportedRoute(String),
    #[error("Complete payment, then retry this gateway call with X-Crochet-Relay-Request-Id.")]
    PaymentRequired(Box<PaymentObject>),
    #[error("no payment with this relay request id exists for this buyer and listing")]
    PaymentNotFound,
    #[error("this relay request id was issued for a different request body")]
    BodyMismatch,
    #[error("the payment failed: {reason}")]
    PaymentFailed { reason: String, refunded: bool },
    #[error("this payment has already been used by gateway request {0}")]
    PaymentConsumed(String),
    #[error("this Idempotency-Key was used for a different listing or body")]
    IdempotencyConflict,
    #[error("the payment provider is unavailable: {0}")]
    ProviderUnavailable(String),
    #[error("the payment provider is rate limiting; retry in {0} s")]
    ProviderRateLimited(u64),
    #[error(
        "the call of this payment is still being forwarded (gateway request {request_id}); retry in {retry_after_seconds} s"
    )]
    CallInProgress {
        request_id: String,
        retry_after_seconds: u64,
    },
    #[error(
        "the call of this payment was interrupted and its charge reversed (gateway request {0})"
    )]
    CallInterrupted(String),
    #[error("{}: {message}", if *.paid { "the seller failed after payment" } else { "the seller failed" })]
    SellerFailed {
        code: &'static str,
        message: String,
        /// Whether the call was paid (the charge stands).
        paid: bool,
        context: Box<Value>,
    },
    #[error(transparent)]
    Policy(crate::plugins::policy::PolicyRefusal),
    #[error("the listing's seller adapter rejected the request: {0}")]
    AdapterRejected(String),
    #[error("the listing's seller adapter is failing; the call was not charged")]
    AdapterUnavailable,
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl GatewayError {
    /// The gateway request id (`X-Crochet-Request-Id`) this error concerns, when the
    /// call got one: a forwarded call that failed, or the call a payment already paid for.
    pub fn gateway_request_id(&self) -> Option<&str> {
        match self {
            Self::PaymentConsumed(id)
            | Self::CallInterrupted(id)
            | Self::CallInProgress { request_id: id, .. } => {
                Some(id.as_str()).filter(|id| !id.is_empty())
            }
            Self::SellerFailed { context, .. } => context.get("request_id").and_then(Value::as_str),
            _ => None,
        }
    }
}

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
    #[error(
        "a call with this Idempotency-Key is being paid right now; retry in a moment to see its outcome"
    )]
    IdempotencyInFlight,
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
    #[error(
        "both X-Crochet-Relay-Request-Id and PAYMENT-SIGNATURE were sent; a call is paid one way"
    )]
    ConflictingPayments,
    #[error("this call cannot be paid with x402: {0}")]
    X402NotOffered(&'static str),
    #[error("the x402 payment was refused ({reason}): {message}")]
    X402Invalid {
        /// The x402 reason code (`invalid_exact_evm_payload_signature`, …).
        reason: String,
        message: String,
        /// The requirement to pay again with, when the listing is known.
        offer: Option<Box<crochet_payment_x402::PaymentRequired>>,
    },
    #[error("the paying wallet {payer} is not linked to this agent's profile")]
    PayerNotLinked { payer: String },
    #[error(
        "the seller answered, but the x402 payment could not be settled ({reason}); the answer is withheld and nothing was charged"
    )]
    X402SettlementFailed {
        gateway_request_id: String,
        reason: String,
        /// The settle response (or one made for a facilitator that did not answer).
        response: Box<crochet_payment_x402::SettleResponse>,
    },
    #[error(
        "the x402 settlement of gateway request {0} was sent but its answer was lost; the host settles it again shortly"
    )]
    X402SettlementUnconfirmed(String),
    #[error(transparent)]
    Policy(crate::plugins::policy::PolicyRefusal),
    #[error("the listing's seller adapter rejected the request: {0}")]
    AdapterRejected(String),
    #[error("the listing's seller adapter is failing; the call was not charged")]
    AdapterUnavailable,
    #[error(transparent)]
    KeyLimit(crate::identity::limits::LimitRefusal),
    #[error("X-Crochet-Pay-From must be `balance`")]
    InvalidPayFrom,
    #[error(
        "the balance ({balance_cents} cents) does not cover this call ({price_cents} cents); nothing was charged"
    )]
    InsufficientBalance {
        balance_cents: i64,
        price_cents: i64,
        currency: String,
    },
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
            | Self::X402SettlementUnconfirmed(id)
            | Self::X402SettlementFailed {
                gateway_request_id: id,
                ..
            }
            | Self::CallInterrupted(id)
            | Self::CallInProgress { request_id: id, .. } => {
                Some(id.as_str()).filter(|id| !id.is_empty())
            }
            Self::SellerFailed { context, .. } => context.get("request_id").and_then(Value::as_str),
            _ => None,
        }
    }

    /// The x402 headers of this error's response: `PAYMENT-REQUIRED` with what to pay,
    /// `PAYMENT-RESPONSE` with a failed settlement.
    pub fn x402_header(&self) -> Option<(&'static str, String)> {
        use crochet_payment_x402::encode_header;
        match self {
            Self::PaymentRequired(p) => p
                .x402
                .as_ref()
                .map(|r| (PAYMENT_REQUIRED, encode_header(r))),
            Self::X402Invalid {
                offer: Some(offer), ..
            } => Some((PAYMENT_REQUIRED, encode_header(offer.as_ref()))),
            Self::X402SettlementFailed { response, .. } => {
                Some((PAYMENT_RESPONSE, encode_header(response.as_ref())))
            }
            _ => None,
        }
    }
}

/// The x402 header of a 402: what to pay, base64 JSON.
pub const PAYMENT_REQUIRED: &str = "payment-required";
/// The x402 header of an answer after settlement, base64 JSON.
pub const PAYMENT_RESPONSE: &str = "payment-response";

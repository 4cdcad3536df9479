//! Gateway wire shapes: the 402 payment object, the 202 pending answer, the success
//! body, and gateway request history with its statuses.

use serde::{Deserialize, Serialize};

use crate::reputation::events::EventKind;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// The payment object of a 402, shown in `error.details.payment` and `data.payment`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentObject {
    /// The id to retry with after paying through the provider; absent when only x402 is
    /// offered (a buyer without an API key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_request_id: Option<String>,
    /// Provider instructions (mock: `scheme`, `amount_cents`, `currency`, `settle_url`);
    /// when only x402 is offered, the x402 payment requirement.
    #[schema(value_type = Object)]
    pub requirements: Value,
    /// Headers to add to the retry.
    #[schema(value_type = Object)]
    pub retry_headers: Value,
    pub amount_cents: i64,
    pub currency: String,
    pub provider: String,
    /// The ways this call can be paid: the provider's name (`mock`, `relay`) for a
    /// requirement retried with `X-Crochet-Relay-Request-Id`, and `x402`.
    pub flows: Vec<String>,
    /// The x402 payment requirement, also sent base64-encoded in `PAYMENT-REQUIRED`;
    /// present when x402 is offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub x402: Option<crochet_payment_x402::PaymentRequired>,
}

/// `charged_amount` of a success.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChargedAmount {
    pub amount_cents: i64,
    pub currency: String,
}

/// `fees` of a success.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Fees {
    pub fee_rate: f64,
    pub fee_amount_cents: i64,
    pub seller_receives_cents: i64,
}

/// `payment` of a success.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentStatus {
    /// `verified` (a provider's settled payment) or `settled` (x402, settled after the
    /// seller answered).
    pub status: &'static str,
    /// The payment's id: the relay request id, or the x402 payment's id.
    pub relay_request_id: String,
    /// `x402` for an x402 payment; absent for the provider flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<&'static str>,
    /// The x402 settlement's transaction, network and payer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

/// A forwarded call's answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GatewaySuccess {
    pub request_id: String,
    pub listing_id: String,
    pub billable: bool,
    pub payment: Option<PaymentStatus>,
    pub charged_amount: ChargedAmount,
    pub fees: Fees,
    pub seller_status_code: u16,
    /// The seller's JSON exactly as it answered (numbers, key order and duplicates kept).
    #[schema(value_type = Object)]
    pub seller_response: Box<serde_json::value::RawValue>,
    /// The x402 settle response, base64-encoded for the `PAYMENT-RESPONSE` header.
    #[serde(skip)]
    pub payment_response: Option<String>,
}

/// The 202 answer while settlement is pending.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PendingPayment {
    /// `pending`.
    pub status: &'static str,
    pub retryable: bool,
    pub retry_after_seconds: u64,
    pub relay_request_id: String,
    /// `retry_gateway_payment_later`.
    pub next_action: &'static str,
    pub provider_status: String,
}

/// Where a gateway request stands, as its history row records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GatewayRequestStatus {
    /// A payment requirement (402) was issued.
    PaymentRequired,
    /// Settlement was still pending (202).
    PaymentPending,
    /// The provider reported the payment failed.
    PaymentFailed,
    /// The payment route cannot carry the price.
    PaymentRouteRefused,
    /// The relay request id was already used by another call.
    PaymentAlreadyUsed,
    /// The relay request id was issued for a different body.
    PaymentBodyMismatch,
    /// Paid and accounted, being forwarded (leased to one attempt).
    Forwarding,
    /// The seller answered 2xx JSON.
    Completed,
    /// The seller failed: an error status, not JSON, unreachable, refused by the adapter.
    SellerError,
    /// The seller did not answer in time.
    SellerTimeout,
    /// Abandoned while forwarding; its charge was reversed.
    Interrupted,
    /// An x402 payment was refused (by the local checks or the facilitator's verify).
    PaymentRejected,
    /// The seller answered, but the x402 payment could not be settled: the answer was
    /// withheld from the buyer and nothing was charged.
    ServedUnpaid,
}

impl GatewayRequestStatus {
    /// The event of a forwarded call from its final history status and error code;
    /// `None` for attempts the seller never saw (402s, refusals, pending payments).
    pub fn score_event(self, error_code: Option<&str>) -> Option<EventKind> {
        match (self, error_code) {
            // The seller served a served-unpaid call as well as a paid one.
            (Self::Completed | Self::ServedUnpaid, _) => Some(EventKind::CallSucceeded),
            (Self::SellerTimeout, _) => Some(EventKind::SellerTimeout),
            (
                Self::SellerError,
                Some(
                    "SELLER_INVALID_RESPONSE"
                    | "SELLER_RESPONSE_TOO_LARGE"
                    | "SELLER_ADAPTER_FAILED",
                ),
            ) => Some(EventKind::InvalidResponse),
            (Self::SellerError, _) => Some(EventKind::SellerError),
            _ => None,
        }
    }

    /// Every status, in the order of a call's life.
    pub const ALL: [Self; 13] = [
        Self::PaymentRequired,
        Self::PaymentPending,
        Self::PaymentFailed,
        Self::PaymentRouteRefused,
        Self::PaymentAlreadyUsed,
        Self::PaymentBodyMismatch,
        Self::Forwarding,
        Self::Completed,
        Self::SellerError,
        Self::SellerTimeout,
        Self::Interrupted,
        Self::PaymentRejected,
        Self::ServedUnpaid,
    ];

    /// The stored (and wire) form.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PaymentRequired => "payment_required",
            Self::PaymentPending => "payment_pending",
            Self::PaymentFailed => "payment_failed",
            Self::PaymentRouteRefused => "payment_route_refused",
            Self::PaymentAlreadyUsed => "payment_already_used",
            Self::PaymentBodyMismatch => "payment_body_mismatch",
            Self::Forwarding => "forwarding",
            Self::Completed => "completed",
            Self::SellerError => "seller_error",
            Self::PaymentRejected => "payment_rejected",
            Self::ServedUnpaid => "served_unpaid",
            Self::SellerTimeout => "seller_timeout",
            Self::Interrupted => "interrupted",
        }
    }

    /// The status a stored string names.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// A stored status the host does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown gateway request status `{0}`")]
pub struct UnknownStatus(pub String);

impl TryFrom<String> for GatewayRequestStatus {
    type Error = UnknownStatus;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s).ok_or(UnknownStatus(s))
    }
}

/// One gateway attempt as stored and as `GET /gateway-requests` shows it: metadata and
/// hashes, never bodies. Stored times are Unix ms and `billable` 0/1; the wire form has
/// RFC 3339 times and a boolean, like every other route.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, ToSchema)]
pub struct GatewayRequestRow {
    pub id: String,
    pub buyer_id: String,
    pub seller_id: String,
    pub listing_id: String,
    pub relay_request_id: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: GatewayRequestStatus,
    /// Whether the call was paid (its charge is in the ledger).
    #[serde(serialize_with = "as_bool")]
    #[schema(value_type = bool)]
    pub billable: i64,
    pub charged_cents: i64,
    pub fee_cents: i64,
    pub seller_cents: i64,
    pub currency: String,
    pub request_bytes: i64,
    pub request_sha256: String,
    pub response_bytes: Option<i64>,
    pub response_sha256: Option<String>,
    pub seller_status_code: Option<i64>,
    pub latency_ms: Option<i64>,
    pub error_code: Option<String>,
    /// How many attempts forwarded this call (more than 1 when a retry took over an
    /// attempt that never finished).
    pub attempts: i64,
    /// RFC 3339.
    #[serde(serialize_with = "crate::storage::serialize_rfc3339")]
    #[schema(value_type = String)]
    pub created_at: i64,
    /// RFC 3339.
    #[serde(serialize_with = "crate::storage::serialize_rfc3339")]
    #[schema(value_type = String)]
    pub updated_at: i64,
}

fn as_bool<S: serde::Serializer>(flag: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(*flag != 0)
}

/// Whose history `GET /gateway-requests` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum HistoryRole {
    Buyer,
    Seller,
    #[default]
    All,
}

/// `GET /gateway-requests` filters.
#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    pub role: Option<HistoryRole>,
    /// `completed`, `forwarding`, `interrupted`, `payment_required`, `payment_pending`,
    /// `payment_failed`, `seller_error`, `seller_timeout`, …
    pub status: Option<String>,
    /// Unix milliseconds, inclusive.
    pub from: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub to: Option<i64>,
    pub page: Option<u32>,
    pub limit: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_outcomes_map_to_events() {
        use EventKind as K;
        use GatewayRequestStatus as S;
        assert_eq!(S::Completed.score_event(None), Some(K::CallSucceeded));
        assert_eq!(
            S::SellerTimeout.score_event(Some("SELLER_TIMEOUT")),
            Some(K::SellerTimeout)
        );
        assert_eq!(
            S::SellerError.score_event(Some("SELLER_ERROR_RESPONSE")),
            Some(K::SellerError)
        );
        assert_eq!(
            S::SellerError.score_event(Some("SELLER_UNREACHABLE")),
            Some(K::SellerError)
        );
        for code in [
            "SELLER_INVALID_RESPONSE",
            "SELLER_RESPONSE_TOO_LARGE",
            "SELLER_ADAPTER_FAILED",
        ] {
            assert_eq!(
                S::SellerError.score_event(Some(code)),
                Some(K::InvalidResponse)
            );
        }
        for status in [
            S::PaymentRequired,
            S::PaymentPending,
            S::PaymentFailed,
            S::PaymentRouteRefused,
            S::PaymentAlreadyUsed,
            S::PaymentBodyMismatch,
            S::Forwarding,
            S::Interrupted,
        ] {
            assert_eq!(status.score_event(None), None);
        }
    }
}

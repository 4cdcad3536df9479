//! Facilitators: the services that verify and settle x402 payments (spec §7).
//!
//! [`HttpFacilitator`] talks to a real one over HTTP; [`BuiltinFacilitator`] is an
//! in-process development stand-in that checks signatures but moves no money.

use async_trait::async_trait;

use crate::types::{
    PaymentPayload, PaymentRequirements, SettleResponse, SupportedResponse, VerifyResponse,
};

mod builtin;
mod http;

pub use builtin::BuiltinFacilitator;
pub use http::HttpFacilitator;

/// A service that verifies and settles x402 payments.
///
/// An invalid payment is an `Ok` answer (`is_valid: false` / `success: false` with a
/// reason); `Err` means the facilitator could not give an answer.
#[async_trait]
pub trait Facilitator: Send + Sync {
    /// `"builtin"` or the facilitator URL's host.
    fn name(&self) -> &str;
    /// The scheme/network pairs the facilitator handles (`GET /supported`).
    async fn supported(&self) -> Result<SupportedResponse, FacilitatorError>;
    /// Checks a payment without settling it (`POST /verify`).
    async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<VerifyResponse, FacilitatorError>;
    /// Settles a payment on chain (`POST /settle`).
    async fn settle(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<SettleResponse, FacilitatorError>;
}

/// Why a facilitator gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FacilitatorError {
    /// The request never reached the facilitator (connect error, refused): nothing
    /// happened there; safe to retry.
    #[error("the x402 facilitator is unreachable (nothing was sent): {0}")]
    Unreachable(String),
    /// Sent, but no usable answer came back (timeout after sending, 5xx, a body that is
    /// not the expected JSON). For /settle the outcome is unknown.
    #[error("the x402 facilitator gave no usable answer (the outcome is unknown): {0}")]
    NoAnswer(String),
    /// The facilitator refused the request itself (4xx other than a verify/settle
    /// result body), with its message. Also returned by [`HttpFacilitator::new`] for an
    /// unusable URL or header value.
    #[error("{0}")]
    Rejected(String),
}

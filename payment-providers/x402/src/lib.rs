//! x402 v2 (HTTP 402 payments) for Crochet Gateway.
//!
//! This crate owns the protocol side of x402 and nothing of the gateway's policy:
//!
//! - [`types`]: the wire types (`PaymentRequired`, `PaymentPayload`, `SettleResponse`,
//!   facilitator requests and answers) and the base64 header encoding of the HTTP
//!   transport ([`encode_header`], [`decode_header`]);
//! - [`networks`]: CAIP-2 network families, default USDC assets, and exact conversion
//!   between US cents and token units;
//! - [`evm`]: the `exact` scheme on EVM (EIP-3009 `transferWithAuthorization`): EIP-712
//!   digest, signer recovery, the offline checks of a payment ([`evm::check_exact_evm`])
//!   and signing one as a client ([`evm::sign_exact_evm`]);
//! - [`facilitator`]: the [`Facilitator`] trait, an HTTP client for a real facilitator
//!   ([`HttpFacilitator`]) and a development-only in-process one
//!   ([`BuiltinFacilitator`]) that moves no money.
//!
//! Specification: <https://github.com/coinbase/x402/tree/main/specs>.

pub mod evm;
pub mod facilitator;
pub mod networks;
pub mod types;

pub use facilitator::{BuiltinFacilitator, Facilitator, FacilitatorError, HttpFacilitator};
pub use types::*;

/// What the unit tests share.
#[cfg(test)]
mod testing {
    use crate::PaymentRequirements;

    /// The specification's example requirement: 1 cent of USDC on Base Sepolia.
    pub(crate) fn requirements() -> PaymentRequirements {
        PaymentRequirements {
            scheme: "exact".into(),
            network: "eip155:84532".into(),
            amount: "10000".into(),
            asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            max_timeout_seconds: 60,
            extra: Some(serde_json::json!({"name": "USDC", "version": "2"})),
        }
    }
}

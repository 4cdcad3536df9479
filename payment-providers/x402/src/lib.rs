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

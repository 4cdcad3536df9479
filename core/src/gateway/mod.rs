//! The gateway's wire contract with sellers: how a forwarded request is signed
//! ([`signing`]) and how the host reaches a seller's private endpoint safely
//! ([`upstream`]). The endpoint test of the catalog and the pay-per-call pipeline share
//! both, so a seller sees the same headers and signature from either.

pub mod signing;
pub mod upstream;

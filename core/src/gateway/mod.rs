//! The pay-per-call gateway: the call pipeline ([`pipeline`]) and the recovery of paid
//! calls a crash interrupted ([`recovery`]). Signing a forwarded request and reaching a
//! seller's private endpoint live in [`crate::seller_client`], shared with the catalog's
//! endpoint test, so a seller sees the same headers and signature from either.

pub mod error;
pub mod http;
pub mod model;
pub mod pipeline;
pub mod recovery;
pub mod store;

pub use error::GatewayError;
pub use pipeline::Gateway;

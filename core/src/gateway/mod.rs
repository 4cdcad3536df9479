//! The pay-per-call gateway: the call pipeline ([`pipeline`]), the recovery of paid
//! calls a crash interrupted ([`recovery`]), how a forwarded request
//! is signed ([`signing`]) and how the host reaches a seller's private endpoint safely
//! ([`upstream`]). The catalog's endpoint test and the pipeline share signing and the
//! client, so a seller sees the same headers and signature from either.

pub mod error;
pub mod http;
pub mod model;
pub mod pipeline;
pub mod policy;
pub mod recorder;
pub mod recovery;
pub mod signing;
pub mod store;
pub mod upstream;

pub use error::GatewayError;
pub use pipeline::Gateway;

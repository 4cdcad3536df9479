//! How the host talks to sellers: the HMAC signature on every request it sends
//! ([`signing`]) and the guarded outbound client that reaches a seller's private
//! endpoint ([`upstream`]). Both the gateway's forward and the catalog's endpoint test go
//! through here, so a seller sees the same headers and signature from either.

pub mod signing;
pub mod upstream;

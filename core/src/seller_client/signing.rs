//! The HMAC signature on every request the gateway sends to a seller.
//!
//! Headers: `X-Crochet-Request-Id`, `X-Crochet-Listing-Id`, `X-Crochet-Buyer-Id`,
//! `X-Crochet-Timestamp` (Unix seconds), `X-Crochet-Body-SHA256` (lowercase hex of the
//! exact body bytes sent) and `X-Crochet-Signature`, the lowercase hex of
//!
//! ```text
//! HMAC-SHA256(signing_secret, timestamp + "." + request_id + "." + listing_id + "." + body_sha256)
//! ```
//!
//! where the key is the UTF-8 bytes of the listing's signing secret (`cgs_…`) exactly as
//! it was returned once at creation or rotation.
//!
//! # Verifying at the seller (Rust)
//!
//! A seller checks the body hash, the signature (in constant time) and the timestamp's
//! age; this is the whole of it, with the `hmac`, `sha2` and `hex` crates:
//!
//! ```
//! use hmac::{Hmac, Mac};
//! use sha2::{Digest, Sha256};
//!
//! /// Returns true when a forwarded request really comes from the gateway.
//! fn verify_crochet_request(
//!     secret: &str,
//!     headers: &impl Fn(&str) -> Option<String>,
//!     body: &[u8],
//!     now_unix: i64,
//! ) -> bool {
//!     let get = |name| headers(name).unwrap_or_default();
//!     let (ts, request_id, listing_id) = (get("x-crochet-timestamp"), get("x-crochet-request-id"), get("x-crochet-listing-id"));
//!     let body_sha = hex::encode(Sha256::digest(body));
//!     if get("x-crochet-body-sha256") != body_sha {
//!         return false; // body altered
//!     }
//!     match ts.parse::<i64>() {
//!         Ok(t) if (now_unix - t).abs() <= 300 => {}
//!         _ => return false, // stale or replayed
//!     }
//!     let Ok(signature) = hex::decode(get("x-crochet-signature")) else { return false };
//!     let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
//!     mac.update(format!("{ts}.{request_id}.{listing_id}.{body_sha}").as_bytes());
//!     mac.verify_slice(&signature).is_ok() // constant-time comparison
//! }
//!
//! // The same check against the host's own signer:
//! let signed = crochet::seller_client::signing::SignedHeaders::new(
//!     "cgs_example", 1_760_000_000, "gw_req_1", "listing-uuid", "buyer-uuid", br#"{"task":"run"}"#,
//! );
//! let lookup = |name: &str| signed.pairs().into_iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
//! assert!(verify_crochet_request("cgs_example", &lookup, br#"{"task":"run"}"#, 1_760_000_010));
//! assert!(!verify_crochet_request("cgs_other", &lookup, br#"{"task":"run"}"#, 1_760_000_010));
//! assert!(!verify_crochet_request("cgs_example", &lookup, br#"{"task":"tampered"}"#, 1_760_000_010));
//! ```

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::storage::lower_hex;

pub const REQUEST_ID: &str = "X-Crochet-Request-Id";
pub const LISTING_ID: &str = "X-Crochet-Listing-Id";
pub const BUYER_ID: &str = "X-Crochet-Buyer-Id";
pub const TIMESTAMP: &str = "X-Crochet-Timestamp";
pub const BODY_SHA256: &str = "X-Crochet-Body-SHA256";
pub const SIGNATURE: &str = "X-Crochet-Signature";

/// The string that is signed: `timestamp.request_id.listing_id.body_sha256`.
pub fn signing_payload(
    timestamp: i64,
    request_id: &str,
    listing_id: &str,
    body_sha256: &str,
) -> String {
    format!("{timestamp}.{request_id}.{listing_id}.{body_sha256}")
}

/// Lowercase hex HMAC-SHA256 of the signing payload under `secret`.
pub fn sign(
    secret: &str,
    timestamp: i64,
    request_id: &str,
    listing_id: &str,
    body_sha256: &str,
) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    // The bytes of `signing_payload`, fed in pieces instead of formatted into a new
    // string on every call.
    for (i, part) in [&timestamp.to_string(), request_id, listing_id, body_sha256]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            mac.update(b".");
        }
        mac.update(part.as_bytes());
    }
    lower_hex(&mac.finalize().into_bytes())
}

/// Lowercase hex SHA-256 of the exact body bytes.
pub fn body_sha256(body: &[u8]) -> String {
    lower_hex(&Sha256::digest(body))
}

/// The six headers of one forwarded request.
#[derive(Debug, Clone)]
pub struct SignedHeaders {
    pub request_id: String,
    pub listing_id: String,
    pub buyer_id: String,
    pub timestamp: i64,
    pub body_sha256: String,
    pub signature: String,
}

impl SignedHeaders {
    /// Hashes `body` and signs it for one request.
    pub fn new(
        secret: &str,
        timestamp: i64,
        request_id: &str,
        listing_id: &str,
        buyer_id: &str,
        body: &[u8],
    ) -> Self {
        Self::for_body_hash(
            secret,
            timestamp,
            request_id,
            listing_id,
            buyer_id,
            body_sha256(body),
        )
    }

    /// Signs one request whose body's lowercase hex SHA-256 is already known.
    pub fn for_body_hash(
        secret: &str,
        timestamp: i64,
        request_id: &str,
        listing_id: &str,
        buyer_id: &str,
        body_sha256: String,
    ) -> Self {
        let signature = sign(secret, timestamp, request_id, listing_id, &body_sha256);
        Self {
            request_id: request_id.to_owned(),
            listing_id: listing_id.to_owned(),
            buyer_id: buyer_id.to_owned(),
            timestamp,
            body_sha256,
            signature,
        }
    }

    /// Header name/value pairs, in the order documented above.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            (REQUEST_ID, self.request_id.clone()),
            (LISTING_ID, self.listing_id.clone()),
            (BUYER_ID, self.buyer_id.clone()),
            (TIMESTAMP, self.timestamp.to_string()),
            (BODY_SHA256, self.body_sha256.clone()),
            (SIGNATURE, self.signature.clone()),
        ]
    }

    /// The six headers for the outgoing request, plus the seller's upstream auth header
    /// when it has one. The values are ids, digits and hex, so none is ever refused; the
    /// strings become header values without a copy.
    pub fn into_header_map(self, upstream_auth: Option<&(HeaderName, HeaderValue)>) -> HeaderMap {
        // HTTP/1 header names are case-insensitive; static lowercase names cost nothing.
        const NAMES: [HeaderName; 6] = [
            HeaderName::from_static("x-crochet-request-id"),
            HeaderName::from_static("x-crochet-listing-id"),
            HeaderName::from_static("x-crochet-buyer-id"),
            HeaderName::from_static("x-crochet-timestamp"),
            HeaderName::from_static("x-crochet-body-sha256"),
            HeaderName::from_static("x-crochet-signature"),
        ];
        let values = [
            self.request_id,
            self.listing_id,
            self.buyer_id,
            self.timestamp.to_string(),
            self.body_sha256,
            self.signature,
        ];
        let mut map = HeaderMap::with_capacity(8);
        for (name, value) in NAMES.into_iter().zip(values) {
            if let Ok(value) = HeaderValue::try_from(value) {
                map.insert(name, value);
            }
        }
        if let Some((name, value)) = upstream_auth {
            map.insert(name.clone(), value.clone());
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_and_signature_are_stable() {
        let sha = body_sha256(b"{}");
        assert_eq!(
            sha,
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(signing_payload(1, "r", "l", &sha), format!("1.r.l.{sha}"));
        // Independent HMAC of the documented string.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"cgs_k").unwrap();
        mac.update(format!("1.r.l.{sha}").as_bytes());
        assert_eq!(
            sign("cgs_k", 1, "r", "l", &sha),
            hex::encode(mac.finalize().into_bytes())
        );
        assert_ne!(
            sign("cgs_k", 2, "r", "l", &sha),
            sign("cgs_k", 1, "r", "l", &sha)
        );
    }

    #[test]
    fn header_map_carries_the_documented_pairs_and_the_upstream_auth() {
        let signed = SignedHeaders::new("cgs_k", 7, "gw_req_1", "l-1", "b-1", b"{}");
        assert_eq!(
            signed.body_sha256,
            SignedHeaders::for_body_hash("cgs_k", 7, "gw_req_1", "l-1", "b-1", body_sha256(b"{}"))
                .body_sha256
        );
        let auth = (
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_static("k"),
        );
        let map = signed.clone().into_header_map(Some(&auth));
        assert_eq!(map.len(), 7);
        for (name, value) in signed.pairs() {
            assert_eq!(map[name], value.as_str(), "{name}");
        }
        assert_eq!(map["x-api-key"], "k");
        assert_eq!(signed.into_header_map(None).len(), 6);
    }
}

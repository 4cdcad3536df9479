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
//! The signing functions live in the client crate (`crochet_client::seller`), which
//! publishes them to sellers with the matching `verify_request`: the host signs with the
//! very code a seller checks with.
//!
//! ```
//! // A request signed by the host passes the sellers' check from the client crate.
//! let body = br#"{"task":"run"}"#;
//! let signed = crochet::seller_client::signing::SignedHeaders::new(
//!     "cgs_example", 1_760_000_000, "gw_req_1", "listing-uuid", "buyer-uuid", body,
//! );
//! let pairs = signed.pairs();
//! let lookup = |name: &str| pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
//! let ok = crochet_client::seller::verify_request("cgs_example", lookup, body, 1_760_000_010, 300);
//! assert_eq!(ok.unwrap().buyer_id.as_deref(), Some("buyer-uuid"));
//! assert!(crochet_client::seller::verify_request("cgs_other", lookup, body, 1_760_000_010, 300).is_err());
//! ```

use axum::http::{HeaderMap, HeaderName, HeaderValue};

pub use crochet_client::seller::{
    BODY_SHA256, BUYER_ID, LISTING_ID, REQUEST_ID, SIGNATURE, TIMESTAMP, body_sha256, sign,
    signing_payload,
};

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

//! For sellers: checking that a request really comes from the gateway.
//!
//! Every request the gateway forwards to a seller's private endpoint carries six headers:
//! `X-Crochet-Request-Id`, `X-Crochet-Listing-Id`, `X-Crochet-Buyer-Id`,
//! `X-Crochet-Timestamp` (Unix seconds), `X-Crochet-Body-SHA256` (lowercase hex of the
//! exact body bytes) and `X-Crochet-Signature`, the lowercase hex of
//!
//! ```text
//! HMAC-SHA256(signing_secret, timestamp + "." + request_id + "." + listing_id + "." + body_sha256)
//! ```
//!
//! keyed with the UTF-8 bytes of the listing's signing secret (`cgs_…`), exactly as it
//! was shown once at creation or rotation. The host signs with [`sign`] from this module,
//! so a seller that checks with [`verify_request`] runs the same code.
//!
//! ```
//! use crochet_client::seller::{self, SignatureError};
//!
//! // What the gateway sends (here made with the host's own signing function):
//! let body = br#"{"task":"run"}"#;
//! let headers = seller::signed_headers("cgs_example", 1_760_000_000, "gw_req_1", "listing-1", "buyer-1", body);
//! let lookup = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
//!
//! // What the seller checks, with its secret, the body bytes and its clock:
//! let checked = seller::verify_request("cgs_example", lookup, body, 1_760_000_010, 300).unwrap();
//! assert_eq!(checked.request_id, "gw_req_1");
//! assert_eq!(
//!     seller::verify_request("cgs_other", lookup, body, 1_760_000_010, 300),
//!     Err(SignatureError::BadSignature)
//! );
//! assert_eq!(
//!     seller::verify_request("cgs_example", lookup, b"{}", 1_760_000_010, 300),
//!     Err(SignatureError::BodyAltered)
//! );
//! assert_eq!(
//!     seller::verify_request("cgs_example", lookup, body, 1_760_009_999, 300),
//!     Err(SignatureError::Stale)
//! );
//! ```

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

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

fn mac(
    secret: &str,
    timestamp: i64,
    request_id: &str,
    listing_id: &str,
    body_sha256: &str,
) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this never fails.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    // The bytes of `signing_payload`, fed in pieces rather than formatted anew per call.
    for (i, part) in [&timestamp.to_string(), request_id, listing_id, body_sha256]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            mac.update(b".");
        }
        mac.update(part.as_bytes());
    }
    mac
}

/// Lowercase hex HMAC-SHA256 of the signing payload under `secret`: the
/// `X-Crochet-Signature` value.
pub fn sign(
    secret: &str,
    timestamp: i64,
    request_id: &str,
    listing_id: &str,
    body_sha256: &str,
) -> String {
    hex::encode(
        mac(secret, timestamp, request_id, listing_id, body_sha256)
            .finalize()
            .into_bytes(),
    )
}

/// Lowercase hex SHA-256 of the exact body bytes: the `X-Crochet-Body-SHA256` value.
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The six headers of one forwarded request, as name/value pairs in the order above.
pub fn signed_headers(
    secret: &str,
    timestamp: i64,
    request_id: &str,
    listing_id: &str,
    buyer_id: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let body_sha256 = body_sha256(body);
    let signature = sign(secret, timestamp, request_id, listing_id, &body_sha256);
    vec![
        (REQUEST_ID, request_id.to_owned()),
        (LISTING_ID, listing_id.to_owned()),
        (BUYER_ID, buyer_id.to_owned()),
        (TIMESTAMP, timestamp.to_string()),
        (BODY_SHA256, body_sha256),
        (SIGNATURE, signature),
    ]
}

/// Why a forwarded request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("the body does not match X-Crochet-Body-SHA256")]
    BodyAltered,
    #[error("X-Crochet-Timestamp is too old, in the future or not a number")]
    Stale,
    #[error("X-Crochet-Signature does not match")]
    BadSignature,
}

/// The gateway's facts about a request that passed [`verify_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    pub request_id: String,
    pub listing_id: String,
    /// The buying agent's profile id (absent on the owner's endpoint tests).
    pub buyer_id: Option<String>,
    pub timestamp: i64,
}

/// Checks a forwarded request: the body hash, the timestamp within `max_age_seconds` of
/// `now_unix` (either way), and the signature, compared in constant time. `header` looks
/// a header up by name (any case).
pub fn verify_request<'a>(
    secret: &str,
    header: impl Fn(&str) -> Option<&'a str>,
    body: &[u8],
    now_unix: i64,
    max_age_seconds: i64,
) -> Result<VerifiedRequest, SignatureError> {
    let get = |name: &'static str| header(name).ok_or(SignatureError::MissingHeader(name));
    let (request_id, listing_id) = (get(REQUEST_ID)?, get(LISTING_ID)?);
    let (timestamp, claimed_sha, signature) = (get(TIMESTAMP)?, get(BODY_SHA256)?, get(SIGNATURE)?);
    let body_sha = body_sha256(body);
    if !claimed_sha.eq_ignore_ascii_case(&body_sha) {
        return Err(SignatureError::BodyAltered);
    }
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Stale)?;
    if (now_unix - timestamp).abs() > max_age_seconds {
        return Err(SignatureError::Stale);
    }
    let signature = hex::decode(signature.trim()).map_err(|_| SignatureError::BadSignature)?;
    mac(secret, timestamp, request_id, listing_id, &body_sha)
        .verify_slice(&signature)
        .map_err(|_| SignatureError::BadSignature)?;
    Ok(VerifiedRequest {
        request_id: request_id.to_owned(),
        listing_id: listing_id.to_owned(),
        buyer_id: header(BUYER_ID).map(str::to_owned),
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_of_the_documented_payload() {
        let body_sha = body_sha256(b"{}");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"cgs_k").unwrap();
        mac.update(signing_payload(7, "r", "l", &body_sha).as_bytes());
        assert_eq!(
            sign("cgs_k", 7, "r", "l", &body_sha),
            hex::encode(mac.finalize().into_bytes())
        );
        assert_eq!(
            body_sha,
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    fn find<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_missing_header_is_named_and_a_garbled_signature_refused() {
        let headers = signed_headers("s", 1, "r", "l", "b", b"x");
        assert!(verify_request("s", |n| find(&headers, n), b"x", 1, 300).is_ok());
        let no_signature = |n: &str| {
            (!n.eq_ignore_ascii_case(SIGNATURE))
                .then(|| find(&headers, n))
                .flatten()
        };
        assert_eq!(
            verify_request("s", no_signature, b"x", 1, 300),
            Err(SignatureError::MissingHeader(SIGNATURE))
        );
        let garbled = |n: &str| {
            if n.eq_ignore_ascii_case(SIGNATURE) {
                Some("zz")
            } else {
                find(&headers, n)
            }
        };
        assert_eq!(
            verify_request("s", garbled, b"x", 1, 300),
            Err(SignatureError::BadSignature)
        );
    }
}

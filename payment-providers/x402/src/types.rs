//! x402 v2 wire types (spec §5 and §7) and the base64 header encoding of the HTTP
//! transport (`PAYMENT-REQUIRED`, `PAYMENT-SIGNATURE`, `PAYMENT-RESPONSE`).
//!
//! Unknown JSON fields are ignored on input, so newer peers that add fields still parse.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The x402 protocol version this crate speaks.
pub const X402_VERSION: u32 = 2;

/// Largest header value [`decode_header`] accepts, in bytes (64 KiB).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The protected resource a payment is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// URL of the protected resource.
    pub url: String,
    /// Human-readable description of the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// MIME type of the expected response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// One way of paying that a resource server accepts (an entry of `accepts`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// Payment scheme, e.g. `"exact"`.
    pub scheme: String,
    /// CAIP-2 network, e.g. `"eip155:8453"`.
    pub network: String,
    /// Amount in the token's smallest unit, as a decimal string.
    pub amount: String,
    /// Token contract address (EVM) or mint (Solana).
    pub asset: String,
    /// Recipient address.
    pub pay_to: String,
    /// Maximum time the client has to complete the payment.
    pub max_timeout_seconds: u64,
    /// Scheme-specific data; for exact EVM the EIP-712 domain `name` and `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

/// Body of a `PAYMENT-REQUIRED` header: why payment is needed and how to pay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Protocol version (2).
    pub x402_version: u32,
    /// Human-readable reason the payment is required (or why the last one failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The resource being paid for.
    pub resource: ResourceInfo,
    /// The acceptable ways to pay.
    pub accepts: Vec<PaymentRequirements>,
    /// Protocol extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
}

/// Body of a `PAYMENT-SIGNATURE` header: the client's signed payment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// Protocol version (2).
    pub x402_version: u32,
    /// The resource being paid for, as the client saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    /// The entry of `accepts` the client chose.
    pub accepted: PaymentRequirements,
    /// Scheme-specific payment data (for exact EVM an [`ExactEvmPayload`]).
    pub payload: Value,
    /// Protocol extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
}

/// EIP-3009 `transferWithAuthorization` parameters, all as strings on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Eip3009Authorization {
    /// Payer address.
    pub from: String,
    /// Recipient address.
    pub to: String,
    /// Amount in the token's smallest unit (decimal string).
    pub value: String,
    /// Unix time (decimal string) from which the authorization is valid.
    pub valid_after: String,
    /// Unix time (decimal string) until which the authorization is valid.
    pub valid_before: String,
    /// 32-byte nonce, `0x` + 64 hex digits.
    pub nonce: String,
}

/// The `payload` of an exact EVM payment using EIP-3009.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExactEvmPayload {
    /// 65-byte `r || s || v` signature, `0x`-prefixed hex.
    pub signature: String,
    /// The signed authorization.
    pub authorization: Eip3009Authorization,
}

/// Answer of a facilitator's `POST /verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    /// Whether the payment would be accepted.
    pub is_valid: bool,
    /// x402 error code when not valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    /// Payer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

/// Answer of a facilitator's `POST /settle`; also the body of a `PAYMENT-RESPONSE` header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    /// Whether the payment was settled.
    pub success: bool,
    /// x402 error code when not settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// Payer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// Transaction hash; empty when settlement failed.
    #[serde(default)]
    pub transaction: String,
    /// CAIP-2 network of the settlement.
    #[serde(default)]
    pub network: String,
    /// Amount actually settled, in the token's smallest unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
}

/// One scheme/network pair a facilitator supports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedKind {
    /// Protocol version.
    pub x402_version: u32,
    /// Payment scheme.
    pub scheme: String,
    /// CAIP-2 network.
    pub network: String,
    /// Scheme-specific configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

/// Answer of a facilitator's `GET /supported`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SupportedResponse {
    /// Supported scheme/network pairs.
    pub kinds: Vec<SupportedKind>,
    /// Extension identifiers the facilitator implements.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// CAIP-2 patterns (e.g. `eip155:*`) to the facilitator's signer addresses.
    #[serde(default)]
    pub signers: BTreeMap<String, Vec<String>>,
}

/// Body of `POST /verify` and `POST /settle`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FacilitatorRequest {
    /// Protocol version (2).
    pub x402_version: u32,
    /// The client's payment.
    pub payment_payload: PaymentPayload,
    /// What the resource server requires.
    pub payment_requirements: PaymentRequirements,
}

/// Why a header value could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Longer than [`MAX_HEADER_BYTES`].
    #[error("the header value is larger than 64 KiB; send a smaller payment header")]
    TooLarge,
    /// Not base64.
    #[error("the header value is not valid base64; it must be base64-encoded JSON")]
    Base64,
    /// Base64 but not the expected JSON object.
    #[error("the header value decodes, but not to the expected x402 JSON object: {0}")]
    Json(String),
}

/// Standard alphabet, padding optional on input.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Encodes `value` as a header value: compact JSON, then standard base64 with padding.
pub fn encode_header<T: Serialize>(value: &T) -> String {
    // Serialising the crate's own types (strings, numbers, JSON values) cannot fail.
    let json = serde_json::to_vec(value).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(json)
}

/// Decodes a header value made by [`encode_header`] (or any x402 peer).
///
/// Accepts standard base64 with or without padding, and the URL-safe alphabet too;
/// surrounding whitespace is ignored. Input longer than 64 KiB is refused.
pub fn decode_header<T: DeserializeOwned>(value: &str) -> Result<T, HeaderError> {
    if value.len() > MAX_HEADER_BYTES {
        return Err(HeaderError::TooLarge);
    }
    let trimmed = value.trim();
    let normalised: String = trimmed
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let bytes = LENIENT
        .decode(normalised.as_bytes())
        .map_err(|_| HeaderError::Base64)?;
    serde_json::from_slice(&bytes).map_err(|e| HeaderError::Json(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::requirements;
    use serde_json::json;

    #[test]
    fn header_round_trip() {
        let required = PaymentRequired {
            x402_version: X402_VERSION,
            error: Some("PAYMENT-SIGNATURE header is required".into()),
            resource: ResourceInfo {
                url: "https://api.example.com/premium-data".into(),
                description: Some("Access to premium market data".into()),
                mime_type: Some("application/json".into()),
            },
            accepts: vec![requirements()],
            extensions: None,
        };
        let header = encode_header(&required);
        assert!(!header.contains('\n'));
        let back: PaymentRequired = decode_header(&header).unwrap();
        assert_eq!(back, required);
    }

    #[test]
    fn decodes_the_spec_example() {
        // The PAYMENT-REQUIRED example of specs/transports-v2/http.md.
        let header = "eyJ4NDAyVmVyc2lvbiI6MiwiZXJyb3IiOiJQQVlNRU5ULVNJR05BVFVSRSBoZWFkZXIgaXMgcmVxdWlyZWQiLCJyZXNvdXJjZSI6eyJ1cmwiOiJodHRwczovL2FwaS5leGFtcGxlLmNvbS9wcmVtaXVtLWRhdGEiLCJkZXNjcmlwdGlvbiI6IkFjY2VzcyB0byBwcmVtaXVtIG1hcmtldCBkYXRhIiwibWltZVR5cGUiOiJhcHBsaWNhdGlvbi9qc29uIn0sImFjY2VwdHMiOlt7InNjaGVtZSI6ImV4YWN0IiwibmV0d29yayI6ImVpcDE1NTo4NDUzMiIsImFtb3VudCI6IjEwMDAwIiwiYXNzZXQiOiIweDAzNkNiRDUzODQyYzU0MjY2MzRlNzkyOTU0MWVDMjMxOGYzZENGN2UiLCJwYXlUbyI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUxNEVGMzEyMjg3QyIsIm1heFRpbWVvdXRTZWNvbmRzIjo2MCwiZXh0cmEiOnsibmFtZSI6IlVTREMiLCJ2ZXJzaW9uIjoiMiJ9fV19";
        let required: PaymentRequired = decode_header(header).unwrap();
        assert_eq!(required.x402_version, 2);
        assert_eq!(required.accepts, vec![requirements()]);
        assert_eq!(
            required.resource.mime_type.as_deref(),
            Some("application/json")
        );
    }

    #[test]
    fn decode_tolerates_missing_padding_and_url_safe_alphabet() {
        let settle = SettleResponse {
            success: true,
            error_reason: None,
            payer: Some("0xabc".into()),
            transaction: "0x01".into(),
            network: "eip155:8453".into(),
            amount: Some("10000".into()),
        };
        let header = encode_header(&settle);
        let unpadded = header.trim_end_matches('=');
        assert_ne!(unpadded.len(), header.len(), "test needs a padded encoding");
        assert_eq!(decode_header::<SettleResponse>(unpadded).unwrap(), settle);

        let url_safe = header.replace('+', "-").replace('/', "_");
        assert_eq!(decode_header::<SettleResponse>(&url_safe).unwrap(), settle);
        let url_safe =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"isValid":true}"#);
        let verify: VerifyResponse = decode_header(&url_safe).unwrap();
        assert!(verify.is_valid);
    }

    #[test]
    fn decode_errors() {
        assert_eq!(
            decode_header::<PaymentPayload>("not base64 at all!"),
            Err(HeaderError::Base64)
        );
        let not_json = base64::engine::general_purpose::STANDARD.encode("hello");
        assert!(matches!(
            decode_header::<PaymentPayload>(&not_json),
            Err(HeaderError::Json(_))
        ));
        let wrong_shape = encode_header(&json!({"x402Version": 2}));
        assert!(matches!(
            decode_header::<PaymentPayload>(&wrong_shape),
            Err(HeaderError::Json(_))
        ));
        let huge = "A".repeat(MAX_HEADER_BYTES + 1);
        assert_eq!(
            decode_header::<PaymentPayload>(&huge),
            Err(HeaderError::TooLarge)
        );
    }

    #[test]
    fn optional_fields_are_omitted_and_defaulted() {
        let json = serde_json::to_value(VerifyResponse {
            is_valid: true,
            invalid_reason: None,
            payer: None,
        })
        .unwrap();
        assert_eq!(json, json!({"isValid": true}));

        let settle: SettleResponse =
            serde_json::from_value(json!({"success": false, "errorReason": "x"})).unwrap();
        assert_eq!(settle.transaction, "");
        assert_eq!(settle.network, "");

        let supported: SupportedResponse = serde_json::from_value(json!({"kinds": [
            {"x402Version": 2, "scheme": "exact", "network": "eip155:8453"}
        ]}))
        .unwrap();
        assert!(supported.extensions.is_empty() && supported.signers.is_empty());

        let body = serde_json::to_value(FacilitatorRequest {
            x402_version: X402_VERSION,
            payment_payload: PaymentPayload {
                x402_version: X402_VERSION,
                resource: None,
                accepted: requirements(),
                payload: json!({}),
                extensions: None,
            },
            payment_requirements: requirements(),
        })
        .unwrap();
        assert_eq!(body["x402Version"], 2);
        assert_eq!(body["paymentRequirements"]["payTo"], requirements().pay_to);
        assert_eq!(body["paymentPayload"]["accepted"]["maxTimeoutSeconds"], 60);
        assert!(body["paymentPayload"].get("resource").is_none());
    }
}

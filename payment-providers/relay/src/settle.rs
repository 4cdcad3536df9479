//! Relay's status words and request records, mapped onto settlement decisions.

use serde::Deserialize;
use serde_json::Value;

/// Retry delay while Relay is working normally.
pub(crate) const RETRY_PENDING_SECS: u64 = 5;
/// Retry delay once Relay says the fill is delayed.
pub(crate) const RETRY_DELAYED_SECS: u64 = 15;
/// Retry delay for a status word this crate does not know.
pub(crate) const RETRY_UNKNOWN_SECS: u64 = 30;

/// What a status word means for the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Pending { retry_after_seconds: u64 },
    Success,
    Failed { refunded: bool },
}

/// Maps a `/intents/status/v3` status word. Unknown words stay pending, never settled.
pub(crate) fn classify(status: &str) -> Class {
    match status {
        "waiting" | "depositing" | "pending" | "submitted" => Class::Pending {
            retry_after_seconds: RETRY_PENDING_SECS,
        },
        "delayed" => Class::Pending {
            retry_after_seconds: RETRY_DELAYED_SECS,
        },
        "success" => Class::Success,
        "failure" => Class::Failed { refunded: false },
        // Relay's documentation spells the refund state both ways.
        "refund" | "refunded" => Class::Failed { refunded: true },
        _ => Class::Pending {
            retry_after_seconds: RETRY_UNKNOWN_SECS,
        },
    }
}

/// `GET /intents/status/v3`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StatusResponse {
    pub status: Option<String>,
    #[serde(rename = "inTxHashes")]
    pub in_tx_hashes: Option<Vec<String>>,
    #[serde(rename = "txHashes")]
    pub tx_hashes: Option<Vec<String>>,
}

/// `GET /requests/v3`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RequestsResponse {
    pub requests: Option<Vec<RelayRequest>>,
}

/// One record of `/requests/v3`; every field is optional so a shape change only makes a
/// record unconfirmable, never wrongly confirmed.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RelayRequest {
    pub id: Option<String>,
    pub user: Option<String>,
    pub recipient: Option<String>,
    pub data: Option<RequestData>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RequestData {
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Metadata {
    pub recipient: Option<String>,
    #[serde(rename = "currencyOut")]
    pub currency_out: Option<CurrencyOut>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CurrencyOut {
    pub amount: Option<Value>,
    pub currency: Option<Currency>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Currency {
    pub address: Option<String>,
    #[serde(rename = "chainId")]
    pub chain_id: Option<Value>,
}

/// What the gateway expects a settled request to have paid.
pub(crate) struct Expected<'a> {
    pub recipient: &'a str,
    pub units: u128,
    pub chain_id: u64,
    pub currency: &'a str,
}

/// The outcome of checking a request record against [`Expected`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Confirmation {
    Confirmed {
        payer: Option<String>,
    },
    /// The record lacks a field needed to confirm (not indexed yet, or a new shape).
    Incomplete(&'static str),
    Mismatch(String),
}

/// Picks the record of `request_id` from a `/requests/v3` answer.
pub(crate) fn find_record(requests: Vec<RelayRequest>, request_id: &str) -> Option<RelayRequest> {
    let single_without_id = requests.len() == 1 && requests[0].id.is_none();
    requests.into_iter().find(|r| {
        single_without_id
            || r.id
                .as_deref()
                .is_some_and(|id| id.eq_ignore_ascii_case(request_id))
    })
}

/// Checks recipient, amount and (when reported) currency of a settled request.
pub(crate) fn confirm(record: &RelayRequest, expected: &Expected<'_>) -> Confirmation {
    let metadata = record.data.as_ref().and_then(|d| d.metadata.as_ref());
    let Some(recipient) = record
        .recipient
        .as_deref()
        .or(metadata.and_then(|m| m.recipient.as_deref()))
    else {
        return Confirmation::Incomplete("recipient");
    };
    let out = metadata.and_then(|m| m.currency_out.as_ref());
    let Some(paid) = out.and_then(|o| o.amount.as_ref()).and_then(as_u128) else {
        return Confirmation::Incomplete("currencyOut.amount");
    };
    let currency = out.and_then(|o| o.currency.as_ref());
    let wrong_token = currency
        .and_then(|c| c.address.as_deref())
        .is_some_and(|a| !same_address(a, expected.currency))
        || currency
            .and_then(|c| c.chain_id.as_ref())
            .and_then(as_u128)
            .is_some_and(|id| id != u128::from(expected.chain_id));
    if !same_address(recipient, expected.recipient) || paid < expected.units || wrong_token {
        return Confirmation::Mismatch(format!(
            "recipient/amount mismatch: Relay reports {paid} units{} to {recipient}; expected at least {} to {}",
            if wrong_token { " of another token" } else { "" },
            expected.units,
            expected.recipient,
        ));
    }
    Confirmation::Confirmed {
        payer: record.user.clone().filter(|u| !u.is_empty()),
    }
}

/// Addresses compare exactly, except hex (`0x…`) ones, which ignore case.
pub(crate) fn same_address(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    if a.starts_with("0x") || a.starts_with("0X") {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// A non-negative integer given as a JSON number or a decimal string.
fn as_u128(v: &Value) -> Option<u128> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64().map(u128::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TREASURY: &str = "0xAbCd000000000000000000000000000000000001";
    const TOKEN: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";

    fn expected() -> Expected<'static> {
        Expected {
            recipient: TREASURY,
            units: 10_000,
            chain_id: 8453,
            currency: TOKEN,
        }
    }

    fn record(v: Value) -> RelayRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn status_words() {
        for w in ["waiting", "depositing", "pending", "submitted"] {
            assert_eq!(
                classify(w),
                Class::Pending {
                    retry_after_seconds: 5
                },
                "{w}"
            );
        }
        assert_eq!(
            classify("delayed"),
            Class::Pending {
                retry_after_seconds: 15
            }
        );
        assert_eq!(classify("success"), Class::Success);
        assert_eq!(classify("failure"), Class::Failed { refunded: false });
        assert_eq!(classify("refund"), Class::Failed { refunded: true });
        for w in ["", "SUCCESS", "settled", "fallback"] {
            assert_eq!(
                classify(w),
                Class::Pending {
                    retry_after_seconds: 30
                },
                "{w}"
            );
        }
    }

    #[test]
    fn confirmation_checks_recipient_amount_and_token() {
        let ok = record(json!({
            "id": "0x1", "user": "0xPayer", "recipient": TREASURY.to_lowercase(),
            "data": {"metadata": {"currencyOut": {"amount": "10000", "currency": {"address": TOKEN.to_lowercase(), "chainId": 8453}}}}
        }));
        assert_eq!(
            confirm(&ok, &expected()),
            Confirmation::Confirmed {
                payer: Some("0xPayer".into())
            }
        );
        // The recipient may only be in metadata, and the amount may be a number.
        let nested = record(
            json!({"data": {"metadata": {"recipient": TREASURY, "currencyOut": {"amount": 20000}}}}),
        );
        assert_eq!(
            confirm(&nested, &expected()),
            Confirmation::Confirmed { payer: None }
        );
        let short = record(
            json!({"recipient": TREASURY, "data": {"metadata": {"currencyOut": {"amount": "9999"}}}}),
        );
        assert!(
            matches!(confirm(&short, &expected()), Confirmation::Mismatch(m) if m.contains("9999"))
        );
        let token = record(
            json!({"recipient": TREASURY, "data": {"metadata": {"currencyOut": {"amount": "10000", "currency": {"chainId": 1}}}}}),
        );
        assert!(
            matches!(confirm(&token, &expected()), Confirmation::Mismatch(m) if m.contains("another token"))
        );
        assert_eq!(
            confirm(&record(json!({"id": "0x1"})), &expected()),
            Confirmation::Incomplete("recipient")
        );
        let no_amount = record(
            json!({"recipient": TREASURY, "data": {"metadata": {"currencyOut": {"amount": "ten"}}}}),
        );
        assert_eq!(
            confirm(&no_amount, &expected()),
            Confirmation::Incomplete("currencyOut.amount")
        );
    }

    #[test]
    fn addresses_and_records() {
        assert!(same_address("0xABC", "0xabc"));
        assert!(!same_address("SoLAddr", "soladdr"));
        let recs = || vec![record(json!({"id": "0xAA"})), record(json!({"id": "0xBB"}))];
        assert_eq!(
            find_record(recs(), "0xbb").and_then(|r| r.id).as_deref(),
            Some("0xBB")
        );
        assert!(find_record(recs(), "0xcc").is_none());
        assert!(find_record(vec![record(json!({}))], "0xcc").is_some());
    }
}

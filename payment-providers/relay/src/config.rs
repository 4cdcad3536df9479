//! Operator configuration: the `[relay]` table of `crochet.toml`.

use std::collections::BTreeMap;
use std::fmt;

use crochet_payment::{PaymentError, SOLANA_CHAIN_ID};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{MAINNET_URL, SOLANA_USDC};

/// Operator configuration for the Relay provider (the host reads it from `[relay]`).
///
/// Every field has a default; only `recipients` must be filled in for the destination
/// chain. Chain ids are map keys written as strings (`"8453"`), because TOML keys are.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Relay API base URL ([`MAINNET_URL`] or [`crate::TESTNET_URL`]).
    pub base_url: String,
    /// Relay API key, sent as `x-api-key`. Prefer `CROCHET_RELAY_API_KEY` over the file.
    /// Redacted by `Debug` and never serialized.
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// The chain the gateway is paid on (Relay chain id).
    pub destination_chain_id: u64,
    /// The token the gateway is paid in, as Relay names it on the destination chain.
    pub destination_currency: String,
    /// Decimals of `destination_currency` (2 to 38).
    pub destination_decimals: u32,
    /// Treasury (payout) address per destination chain id: the quote's `recipient`.
    pub recipients: BTreeMap<String, String>,
    /// USDC contract per EVM chain id. Entries given in the file are merged over the
    /// built-in ones; an empty address removes a built-in entry.
    #[serde(deserialize_with = "merge_usdc_addresses")]
    pub usdc_addresses: BTreeMap<String, String>,
    /// The EVM chain used when a buyer names no chain (Base).
    pub default_evm_chain_id: u64,
    /// Timeout of one HTTP attempt, in milliseconds.
    pub timeout_ms: u64,
    /// Retries after the first attempt on 429, 5xx, connection errors and timeouts.
    pub max_retries: u32,
    /// Client-side quote limit per minute (Relay allows about 50 per key by default).
    pub quotes_per_minute: u32,
}

/// The built-in USDC contracts: Ethereum, Optimism, Base, Arbitrum.
pub fn default_usdc_addresses() -> BTreeMap<String, String> {
    [
        ("1", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"),
        ("10", "0x0b2C639c533813f4Aa9D7837CAf62653d097Ff85"),
        ("8453", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
        ("42161", "0xaf88d065e77c8cC2239327C5EDb3A432268e5831"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn merge_usdc_addresses<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let given = BTreeMap::<String, String>::deserialize(d)?;
    let mut all = default_usdc_addresses();
    for (chain, address) in given {
        if address.trim().is_empty() {
            all.remove(&chain);
        } else {
            all.insert(chain, address);
        }
    }
    Ok(all)
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            base_url: MAINNET_URL.to_owned(),
            api_key: None,
            destination_chain_id: SOLANA_CHAIN_ID,
            destination_currency: SOLANA_USDC.to_owned(),
            destination_decimals: 6,
            recipients: BTreeMap::new(),
            usdc_addresses: default_usdc_addresses(),
            default_evm_chain_id: 8453,
            timeout_ms: 10_000,
            max_retries: 3,
            quotes_per_minute: 50,
        }
    }
}

impl fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("destination_chain_id", &self.destination_chain_id)
            .field("destination_currency", &self.destination_currency)
            .field("destination_decimals", &self.destination_decimals)
            .field("recipients", &self.recipients)
            .field("usdc_addresses", &self.usdc_addresses)
            .field("default_evm_chain_id", &self.default_evm_chain_id)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_retries", &self.max_retries)
            .field("quotes_per_minute", &self.quotes_per_minute)
            .finish()
    }
}

impl RelayConfig {
    /// The treasury address for the destination chain.
    pub fn treasury(&self) -> Option<&str> {
        lookup(&self.recipients, self.destination_chain_id)
    }

    /// The USDC contract on an EVM chain.
    pub fn usdc_address(&self, chain_id: u64) -> Option<&str> {
        lookup(&self.usdc_addresses, chain_id)
    }

    /// The API key, unless it is absent or blank.
    pub(crate) fn api_key(&self) -> Option<&str> {
        self.api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
    }

    /// Checks everything that can be checked without calling Relay.
    pub(crate) fn validate(&self) -> Result<(), PaymentError> {
        let bad = |m: String| Err(PaymentError::Misconfigured(m));
        match reqwest::Url::parse(&self.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => {
                return bad(format!(
                    "relay.base_url {:?} is not an http(s) URL",
                    self.base_url
                ));
            }
        }
        for (table, map) in [
            ("recipients", &self.recipients),
            ("usdc_addresses", &self.usdc_addresses),
        ] {
            if let Some(key) = map
                .keys()
                .find(|k| k.parse::<u64>().map(|id| id.to_string()) != Ok((*k).clone()))
            {
                return bad(format!("relay.{table} key {key:?} is not a chain id"));
            }
        }
        if self.treasury().is_none() {
            return bad(format!(
                "relay.recipients has no treasury address for destination chain {}",
                self.destination_chain_id
            ));
        }
        if self.destination_currency.trim().is_empty() {
            return bad("relay.destination_currency is empty".into());
        }
        if !(2..=38).contains(&self.destination_decimals) {
            return bad("relay.destination_decimals must be between 2 and 38".into());
        }
        if self.timeout_ms == 0 || self.quotes_per_minute == 0 {
            return bad("relay.timeout_ms and relay.quotes_per_minute must be at least 1".into());
        }
        if self
            .api_key()
            .is_some_and(|k| reqwest::header::HeaderValue::from_str(k).is_err())
        {
            return bad("relay.api_key contains characters not allowed in an HTTP header".into());
        }
        Ok(())
    }
}

fn lookup(map: &BTreeMap<String, String>, chain_id: u64) -> Option<&str> {
    map.get(&chain_id.to_string())
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deserializes_with_defaults_and_merges_usdc_addresses() {
        let c: RelayConfig = serde_json::from_value(serde_json::json!({
            "recipients": {"792703809": "Treasury111"},
            "usdc_addresses": {"137": "0xPolygonUsdc", "1": ""},
        }))
        .unwrap();
        assert_eq!(c.base_url, MAINNET_URL);
        assert_eq!(c.treasury(), Some("Treasury111"));
        assert_eq!(c.usdc_address(137), Some("0xPolygonUsdc"));
        assert_eq!(
            c.usdc_address(8453),
            Some("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913")
        );
        assert_eq!(
            c.usdc_address(1),
            None,
            "an empty address removes a built-in entry"
        );
        c.validate().unwrap();
        assert!(serde_json::from_value::<RelayConfig>(serde_json::json!({"apikey": "x"})).is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c = RelayConfig::default();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("recipients"), "{err}");
        c.recipients.insert(" 792703809".into(), "T".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("not a chain id")
        );
        c.recipients = BTreeMap::from([(SOLANA_CHAIN_ID.to_string(), "T".into())]);
        c.base_url = "api.relay.link".into();
        assert!(c.validate().unwrap_err().to_string().contains("base_url"));
        c.base_url = MAINNET_URL.into();
        c.destination_decimals = 1;
        assert!(c.validate().is_err());
        c.destination_decimals = 6;
        c.api_key = Some("bad\nkey".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(!err.contains("bad\nkey"), "{err}");
        c.api_key = Some("  ".into());
        c.validate().unwrap();
    }
}

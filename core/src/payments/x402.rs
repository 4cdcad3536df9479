//! x402 in the host: the configured facilitator and what a paid listing offers on each
//! network (scheme `exact`, the network's USDC, the operator's treasury as `payTo`).
//!
//! x402 does not fit [`crate::payments::PaymentProvider`]: a provider reports a payment
//! that is final *before* the call is forwarded, while an x402 payment is an
//! authorization the buyer signs, which is verified before the forward and settled only
//! after the seller answered well. The gateway drives those two steps itself
//! (`gateway::x402`); this module only holds the facilitator and the offers.
//!
//! At start-up the facilitator's `GET /supported` must list every configured network
//! for scheme `exact`. In `production` the host refuses to start when it does not (or
//! cannot be asked); in development it logs a warning and goes on.

use std::sync::Arc;
use std::time::Duration;

use crochet_payment_x402::facilitator::{BuiltinFacilitator, Facilitator, HttpFacilitator};
use crochet_payment_x402::networks::{self, Family};
use crochet_payment_x402::{PaymentRequired, PaymentRequirements, ResourceInfo, X402_VERSION};
use serde_json::{Value, json};

use crate::config::{Environment, X402Config};

/// The treasury a development host offers when none is configured and the built-in
/// facilitator is in use: an address nobody holds a key for (no money moves anyway).
pub const DEVELOPMENT_PAY_TO_EVM: &str = "0x000000000000000000000000000000000000c0de";

/// Why x402 could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum X402SetupError {
    #[error("x402: {0}")]
    Invalid(String),
}

/// One network's offer: what a paid listing's `accepts` entry says, but the amount.
#[derive(Debug, Clone)]
pub struct Offer {
    pub network: String,
    pub asset: String,
    pub decimals: u32,
    pub pay_to: String,
    pub extra: Value,
}

/// x402 as configured; cheap to clone.
#[derive(Clone)]
pub struct X402 {
    inner: Arc<Inner>,
}

struct Inner {
    facilitator: Arc<dyn Facilitator>,
    offers: Vec<Offer>,
    keyless: bool,
    any_payer: bool,
    max_timeout_seconds: u64,
}

impl X402 {
    /// x402 from the configuration: `None` while no facilitator is set.
    pub async fn from_config(
        config: &X402Config,
        environment: Environment,
    ) -> Result<Option<Self>, X402SetupError> {
        let Some(url) = config.facilitator_url.as_deref() else {
            return Ok(None);
        };
        let invalid = |m: String| X402SetupError::Invalid(m);
        if config.networks.is_empty() {
            return Err(invalid("CROCHET_X402_NETWORKS names no network".into()));
        }
        let builtin = url == "builtin";
        if builtin && environment == Environment::Production {
            return Err(invalid(
                "the built-in facilitator is for development only; set CROCHET_X402_FACILITATOR_URL to a facilitator's URL".into(),
            ));
        }
        let mut offers = Vec::new();
        for network in &config.networks {
            let family = networks::family(network).ok_or_else(|| {
                invalid(format!(
                    "`{network}` is not a CAIP-2 network id (eip155:<chain id> or solana:<genesis hash>)"
                ))
            })?;
            let asset = networks::default_asset(network).ok_or_else(|| {
                invalid(format!(
                    "no USDC contract is known for network `{network}`; offer one of eip155:8453, eip155:84532, or a Solana mainnet/devnet id"
                ))
            })?;
            let (pay_to, extra) = match family {
                Family::Evm { .. } => {
                    let pay_to = match (&config.pay_to_evm, builtin) {
                        (Some(a), _) => a.clone(),
                        (None, true) => DEVELOPMENT_PAY_TO_EVM.to_owned(),
                        (None, false) => {
                            return Err(invalid(format!(
                                "network `{network}` needs the operator's EVM treasury: set CROCHET_X402_PAY_TO_EVM"
                            )));
                        }
                    };
                    crochet_payment_x402::evm::parse_address(&pay_to).map_err(|e| {
                        invalid(format!(
                            "CROCHET_X402_PAY_TO_EVM is not an EVM address: {e}"
                        ))
                    })?;
                    (
                        pay_to.to_ascii_lowercase(),
                        json!({"name": asset.name, "version": asset.version}),
                    )
                }
                Family::Solana => {
                    if builtin {
                        return Err(invalid(format!(
                            "the built-in facilitator verifies EVM payments only; drop `{network}` or use a facilitator's URL"
                        )));
                    }
                    let pay_to = config.pay_to_solana.clone().ok_or_else(|| {
                        invalid(format!(
                            "network `{network}` needs the operator's Solana treasury: set CROCHET_X402_PAY_TO_SOLANA"
                        ))
                    })?;
                    if !matches!(bs58::decode(&pay_to).into_vec().map(|b| b.len()), Ok(32)) {
                        return Err(invalid(
                            "CROCHET_X402_PAY_TO_SOLANA is not a Solana address".into(),
                        ));
                    }
                    (pay_to, json!({}))
                }
            };
            offers.push(Offer {
                network: network.clone(),
                asset: asset.address.to_owned(),
                decimals: asset.decimals,
                pay_to,
                extra,
            });
        }
        let facilitator: Arc<dyn Facilitator> = if builtin {
            let evm = offers.iter().map(|o| o.network.clone()).collect();
            Arc::new(BuiltinFacilitator::new(evm))
        } else {
            let auth = config
                .facilitator_auth
                .as_ref()
                .map(|s| s.expose().to_owned());
            let timeout = Duration::from_secs(config.facilitator_timeout_seconds.max(1));
            Arc::new(
                HttpFacilitator::new(url, auth, timeout)
                    .map_err(|e| invalid(format!("facilitator URL: {e}")))?,
            )
        };
        check_supported(facilitator.as_ref(), &mut offers, environment).await?;
        Ok(Some(Self {
            inner: Arc::new(Inner {
                facilitator,
                offers,
                keyless: config.keyless,
                any_payer: config.any_payer,
                max_timeout_seconds: config.max_timeout_seconds.max(30),
            }),
        }))
    }

    pub fn facilitator(&self) -> &dyn Facilitator {
        self.inner.facilitator.as_ref()
    }

    /// Whether buyers without an API key may pay with x402.
    pub fn keyless(&self) -> bool {
        self.inner.keyless
    }

    /// Whether a keyed buyer may pay from a wallet it has not linked.
    pub fn any_payer(&self) -> bool {
        self.inner.any_payer
    }

    pub fn offers(&self) -> &[Offer] {
        &self.inner.offers
    }

    /// The `accepts` entries for a price in cents: one per network whose asset can
    /// carry the amount exactly.
    pub fn requirements(&self, price_cents: i64) -> Vec<PaymentRequirements> {
        self.inner
            .offers
            .iter()
            .filter_map(|o| self.requirement(o, price_cents))
            .collect()
    }

    /// The requirement of one offered network.
    pub fn requirement_for(&self, network: &str, price_cents: i64) -> Option<PaymentRequirements> {
        let offer = self.inner.offers.iter().find(|o| o.network == network)?;
        self.requirement(offer, price_cents)
    }

    fn requirement(&self, o: &Offer, price_cents: i64) -> Option<PaymentRequirements> {
        Some(PaymentRequirements {
            scheme: "exact".into(),
            network: o.network.clone(),
            amount: networks::atomic_amount(price_cents, o.decimals)?,
            asset: o.asset.clone(),
            pay_to: o.pay_to.clone(),
            max_timeout_seconds: self.inner.max_timeout_seconds,
            extra: Some(o.extra.clone()),
        })
    }

    /// The `PAYMENT-REQUIRED` object of a paid resource.
    pub fn payment_required(
        &self,
        resource: ResourceInfo,
        price_cents: i64,
        error: &str,
    ) -> PaymentRequired {
        PaymentRequired {
            x402_version: X402_VERSION,
            error: Some(error.to_owned()),
            resource,
            accepts: self.requirements(price_cents),
            extensions: Some(json!({
                "payment-identifier": {
                    "info": {"required": false},
                    "schema": {
                        "$schema": "https://json-schema.org/draft/2020-12/schema",
                        "type": "object",
                        "properties": {
                            "required": {"type": "boolean"},
                            "id": {"type": "string", "minLength": 16, "maxLength": 128}
                        },
                        "required": ["required"]
                    }
                }
            })),
        }
    }
}

/// Asks the facilitator which kinds it supports; every offered network must be among
/// them (fatal in production, a warning in development). A kind's `extra` (a Solana
/// fee payer, for one) is added to the offer's.
async fn check_supported(
    facilitator: &dyn Facilitator,
    offers: &mut [Offer],
    environment: Environment,
) -> Result<(), X402SetupError> {
    let production = environment == Environment::Production;
    let supported = match facilitator.supported().await {
        Ok(s) => s,
        Err(e) if production => {
            return Err(X402SetupError::Invalid(format!(
                "the facilitator's GET /supported failed: {e}"
            )));
        }
        Err(e) => {
            tracing::warn!(error = %e, "x402: the facilitator's GET /supported failed; offering the configured networks unchecked");
            return Ok(());
        }
    };
    for offer in offers.iter_mut() {
        let kind = supported.kinds.iter().find(|k| {
            k.x402_version == X402_VERSION && k.scheme == "exact" && k.network == offer.network
        });
        match kind {
            Some(k) => {
                if let (Some(Value::Object(from)), Value::Object(to)) = (&k.extra, &mut offer.extra)
                {
                    for (key, value) in from {
                        to.entry(key.clone()).or_insert_with(|| value.clone());
                    }
                }
            }
            None if production => {
                return Err(X402SetupError::Invalid(format!(
                    "the facilitator does not support scheme `exact` on `{}` (x402 version 2)",
                    offer.network
                )));
            }
            None => tracing::warn!(
                network = %offer.network,
                "x402: the facilitator does not list scheme `exact` on this network"
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> X402Config {
        X402Config {
            facilitator_url: Some(url.into()),
            ..X402Config::default()
        }
    }

    #[tokio::test]
    async fn the_builtin_facilitator_offers_usdc_on_base_with_a_development_treasury() {
        let x = X402::from_config(&config("builtin"), Environment::Development)
            .await
            .unwrap()
            .unwrap();
        let r = x.requirements(150);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].network, "eip155:8453");
        assert_eq!(r[0].amount, "1500000");
        assert_eq!(r[0].pay_to, DEVELOPMENT_PAY_TO_EVM);
        assert_eq!(r[0].extra.as_ref().unwrap()["name"], "USD Coin");
        assert!(x.keyless());
    }

    #[tokio::test]
    async fn unsafe_or_incomplete_settings_are_refused() {
        let prod = X402::from_config(&config("builtin"), Environment::Production).await;
        assert!(prod.is_err(), "builtin in production");
        let mut c = config("builtin");
        c.networks = vec!["bitcoin:1".into()];
        assert!(
            X402::from_config(&c, Environment::Development)
                .await
                .is_err()
        );
        let mut c = config("http://127.0.0.1:9");
        c.pay_to_evm = None;
        let err = X402::from_config(&c, Environment::Development)
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("CROCHET_X402_PAY_TO_EVM"), "{err}");
        let mut c = config("builtin");
        c.networks = vec!["solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp".into()];
        assert!(
            X402::from_config(&c, Environment::Development)
                .await
                .is_err()
        );
        assert!(
            X402::from_config(&X402Config::default(), Environment::Production)
                .await
                .unwrap()
                .is_none(),
            "no facilitator: x402 off"
        );
    }

    #[tokio::test]
    async fn production_refuses_a_facilitator_that_cannot_be_asked() {
        let mut c = config("http://127.0.0.1:9");
        c.pay_to_evm = Some("0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into());
        assert!(
            X402::from_config(&c, Environment::Production)
                .await
                .is_err()
        );
        // Development goes on with a warning.
        assert!(
            X402::from_config(&c, Environment::Development)
                .await
                .unwrap()
                .is_some()
        );
    }
}

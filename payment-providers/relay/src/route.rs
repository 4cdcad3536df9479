//! Turning a buyer's [`Route`] and a price into the origin and amount of a Relay quote.

use crochet_payment::{OriginCurrency, PaymentChain, PaymentError, Route, SOLANA_CHAIN_ID};

use crate::{EVM_NATIVE, RelayConfig, SOL_ADDRESS, SOLANA_USDC};

/// Where a payment starts, as Relay's quote wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub chain: PaymentChain,
    pub chain_id: u64,
    /// Relay's address of the paying token.
    pub currency: String,
    /// The payer address (the quote's `user`).
    pub user: String,
}

/// `amount_cents` of `currency` in the smallest unit of a token with `decimals` decimals
/// (a USD stablecoin: 1 cent = 10^(decimals - 2) units).
pub(crate) fn smallest_units(
    amount_cents: i64,
    currency: &str,
    decimals: u32,
) -> Result<u128, PaymentError> {
    if !currency.eq_ignore_ascii_case("USD") {
        return Err(PaymentError::UnsupportedRoute(format!(
            "Relay payments are priced in USD, not {currency:?}"
        )));
    }
    if amount_cents <= 0 {
        return Err(PaymentError::UnsupportedRoute(
            "the amount must be positive".into(),
        ));
    }
    let scale = decimals
        .checked_sub(2)
        .and_then(|e| 10u128.checked_pow(e))
        .ok_or_else(|| {
            PaymentError::Misconfigured(
                "relay.destination_decimals must be between 2 and 38".into(),
            )
        })?;
    u128::try_from(amount_cents)
        .ok()
        .and_then(|c| c.checked_mul(scale))
        .ok_or_else(|| PaymentError::UnsupportedRoute("the amount is too large".into()))
}

/// Resolves the origin chain, currency and payer of a route.
pub(crate) fn resolve_origin(route: &Route, config: &RelayConfig) -> Result<Origin, PaymentError> {
    let unsupported = |m: String| Err(PaymentError::UnsupportedRoute(m));
    let chain = route.chain();
    let (chain_id, currency) = match chain {
        PaymentChain::Solana => {
            if let Some(id) = route.origin_chain_id.filter(|id| *id != SOLANA_CHAIN_ID) {
                return unsupported(format!("SOL is paid on Solana, not on chain {id}"));
            }
            let currency = match route.origin_currency {
                // A Solana wallet without a currency pays in the native token, as on EVM.
                Some(OriginCurrency::Sol) | None => SOL_ADDRESS,
                Some(OriginCurrency::Usdc) => SOLANA_USDC,
                Some(OriginCurrency::Eth) => {
                    return unsupported("ETH cannot be paid from Solana".into());
                }
            };
            (SOLANA_CHAIN_ID, currency.to_owned())
        }
        PaymentChain::Evm => {
            let id = route.origin_chain_id.unwrap_or(config.default_evm_chain_id);
            let currency = match route.origin_currency {
                Some(OriginCurrency::Eth) | None => EVM_NATIVE.to_owned(),
                Some(OriginCurrency::Usdc) => match config.usdc_address(id) {
                    Some(address) => address.to_owned(),
                    None => return unsupported(format!("USDC on chain {id} is not configured")),
                },
                // Route::chain() makes SOL a Solana route; kept for completeness.
                Some(OriginCurrency::Sol) => {
                    return unsupported(format!("SOL cannot be paid on EVM chain {id}"));
                }
            };
            (id, currency)
        }
    };
    let Some(payer) = &route.payer else {
        return unsupported("no payer wallet: send X-Crochet-Origin-Wallet-Id".into());
    };
    if payer.chain != chain {
        return unsupported(format!(
            "the payer wallet is a {} wallet but the route starts on {}",
            chain_name(payer.chain),
            chain_name(chain)
        ));
    }
    if payer.address.trim().is_empty() {
        return unsupported("the payer wallet has no address".into());
    }
    Ok(Origin {
        chain,
        chain_id,
        currency,
        user: payer.address.trim().to_owned(),
    })
}

fn chain_name(chain: PaymentChain) -> &'static str {
    match chain {
        PaymentChain::Evm => "EVM",
        PaymentChain::Solana => "Solana",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crochet_payment::WalletRef;

    fn wallet(chain: PaymentChain) -> Option<WalletRef> {
        Some(WalletRef {
            id: "w1".into(),
            address: "PayerAddr".into(),
            chain,
        })
    }

    fn route(
        currency: Option<OriginCurrency>,
        chain_id: Option<u64>,
        chain: PaymentChain,
    ) -> Route {
        Route {
            origin_currency: currency,
            origin_chain_id: chain_id,
            payer: wallet(chain),
        }
    }

    fn unsupported(r: Result<Origin, PaymentError>) -> String {
        match r {
            Err(PaymentError::UnsupportedRoute(m)) => m,
            other => panic!("expected UnsupportedRoute, got {other:?}"),
        }
    }

    #[test]
    fn amounts_convert_with_checked_math() {
        assert_eq!(smallest_units(1, "USD", 6).unwrap(), 10_000);
        assert_eq!(smallest_units(125, "usd", 6).unwrap(), 1_250_000);
        assert_eq!(smallest_units(7, "USD", 2).unwrap(), 7);
        assert_eq!(
            smallest_units(1, "USD", 18).unwrap(),
            10_000_000_000_000_000
        );
        assert!(matches!(
            smallest_units(0, "USD", 6),
            Err(PaymentError::UnsupportedRoute(_))
        ));
        assert!(matches!(
            smallest_units(-5, "USD", 6),
            Err(PaymentError::UnsupportedRoute(_))
        ));
        assert!(matches!(
            smallest_units(5, "EUR", 6),
            Err(PaymentError::UnsupportedRoute(_))
        ));
        assert!(matches!(
            smallest_units(i64::MAX, "USD", 38),
            Err(PaymentError::UnsupportedRoute(_))
        ));
        assert!(matches!(
            smallest_units(1, "USD", 1),
            Err(PaymentError::Misconfigured(_))
        ));
        assert!(matches!(
            smallest_units(1, "USD", 60),
            Err(PaymentError::Misconfigured(_))
        ));
    }

    #[test]
    fn solana_origins() {
        let c = RelayConfig::default();
        let sol = resolve_origin(
            &route(Some(OriginCurrency::Sol), None, PaymentChain::Solana),
            &c,
        )
        .unwrap();
        assert_eq!(
            (sol.chain_id, sol.currency.as_str(), sol.user.as_str()),
            (SOLANA_CHAIN_ID, SOL_ADDRESS, "PayerAddr")
        );
        let usdc = resolve_origin(
            &route(
                Some(OriginCurrency::Usdc),
                Some(SOLANA_CHAIN_ID),
                PaymentChain::Solana,
            ),
            &c,
        )
        .unwrap();
        assert_eq!(usdc.currency, SOLANA_USDC);
        let native = resolve_origin(&route(None, None, PaymentChain::Solana), &c).unwrap();
        assert_eq!(
            (native.chain, native.currency.as_str()),
            (PaymentChain::Solana, SOL_ADDRESS)
        );
        let eth = route(
            Some(OriginCurrency::Eth),
            Some(SOLANA_CHAIN_ID),
            PaymentChain::Solana,
        );
        assert!(unsupported(resolve_origin(&eth, &c)).contains("ETH"));
        let sol_on_base = route(Some(OriginCurrency::Sol), Some(8453), PaymentChain::Solana);
        assert!(unsupported(resolve_origin(&sol_on_base, &c)).contains("8453"));
    }

    #[test]
    fn evm_origins() {
        let c = RelayConfig::default();
        let eth = resolve_origin(
            &route(Some(OriginCurrency::Eth), None, PaymentChain::Evm),
            &c,
        )
        .unwrap();
        assert_eq!((eth.chain_id, eth.currency.as_str()), (8453, EVM_NATIVE));
        let none = resolve_origin(&route(None, Some(1), PaymentChain::Evm), &c).unwrap();
        assert_eq!((none.chain_id, none.currency.as_str()), (1, EVM_NATIVE));
        let usdc = resolve_origin(
            &route(Some(OriginCurrency::Usdc), Some(42161), PaymentChain::Evm),
            &c,
        )
        .unwrap();
        assert_eq!(usdc.currency, "0xaf88d065e77c8cC2239327C5EDb3A432268e5831");
        let unknown = route(Some(OriginCurrency::Usdc), Some(137), PaymentChain::Evm);
        assert!(unsupported(resolve_origin(&unknown, &c)).contains("137"));
    }

    #[test]
    fn payer_is_required_and_must_match_the_chain() {
        let c = RelayConfig::default();
        let mut r = route(Some(OriginCurrency::Usdc), Some(8453), PaymentChain::Evm);
        r.payer = None;
        assert!(unsupported(resolve_origin(&r, &c)).contains("no payer wallet"));
        r.payer = wallet(PaymentChain::Solana);
        assert!(unsupported(resolve_origin(&r, &c)).contains("Solana wallet"));
        r.payer = Some(WalletRef {
            id: "w".into(),
            address: " ".into(),
            chain: PaymentChain::Evm,
        });
        assert!(unsupported(resolve_origin(&r, &c)).contains("no address"));
    }
}

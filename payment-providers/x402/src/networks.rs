//! CAIP-2 networks, their default (USDC) assets, and exact conversion between US cents
//! and a token's smallest unit.
//!
//! The asset table matches the x402 reference implementation
//! (`python/x402/mechanisms/evm/constants.py` and `.../svm/constants.py`).

/// A token: its address (EVM contract or Solana mint), EIP-712 domain name and version
/// (empty for Solana, which has no EIP-712), and decimals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset {
    /// Contract address (EVM, EIP-55 checksummed) or mint (Solana, base58).
    pub address: &'static str,
    /// EIP-712 domain `name` of the token contract.
    pub name: &'static str,
    /// EIP-712 domain `version` of the token contract.
    pub version: &'static str,
    /// Number of decimals of the token.
    pub decimals: u32,
}

/// The chain family of a CAIP-2 network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// An EVM chain (`eip155:<chain id>`).
    Evm {
        /// The EIP-155 chain id.
        chain_id: u64,
    },
    /// A Solana cluster (`solana:<genesis hash prefix>`).
    Solana,
}

/// Base mainnet.
pub const BASE: &str = "eip155:8453";
/// Base Sepolia testnet.
pub const BASE_SEPOLIA: &str = "eip155:84532";
/// Solana mainnet.
pub const SOLANA_MAINNET: &str = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";
/// Solana devnet.
pub const SOLANA_DEVNET: &str = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";

/// The family of a CAIP-2 network id: `eip155:<u64>` is EVM, `solana:<ref>` is Solana,
/// anything else (or a malformed reference) is `None`.
///
/// The EVM chain id must be canonical decimal (digits only, no leading zero), so that
/// one chain has exactly one network string.
pub fn family(network: &str) -> Option<Family> {
    let (namespace, reference) = network.split_once(':')?;
    match namespace {
        "eip155" => {
            let canonical = !reference.is_empty()
                && reference.bytes().all(|b| b.is_ascii_digit())
                && (reference == "0" || !reference.starts_with('0'));
            if !canonical {
                return None;
            }
            reference
                .parse::<u64>()
                .ok()
                .map(|chain_id| Family::Evm { chain_id })
        }
        "solana" => {
            // CAIP-2 references are 1 to 32 characters of [-_a-zA-Z0-9].
            let ok = (1..=32).contains(&reference.len())
                && reference
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            ok.then_some(Family::Solana)
        }
        _ => None,
    }
}

/// The default asset (USDC) of a network, when this crate knows one.
pub fn default_asset(network: &str) -> Option<Asset> {
    let asset = match network {
        BASE => Asset {
            address: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            name: "USD Coin",
            version: "2",
            decimals: 6,
        },
        BASE_SEPOLIA => Asset {
            address: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            name: "USDC",
            version: "2",
            decimals: 6,
        },
        SOLANA_MAINNET => Asset {
            address: "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
            name: "USDC",
            version: "",
            decimals: 6,
        },
        SOLANA_DEVNET => Asset {
            address: "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
            name: "USDC",
            version: "",
            decimals: 6,
        },
        _ => return None,
    };
    Some(asset)
}

/// `10^(decimals - 2)`: how many smallest units make one cent. `None` below 2 decimals
/// (a cent would not be a whole number of units) or when it does not fit a `u128`.
fn units_per_cent(decimals: u32) -> Option<u128> {
    10u128.checked_pow(decimals.checked_sub(2)?)
}

/// Converts whole US cents to the token's smallest unit, exactly:
/// `cents * 10^(decimals - 2)` as a decimal string (1 cent of a 6-decimal token is
/// `"10000"`). `None` for negative cents, fewer than 2 decimals, or overflow.
pub fn atomic_amount(cents: i64, decimals: u32) -> Option<String> {
    let cents = u128::try_from(cents).ok()?;
    let units = cents.checked_mul(units_per_cent(decimals)?)?;
    Some(units.to_string())
}

/// The inverse of [`atomic_amount`]: `amount` (decimal digits only) in whole cents.
/// `None` unless the amount is an exact number of cents that fits an `i64`.
pub fn cents_from_atomic(amount: &str, decimals: u32) -> Option<i64> {
    if amount.is_empty() || !amount.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = amount.trim_start_matches('0');
    if significant.is_empty() {
        return (decimals >= 2).then_some(0);
    }
    // A non-zero amount above u128 is far more than i64::MAX cents for any decimals >= 2.
    let units: u128 = significant.parse().ok()?;
    let per_cent = units_per_cent(decimals)?;
    if !units.is_multiple_of(per_cent) {
        return None;
    }
    i64::try_from(units / per_cent).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert_eq!(family("eip155:8453"), Some(Family::Evm { chain_id: 8453 }));
        assert_eq!(family("eip155:1"), Some(Family::Evm { chain_id: 1 }));
        assert_eq!(family(SOLANA_MAINNET), Some(Family::Solana));
        assert_eq!(family(SOLANA_DEVNET), Some(Family::Solana));
        for bad in [
            "eip155:",
            "eip155:08453",
            "eip155:+1",
            "eip155:0x1",
            "eip155:99999999999999999999999",
            "solana:",
            "solana:has space",
            "base",
            "cosmos:hub",
            "",
        ] {
            assert_eq!(family(bad), None, "{bad}");
        }
    }

    #[test]
    fn default_assets() {
        let base = default_asset(BASE).unwrap();
        assert_eq!(base.address, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
        assert_eq!(
            (base.name, base.version, base.decimals),
            ("USD Coin", "2", 6)
        );
        let sepolia = default_asset(BASE_SEPOLIA).unwrap();
        assert_eq!(
            sepolia.address,
            "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
        );
        assert_eq!(sepolia.name, "USDC");
        assert_eq!(
            default_asset(SOLANA_MAINNET).unwrap().address,
            "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
        );
        assert_eq!(
            default_asset(SOLANA_DEVNET).unwrap().address,
            "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"
        );
        assert_eq!(default_asset("eip155:1"), None);
    }

    #[test]
    fn cents_to_atomic() {
        assert_eq!(atomic_amount(1, 6).as_deref(), Some("10000"));
        assert_eq!(atomic_amount(1234, 6).as_deref(), Some("12340000"));
        assert_eq!(atomic_amount(0, 6).as_deref(), Some("0"));
        assert_eq!(atomic_amount(7, 2).as_deref(), Some("7"));
        assert_eq!(
            atomic_amount(100, 18).as_deref(),
            Some("1000000000000000000")
        );
        assert_eq!(
            atomic_amount(i64::MAX, 6).as_deref(),
            Some("92233720368547758070000")
        );
        assert_eq!(atomic_amount(-1, 6), None);
        assert_eq!(atomic_amount(1, 1), None);
        assert_eq!(atomic_amount(i64::MAX, 30), None);
        assert_eq!(atomic_amount(1, 200), None);
    }

    #[test]
    fn atomic_to_cents() {
        assert_eq!(cents_from_atomic("10000", 6), Some(1));
        assert_eq!(cents_from_atomic("12340000", 6), Some(1234));
        assert_eq!(cents_from_atomic("0012340000", 6), Some(1234));
        assert_eq!(cents_from_atomic("0", 6), Some(0));
        assert_eq!(
            cents_from_atomic("92233720368547758070000", 6),
            Some(i64::MAX)
        );
        assert_eq!(cents_from_atomic("92233720368547758080000", 6), None);
        assert_eq!(cents_from_atomic("10001", 6), None);
        assert_eq!(cents_from_atomic("", 6), None);
        assert_eq!(cents_from_atomic("-10000", 6), None);
        assert_eq!(cents_from_atomic("1e4", 6), None);
        assert_eq!(cents_from_atomic("10000", 1), None);
        assert_eq!(cents_from_atomic(&"9".repeat(80), 6), None);
        for cents in [0, 1, 99, 1234, 1_000_000_007] {
            let atomic = atomic_amount(cents, 18).unwrap();
            assert_eq!(cents_from_atomic(&atomic, 18), Some(cents));
        }
    }
}

//! `am_k_` API keys: generation, the keyed hash they are stored as, and header parsing.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Every API key starts with this.
pub const API_KEY_PREFIX: &str = "am_k_";
/// How many characters of a key are kept in clear for display (`am_k_` + 7).
pub const DISPLAY_PREFIX_LEN: usize = 12;
/// Random bytes in a key: 256 bits.
const KEY_BYTES: usize = 32;

/// A freshly generated key. The raw value is shown to its owner once and never stored.
pub struct NewApiKey {
    pub raw: String,
    pub display_prefix: String,
}

impl NewApiKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let raw = format!("{API_KEY_PREFIX}{}", bs58::encode(bytes).into_string());
        let display_prefix = raw[..DISPLAY_PREFIX_LEN].to_owned();
        Self {
            raw,
            display_prefix,
        }
    }

    pub fn authorization_header(&self) -> String {
        format!("Bearer {}", self.raw)
    }
}

/// Hashes API keys with HMAC-SHA256 under a key derived from the master key, so a
/// leaked database alone cannot be used to check guesses.
///
/// During a master-key rotation it also knows the previous keys, so a key hashed before
/// the rotation is still recognised (and then re-hashed under the current key).
#[derive(Clone)]
pub struct ApiKeyHasher {
    key: [u8; 32],
    previous: Vec<[u8; 32]>,
}

impl ApiKeyHasher {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key,
            previous: Vec::new(),
        }
    }

    pub fn with_previous(key: [u8; 32], previous: Vec<[u8; 32]>) -> Self {
        Self { key, previous }
    }

    /// Lowercase hex of HMAC-SHA256(key, raw).
    pub fn hash(&self, raw: &str) -> String {
        hmac_hex(&self.key, raw)
    }

    /// The hashes `raw` had under the previous keys.
    pub fn previous_hashes(&self, raw: &str) -> Vec<String> {
        self.previous.iter().map(|k| hmac_hex(k, raw)).collect()
    }
}

fn hmac_hex(key: &[u8; 32], raw: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(raw.as_bytes());
    crate::storage::lower_hex(&mac.finalize().into_bytes())
}

/// What is wrong with an `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderProblem {
    Missing,
    Malformed,
}

/// Extracts the `am_k_…` token from `Bearer am_k_…`, checking its shape only.
pub fn parse_bearer(header: Option<&str>) -> Result<&str, HeaderProblem> {
    let value = header.ok_or(HeaderProblem::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(HeaderProblem::Malformed)?;
    let token = token.trim();
    let well_formed = scheme.eq_ignore_ascii_case("bearer")
        && token.starts_with(API_KEY_PREFIX)
        && (DISPLAY_PREFIX_LEN..=128).contains(&token.len())
        && token[API_KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric());
    if well_formed {
        Ok(token)
    } else {
        Err(HeaderProblem::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_256_bits_and_prefix() {
        let k = NewApiKey::generate();
        assert!(k.raw.starts_with("am_k_"));
        let decoded = bs58::decode(&k.raw[5..]).into_vec().unwrap();
        assert_eq!(decoded.len(), 32);
        assert_eq!(k.display_prefix, &k.raw[..12]);
        assert_ne!(k.raw, NewApiKey::generate().raw);
        assert_eq!(
            parse_bearer(Some(&k.authorization_header())),
            Ok(k.raw.as_str())
        );
    }

    #[test]
    fn hash_is_keyed() {
        let a = ApiKeyHasher::new([1; 32]);
        let b = ApiKeyHasher::new([2; 32]);
        assert_eq!(a.hash("am_k_x"), a.hash("am_k_x"));
        assert_ne!(a.hash("am_k_x"), b.hash("am_k_x"));
        assert_eq!(a.hash("am_k_x").len(), 64);
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(parse_bearer(None), Err(HeaderProblem::Missing));
        for bad in [
            "am_k_abcdefghijk",
            "Basic am_k_abcdefghijk",
            "Bearer sk_abcdefghijklmn",
            "Bearer am_k_a",
            "Bearer am_k_abc/defghijkl",
        ] {
            assert_eq!(
                parse_bearer(Some(bad)),
                Err(HeaderProblem::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            parse_bearer(Some("bearer am_k_abcdefghijk")),
            Ok("am_k_abcdefghijk")
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any `Authorization` value parses to a problem or to a well-formed token.
            #[test]
            fn bearer_parsing_never_panics(value in ".{0,200}", token in "[ -~]{0,140}") {
                for header in [value.clone(), format!("Bearer {token}"), format!("bearer am_k_{token}")] {
                    if let Ok(t) = parse_bearer(Some(&header)) {
                        prop_assert!(t.starts_with(API_KEY_PREFIX));
                        prop_assert!(t.len() <= 128);
                        prop_assert!(t.bytes().skip(API_KEY_PREFIX.len()).all(|b| b.is_ascii_alphanumeric()));
                    }
                }
            }
        }
    }
}

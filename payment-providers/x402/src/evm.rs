//! The `exact` scheme on EVM chains with EIP-3009 `transferWithAuthorization`: the
//! EIP-712 digest of an authorization, secp256k1 signer recovery, the offline checks a
//! resource server can make ([`check_exact_evm`]) and the client side ([`sign_exact_evm`]).
//!
//! What cannot be checked offline (payer balance, nonce not yet used on chain, smart
//! wallet signatures per EIP-1271/6492) is the facilitator's job.

use std::fmt;

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use serde_json::Value;
use sha3::{Digest, Keccak256};

use crate::networks::{self, Family};
use crate::types::{
    Eip3009Authorization, ExactEvmPayload, PaymentPayload, PaymentRequirements, ResourceInfo,
    X402_VERSION,
};

/// x402 error codes (spec §9 and the reference implementation) used in [`Invalid::reason`].
pub mod reason {
    /// The payload's `x402Version` is not 2.
    pub const INVALID_X402_VERSION: &str = "invalid_x402_version";
    /// The scheme is not `exact` or differs between payload and requirements.
    pub const INVALID_SCHEME: &str = "invalid_scheme";
    /// The network differs between payload and requirements, or is not an EVM network.
    pub const INVALID_NETWORK: &str = "invalid_network";
    /// The payload is malformed.
    pub const INVALID_PAYLOAD: &str = "invalid_payload";
    /// The requirements are malformed (bad address, amount, or unknown EIP-712 domain).
    pub const INVALID_PAYMENT_REQUIREMENTS: &str = "invalid_payment_requirements";
    /// The signature is malformed or not the payer's.
    pub const INVALID_SIGNATURE: &str = "invalid_exact_evm_payload_signature";
    /// The payment goes to someone other than the required recipient.
    pub const RECIPIENT_MISMATCH: &str = "invalid_exact_evm_payload_recipient_mismatch";
    /// The authorized value is not exactly the required amount.
    pub const VALUE_MISMATCH: &str = "invalid_exact_evm_payload_authorization_value_mismatch";
    /// The authorization is not valid yet.
    pub const VALID_AFTER: &str = "invalid_exact_evm_payload_authorization_valid_after";
    /// The authorization has expired or expires too soon.
    pub const VALID_BEFORE: &str = "invalid_exact_evm_payload_authorization_valid_before";
    /// The payload's `accepted.asset` differs from the required asset.
    pub const ASSET_MISMATCH: &str = "invalid_exact_evm_payload_asset_mismatch";
    /// The payload's `accepted.amount` differs from the required amount.
    pub const AMOUNT_MISMATCH: &str = "invalid_exact_evm_payload_amount_mismatch";
    /// The EIP-3009 nonce was already used for another authorization (builtin facilitator).
    pub const NONCE_ALREADY_USED: &str = "invalid_exact_evm_nonce_already_used";
}

/// A payment (or requirement) that fails a check: an x402 error code and a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// x402 error code, one of [`reason`].
    pub reason: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.reason)
    }
}

impl std::error::Error for Invalid {}

/// What [`check_exact_evm`] establishes about a payment that passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExactEvmCheck {
    /// Payer address, lowercase `0x`-prefixed.
    pub payer: String,
    /// EIP-3009 nonce, lowercase `0x` + 64 hex digits.
    pub nonce: String,
    /// End of the authorization's validity (unix seconds; saturated at `u64::MAX`).
    pub valid_before: u64,
}

const DOMAIN_TYPE: &[u8] =
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";
const TRANSFER_TYPE: &[u8] = b"TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)";

fn keccak(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Keccak256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn strip_0x(s: &str) -> Option<&str> {
    s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))
}

fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits = strip_0x(s)?;
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}

/// Parses an EVM address: `0x` followed by 40 hex digits, in any case.
///
/// The EIP-55 mixed-case checksum is not validated: addresses are compared as bytes.
pub fn parse_address(s: &str) -> Result<[u8; 20], Invalid> {
    hex_bytes::<20>(s).ok_or_else(|| {
        Invalid::new(
            reason::INVALID_PAYLOAD,
            format!("`{}` is not an EVM address (0x and 40 hex digits)", clip(s)),
        )
    })
}

/// Lowercase `0x`-prefixed hex of an address.
pub fn address_hex(a: &[u8; 20]) -> String {
    format!("0x{}", hex::encode(a))
}

/// Parses a decimal string (digits only, leading zeros allowed) into a big-endian
/// uint256. `None` when empty, not decimal, or above `2^256 - 1`.
fn parse_uint256(s: &str) -> Option<[u8; 32]> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Little-endian 64-bit limbs; each digit is limbs = limbs * 10 + digit.
    let mut limbs = [0u64; 4];
    for digit in s.bytes().map(|b| u64::from(b - b'0')) {
        let mut carry = u128::from(digit);
        for limb in &mut limbs {
            let wide = u128::from(*limb) * 10 + carry;
            *limb = wide as u64; // low 64 bits
            carry = wide >> 64;
        }
        if carry != 0 {
            return None;
        }
    }
    let mut out = [0u8; 32];
    for (i, limb) in limbs.iter().rev().enumerate() {
        out[i * 8..(i + 1) * 8].copy_from_slice(&limb.to_be_bytes());
    }
    Some(out)
}

/// A big-endian uint256 as `u64`, saturating.
fn saturating_u64(word: &[u8; 32]) -> u64 {
    if word[..24].iter().any(|&b| b != 0) {
        return u64::MAX;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&word[24..]);
    u64::from_be_bytes(low)
}

fn uint256_field(value: &str, field: &str) -> Result<[u8; 32], Invalid> {
    parse_uint256(value).ok_or_else(|| {
        Invalid::new(
            reason::INVALID_PAYLOAD,
            format!(
                "authorization.{field} `{}` is not a decimal integer below 2^256",
                clip(value)
            ),
        )
    })
}

fn address_word(a: &[u8; 20]) -> [u8; 32] {
    let mut word = [0u8; 32];
    word[12..].copy_from_slice(a);
    word
}

/// The EIP-712 digest an EIP-3009 `TransferWithAuthorization` is signed over:
/// `keccak256(0x1901 || domainSeparator || hashStruct(message))`, with the domain
/// `EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)`
/// of the token contract `token`.
///
/// `value`, `validAfter` and `validBefore` are decimal strings up to `2^256 - 1`;
/// `nonce` is `0x` + 64 hex digits.
pub fn authorization_digest(
    auth: &Eip3009Authorization,
    chain_id: u64,
    token: &str,
    name: &str,
    version: &str,
) -> Result<[u8; 32], Invalid> {
    let token = parse_address(token).map_err(|_| {
        Invalid::new(
            reason::INVALID_PAYMENT_REQUIREMENTS,
            format!("asset `{}` is not an EVM token address", clip(token)),
        )
    })?;
    let from = address_field(&auth.from, "from")?;
    let to = address_field(&auth.to, "to")?;
    let value = uint256_field(&auth.value, "value")?;
    let valid_after = uint256_field(&auth.valid_after, "validAfter")?;
    let valid_before = uint256_field(&auth.valid_before, "validBefore")?;
    let nonce = nonce_field(&auth.nonce)?;

    let mut chain = [0u8; 32];
    chain[24..].copy_from_slice(&chain_id.to_be_bytes());
    let domain_separator = keccak(&[
        &keccak(&[DOMAIN_TYPE]),
        &keccak(&[name.as_bytes()]),
        &keccak(&[version.as_bytes()]),
        &chain,
        &address_word(&token),
    ]);
    let struct_hash = keccak(&[
        &keccak(&[TRANSFER_TYPE]),
        &address_word(&from),
        &address_word(&to),
        &value,
        &valid_after,
        &valid_before,
        &nonce,
    ]);
    Ok(keccak(&[b"\x19\x01", &domain_separator, &struct_hash]))
}

fn address_field(value: &str, field: &str) -> Result<[u8; 20], Invalid> {
    parse_address(value).map_err(|_| {
        Invalid::new(
            reason::INVALID_PAYLOAD,
            format!(
                "authorization.{field} `{}` is not an EVM address (0x and 40 hex digits)",
                clip(value)
            ),
        )
    })
}

fn nonce_field(value: &str) -> Result<[u8; 32], Invalid> {
    hex_bytes::<32>(value).ok_or_else(|| {
        Invalid::new(
            reason::INVALID_PAYLOAD,
            format!(
                "authorization.nonce `{}` is not 32 bytes (0x and 64 hex digits)",
                clip(value)
            ),
        )
    })
}

/// Recovers the address that signed `digest`. `signature` is 65 bytes `r || s || v` as
/// `0x`-prefixed hex with `v` in {0, 1, 27, 28}. A high-`s` signature is normalised to
/// its low-`s` twin (flipping the recovery id), which recovers the same key.
pub fn recover_signer(digest: &[u8; 32], signature: &str) -> Result<[u8; 20], Invalid> {
    let bad = |why: &str| Invalid::new(reason::INVALID_SIGNATURE, why.to_string());
    let bytes = hex_bytes::<65>(signature)
        .ok_or_else(|| bad("the signature is not 65 bytes of 0x-prefixed hex (r, s, v)"))?;
    let recid = match bytes[64] {
        v @ (0 | 1) => v,
        v @ (27 | 28) => v - 27,
        _ => return Err(bad("the signature's v is not 0, 1, 27 or 28")),
    };
    let signature = Signature::from_slice(&bytes[..64])
        .map_err(|_| bad("the signature's r or s is out of range"))?;
    let mut recid = RecoveryId::new(recid == 1, false);
    let signature = match signature.normalize_s() {
        Some(low) => {
            recid = RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced());
            low
        }
        None => signature,
    };
    let key = VerifyingKey::recover_from_prehash(digest, &signature, recid)
        .map_err(|_| bad("no public key recovers from this signature"))?;
    Ok(verifying_key_address(&key))
}

fn verifying_key_address(key: &VerifyingKey) -> [u8; 20] {
    let point = key.to_encoded_point(false);
    let hash = keccak(&[&point.as_bytes()[1..]]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash[12..]);
    address
}

/// The address of a signing key, lowercase `0x`-prefixed.
pub fn key_address(key: &SigningKey) -> String {
    address_hex(&verifying_key_address(key.verifying_key()))
}

fn extra_str<'a>(extra: Option<&'a Value>, key: &str) -> Option<&'a str> {
    extra?.get(key)?.as_str()
}

/// The EIP-712 domain `(name, version)` of `required.asset`: from `extra.name` /
/// `extra.version`, else from the network's default asset when it is that asset.
fn eip712_domain(required: &PaymentRequirements) -> Result<(String, String), Invalid> {
    let default = networks::default_asset(&required.network)
        .filter(|asset| asset.address.eq_ignore_ascii_case(&required.asset));
    let extra = required.extra.as_ref();
    let name = extra_str(extra, "name").or(default.map(|a| a.name));
    let version = extra_str(extra, "version").or(default.map(|a| a.version));
    match (name, version) {
        (Some(name), Some(version)) => Ok((name.to_string(), version.to_string())),
        _ => Err(Invalid::new(
            reason::INVALID_PAYMENT_REQUIREMENTS,
            format!(
                "the EIP-712 domain of asset {} on {} is unknown: set extra.name and extra.version",
                clip(&required.asset),
                clip(&required.network)
            ),
        )),
    }
}

fn evm_chain_id(network: &str) -> Option<u64> {
    match networks::family(network)? {
        Family::Evm { chain_id } => Some(chain_id),
        Family::Solana => None,
    }
}

/// Everything a resource server can check about an `exact` EVM (EIP-3009) payment
/// without a chain, in this order:
///
/// 1. `x402Version` is 2;
/// 2. scheme is `exact` in both `accepted` and `required`;
/// 3. same network in both, and an `eip155` one;
/// 4. `accepted` echoes the required asset, recipient (case-insensitive) and amount;
/// 5. the payload is an [`ExactEvmPayload`];
/// 6. the authorization pays `required.pay_to` exactly `required.amount`;
/// 7. `validAfter <= now_secs` and `validBefore >= now_secs + min_remaining_secs`;
/// 8. the nonce is 32 bytes;
/// 9. the EIP-712 signature recovers to `authorization.from` (domain from
///    `required.extra` `name`/`version`, else the network's default asset).
///
/// Balance and nonce reuse are not checked here; the facilitator checks them.
pub fn check_exact_evm(
    payload: &PaymentPayload,
    required: &PaymentRequirements,
    now_secs: u64,
    min_remaining_secs: u64,
) -> Result<ExactEvmCheck, Invalid> {
    let accepted = &payload.accepted;
    if payload.x402_version != X402_VERSION {
        return Err(Invalid::new(
            reason::INVALID_X402_VERSION,
            format!(
                "x402Version {} is not supported; use {X402_VERSION}",
                payload.x402_version
            ),
        ));
    }
    if required.scheme != "exact" || accepted.scheme != required.scheme {
        return Err(Invalid::new(
            reason::INVALID_SCHEME,
            format!(
                "scheme `{}` does not match the required `{}` (only `exact` is checked here)",
                clip(&accepted.scheme),
                clip(&required.scheme)
            ),
        ));
    }
    if accepted.network != required.network {
        return Err(Invalid::new(
            reason::INVALID_NETWORK,
            format!(
                "network `{}` does not match the required `{}`",
                clip(&accepted.network),
                clip(&required.network)
            ),
        ));
    }
    let chain_id = evm_chain_id(&required.network).ok_or_else(|| {
        Invalid::new(
            reason::INVALID_NETWORK,
            format!(
                "network `{}` is not an EVM (eip155) network",
                clip(&required.network)
            ),
        )
    })?;
    if !accepted.asset.eq_ignore_ascii_case(&required.asset) {
        return Err(Invalid::new(
            reason::ASSET_MISMATCH,
            format!(
                "asset `{}` does not match the required `{}`",
                clip(&accepted.asset),
                clip(&required.asset)
            ),
        ));
    }
    if !accepted.pay_to.eq_ignore_ascii_case(&required.pay_to) {
        return Err(Invalid::new(
            reason::RECIPIENT_MISMATCH,
            format!(
                "accepted payTo `{}` does not match the required `{}`",
                clip(&accepted.pay_to),
                clip(&required.pay_to)
            ),
        ));
    }
    if accepted.amount != required.amount {
        return Err(Invalid::new(
            reason::AMOUNT_MISMATCH,
            format!(
                "accepted amount `{}` does not match the required `{}`",
                clip(&accepted.amount),
                clip(&required.amount)
            ),
        ));
    }

    let evm: ExactEvmPayload = serde_json::from_value(payload.payload.clone()).map_err(|e| {
        Invalid::new(
            reason::INVALID_PAYLOAD,
            format!(
                "payload is not an exact EVM EIP-3009 payload (signature, authorization): {}",
                clip(&e.to_string())
            ),
        )
    })?;
    let auth = &evm.authorization;

    let pay_to = parse_address(&required.pay_to).map_err(|_| {
        Invalid::new(
            reason::INVALID_PAYMENT_REQUIREMENTS,
            format!(
                "required payTo `{}` is not an EVM address",
                clip(&required.pay_to)
            ),
        )
    })?;
    if address_field(&auth.to, "to")? != pay_to {
        return Err(Invalid::new(
            reason::RECIPIENT_MISMATCH,
            format!(
                "the authorization pays {}, not the required {}",
                clip(&auth.to),
                clip(&required.pay_to)
            ),
        ));
    }

    let amount = parse_uint256(&required.amount).ok_or_else(|| {
        Invalid::new(
            reason::INVALID_PAYMENT_REQUIREMENTS,
            format!(
                "required amount `{}` is not a decimal integer",
                clip(&required.amount)
            ),
        )
    })?;
    if uint256_field(&auth.value, "value")? != amount {
        return Err(Invalid::new(
            reason::VALUE_MISMATCH,
            format!(
                "the authorization is for {}, not exactly the required {}",
                clip(&auth.value),
                clip(&required.amount)
            ),
        ));
    }

    let valid_after = saturating_u64(&uint256_field(&auth.valid_after, "validAfter")?);
    if valid_after > now_secs {
        return Err(Invalid::new(
            reason::VALID_AFTER,
            format!("the authorization is not valid before {valid_after} (now {now_secs})"),
        ));
    }
    let valid_before = saturating_u64(&uint256_field(&auth.valid_before, "validBefore")?);
    let needed = now_secs.saturating_add(min_remaining_secs);
    if valid_before < needed {
        return Err(Invalid::new(
            reason::VALID_BEFORE,
            format!(
                "the authorization expires at {valid_before}; it must stay valid until at least {needed}"
            ),
        ));
    }

    let nonce = nonce_field(&auth.nonce)?;
    let from = address_field(&auth.from, "from")?;
    let (name, version) = eip712_domain(required)?;
    let digest = authorization_digest(auth, chain_id, &required.asset, &name, &version)?;
    let signer = recover_signer(&digest, &evm.signature)?;
    if signer != from {
        return Err(Invalid::new(
            reason::INVALID_SIGNATURE,
            format!(
                "the signature is by {}, not by the payer {}",
                address_hex(&signer),
                address_hex(&from)
            ),
        ));
    }

    Ok(ExactEvmCheck {
        payer: address_hex(&from),
        nonce: format!("0x{}", hex::encode(nonce)),
        valid_before,
    })
}

/// Signs an `exact` EVM payment for `required` as an x402 client would: an EIP-3009
/// authorization from `key`'s address to `required.pay_to` for exactly
/// `required.amount`, signed with EIP-712 (`v` is 27 or 28), echoing `required` as
/// `accepted`.
///
/// # Panics
///
/// If `required` is not something this crate can sign for: a non-`eip155` network, an
/// asset or `payTo` that is not an address, an amount that is not a decimal integer, or
/// an unknown EIP-712 domain (no `extra.name`/`extra.version` and not the network's
/// default asset). This is a client and test helper; check inputs first when they come
/// from elsewhere.
pub fn sign_exact_evm(
    key: &SigningKey,
    required: &PaymentRequirements,
    resource: Option<ResourceInfo>,
    valid_after: u64,
    valid_before: u64,
    nonce: [u8; 32],
) -> PaymentPayload {
    let chain_id = evm_chain_id(&required.network)
        .unwrap_or_else(|| panic!("sign_exact_evm: `{}` is not eip155", required.network));
    let (name, version) = eip712_domain(required).unwrap_or_else(|e| panic!("sign_exact_evm: {e}"));
    let authorization = Eip3009Authorization {
        from: key_address(key),
        to: required.pay_to.clone(),
        value: required.amount.clone(),
        valid_after: valid_after.to_string(),
        valid_before: valid_before.to_string(),
        nonce: format!("0x{}", hex::encode(nonce)),
    };
    let digest = authorization_digest(&authorization, chain_id, &required.asset, &name, &version)
        .unwrap_or_else(|e| panic!("sign_exact_evm: {e}"));
    let (signature, recid) = key
        .sign_prehash_recoverable(&digest)
        .unwrap_or_else(|e| panic!("sign_exact_evm: signing failed: {e}"));
    let mut bytes = signature.to_bytes().to_vec();
    bytes.push(27 + recid.to_byte());
    let payload = ExactEvmPayload {
        signature: format!("0x{}", hex::encode(bytes)),
        authorization,
    };
    PaymentPayload {
        x402_version: X402_VERSION,
        resource,
        accepted: required.clone(),
        payload: serde_json::to_value(payload).unwrap_or(Value::Null),
        extensions: None,
    }
}

/// At most 80 characters of an untrusted string, for messages.
fn clip(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::requirements;
    use serde_json::json;

    const NOW: u64 = 1_740_672_100;
    const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_slice(&[byte; 32]).unwrap()
    }

    fn signed(required: &PaymentRequirements) -> PaymentPayload {
        sign_exact_evm(&key(7), required, None, NOW - 10, NOW + 60, [0x42; 32])
    }

    fn reason_of(
        payload: &PaymentPayload,
        required: &PaymentRequirements,
        min: u64,
    ) -> &'static str {
        check_exact_evm(payload, required, NOW, min)
            .unwrap_err()
            .reason
    }

    fn edit_auth(payload: &mut PaymentPayload, field: &str, value: &str) {
        payload.payload["authorization"][field] = json!(value);
    }

    // Generated with eth-account 0.14.0 (`pip install eth-account`), independently of
    // this crate:
    //
    //   from eth_account import Account
    //   key = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
    //   domain = {"name": "USD Coin", "version": "2", "chainId": 8453,
    //             "verifyingContract": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"}
    //   types = {"TransferWithAuthorization": [
    //       {"name": "from", "type": "address"}, {"name": "to", "type": "address"},
    //       {"name": "value", "type": "uint256"}, {"name": "validAfter", "type": "uint256"},
    //       {"name": "validBefore", "type": "uint256"}, {"name": "nonce", "type": "bytes32"}]}
    //   acct = Account.from_key(key)
    //   msg = {"from": acct.address, "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
    //          "value": 10000, "validAfter": 1740672089, "validBefore": 1740672154,
    //          "nonce": bytes.fromhex("f3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480")}
    //   s = Account.sign_typed_data(key, domain, types, msg)
    //   print(acct.address, s.message_hash.hex(), s.signature.hex())
    //
    // The second vector is the same with "value": 2**256 - 1.
    const PY_KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    const PY_ADDRESS: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";
    const PY_DIGEST: &str = "a0f679e9b901633d4b65155d4bceadae0b954ae912f276c55a3ccdd44fe4b19a";
    const PY_SIGNATURE: &str = "0x05e4e2aa291ec2c2f5540113419d7775c8d9885fa4029097a9c64b8fca2a0b6a70932a5f08896ab4aec1e461f3e794e662aa46cb39f816f83338766ece7e50931b";
    const PY_MAX_VALUE: &str =
        "115792089237316195423570985008687907853269984665640564039457584007913129639935";
    const PY_MAX_DIGEST: &str = "39fd7a1957af456cf255e5ef1a56aa23a13c3d9108f96bb369696a054af3e3c1";
    const PY_MAX_SIGNATURE: &str = "0xb1631619be952208639ace58e6bb1915b7b7ebb9067743be824f1f1d0fab479838cbe3e29fc5e39c8686746d33bb2876015710a0bfecb4bafd4c5f660132f55e1b";

    fn py_authorization(value: &str) -> Eip3009Authorization {
        Eip3009Authorization {
            from: PY_ADDRESS.into(),
            to: PAY_TO.into(),
            value: value.into(),
            valid_after: "1740672089".into(),
            valid_before: "1740672154".into(),
            nonce: "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480".into(),
        }
    }

    const USDC_BASE: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";

    #[test]
    fn eip712_matches_eth_account() {
        for (value, digest, signature) in [
            ("10000", PY_DIGEST, PY_SIGNATURE),
            (PY_MAX_VALUE, PY_MAX_DIGEST, PY_MAX_SIGNATURE),
        ] {
            let auth = py_authorization(value);
            let ours = authorization_digest(&auth, 8453, USDC_BASE, "USD Coin", "2").unwrap();
            assert_eq!(hex::encode(ours), digest);
            let signer = recover_signer(&ours, signature).unwrap();
            assert_eq!(address_hex(&signer), PY_ADDRESS.to_lowercase());
        }
        let key = SigningKey::from_slice(&hex::decode(PY_KEY).unwrap()).unwrap();
        assert_eq!(key_address(&key), PY_ADDRESS.to_lowercase());
    }

    #[test]
    fn python_signature_passes_check_on_base() {
        let required = PaymentRequirements {
            network: "eip155:8453".into(),
            asset: USDC_BASE.into(),
            // No extra: the domain comes from the default asset table.
            extra: None,
            ..requirements()
        };
        let payload = PaymentPayload {
            x402_version: 2,
            resource: None,
            accepted: required.clone(),
            payload: json!({"signature": PY_SIGNATURE, "authorization": py_authorization("10000")}),
            extensions: None,
        };
        let check = check_exact_evm(&payload, &required, 1_740_672_100, 30).unwrap();
        assert_eq!(check.payer, PY_ADDRESS.to_lowercase());
        assert_eq!(check.valid_before, 1_740_672_154);
        assert_eq!(
            check.nonce,
            "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"
        );
    }

    #[test]
    fn uint256_parsing() {
        assert_eq!(parse_uint256("0"), Some([0; 32]));
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(parse_uint256("0001"), Some(one));
        assert_eq!(parse_uint256(PY_MAX_VALUE), Some([0xff; 32]));
        // 2^256 overflows.
        assert_eq!(
            parse_uint256(
                "115792089237316195423570985008687907853269984665640564039457584007913129639936"
            ),
            None
        );
        let mut word = [0u8; 32];
        word[16..].copy_from_slice(&u128::MAX.to_be_bytes());
        assert_eq!(parse_uint256(&u128::MAX.to_string()), Some(word));
        for bad in ["", "-1", "+1", "1.0", "0x10", " 1"] {
            assert_eq!(parse_uint256(bad), None, "{bad}");
        }
    }

    #[test]
    fn addresses() {
        let a = parse_address(PAY_TO).unwrap();
        assert_eq!(address_hex(&a), PAY_TO.to_lowercase());
        assert_eq!(
            parse_address(&PAY_TO.to_uppercase().replace("0X", "0x")).unwrap(),
            a
        );
        for bad in [
            "",
            "0x",
            "209693Bc6afc0C5328bA36FaF03C514EF312287C",
            "0x1234",
            "0xzz9693Bc6afc0C5328bA36FaF03C514EF312287C",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn recover_accepts_v_0_1_and_high_s() {
        let auth = py_authorization("10000");
        let digest = authorization_digest(&auth, 8453, USDC_BASE, "USD Coin", "2").unwrap();
        let mut bytes = hex_bytes::<65>(PY_SIGNATURE).unwrap();
        let expected = PY_ADDRESS.to_lowercase();

        bytes[64] -= 27;
        let sig = format!("0x{}", hex::encode(bytes));
        assert_eq!(
            address_hex(&recover_signer(&digest, &sig).unwrap()),
            expected
        );

        // The high-s twin (s' = n - s, parity flipped) recovers the same signer.
        let low = Signature::from_slice(&bytes[..64]).unwrap();
        let (r, s) = low.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s.as_ref()).to_bytes()).unwrap();
        let mut twin = high.to_bytes().to_vec();
        twin.push(28 - bytes[64]);
        let sig = format!("0x{}", hex::encode(twin));
        assert_eq!(
            address_hex(&recover_signer(&digest, &sig).unwrap()),
            expected
        );

        bytes[64] = 29;
        let sig = format!("0x{}", hex::encode(bytes));
        assert_eq!(
            recover_signer(&digest, &sig).unwrap_err().reason,
            reason::INVALID_SIGNATURE
        );
        assert_eq!(
            recover_signer(&digest, "0x1234").unwrap_err().reason,
            reason::INVALID_SIGNATURE
        );
    }

    #[test]
    fn signed_payment_passes() {
        let required = requirements();
        let payload = signed(&required);
        let check = check_exact_evm(&payload, &required, NOW, 30).unwrap();
        assert_eq!(check.payer, key_address(&key(7)));
        assert_eq!(check.nonce, format!("0x{}", "42".repeat(32)));
        assert_eq!(check.valid_before, NOW + 60);
        // Boundaries: valid from exactly validAfter, and exactly enough time left.
        assert!(check_exact_evm(&payload, &required, NOW - 10, 0).is_ok());
        assert!(check_exact_evm(&payload, &required, NOW, 60).is_ok());
        // Addresses compare case-insensitively; the amount numerically.
        let mut loose = required.clone();
        loose.pay_to = PAY_TO.to_lowercase();
        loose.asset = required.asset.to_uppercase().replace("0X", "0x");
        let mut payload2 = payload.clone();
        payload2.accepted = loose.clone();
        edit_auth(&mut payload2, "value", "00010000");
        // The asset spelling is not part of the signed domain's bytes, so the signature holds.
        assert!(check_exact_evm(&payload2, &loose, NOW, 0).is_ok());
    }

    #[test]
    fn domain_falls_back_to_default_asset() {
        let mut required = requirements();
        required.extra = None;
        let payload = signed(&required);
        assert!(check_exact_evm(&payload, &required, NOW, 0).is_ok());

        let mut unknown = requirements();
        unknown.extra = None;
        unknown.asset = "0x1111111111111111111111111111111111111111".into();
        let mut payload = signed(&requirements());
        payload.accepted = unknown.clone();
        assert_eq!(
            reason_of(&payload, &unknown, 0),
            reason::INVALID_PAYMENT_REQUIREMENTS
        );
    }

    #[test]
    fn wrong_version() {
        let required = requirements();
        let mut payload = signed(&required);
        payload.x402_version = 1;
        assert_eq!(
            reason_of(&payload, &required, 0),
            reason::INVALID_X402_VERSION
        );
    }

    #[test]
    fn wrong_scheme() {
        let required = requirements();
        let mut payload = signed(&required);
        payload.accepted.scheme = "upto".into();
        assert_eq!(reason_of(&payload, &required, 0), reason::INVALID_SCHEME);
        let mut upto = required.clone();
        upto.scheme = "upto".into();
        assert_eq!(reason_of(&payload, &upto, 0), reason::INVALID_SCHEME);
    }

    #[test]
    fn wrong_network() {
        let required = requirements();
        let mut payload = signed(&required);
        payload.accepted.network = "eip155:8453".into();
        assert_eq!(reason_of(&payload, &required, 0), reason::INVALID_NETWORK);

        let mut solana = required.clone();
        solana.network = networks::SOLANA_DEVNET.into();
        let mut payload = signed(&required);
        payload.accepted = solana.clone();
        assert_eq!(reason_of(&payload, &solana, 0), reason::INVALID_NETWORK);
    }

    #[test]
    fn signature_is_bound_to_the_chain() {
        // Same requirements but another chain id: the payload is re-labelled, the
        // signature (made for 84532) no longer recovers to the payer.
        let required = requirements();
        let mut other = required.clone();
        other.network = "eip155:1".into();
        let mut payload = signed(&required);
        payload.accepted = other.clone();
        assert_eq!(reason_of(&payload, &other, 0), reason::INVALID_SIGNATURE);
    }

    #[test]
    fn wrong_asset() {
        let required = requirements();
        let mut payload = signed(&required);
        payload.accepted.asset = "0x1111111111111111111111111111111111111111".into();
        assert_eq!(reason_of(&payload, &required, 0), reason::ASSET_MISMATCH);
    }

    #[test]
    fn wrong_pay_to() {
        let required = requirements();
        let other = "0x1111111111111111111111111111111111111111";

        // Requirements ask for another recipient than the payload's accepted copy.
        let mut moved = required.clone();
        moved.pay_to = other.into();
        assert_eq!(
            reason_of(&signed(&required), &moved, 0),
            reason::RECIPIENT_MISMATCH
        );

        // accepted echoes the requirements but the authorization pays someone else.
        let mut redirected = requirements();
        redirected.pay_to = other.into();
        let mut payload = signed(&redirected);
        payload.accepted = required.clone();
        assert_eq!(
            reason_of(&payload, &required, 0),
            reason::RECIPIENT_MISMATCH
        );
    }

    #[test]
    fn wrong_amount() {
        let required = requirements();

        let mut cheaper = required.clone();
        cheaper.amount = "9999".into();
        let mut payload = signed(&cheaper);
        payload.accepted = required.clone();
        assert_eq!(reason_of(&payload, &required, 0), reason::VALUE_MISMATCH);

        // More than asked is a mismatch too: exact means exact.
        let mut dearer = required.clone();
        dearer.amount = "10001".into();
        let mut payload = signed(&dearer);
        payload.accepted = required.clone();
        assert_eq!(reason_of(&payload, &required, 0), reason::VALUE_MISMATCH);

        // The accepted copy itself names another amount.
        let payload = signed(&cheaper);
        assert_eq!(reason_of(&payload, &required, 0), reason::AMOUNT_MISMATCH);
    }

    #[test]
    fn expired_or_expiring() {
        let required = requirements();
        let payload = signed(&required);
        assert_eq!(reason_of(&payload, &required, 61), reason::VALID_BEFORE);
        let err = check_exact_evm(&payload, &required, NOW + 61, 0).unwrap_err();
        assert_eq!(err.reason, reason::VALID_BEFORE);
    }

    #[test]
    fn not_yet_valid() {
        let required = requirements();
        let payload = sign_exact_evm(&key(7), &required, None, NOW + 5, NOW + 60, [1; 32]);
        assert_eq!(reason_of(&payload, &required, 0), reason::VALID_AFTER);
    }

    #[test]
    fn signed_by_another_key() {
        let required = requirements();
        let mut payload = sign_exact_evm(&key(8), &required, None, NOW - 10, NOW + 60, [0x42; 32]);
        // Claims to be from key 7.
        edit_auth(&mut payload, "from", &key_address(&key(7)));
        assert_eq!(reason_of(&payload, &required, 0), reason::INVALID_SIGNATURE);
    }

    #[test]
    fn tampered_fields_break_the_signature() {
        let required = requirements();
        for (field, value) in [
            ("validBefore", (NOW + 3600).to_string()),
            ("validAfter", "0".to_string()),
            ("nonce", format!("0x{}", "43".repeat(32))),
        ] {
            let mut payload = signed(&required);
            edit_auth(&mut payload, field, &value);
            assert_eq!(
                reason_of(&payload, &required, 0),
                reason::INVALID_SIGNATURE,
                "{field}"
            );
        }
        let mut payload = signed(&required);
        payload.payload["signature"] = json!("0xdeadbeef");
        assert_eq!(reason_of(&payload, &required, 0), reason::INVALID_SIGNATURE);
    }

    #[test]
    fn malformed_payloads() {
        let required = requirements();
        let mut payload = signed(&required);
        payload.payload = json!({"permit2Authorization": {}});
        assert_eq!(reason_of(&payload, &required, 0), reason::INVALID_PAYLOAD);

        for (field, value) in [
            ("nonce", "0x1234"),
            ("value", "ten"),
            ("validAfter", "-1"),
            ("from", "alice"),
            ("to", "bob"),
        ] {
            let mut payload = signed(&required);
            edit_auth(&mut payload, field, value);
            assert_eq!(
                reason_of(&payload, &required, 0),
                reason::INVALID_PAYLOAD,
                "{field}"
            );
        }

        let mut bad = required.clone();
        bad.amount = "ten".into();
        let mut payload = signed(&required);
        payload.accepted = bad.clone();
        assert_eq!(
            reason_of(&payload, &bad, 0),
            reason::INVALID_PAYMENT_REQUIREMENTS
        );
    }

    #[test]
    fn huge_valid_before_saturates() {
        let required = requirements();
        let mut payload = signed(&required);
        edit_auth(&mut payload, "validBefore", PY_MAX_VALUE);
        // Tampering breaks the signature; sign a real one through the digest instead.
        let auth: Eip3009Authorization =
            serde_json::from_value(payload.payload["authorization"].clone()).unwrap();
        let digest = authorization_digest(&auth, 84532, &required.asset, "USDC", "2").unwrap();
        let (sig, recid) = key(7).sign_prehash_recoverable(&digest).unwrap();
        let mut bytes = sig.to_bytes().to_vec();
        bytes.push(recid.to_byte());
        payload.payload["signature"] = json!(format!("0x{}", hex::encode(bytes)));
        let check = check_exact_evm(&payload, &required, NOW, u64::MAX).unwrap();
        assert_eq!(check.valid_before, u64::MAX);
    }

    #[test]
    fn invalid_displays_message_and_reason() {
        let e = Invalid::new(reason::INVALID_PAYLOAD, "bad");
        assert_eq!(e.to_string(), "bad (invalid_payload)");
        assert_eq!(clip(&"x".repeat(200)).chars().count(), 81);
    }
}

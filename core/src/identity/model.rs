//! Identity request and response types: the JSON shapes of registration, API keys,
//! wallets and claims.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::crypto::Chain;

/// What a wallet challenge will be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    #[default]
    Register,
    Recover,
    Claim,
    LinkWalletExisting,
    LinkWalletNew,
    UpdateWallet,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Register => "register",
            Purpose::Recover => "recover",
            Purpose::Claim => "claim",
            Purpose::LinkWalletExisting => "link_wallet_existing",
            Purpose::LinkWalletNew => "link_wallet_new",
            Purpose::UpdateWallet => "update_wallet",
        }
    }

    /// Purposes that act on an existing profile and so need `profile_id`.
    pub fn needs_profile(self) -> bool {
        !matches!(self, Purpose::Register | Purpose::Recover)
    }
}

/// The role a profile registers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Buyer,
    Seller,
    #[default]
    Both,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Buyer => "buyer",
            Role::Seller => "seller",
            Role::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "buyer" => Role::Buyer,
            "seller" => Role::Seller,
            _ => Role::Both,
        }
    }

    /// Whether the profile may publish listings.
    pub fn can_sell(self) -> bool {
        matches!(self, Role::Seller | Role::Both)
    }
}

/// `POST /auth/challenge` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// EVM (`0x` + 40 hex) or Solana (base58) address.
    pub wallet_address: String,
    #[serde(default)]
    pub purpose: Purpose,
    /// Required for `claim`, `link_wallet_existing`, `link_wallet_new`, `update_wallet`.
    pub profile_id: Option<String>,
}

/// The proof-of-work part of a challenge.
#[derive(Debug, Serialize, ToSchema)]
pub struct PowChallenge {
    pub challenge: String,
    pub difficulty: u8,
    /// Always `sha256`: find `pow_nonce` with `sha256(challenge + pow_nonce)` starting
    /// with `difficulty` hex zeros.
    pub algorithm: &'static str,
}

/// `POST /auth/challenge` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Challenge {
    /// Single-use; send it back as `nonce`.
    pub nonce: String,
    /// The exact text to sign.
    pub message: String,
    pub pow: PowChallenge,
    pub expires_at: String,
    pub wallet_address: String,
    pub chain: Chain,
    pub purpose: Purpose,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<String>,
}

/// A signed, proof-of-work-backed answer to one challenge.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WalletProof {
    pub wallet_address: String,
    /// The challenge's `nonce`.
    pub nonce: String,
    /// Signature of the challenge's exact `message`.
    pub signature: String,
    pub pow_nonce: String,
}

/// `POST /register` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub wallet_address: String,
    pub signature: String,
    pub nonce: String,
    pub pow_nonce: String,
    pub display_name: Option<String>,
    #[serde(default)]
    pub role: Role,
}

impl RegisterRequest {
    pub fn proof(&self) -> WalletProof {
        WalletProof {
            wallet_address: self.wallet_address.clone(),
            nonce: self.nonce.clone(),
            signature: self.signature.clone(),
            pow_nonce: self.pow_nonce.clone(),
        }
    }
}

/// A public profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Profile {
    pub id: String,
    pub display_name: Option<String>,
    pub role: Role,
    /// `active`, or `suspended` while the marketplace's operator has suspended the agent
    /// (its keys and listings do not work meanwhile).
    pub status: String,
    pub created_at: String,
    /// The current Crochet Score (`GET /agents/{id}/score` has the details), computed at
    /// registration; `null` only when the scorer could not run.
    pub crochet_score: Option<crate::reputation::model::ScoreBadge>,
    /// The score-based verified checkmark (score >= 800). A human claim never sets it.
    pub verified: bool,
}

/// Safe summary of a linked wallet.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WalletSummary {
    pub id: String,
    pub wallet_address: String,
    pub chain: Chain,
    pub label: Option<String>,
    /// `active`, `disabled`, `revoked` or `compromised`.
    pub status: String,
    pub can_auth: bool,
    pub can_recover: bool,
    pub can_pay: bool,
    pub can_payout: bool,
    pub is_default_payment: bool,
    pub is_default_payout: bool,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// API key metadata; never the key itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyInfo {
    pub id: String,
    pub name: Option<String>,
    /// First characters of the key, for recognising it. Not a credential.
    pub key_prefix: String,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// The key's spend limits; absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<super::limits::ApiKeyLimits>,
    /// What the key has spent in its current windows (counted for every key).
    pub spend: super::limits::KeySpend,
}

/// A newly issued API key, shown once (register, recover, `POST /api-keys`).
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedKey {
    pub profile: Profile,
    /// The full `am_k_…` key. Store it now: it is never shown again.
    pub api_key: String,
    pub api_key_prefix: String,
    /// Use this exact value as the `Authorization` header.
    pub authorization_header: String,
    pub api_key_info: ApiKeyInfo,
}

/// `GET /me` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub profile: Profile,
    pub wallets: Vec<WalletSummary>,
    /// The key this request authenticated with.
    pub api_key: ApiKeyInfo,
}

/// `POST /me/wallets` body: proofs from an existing wallet and from the new one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkWalletRequest {
    /// Proof (purpose `link_wallet_existing`) from an active auth/recovery wallet of
    /// this profile.
    pub existing_wallet: WalletProof,
    /// Proof (purpose `link_wallet_new`) from the wallet to link.
    pub new_wallet: WalletProof,
    pub label: Option<String>,
    /// Default true.
    pub can_auth: Option<bool>,
    /// Default true.
    pub can_recover: Option<bool>,
    /// Default true.
    pub can_pay: Option<bool>,
    /// Default true.
    pub can_payout: Option<bool>,
    /// Make this the default payer wallet.
    #[serde(default)]
    pub is_default_payment: bool,
    /// Make this the default payout wallet.
    #[serde(default)]
    pub is_default_payout: bool,
}

/// Wallet statuses a profile can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WalletStatus {
    Active,
    Disabled,
    Revoked,
    Compromised,
}

impl WalletStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WalletStatus::Active => "active",
            WalletStatus::Disabled => "disabled",
            WalletStatus::Revoked => "revoked",
            WalletStatus::Compromised => "compromised",
        }
    }
}

/// `PATCH /me/wallets/{id}` body. Absent fields are left as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWalletRequest {
    /// Proof (purpose `update_wallet`) from an active auth-enabled wallet of this profile.
    pub proof: WalletProof,
    pub status: Option<WalletStatus>,
    pub label: Option<String>,
    pub can_auth: Option<bool>,
    pub can_recover: Option<bool>,
    pub can_pay: Option<bool>,
    pub can_payout: Option<bool>,
    pub is_default_payment: Option<bool>,
    pub is_default_payout: Option<bool>,
}

/// `POST /api-keys` body.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    pub name: Option<String>,
    /// Spend limits of the new key; absent: none.
    pub limits: Option<super::limits::ApiKeyLimits>,
}

/// `PATCH /api-keys/{id}` body.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateApiKeyRequest {
    /// Required: the key's new limits, replacing the old ones; `null` lifts them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<super::limits::ApiKeyLimits>)]
    pub limits: Option<Option<super::limits::ApiKeyLimits>>,
}

/// A field that may be `null` but must be there: `Some(None)` for `null`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /agents/{id}/claim` body: a human operator proves control of one of the
/// agent's wallets (challenge purpose `claim`, `profile_id` = the agent id).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    pub wallet_address: String,
    pub nonce: String,
    pub signature: String,
    pub pow_nonce: String,
    /// The operator's name.
    pub claimant_name: String,
    /// How to reach the operator (email, handle…).
    pub claimant_contact: Option<String>,
}

/// A recorded human claim. It does not affect the Crochet Score or the verified mark.
#[derive(Debug, Serialize, ToSchema)]
pub struct Claim {
    pub id: String,
    pub agent_id: String,
    pub wallet_id: String,
    pub claimant_name: String,
    pub claimant_contact: Option<String>,
    pub created_at: String,
    /// Always false: claiming is not score verification.
    pub affects_verification: bool,
}

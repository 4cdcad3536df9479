//! Identity: registering with a wallet, recovering a key, API keys and linked wallets.
//!
//! Every wallet step is the same three moves: ask `POST /auth/challenge` for a message
//! and a proof-of-work for one purpose, sign the message with the wallet, solve the
//! proof-of-work. [`Client::prove`] does them; the methods below send the proof where
//! it belongs.

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{decode, difficulty, str_field};
use crate::models::{ApiKeyInfo, IssuedKey, KeyLimits, Me, WalletPermissions, WalletSummary};
use crate::pow::solve_pow;
use crate::{Client, ClientError, Wallet};

impl Client {
    /// A signed, solved wallet proof for `purpose` (`register`, `recover`,
    /// `link_wallet_existing`, `link_wallet_new`, ...); `profile_id` for purposes that
    /// act on an existing profile. Returns the proof's JSON fields.
    pub async fn prove(
        &self,
        wallet: &Wallet,
        purpose: &str,
        profile_id: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut ask = json!({"wallet_address": wallet.address(), "purpose": purpose});
        if let Some(id) = profile_id {
            ask["profile_id"] = json!(id);
        }
        let challenge =
            Self::data(self.request(Method::POST, "/auth/challenge").json(&ask)).await?;
        let pow = challenge.get("pow").cloned().unwrap_or(Value::Null);
        Ok(json!({
            "wallet_address": wallet.address(),
            "nonce": str_field(&challenge, "nonce")?,
            "signature": wallet.sign(&str_field(&challenge, "message")?),
            "pow_nonce": solve_pow(&str_field(&pow, "challenge")?, difficulty(&pow)?),
        }))
    }

    /// Registers `wallet` as a new agent (`role`: `buyer`, `seller` or `both`). Use the
    /// returned key with [`Client::with_key`]; it is never shown again.
    pub async fn register(
        &self,
        wallet: &Wallet,
        role: &str,
        display_name: Option<&str>,
    ) -> Result<IssuedKey, ClientError> {
        let mut body = self.prove(wallet, "register", None).await?;
        body["role"] = json!(role);
        if let Some(name) = display_name {
            body["display_name"] = json!(name);
        }
        let data = Self::data(self.request(Method::POST, "/register").json(&body)).await?;
        decode(data, "registration")
    }

    /// A fresh API key for the agent `wallet` is linked to (with `can_recover`), when
    /// every key is lost. Earlier keys stay valid until revoked.
    pub async fn recover(&self, wallet: &Wallet) -> Result<IssuedKey, ClientError> {
        let body = self.prove(wallet, "recover", None).await?;
        let data = Self::data(self.request(Method::POST, "/auth/recover").json(&body)).await?;
        decode(data, "recovery")
    }

    /// `GET /me`: the caller's profile, wallets and current key.
    pub async fn me(&self) -> Result<Me, ClientError> {
        decode(Self::data(self.request(Method::GET, "/me")).await?, "me")
    }

    /// The caller's API keys (metadata only).
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyInfo>, ClientError> {
        decode(
            Self::data(self.request(Method::GET, "/api-keys")).await?,
            "api keys",
        )
    }

    /// Issues another API key, shown once.
    pub async fn create_api_key(&self, name: Option<&str>) -> Result<IssuedKey, ClientError> {
        let body = match name {
            Some(n) => json!({"name": n}),
            None => json!({}),
        };
        let data = Self::data(self.request(Method::POST, "/api-keys").json(&body)).await?;
        decode(data, "api key")
    }

    /// Issues a key limited by `limits` (a sub-agent's key): the host refuses its calls
    /// outside them, before anything is charged. Shown once.
    pub async fn create_limited_key(
        &self,
        name: Option<&str>,
        limits: &KeyLimits,
    ) -> Result<IssuedKey, ClientError> {
        let body = json!({"name": name, "limits": limits});
        let data = Self::data(self.request(Method::POST, "/api-keys").json(&body)).await?;
        decode(data, "api key")
    }

    /// Replaces the limits of one of the caller's keys; `None` lifts them.
    pub async fn set_key_limits(
        &self,
        key_id: &str,
        limits: Option<&KeyLimits>,
    ) -> Result<ApiKeyInfo, ClientError> {
        let body = json!({ "limits": limits });
        let data = Self::data(self.at(Method::PATCH, &["api-keys", key_id])?.json(&body)).await?;
        decode(data, "api key")
    }

    /// Revokes one of the caller's keys; it stops working at once.
    pub async fn revoke_api_key(&self, key_id: &str) -> Result<ApiKeyInfo, ClientError> {
        let data = Self::data(self.at(Method::DELETE, &["api-keys", key_id])?).await?;
        decode(data, "api key")
    }

    /// The caller's linked wallets.
    pub async fn wallets(&self) -> Result<Vec<WalletSummary>, ClientError> {
        decode(
            Self::data(self.request(Method::GET, "/me/wallets")).await?,
            "wallets",
        )
    }

    /// Links `new_wallet` to the caller's profile. Both wallets prove themselves:
    /// `existing` is a wallet already linked with `can_auth`.
    pub async fn link_wallet(
        &self,
        profile_id: &str,
        existing: &Wallet,
        new_wallet: &Wallet,
        permissions: &WalletPermissions,
    ) -> Result<WalletSummary, ClientError> {
        let existing_proof = self
            .prove(existing, "link_wallet_existing", Some(profile_id))
            .await?;
        let new_proof = self
            .prove(new_wallet, "link_wallet_new", Some(profile_id))
            .await?;
        let mut body =
            serde_json::to_value(permissions).map_err(|e| ClientError::Http(e.to_string()))?;
        body["existing_wallet"] = existing_proof;
        body["new_wallet"] = new_proof;
        let data = Self::data(self.request(Method::POST, "/me/wallets").json(&body)).await?;
        decode(data, "wallet")
    }
}

//! Identity: wallet-signed registration with proof-of-work, API keys, linked wallets
//! and human claims.
//!
//! [`Identity`] owns every flow; the HTTP handlers in [`http`] only parse and answer.
//! Challenges are single use: [`store::consume_challenge`] is one conditional `UPDATE`,
//! so two racing submissions of one nonce cannot both pass, and a challenge is burned
//! before its proof is checked, so a bad signature or proof-of-work cannot be retried.

pub mod crypto;
pub mod error;
pub mod http;
pub mod keys;
pub mod limits;
pub mod model;
pub mod store;

use crate::secrets::random_hex;

pub use error::IdentityError;
pub use model::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::storage::cache::{Bus, Cache, Invalidation};
use crate::storage::{Database, Page, now_ms, rfc3339};
use crypto::{Chain, WalletAddress, verify_pow};
use keys::{ApiKeyHasher, HeaderProblem, NewApiKey, parse_bearer};
use limits::KeyLimits;

type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// An authenticated caller: the profile and the API key it used.
#[derive(Debug, Clone)]
pub struct Principal {
    pub profile_id: String,
    pub api_key_id: String,
    pub role: Role,
    /// The key's spend limits, when it has any ([`limits`]).
    pub limits: Option<Arc<KeyLimits>>,
    /// When the key was created (Unix ms): the origin of its 30-day spend windows.
    pub key_created_at: i64,
}

impl Principal {
    /// A buyer known only by a wallet (keyless x402): no key, no limits.
    pub fn wallet_only(profile_id: String, role: Role) -> Self {
        Self {
            profile_id,
            api_key_id: String::new(),
            role,
            limits: None,
            key_created_at: 0,
        }
    }
}

/// Settings the identity flows need.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// Leading hex zeros required of proofs-of-work.
    pub pow_difficulty: u8,
    /// Lifetime of challenges, in milliseconds.
    pub challenge_ttl_ms: i64,
    /// The domain named in signed messages (the public URL's authority).
    pub domain: String,
}

/// The identity service.
#[derive(Clone)]
pub struct Identity {
    db: Database,
    hasher: ApiKeyHasher,
    settings: IdentitySettings,
    /// Key hash → principal; revocation publishes on the bus (see `storage::cache`).
    keys: Arc<Cache<CachedKey>>,
}

/// A resolved API key and when it was last recorded as used.
#[derive(Clone)]
struct CachedKey {
    principal: Principal,
    last_used_at: Arc<AtomicI64>,
}

/// Only refresh `last_used_at` when it is older than this, so authentication is a
/// read on the hot path rather than a write per request.
const TOUCH_INTERVAL_MS: i64 = 60_000;
const MAX_NAME_CHARS: usize = 64;
const MAX_PROOF_FIELD: usize = 256;

impl Identity {
    pub fn new(db: Database, hasher: ApiKeyHasher, settings: IdentitySettings, bus: &Bus) -> Self {
        let keys = Cache::new(bus, "api_keys", |what, k: &CachedKey| match what {
            Invalidation::ApiKey(id) => *id == k.principal.api_key_id,
            Invalidation::Profile(id) => *id == k.principal.profile_id,
            _ => false,
        });
        Self {
            db,
            hasher,
            settings,
            keys,
        }
    }

    /// Issues a wallet challenge plus proof-of-work for one purpose.
    pub async fn create_challenge(&self, req: ChallengeRequest) -> Result<Challenge> {
        let address = WalletAddress::parse(&req.wallet_address)
            .map_err(IdentityError::InvalidWalletAddress)?;
        let profile_id = match (req.purpose.needs_profile(), req.profile_id) {
            (true, None) => {
                return Err(IdentityError::invalid(
                    "profile_id",
                    format!("is required for purpose `{}`", req.purpose.as_str()),
                ));
            }
            (false, Some(_)) => {
                return Err(IdentityError::invalid(
                    "profile_id",
                    format!("must not be sent for purpose `{}`", req.purpose.as_str()),
                ));
            }
            (_, profile_id) => profile_id,
        };
        if let Some(id) = &profile_id
            && !store::profile_exists(self.db.pool(), id).await?
        {
            return Err(IdentityError::AgentNotFound);
        }
        let nonce = random_hex::<16>();
        let pow_challenge = random_hex::<32>();
        let now = now_ms();
        let expires_at = now + self.settings.challenge_ttl_ms;
        let message = self.message(
            &address,
            req.purpose,
            profile_id.as_deref(),
            &nonce,
            now,
            expires_at,
        );
        store::insert_challenge(
            self.db.pool(),
            &store::NewChallenge {
                nonce: &nonce,
                wallet_address: address.canonical(),
                chain: address.chain(),
                purpose: req.purpose.as_str(),
                profile_id: profile_id.as_deref(),
                message: &message,
                pow_challenge: &pow_challenge,
                pow_difficulty: self.settings.pow_difficulty,
                created_at: now,
                expires_at,
            },
        )
        .await?;
        Ok(Challenge {
            nonce,
            message,
            pow: PowChallenge {
                challenge: pow_challenge,
                difficulty: self.settings.pow_difficulty,
                algorithm: "sha256",
            },
            expires_at: rfc3339(expires_at),
            wallet_address: address.canonical().to_owned(),
            chain: address.chain(),
            purpose: req.purpose,
            profile_id,
        })
    }

    /// The exact text a wallet signs. It names the domain, wallet, purpose, profile (when
    /// there is one), nonce and expiry, so a signature cannot be replayed elsewhere.
    fn message(
        &self,
        address: &WalletAddress,
        purpose: Purpose,
        profile_id: Option<&str>,
        nonce: &str,
        issued_at: i64,
        expires_at: i64,
    ) -> String {
        let profile_line = profile_id
            .map(|p| format!("Profile: {p}\n"))
            .unwrap_or_default();
        format!(
            "Crochet wallet verification\n\nDomain: {domain}\nWallet: {wallet}\nPurpose: {purpose}\n\
             {profile_line}Nonce: {nonce}\nIssued At: {issued}\nExpires At: {expires}",
            domain = self.settings.domain,
            wallet = address.canonical(),
            purpose = purpose.as_str(),
            issued = rfc3339(issued_at),
            expires = rfc3339(expires_at),
        )
    }

    /// Checks a proof against its challenge and consumes the challenge.
    async fn consume_proof(
        &self,
        proof: &WalletProof,
        purpose: Purpose,
        profile_id: Option<&str>,
    ) -> Result<WalletAddress> {
        let address = WalletAddress::parse(&proof.wallet_address)
            .map_err(IdentityError::InvalidWalletAddress)?;
        for (field, value) in [
            ("nonce", &proof.nonce),
            ("signature", &proof.signature),
            ("pow_nonce", &proof.pow_nonce),
        ] {
            if value.is_empty() || value.len() > MAX_PROOF_FIELD {
                return Err(IdentityError::invalid(
                    field,
                    format!("must be 1 to {MAX_PROOF_FIELD} characters"),
                ));
            }
        }
        let challenge = store::get_challenge(self.db.pool(), &proof.nonce)
            .await?
            .ok_or(IdentityError::ChallengeNotFound)?;
        if challenge.wallet_address != address.canonical() {
            return Err(IdentityError::ChallengeMismatch("wallet_address"));
        }
        if challenge.purpose != purpose.as_str() {
            return Err(IdentityError::ChallengeMismatch("purpose"));
        }
        if challenge.profile_id.as_deref() != profile_id {
            return Err(IdentityError::ChallengeMismatch("profile_id"));
        }
        if challenge.consumed_at.is_some() {
            return Err(IdentityError::ChallengeUsed);
        }
        let now = now_ms();
        if challenge.expires_at <= now {
            return Err(IdentityError::ChallengeExpired);
        }
        if !store::consume_challenge(self.db.pool(), &challenge.nonce, now).await? {
            return Err(IdentityError::ChallengeUsed);
        }
        let difficulty = u8::try_from(challenge.pow_difficulty).unwrap_or(u8::MAX);
        if !verify_pow(&challenge.pow_challenge, &proof.pow_nonce, difficulty) {
            return Err(IdentityError::InvalidPow);
        }
        address
            .verify(challenge.message.as_bytes(), &proof.signature)
            .map_err(IdentityError::InvalidSignature)?;
        Ok(address)
    }

    /// Creates a profile with its first wallet and first API key.
    pub async fn register(&self, req: RegisterRequest) -> Result<IssuedKey> {
        let display_name = clean_text("display_name", req.display_name.as_deref(), MAX_NAME_CHARS)?;
        let address = WalletAddress::parse(&req.wallet_address)
            .map_err(IdentityError::InvalidWalletAddress)?;
        // Checked before the challenge is burned, so the agent is told to recover instead.
        if store::wallet_by_address(self.db.pool(), address.chain(), address.canonical())
            .await?
            .is_some()
        {
            return Err(IdentityError::WalletAlreadyRegistered);
        }
        self.consume_proof(&req.proof(), Purpose::Register, None)
            .await?;

        let now = now_ms();
        let profile_id = uuid::Uuid::new_v4().to_string();
        let key = NewApiKey::generate();
        let key_id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.db.begin().await?;
        store::insert_profile(&mut tx, &profile_id, display_name.as_deref(), req.role, now).await?;
        let wallet_id = uuid::Uuid::new_v4().to_string();
        let inserted = store::insert_wallet(
            &mut tx,
            &store::NewWallet {
                id: &wallet_id,
                profile_id: &profile_id,
                chain: address.chain(),
                address: address.canonical(),
                label: None,
                can_auth: true,
                can_recover: true,
                can_pay: true,
                can_payout: true,
                is_default_payment: true,
                is_default_payout: true,
                now,
            },
        )
        .await?;
        if !inserted {
            // A racing registration of the same wallet won; the transaction rolls back.
            return Err(IdentityError::WalletAlreadyRegistered);
        }
        store::insert_api_key(
            &mut tx,
            &store::NewKey {
                id: &key_id,
                profile_id: &profile_id,
                name: Some("default"),
                prefix: &key.display_prefix,
                hash: &self.hasher.hash(&key.raw),
                limits: None,
                now,
            },
        )
        .await?;
        let profile = store::get_profile(&mut tx, &profile_id)
            .await?
            .ok_or(IdentityError::AgentNotFound)?;
        let info = store::api_key_by_id(&mut tx, &profile_id, &key_id)
            .await?
            .ok_or(IdentityError::ApiKeyNotFound)?;
        tx.commit().await?;
        tracing::info!(
            profile_id,
            chain = address.chain().as_str(),
            "profile registered"
        );
        Ok(issued(profile.into(), key, info.info(now)))
    }

    /// Issues a fresh API key to a registered wallet that proves ownership. Existing keys
    /// stay valid; revoke them with `DELETE /api-keys/{id}`.
    pub async fn recover(&self, proof: WalletProof) -> Result<IssuedKey> {
        let address = WalletAddress::parse(&proof.wallet_address)
            .map_err(IdentityError::InvalidWalletAddress)?;
        let wallet = store::wallet_by_address(self.db.pool(), address.chain(), address.canonical())
            .await?
            .ok_or(IdentityError::WalletNotRegistered)?;
        if !wallet.is_active() || wallet.can_recover == 0 {
            return Err(IdentityError::WalletCannotRecover);
        }
        self.consume_proof(&proof, Purpose::Recover, None).await?;
        let now = now_ms();
        store::touch_wallet(self.db.pool(), &wallet.id, now).await?;
        self.issue_key(&wallet.profile_id, Some("recovered"), None, now)
            .await
    }

    async fn issue_key(
        &self,
        profile_id: &str,
        name: Option<&str>,
        limits: Option<&KeyLimits>,
        now: i64,
    ) -> Result<IssuedKey> {
        let key = NewApiKey::generate();
        let key_id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.db.begin().await?;
        store::insert_api_key(
            &mut tx,
            &store::NewKey {
                id: &key_id,
                profile_id,
                name,
                prefix: &key.display_prefix,
                hash: &self.hasher.hash(&key.raw),
                limits,
                now,
            },
        )
        .await?;
        let profile = store::get_profile(&mut tx, profile_id)
            .await?
            .ok_or(IdentityError::AgentNotFound)?;
        let info = store::api_key_by_id(&mut tx, profile_id, &key_id)
            .await?
            .ok_or(IdentityError::ApiKeyNotFound)?;
        tx.commit().await?;
        Ok(issued(profile.into(), key, info.info(now)))
    }

    /// Resolves an `Authorization` header to its profile. Resolved keys are cached in
    /// memory; revocation and a suspension of the agent drop them on every instance (see
    /// `storage::cache`), so they still take effect on the next request. A suspended
    /// agent's keys are refused with [`IdentityError::AgentSuspended`], an expired key
    /// with [`IdentityError::ApiKeyExpired`].
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal> {
        let token = parse_bearer(header).map_err(|p| match p {
            HeaderProblem::Missing => IdentityError::AuthMissing,
            HeaderProblem::Malformed => IdentityError::AuthMalformed,
        })?;
        let hash = self.hasher.hash(token);
        let now = now_ms();
        if let Some(hit) = self.keys.get(&hash) {
            if let Some(expires) = hit.principal.limits.as_ref().and_then(|l| l.expires_at)
                && expires <= now
            {
                return Err(IdentityError::ApiKeyExpired);
            }
            let last = hit.last_used_at.load(Ordering::Relaxed);
            if now - last > TOUCH_INTERVAL_MS
                && hit
                    .last_used_at
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                store::touch_api_key(self.db.pool(), &hit.principal.api_key_id, now).await?;
            }
            return Ok(hit.principal);
        }
        let ticket = self.keys.ticket();
        let row = match store::auth_by_hash(self.db.pool(), &hash).await? {
            Some(row) => row,
            None => self
                .auth_by_previous_hash(token, &hash)
                .await?
                .ok_or(IdentityError::InvalidApiKey)?,
        };
        match row.status.as_str() {
            "active" => {}
            "suspended" => return Err(IdentityError::AgentSuspended),
            _ => return Err(IdentityError::InvalidApiKey),
        }
        let limits = row.limits.limits().map(Arc::new);
        if let Some(expires) = limits.as_ref().and_then(|l| l.expires_at)
            && expires <= now
        {
            return Err(IdentityError::ApiKeyExpired);
        }
        let mut last_used_at = row.last_used_at.unwrap_or(0);
        if now - last_used_at > TOUCH_INTERVAL_MS {
            store::touch_api_key(self.db.pool(), &row.id, now).await?;
            last_used_at = now;
        }
        let principal = Principal {
            profile_id: row.profile_id,
            api_key_id: row.id,
            role: Role::parse(&row.role),
            limits,
            key_created_at: row.created_at,
        };
        self.keys.insert(
            ticket,
            hash,
            CachedKey {
                principal: principal.clone(),
                last_used_at: Arc::new(AtomicI64::new(last_used_at)),
            },
        );
        Ok(principal)
    }

    /// Looks a key up under the hashes of rotated-out master keys; a hit is moved to the
    /// current hash so the old master key can be retired.
    async fn auth_by_previous_hash(
        &self,
        token: &str,
        current: &str,
    ) -> Result<Option<store::AuthRow>> {
        for old in self.hasher.previous_hashes(token) {
            if let Some(row) = store::auth_by_hash(self.db.pool(), &old).await? {
                store::rehash_api_key(self.db.pool(), &row.id, current).await?;
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    /// The registered agent that pays from `address` (an active wallet it may pay
    /// from): the buyer of a keyless x402 purchase from that wallet. `None`: no agent
    /// links it. A suspended agent is refused.
    pub async fn payer(&self, chain: Chain, address: &str) -> Result<Option<Principal>> {
        let Some(wallet) = store::wallet_by_address(self.db.pool(), chain, address).await? else {
            return Ok(None);
        };
        if !wallet.is_active() || wallet.can_pay == 0 {
            return Ok(None);
        }
        let mut conn = self.db.pool().acquire().await?;
        let profile = store::get_profile(&mut conn, &wallet.profile_id)
            .await?
            .ok_or(IdentityError::AgentNotFound)?;
        if profile.status != "active" {
            return Err(IdentityError::AgentSuspended);
        }
        Ok(Some(Principal::wallet_only(
            profile.id,
            Role::parse(&profile.role),
        )))
    }

    /// An agent's public profile (whatever its status: a suspended agent shows as such).
    pub async fn profile(&self, id: &str) -> Result<Profile> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(store::get_profile(&mut conn, id)
            .await?
            .ok_or(IdentityError::AgentNotFound)?
            .into())
    }

    pub async fn me(&self, who: &Principal) -> Result<Me> {
        let mut conn = self.db.pool().acquire().await?;
        let profile = store::get_profile(&mut conn, &who.profile_id)
            .await?
            .ok_or(IdentityError::AgentNotFound)?;
        let wallets =
            store::list_wallets(&mut conn, &who.profile_id, i64::from(Page::MAX_LIMIT), 0).await?;
        let key = store::api_key_by_id(&mut conn, &who.profile_id, &who.api_key_id)
            .await?
            .ok_or(IdentityError::InvalidApiKey)?;
        Ok(Me {
            profile: profile.into(),
            wallets: wallets.into_iter().map(Into::into).collect(),
            api_key: key.info(now_ms()),
        })
    }

    pub async fn list_wallets(
        &self,
        who: &Principal,
        page: Page,
    ) -> Result<(Vec<WalletSummary>, i64)> {
        let mut conn = self.db.pool().acquire().await?;
        let rows = store::list_wallets(
            &mut conn,
            &who.profile_id,
            i64::from(page.limit),
            page.offset(),
        )
        .await?;
        let total = store::count_wallets(self.db.pool(), &who.profile_id).await?;
        Ok((rows.into_iter().map(Into::into).collect(), total))
    }

    /// The profile's active wallets that can pay, default payer first.
    pub async fn payment_wallets(&self, profile_id: &str) -> Result<Vec<WalletSummary>> {
        let mut conn = self.db.pool().acquire().await?;
        let mut rows =
            store::list_wallets(&mut conn, profile_id, i64::from(Page::MAX_LIMIT), 0).await?;
        rows.retain(|w| w.is_active() && w.can_pay != 0);
        rows.sort_by_key(|w| std::cmp::Reverse(w.is_default_payment));
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn get_wallet(&self, who: &Principal, id: &str) -> Result<WalletSummary> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(store::wallet_by_id(&mut conn, &who.profile_id, id)
            .await?
            .ok_or(IdentityError::WalletNotFound)?
            .into())
    }

    /// Links a new wallet given proofs from an existing auth/recovery wallet and from the
    /// new wallet.
    pub async fn link_wallet(
        &self,
        who: &Principal,
        req: LinkWalletRequest,
    ) -> Result<WalletSummary> {
        let label = clean_text("label", req.label.as_deref(), MAX_NAME_CHARS)?;
        let pid = who.profile_id.as_str();
        let existing = self
            .consume_proof(&req.existing_wallet, Purpose::LinkWalletExisting, Some(pid))
            .await?;
        let existing_row =
            store::wallet_by_address(self.db.pool(), existing.chain(), existing.canonical())
                .await?;
        match existing_row {
            Some(w)
                if w.profile_id == pid
                    && w.is_active()
                    && (w.can_auth != 0 || w.can_recover != 0) => {}
            _ => return Err(IdentityError::WalletNotLinked),
        }
        let new = self
            .consume_proof(&req.new_wallet, Purpose::LinkWalletNew, Some(pid))
            .await?;

        let now = now_ms();
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.db.begin().await?;
        store::lock_profile(&mut tx, pid, now).await?;
        let inserted = store::insert_wallet(
            &mut tx,
            &store::NewWallet {
                id: &id,
                profile_id: pid,
                chain: new.chain(),
                address: new.canonical(),
                label: label.as_deref(),
                can_auth: req.can_auth.unwrap_or(true),
                can_recover: req.can_recover.unwrap_or(true),
                can_pay: req.can_pay.unwrap_or(true),
                can_payout: req.can_payout.unwrap_or(true),
                is_default_payment: req.is_default_payment,
                is_default_payout: req.is_default_payout,
                now,
            },
        )
        .await?;
        if !inserted {
            return Err(IdentityError::WalletAlreadyLinked);
        }
        if req.is_default_payment {
            store::clear_default(&mut tx, pid, &id, false).await?;
        }
        if req.is_default_payout {
            store::clear_default(&mut tx, pid, &id, true).await?;
        }
        let row = store::wallet_by_id(&mut tx, pid, &id)
            .await?
            .ok_or(IdentityError::WalletNotFound)?;
        tx.commit().await?;
        Ok(row.into())
    }

    /// Updates a wallet's status, label, capabilities or defaults after an `update_wallet`
    /// proof. Refuses any change that leaves no active recovery-enabled wallet.
    pub async fn update_wallet(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateWalletRequest,
    ) -> Result<WalletSummary> {
        let label = clean_text("label", req.label.as_deref(), MAX_NAME_CHARS)?;
        let pid = who.profile_id.as_str();
        {
            let mut conn = self.db.pool().acquire().await?;
            store::wallet_by_id(&mut conn, pid, id)
                .await?
                .ok_or(IdentityError::WalletNotFound)?;
        }
        let prover = self
            .consume_proof(&req.proof, Purpose::UpdateWallet, Some(pid))
            .await?;
        match store::wallet_by_address(self.db.pool(), prover.chain(), prover.canonical()).await? {
            Some(w) if w.profile_id == pid && w.is_active() && w.can_auth != 0 => {}
            _ => return Err(IdentityError::WalletNotLinked),
        }

        let now = now_ms();
        let mut tx = self.db.begin().await?;
        store::lock_profile(&mut tx, pid, now).await?;
        let mut row = store::wallet_by_id(&mut tx, pid, id)
            .await?
            .ok_or(IdentityError::WalletNotFound)?;
        if let Some(status) = req.status {
            row.status = status.as_str().to_owned();
        }
        if label.is_some() {
            row.label = label;
        }
        let flag = |v: Option<bool>, current: i64| v.map_or(current, i64::from);
        row.can_auth = flag(req.can_auth, row.can_auth);
        row.can_recover = flag(req.can_recover, row.can_recover);
        row.can_pay = flag(req.can_pay, row.can_pay);
        row.can_payout = flag(req.can_payout, row.can_payout);
        row.is_default_payment = flag(req.is_default_payment, row.is_default_payment);
        row.is_default_payout = flag(req.is_default_payout, row.is_default_payout);
        store::update_wallet(&mut tx, &row, now).await?;
        if req.is_default_payment == Some(true) {
            store::clear_default(&mut tx, pid, id, false).await?;
        }
        if req.is_default_payout == Some(true) {
            store::clear_default(&mut tx, pid, id, true).await?;
        }
        if store::count_recovery_wallets(&mut tx, pid).await? == 0 {
            tx.rollback().await?;
            return Err(IdentityError::LastRecoveryWallet);
        }
        tx.commit().await?;
        Ok(row.into())
    }

    pub async fn list_api_keys(
        &self,
        who: &Principal,
        page: Page,
    ) -> Result<(Vec<ApiKeyInfo>, i64)> {
        let rows = store::list_api_keys(
            self.db.pool(),
            &who.profile_id,
            i64::from(page.limit),
            page.offset(),
        )
        .await?;
        let total = store::count_api_keys(self.db.pool(), &who.profile_id).await?;
        let now = now_ms();
        Ok((rows.into_iter().map(|r| r.info(now)).collect(), total))
    }

    /// Issues a new key of the caller's profile, with limits when asked. A key with
    /// limits cannot issue keys.
    pub async fn create_api_key(
        &self,
        who: &Principal,
        req: CreateApiKeyRequest,
    ) -> Result<IssuedKey> {
        manages_keys(who)?;
        let name = clean_text("name", req.name.as_deref(), MAX_NAME_CHARS)?;
        let now = now_ms();
        let limits = req.limits.map(|l| l.validate(now)).transpose()?;
        let limits = limits.filter(|l| !l.is_empty());
        self.issue_key(&who.profile_id, name.as_deref(), limits.as_ref(), now)
            .await
    }

    /// Replaces the limits of one of the caller's keys (`limits: null` lifts them). The
    /// change takes effect on the key's next request, on every instance; what the key
    /// spent in its current windows stays counted.
    pub async fn update_api_key(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateApiKeyRequest,
    ) -> Result<ApiKeyInfo> {
        manages_keys(who)?;
        let now = now_ms();
        let limits = req.limits.ok_or_else(|| {
            IdentityError::invalid(
                "limits",
                "is required: the new limits, or null to lift them",
            )
        })?;
        let limits = limits.map(|l| l.validate(now)).transpose()?;
        let limits = limits.filter(|l| !l.is_empty());
        let mut conn = self.db.pool().acquire().await?;
        if !store::set_limits(&mut conn, &who.profile_id, id, limits.as_ref()).await? {
            return Err(IdentityError::ApiKeyNotFound);
        }
        self.keys
            .bus()
            .publish(Invalidation::ApiKey(id.to_owned()))
            .await;
        Ok(store::api_key_by_id(&mut conn, &who.profile_id, id)
            .await?
            .ok_or(IdentityError::ApiKeyNotFound)?
            .info(now))
    }

    /// Revokes one of the caller's keys; it stops working on the next request. A key
    /// with limits may revoke only itself.
    pub async fn revoke_api_key(&self, who: &Principal, id: &str) -> Result<ApiKeyInfo> {
        if id != who.api_key_id {
            manages_keys(who)?;
        }
        let now = now_ms();
        if !store::revoke_api_key(self.db.pool(), &who.profile_id, id, now).await? {
            return Err(IdentityError::ApiKeyNotFound);
        }
        self.keys
            .bus()
            .publish(Invalidation::ApiKey(id.to_owned()))
            .await;
        let mut conn = self.db.pool().acquire().await?;
        Ok(store::api_key_by_id(&mut conn, &who.profile_id, id)
            .await?
            .ok_or(IdentityError::ApiKeyNotFound)?
            .info(now))
    }

    /// Records a human operator's claim of an agent, proven by one of its active wallets.
    pub async fn claim_agent(&self, agent_id: &str, req: ClaimRequest) -> Result<Claim> {
        let claimant_name = clean_text("claimant_name", Some(&req.claimant_name), 128)?
            .ok_or_else(|| IdentityError::invalid("claimant_name", "must not be empty"))?;
        let contact = clean_text("claimant_contact", req.claimant_contact.as_deref(), 256)?;
        if !store::profile_exists(self.db.pool(), agent_id).await? {
            return Err(IdentityError::AgentNotFound);
        }
        let proof = WalletProof {
            wallet_address: req.wallet_address,
            nonce: req.nonce,
            signature: req.signature,
            pow_nonce: req.pow_nonce,
        };
        let address = self
            .consume_proof(&proof, Purpose::Claim, Some(agent_id))
            .await?;
        let wallet =
            match store::wallet_by_address(self.db.pool(), address.chain(), address.canonical())
                .await?
            {
                Some(w) if w.profile_id == agent_id && w.is_active() => w,
                _ => return Err(IdentityError::WalletNotLinked),
            };
        let now = now_ms();
        let id = uuid::Uuid::new_v4().to_string();
        store::insert_claim(
            self.db.pool(),
            &store::NewClaim {
                id: &id,
                profile_id: agent_id,
                wallet_id: &wallet.id,
                claimant_name: &claimant_name,
                claimant_contact: contact.as_deref(),
                now,
            },
        )
        .await?;
        Ok(Claim {
            id,
            agent_id: agent_id.to_owned(),
            wallet_id: wallet.id,
            claimant_name,
            claimant_contact: contact,
            created_at: rfc3339(now),
            affects_verification: false,
        })
    }

    /// Deletes challenges that expired more than an hour ago.
    pub async fn purge_expired_challenges(&self) -> Result<u64> {
        Ok(store::purge_challenges(self.db.pool(), now_ms() - 3_600_000).await?)
    }
}

/// Refuses key management to a key with limits, so a sub-agent cannot lift its own.
fn manages_keys(who: &Principal) -> Result<()> {
    match who.limits {
        Some(_) => Err(IdentityError::LimitedKey),
        None => Ok(()),
    }
}

fn issued(profile: Profile, key: NewApiKey, info: ApiKeyInfo) -> IssuedKey {
    IssuedKey {
        profile,
        authorization_header: key.authorization_header(),
        api_key_prefix: key.display_prefix,
        api_key: key.raw,
        api_key_info: info,
    }
}

/// Trims a free-text field; empty becomes `None`; refuses control characters, invisible
/// formatting characters ([`crate::text::is_invisible`]) and text longer than `max`
/// characters.
fn clean_text(field: &'static str, value: Option<&str>, max: usize) -> Result<Option<String>> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > max {
        return Err(IdentityError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(IdentityError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    if v.chars().any(crate::text::is_invisible) {
        return Err(IdentityError::invalid(
            field,
            "must not contain invisible formatting characters (bidirectional overrides, zero-width characters, ...)",
        ));
    }
    Ok(Some(v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_rules() {
        assert_eq!(
            clean_text("f", Some("  a b "), 5).unwrap().as_deref(),
            Some("a b")
        );
        assert_eq!(clean_text("f", Some("   "), 5).unwrap(), None);
        assert!(clean_text("f", Some("abcdef"), 5).is_err());
        assert!(clean_text("f", Some("a\u{7}"), 5).is_err());
        assert!(clean_text("f", Some("a\u{202E}b"), 5).is_err());
        assert!(clean_text("f", Some("a\u{200B}"), 5).is_err());
    }

    #[test]
    fn purposes_that_need_a_profile() {
        assert!(!Purpose::Register.needs_profile());
        assert!(!Purpose::Recover.needs_profile());
        assert!(Purpose::Claim.needs_profile());
        assert!(Purpose::LinkWalletNew.needs_profile());
    }
}

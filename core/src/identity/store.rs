//! SQL for the identity tables. Every statement is portable between SQLite and
//! PostgreSQL (see `crate::storage`).

use sqlx::{AnyConnection, AnyPool, FromRow};

use super::crypto::Chain;
use super::limits::{KeyLimits, Spend, Window};
use super::model::{ApiKeyInfo, Profile, Role, WalletSummary};
use crate::reputation::model::ScoreBadge;
use crate::storage::rfc3339;

#[derive(Debug, FromRow)]
pub struct ChallengeRow {
    pub nonce: String,
    pub wallet_address: String,
    pub purpose: String,
    pub profile_id: Option<String>,
    pub message: String,
    pub pow_challenge: String,
    pub pow_difficulty: i64,
    pub expires_at: i64,
    pub consumed_at: Option<i64>,
}

#[derive(Debug, FromRow)]
pub struct ProfileRow {
    pub id: String,
    pub display_name: Option<String>,
    pub role: String,
    pub status: String,
    pub created_at: i64,
    /// The current Crochet Score, once computed.
    pub score: Option<i64>,
}

impl From<ProfileRow> for Profile {
    fn from(r: ProfileRow) -> Self {
        let badge = r.score.map(ScoreBadge::of);
        Profile {
            id: r.id,
            display_name: r.display_name,
            role: Role::parse(&r.role),
            status: r.status,
            created_at: rfc3339(r.created_at),
            crochet_score: badge,
            verified: badge.is_some_and(|b| b.verified),
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct WalletRow {
    pub id: String,
    pub profile_id: String,
    pub chain: String,
    pub address: String,
    pub label: Option<String>,
    pub status: String,
    pub can_auth: i64,
    pub can_recover: i64,
    pub can_pay: i64,
    pub can_payout: i64,
    pub is_default_payment: i64,
    pub is_default_payout: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl WalletRow {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

impl From<WalletRow> for WalletSummary {
    fn from(r: WalletRow) -> Self {
        WalletSummary {
            id: r.id,
            wallet_address: r.address,
            chain: Chain::parse(&r.chain).unwrap_or(Chain::Evm),
            label: r.label,
            status: r.status,
            can_auth: r.can_auth != 0,
            can_recover: r.can_recover != 0,
            can_pay: r.can_pay != 0,
            can_payout: r.can_payout != 0,
            is_default_payment: r.is_default_payment != 0,
            is_default_payout: r.is_default_payout != 0,
            created_at: rfc3339(r.created_at),
            last_used_at: r.last_used_at.map(rfc3339),
        }
    }
}

#[derive(Debug, FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub profile_id: String,
    pub name: Option<String>,
    pub key_prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    #[sqlx(flatten)]
    pub limits: LimitColumns,
    #[sqlx(flatten)]
    pub spend: SpendColumns,
}

/// The limit columns of a key row.
#[derive(Debug, Clone, Default, FromRow)]
pub struct LimitColumns {
    pub limit_max_price_cents: Option<i64>,
    pub limit_daily_cents: Option<i64>,
    pub limit_monthly_cents: Option<i64>,
    pub limit_listing_ids: Option<String>,
    pub limit_categories: Option<String>,
    pub limit_seller_ids: Option<String>,
    pub expires_at: Option<i64>,
}

impl LimitColumns {
    /// The key's limits; `None` when it has none.
    pub fn limits(&self) -> Option<KeyLimits> {
        let list = |v: &Option<String>| {
            v.as_deref()
                .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
        };
        let limits = KeyLimits {
            max_price_cents: self.limit_max_price_cents,
            daily_cents: self.limit_daily_cents,
            monthly_cents: self.limit_monthly_cents,
            listing_ids: list(&self.limit_listing_ids),
            categories: list(&self.limit_categories),
            seller_ids: list(&self.limit_seller_ids),
            expires_at: self.expires_at,
        };
        (!limits.is_empty()).then_some(limits)
    }

    fn of(limits: Option<&KeyLimits>) -> Self {
        let Some(l) = limits else {
            return Self::default();
        };
        let list = |v: &Option<Vec<String>>| {
            v.as_ref()
                .map(|items| serde_json::to_string(items).unwrap_or_default())
        };
        Self {
            limit_max_price_cents: l.max_price_cents,
            limit_daily_cents: l.daily_cents,
            limit_monthly_cents: l.monthly_cents,
            limit_listing_ids: list(&l.listing_ids),
            limit_categories: list(&l.categories),
            limit_seller_ids: list(&l.seller_ids),
            expires_at: l.expires_at,
        }
    }
}

/// The spend columns of a key row.
#[derive(Debug, Clone, Copy, Default, FromRow)]
pub struct SpendColumns {
    pub spent_day_start: i64,
    pub spent_day_cents: i64,
    pub spent_month_start: i64,
    pub spent_month_cents: i64,
}

impl SpendColumns {
    pub fn spend(&self, key_created_at: i64) -> Spend {
        Spend {
            key_created_at,
            day_start: self.spent_day_start,
            day_cents: self.spent_day_cents,
            month_start: self.spent_month_start,
            month_cents: self.spent_month_cents,
        }
    }
}

impl ApiKeyRow {
    /// The wire form, with the spend windows at `now`.
    pub fn info(self, now: i64) -> ApiKeyInfo {
        let limits = self.limits.limits();
        let spend = self.spend.spend(self.created_at).view(limits.as_ref(), now);
        let status = match (self.revoked_at, limits.as_ref().and_then(|l| l.expires_at)) {
            (Some(_), _) => "revoked",
            (None, Some(expires)) if expires <= now => "expired",
            _ => "active",
        };
        ApiKeyInfo {
            id: self.id,
            name: self.name,
            key_prefix: self.key_prefix,
            status,
            created_at: rfc3339(self.created_at),
            last_used_at: self.last_used_at.map(rfc3339),
            revoked_at: self.revoked_at.map(rfc3339),
            limits: limits.map(|l| l.view()),
            spend,
        }
    }
}

/// An API key row joined with its profile's role and status, as authentication needs it.
#[derive(Debug, FromRow)]
pub struct AuthRow {
    pub id: String,
    pub profile_id: String,
    pub role: String,
    /// The profile's status: `active`, or `suspended` by the operator.
    pub status: String,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
    #[sqlx(flatten)]
    pub limits: LimitColumns,
}

const WALLET_COLUMNS: &str = "id, profile_id, chain, address, label, status, can_auth, can_recover, \
     can_pay, can_payout, is_default_payment, is_default_payout, created_at, last_used_at";

pub struct NewChallenge<'a> {
    pub nonce: &'a str,
    pub wallet_address: &'a str,
    pub chain: Chain,
    pub purpose: &'a str,
    pub profile_id: Option<&'a str>,
    pub message: &'a str,
    pub pow_challenge: &'a str,
    pub pow_difficulty: u8,
    pub created_at: i64,
    pub expires_at: i64,
}

pub async fn insert_challenge(pool: &AnyPool, c: &NewChallenge<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO auth_challenges (nonce, wallet_address, chain, purpose, profile_id, message, \
         pow_challenge, pow_difficulty, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(c.nonce)
    .bind(c.wallet_address)
    .bind(c.chain.as_str())
    .bind(c.purpose)
    .bind(c.profile_id)
    .bind(c.message)
    .bind(c.pow_challenge)
    .bind(i64::from(c.pow_difficulty))
    .bind(c.created_at)
    .bind(c.expires_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn get_challenge(pool: &AnyPool, nonce: &str) -> sqlx::Result<Option<ChallengeRow>> {
    sqlx::query_as(
        "SELECT nonce, wallet_address, purpose, profile_id, message, pow_challenge, \
         pow_difficulty, expires_at, consumed_at FROM auth_challenges WHERE nonce = $1",
    )
    .bind(nonce)
    .fetch_optional(pool)
    .await
}

/// Marks a challenge used. Returns false when another request consumed it first: the
/// conditional update is the single point where racing submissions are decided.
pub async fn consume_challenge(pool: &AnyPool, nonce: &str, now: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE auth_challenges SET consumed_at = $1 \
         WHERE nonce = $2 AND consumed_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(nonce)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes challenges that expired before `before`.
pub async fn purge_challenges(pool: &AnyPool, before: i64) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM auth_challenges WHERE expires_at < $1")
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

pub async fn get_profile(conn: &mut AnyConnection, id: &str) -> sqlx::Result<Option<ProfileRow>> {
    sqlx::query_as(
        "SELECT id, display_name, role, status, created_at, \
         (SELECT s.score FROM agent_scores s WHERE s.profile_id = profiles.id) AS score \
         FROM profiles WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn profile_exists(pool: &AnyPool, id: &str) -> sqlx::Result<bool> {
    Ok(sqlx::query("SELECT 1 FROM profiles WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .is_some())
}

pub async fn insert_profile(
    conn: &mut AnyConnection,
    id: &str,
    display_name: Option<&str>,
    role: Role,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO profiles (id, display_name, role, status, created_at, updated_at) \
         VALUES ($1, $2, $3, 'active', $4, $4)",
    )
    .bind(id)
    .bind(display_name)
    .bind(role.as_str())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes the profile's row lock (PostgreSQL) or the write lock (SQLite) so that
/// concurrent wallet changes of one profile are checked one after another.
pub async fn lock_profile(conn: &mut AnyConnection, id: &str, now: i64) -> sqlx::Result<bool> {
    Ok(
        sqlx::query("UPDATE profiles SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(conn)
            .await?
            .rows_affected()
            == 1,
    )
}

pub struct NewWallet<'a> {
    pub id: &'a str,
    pub profile_id: &'a str,
    pub chain: Chain,
    pub address: &'a str,
    pub label: Option<&'a str>,
    pub can_auth: bool,
    pub can_recover: bool,
    pub can_pay: bool,
    pub can_payout: bool,
    pub is_default_payment: bool,
    pub is_default_payout: bool,
    pub now: i64,
}

/// Inserts a wallet unless its address is already linked anywhere; returns whether it
/// was inserted.
pub async fn insert_wallet(conn: &mut AnyConnection, w: &NewWallet<'_>) -> sqlx::Result<bool> {
    let row = sqlx::query(
        "INSERT INTO profile_wallets (id, profile_id, chain, address, label, status, can_auth, \
         can_recover, can_pay, can_payout, is_default_payment, is_default_payout, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $10, $11, $12, $12) \
         ON CONFLICT (chain, address) DO NOTHING RETURNING id",
    )
    .bind(w.id)
    .bind(w.profile_id)
    .bind(w.chain.as_str())
    .bind(w.address)
    .bind(w.label)
    .bind(i64::from(w.can_auth))
    .bind(i64::from(w.can_recover))
    .bind(i64::from(w.can_pay))
    .bind(i64::from(w.can_payout))
    .bind(i64::from(w.is_default_payment))
    .bind(i64::from(w.is_default_payout))
    .bind(w.now)
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

pub async fn wallet_by_address(
    pool: &AnyPool,
    chain: Chain,
    address: &str,
) -> sqlx::Result<Option<WalletRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {WALLET_COLUMNS} FROM profile_wallets WHERE chain = $1 AND address = $2"
    )))
    .bind(chain.as_str())
    .bind(address)
    .fetch_optional(pool)
    .await
}

pub async fn wallet_by_id(
    conn: &mut AnyConnection,
    profile_id: &str,
    id: &str,
) -> sqlx::Result<Option<WalletRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {WALLET_COLUMNS} FROM profile_wallets WHERE profile_id = $1 AND id = $2"
    )))
    .bind(profile_id)
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn list_wallets(
    conn: &mut AnyConnection,
    profile_id: &str,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<WalletRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {WALLET_COLUMNS} FROM profile_wallets WHERE profile_id = $1 \
         ORDER BY created_at, id LIMIT $2 OFFSET $3"
    )))
    .bind(profile_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(conn)
    .await
}

pub async fn count_wallets(pool: &AnyPool, profile_id: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM profile_wallets WHERE profile_id = $1")
        .bind(profile_id)
        .fetch_one(pool)
        .await
}

pub async fn count_recovery_wallets(
    conn: &mut AnyConnection,
    profile_id: &str,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM profile_wallets \
         WHERE profile_id = $1 AND status = 'active' AND can_recover = 1",
    )
    .bind(profile_id)
    .fetch_one(conn)
    .await
}

/// Writes every mutable column of a wallet row.
pub async fn update_wallet(conn: &mut AnyConnection, w: &WalletRow, now: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE profile_wallets SET label = $1, status = $2, can_auth = $3, can_recover = $4, \
         can_pay = $5, can_payout = $6, is_default_payment = $7, is_default_payout = $8, \
         updated_at = $9 WHERE id = $10",
    )
    .bind(w.label.as_deref())
    .bind(w.status.as_str())
    .bind(w.can_auth)
    .bind(w.can_recover)
    .bind(w.can_pay)
    .bind(w.can_payout)
    .bind(w.is_default_payment)
    .bind(w.is_default_payout)
    .bind(now)
    .bind(w.id.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Clears a default flag on every other wallet of the profile.
pub async fn clear_default(
    conn: &mut AnyConnection,
    profile_id: &str,
    keep_id: &str,
    payout: bool,
) -> sqlx::Result<()> {
    let sql = if payout {
        "UPDATE profile_wallets SET is_default_payout = 0 WHERE profile_id = $1 AND id <> $2"
    } else {
        "UPDATE profile_wallets SET is_default_payment = 0 WHERE profile_id = $1 AND id <> $2"
    };
    sqlx::query(sql)
        .bind(profile_id)
        .bind(keep_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn touch_wallet(pool: &AnyPool, id: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE profile_wallets SET last_used_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// A key to insert.
pub struct NewKey<'a> {
    pub id: &'a str,
    pub profile_id: &'a str,
    pub name: Option<&'a str>,
    pub prefix: &'a str,
    pub hash: &'a str,
    pub limits: Option<&'a KeyLimits>,
    pub now: i64,
}

pub async fn insert_api_key(conn: &mut AnyConnection, k: &NewKey<'_>) -> sqlx::Result<()> {
    let l = LimitColumns::of(k.limits);
    sqlx::query(
        "INSERT INTO api_keys (id, profile_id, name, key_prefix, key_hash, created_at, \
         limit_max_price_cents, limit_daily_cents, limit_monthly_cents, limit_listing_ids, \
         limit_categories, limit_seller_ids, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(k.id)
    .bind(k.profile_id)
    .bind(k.name)
    .bind(k.prefix)
    .bind(k.hash)
    .bind(k.now)
    .bind(l.limit_max_price_cents)
    .bind(l.limit_daily_cents)
    .bind(l.limit_monthly_cents)
    .bind(l.limit_listing_ids)
    .bind(l.limit_categories)
    .bind(l.limit_seller_ids)
    .bind(l.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces a key's limits (`None`: no limits); false when the key is not the
/// profile's or is revoked.
pub async fn set_limits(
    conn: &mut AnyConnection,
    profile_id: &str,
    id: &str,
    limits: Option<&KeyLimits>,
) -> sqlx::Result<bool> {
    let l = LimitColumns::of(limits);
    Ok(sqlx::query(
        "UPDATE api_keys SET limit_max_price_cents = $1, limit_daily_cents = $2, \
         limit_monthly_cents = $3, limit_listing_ids = $4, limit_categories = $5, \
         limit_seller_ids = $6, expires_at = $7 \
         WHERE profile_id = $8 AND id = $9 AND revoked_at IS NULL",
    )
    .bind(l.limit_max_price_cents)
    .bind(l.limit_daily_cents)
    .bind(l.limit_monthly_cents)
    .bind(l.limit_listing_ids)
    .bind(l.limit_categories)
    .bind(l.limit_seller_ids)
    .bind(l.expires_at)
    .bind(profile_id)
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// A key's spend windows as stored (with its creation time).
pub async fn spend_of(conn: &mut AnyConnection, id: &str) -> sqlx::Result<Option<Spend>> {
    let row: Option<(i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT created_at, spent_day_start, spent_day_cents, spent_month_start, spent_month_cents \
         FROM api_keys WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(created, ds, dc, ms, mc)| Spend {
        key_created_at: created,
        day_start: ds,
        day_cents: dc,
        month_start: ms,
        month_cents: mc,
    }))
}

/// Counts `cents` against a key's spend windows, unless that would take it past a cap
/// of the key (read in the same statement), or the key expired or was revoked. One
/// conditional `UPDATE` of one row: racing calls are counted one after another and
/// none overshoots. Call inside the transaction that charges the call; `key_created_at`
/// is the monthly window's origin.
pub async fn count_spend(
    conn: &mut AnyConnection,
    id: &str,
    key_created_at: i64,
    cents: i64,
    now: i64,
) -> sqlx::Result<bool> {
    let origin = Spend {
        key_created_at,
        ..Spend::default()
    };
    let day = origin.window_start(Window::Day, now);
    let month = origin.window_start(Window::Month, now);
    Ok(sqlx::query(
        "UPDATE api_keys SET \
         spent_day_cents = (CASE WHEN spent_day_start = $2 THEN spent_day_cents ELSE 0 END) + $1, \
         spent_day_start = $2, \
         spent_month_cents = (CASE WHEN spent_month_start = $3 THEN spent_month_cents ELSE 0 END) + $1, \
         spent_month_start = $3 \
         WHERE id = $4 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $5) \
         AND (limit_daily_cents IS NULL OR \
              (CASE WHEN spent_day_start = $2 THEN spent_day_cents ELSE 0 END) + $1 <= limit_daily_cents) \
         AND (limit_monthly_cents IS NULL OR \
              (CASE WHEN spent_month_start = $3 THEN spent_month_cents ELSE 0 END) + $1 <= limit_monthly_cents)",
    )
    .bind(cents)
    .bind(day)
    .bind(month)
    .bind(id)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Gives `cents` charged at `charged_at` (Unix ms) back to a key's spend, in each window
/// that is still the one the charge was counted in, never below zero: a refunded call
/// does not use up the key's budget. Call inside the refund's transaction.
pub async fn return_spend(
    conn: &mut AnyConnection,
    id: &str,
    cents: i64,
    charged_at: i64,
) -> sqlx::Result<()> {
    let created: Option<i64> = sqlx::query_scalar("SELECT created_at FROM api_keys WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(key_created_at) = created else {
        return Ok(());
    };
    let origin = Spend {
        key_created_at,
        ..Spend::default()
    };
    sqlx::query(
        "UPDATE api_keys SET \
         spent_day_cents = CASE WHEN spent_day_start <> $2 THEN spent_day_cents \
           WHEN spent_day_cents > $1 THEN spent_day_cents - $1 ELSE 0 END, \
         spent_month_cents = CASE WHEN spent_month_start <> $3 THEN spent_month_cents \
           WHEN spent_month_cents > $1 THEN spent_month_cents - $1 ELSE 0 END \
         WHERE id = $4",
    )
    .bind(cents)
    .bind(origin.window_start(Window::Day, charged_at))
    .bind(origin.window_start(Window::Month, charged_at))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

const API_KEY_COLUMNS: &str = "id, profile_id, name, key_prefix, created_at, last_used_at, revoked_at, \
     limit_max_price_cents, limit_daily_cents, limit_monthly_cents, limit_listing_ids, limit_categories, \
     limit_seller_ids, expires_at, spent_day_start, spent_day_cents, spent_month_start, spent_month_cents";

pub async fn api_key_by_id(
    conn: &mut AnyConnection,
    profile_id: &str,
    id: &str,
) -> sqlx::Result<Option<ApiKeyRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE profile_id = $1 AND id = $2"
    )))
    .bind(profile_id)
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn list_api_keys(
    pool: &AnyPool,
    profile_id: &str,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<ApiKeyRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE profile_id = $1 \
         ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
    )))
    .bind(profile_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await
}

pub async fn count_api_keys(pool: &AnyPool, profile_id: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE profile_id = $1")
        .bind(profile_id)
        .fetch_one(pool)
        .await
}

/// Revokes a key; false when it does not exist, is not the profile's, or is already revoked.
pub async fn revoke_api_key(
    pool: &AnyPool,
    profile_id: &str,
    id: &str,
    now: i64,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE api_keys SET revoked_at = $1 WHERE profile_id = $2 AND id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(profile_id)
    .bind(id)
    .execute(pool)
    .await?
    .rows_affected()
        == 1)
}

pub async fn auth_by_hash(pool: &AnyPool, hash: &str) -> sqlx::Result<Option<AuthRow>> {
    sqlx::query_as(
        "SELECT k.id, k.profile_id, p.role, p.status, k.last_used_at, k.created_at, \
         k.limit_max_price_cents, k.limit_daily_cents, k.limit_monthly_cents, k.limit_listing_ids, \
         k.limit_categories, k.limit_seller_ids, k.expires_at FROM api_keys k \
         JOIN profiles p ON p.id = k.profile_id \
         WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await
}

pub async fn rehash_api_key(pool: &AnyPool, id: &str, hash: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE api_keys SET key_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn touch_api_key(pool: &AnyPool, id: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

pub struct NewClaim<'a> {
    pub id: &'a str,
    pub profile_id: &'a str,
    pub wallet_id: &'a str,
    pub claimant_name: &'a str,
    pub claimant_contact: Option<&'a str>,
    pub now: i64,
}

pub async fn insert_claim(pool: &AnyPool, c: &NewClaim<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO agent_claims (id, profile_id, wallet_id, claimant_name, claimant_contact, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(c.id)
    .bind(c.profile_id)
    .bind(c.wallet_id)
    .bind(c.claimant_name)
    .bind(c.claimant_contact)
    .bind(c.now)
    .execute(pool)
    .await?;
    Ok(())
}

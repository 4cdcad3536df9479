//! Operating the marketplace: the operator's credential, suspensions of agents and
//! listings, marketplace statistics, failed calls, and the append-only audit log of
//! every operator action.
//!
//! [`Admin`] owns the rules; [`http`] only parses and answers, and is mounted only when
//! an operator credential is configured (`admin_token` / `admin_token_file`). The
//! credential is not an agent key: the host keeps only its SHA-256
//! ([`AdminCredential`]) and compares a presented one with it in constant time.
//!
//! A suspension changes the row (`profiles.status`, or a listing's `status` with the
//! operator's hold) and writes its audit row in one transaction, then publishes a cache
//! invalidation, so every instance refuses the agent's keys and the listing's calls at
//! once. Other operator actions record themselves with [`Admin::record`] (or
//! [`Admin::record_in`] inside their own transaction).

pub mod error;
pub mod http;
pub mod model;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sqlx::AnyConnection;
use subtle::ConstantTimeEq as _;

pub use error::AdminError;
pub use model::*;

use crate::gateway::model::GatewayRequestStatus;
use crate::storage::cache::{Bus, Invalidation};
use crate::storage::{Database, Page, PendingWrites, now_ms, rfc3339};

type Result<T, E = AdminError> = std::result::Result<T, E>;

/// Longest suspension reason, in characters.
const MAX_REASON_CHARS: usize = 500;
/// The default range of `GET /admin/stats`: the last 24 hours.
const DEFAULT_STATS_RANGE_MS: i64 = 24 * 3_600_000;

/// The operator's credential as the host keeps it: its SHA-256 only.
#[derive(Clone)]
pub struct AdminCredential {
    hash: [u8; 32],
    /// Names the credential in the audit log without revealing it.
    fingerprint: String,
}

impl std::fmt::Debug for AdminCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCredential")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl AdminCredential {
    /// Hashes the configured credential; the credential itself is not kept.
    pub fn new(token: &str) -> Self {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let fingerprint = Sha256::new()
            .chain_update(b"crochet admin credential fingerprint\0")
            .chain_update(hash)
            .finalize();
        Self {
            hash,
            fingerprint: crate::storage::lower_hex(&fingerprint[..4]),
        }
    }

    /// How audit rows name this credential: `admin:` and 8 hex digits.
    pub fn actor(&self) -> String {
        format!("admin:{}", self.fingerprint)
    }

    /// Checks an `Authorization` header: `Bearer <credential>`. No bearer credential is
    /// [`AdminError::TokenRequired`]; any other one (an agent's `am_k_` key included) is
    /// [`AdminError::TokenInvalid`]. The hashes are compared in constant time.
    pub fn check(&self, header: Option<&str>) -> Result<()> {
        let presented = header
            .map(str::trim)
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or(AdminError::TokenRequired)?;
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if bool::from(hash.ct_eq(&self.hash)) {
            Ok(())
        } else {
            Err(AdminError::TokenInvalid)
        }
    }
}

/// The operator behind an admin request, as the audit log records it.
#[derive(Debug, Clone)]
pub struct Operator {
    /// `admin:` and the credential's fingerprint.
    pub actor: String,
    /// The client's address as the host saw it.
    pub client_addr: Option<String>,
    /// The request's `x-request-id`.
    pub request_id: Option<String>,
}

/// An operator action to record: what was done to what, and the target before and
/// after it (JSON objects of what changed).
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// `<target type>.<verb>`, e.g. `listing.suspend`, `plugins.reload`.
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub reason: Option<&'a str>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// What an operator does to an agent or a listing.
#[derive(Debug, Clone, Copy)]
enum Hold {
    Suspend,
    Reinstate,
}

impl Hold {
    /// The audit action on an agent.
    fn agent_action(self) -> &'static str {
        match self {
            Hold::Suspend => "agent.suspend",
            Hold::Reinstate => "agent.reinstate",
        }
    }

    /// The audit action on a listing.
    fn listing_action(self) -> &'static str {
        match self {
            Hold::Suspend => "listing.suspend",
            Hold::Reinstate => "listing.reinstate",
        }
    }
}

/// The admin service.
#[derive(Clone)]
pub struct Admin {
    db: Database,
    credential: Arc<AdminCredential>,
    bus: Bus,
    /// The gateway's batched history writer, flushed before history is read.
    pending: Arc<dyn PendingWrites>,
}

impl Admin {
    pub fn new(
        db: Database,
        credential: AdminCredential,
        bus: &Bus,
        pending: Arc<dyn PendingWrites>,
    ) -> Self {
        Self {
            db,
            credential: Arc::new(credential),
            bus: bus.clone(),
            pending,
        }
    }

    /// The operator presenting `header`, or why not. A wrong credential is logged with
    /// the client's address (never what was presented).
    pub fn authenticate(
        &self,
        header: Option<&str>,
        client_addr: Option<String>,
        request_id: Option<String>,
    ) -> Result<Operator> {
        if let Err(e) = self.credential.check(header) {
            if matches!(e, AdminError::TokenInvalid) {
                tracing::warn!(
                    client = client_addr.as_deref().unwrap_or("-"),
                    "admin request with a wrong credential refused"
                );
            }
            return Err(e);
        }
        Ok(Operator {
            actor: self.credential.actor(),
            client_addr,
            request_id,
        })
    }

    /// Suspends an agent: its API keys are refused (`AGENT_SUSPENDED`), its listings take
    /// no calls and leave public search, its profile shows `suspended`.
    pub async fn suspend_agent(
        &self,
        op: &Operator,
        id: &str,
        reason: Option<String>,
    ) -> Result<AdminAgent> {
        self.hold_agent(op, id, reason, Hold::Suspend).await
    }

    /// Lifts an agent's suspension: its keys and listings work again.
    pub async fn reinstate_agent(
        &self,
        op: &Operator,
        id: &str,
        reason: Option<String>,
    ) -> Result<AdminAgent> {
        self.hold_agent(op, id, reason, Hold::Reinstate).await
    }

    /// Suspends or reinstates an agent, its audit row in the same transaction; then
    /// every instance drops the agent's cached keys and listings.
    async fn hold_agent(
        &self,
        op: &Operator,
        id: &str,
        reason: Option<String>,
        hold: Hold,
    ) -> Result<AdminAgent> {
        let reason = clean_reason(reason)?;
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let before = store::agent(&mut tx, id)
            .await?
            .ok_or(AdminError::AgentNotFound)?;
        let changed = match hold {
            Hold::Suspend => {
                !before.is_suspended()
                    && store::suspend_agent(&mut tx, &before.id, &op.actor, reason.as_deref(), now)
                        .await?
            }
            Hold::Reinstate => {
                before.is_suspended() && store::reinstate_agent(&mut tx, &before.id, now).await?
            }
        };
        if !changed {
            return Err(match hold {
                Hold::Suspend => AdminError::AgentAlreadySuspended,
                Hold::Reinstate => AdminError::AgentNotSuspended,
            });
        }
        let action = hold.agent_action();
        let after = self
            .agent_changed(&mut tx, op, action, reason.as_deref(), before, now)
            .await?;
        tx.commit().await?;
        self.bus
            .publish(Invalidation::Profile(after.id.clone()))
            .await;
        tracing::info!(agent_id = %after.id, actor = %op.actor, action, "agent changed by the operator");
        Ok(after.into())
    }

    /// Reads the changed agent back and records the change, in its transaction.
    async fn agent_changed(
        &self,
        conn: &mut AnyConnection,
        op: &Operator,
        action: &str,
        reason: Option<&str>,
        before: store::AgentRow,
        now: i64,
    ) -> Result<store::AgentRow> {
        let after = store::agent(conn, &before.id)
            .await?
            .ok_or(AdminError::AgentNotFound)?;
        let state = |a: &store::AgentRow| json!({"status": a.status, "suspension_reason": a.suspension_reason});
        self.insert_audit(
            conn,
            op,
            &AuditEntry {
                action,
                target_type: "agent",
                target_id: &after.id,
                reason,
                before: Some(state(&before)),
                after: Some(state(&after)),
            },
            now,
        )
        .await?;
        Ok(after)
    }

    /// Suspends a listing (by UUID or slug) for the operator: its status becomes
    /// `suspended`, the gateway refuses its calls, and its seller cannot change it until
    /// [`Admin::reinstate_listing`] restores the status it had.
    pub async fn suspend_listing(
        &self,
        op: &Operator,
        id: &str,
        reason: Option<String>,
    ) -> Result<AdminListing> {
        self.hold_listing(op, id, reason, Hold::Suspend).await
    }

    /// Lifts the operator's suspension of a listing, restoring its earlier status.
    pub async fn reinstate_listing(
        &self,
        op: &Operator,
        id: &str,
        reason: Option<String>,
    ) -> Result<AdminListing> {
        self.hold_listing(op, id, reason, Hold::Reinstate).await
    }

    /// Suspends or reinstates a listing, its audit row in the same transaction; then
    /// every instance drops the cached listing.
    async fn hold_listing(
        &self,
        op: &Operator,
        id: &str,
        reason: Option<String>,
        hold: Hold,
    ) -> Result<AdminListing> {
        let reason = clean_reason(reason)?;
        let now = now_ms();
        let mut tx = self.db.begin().await?;
        let before = store::listing(&mut tx, id)
            .await?
            .ok_or(AdminError::ListingNotFound)?;
        let changed = match hold {
            Hold::Suspend => {
                !before.is_held()
                    && store::suspend_listing(
                        &mut tx,
                        &before.id,
                        &op.actor,
                        reason.as_deref(),
                        now,
                    )
                    .await?
            }
            Hold::Reinstate => {
                before.is_held() && store::reinstate_listing(&mut tx, &before.id, now).await?
            }
        };
        if !changed {
            return Err(match hold {
                Hold::Suspend => AdminError::ListingAlreadySuspended,
                Hold::Reinstate => AdminError::ListingNotSuspended,
            });
        }
        let action = hold.listing_action();
        let after = self
            .listing_changed(&mut tx, op, action, reason.as_deref(), before, now)
            .await?;
        tx.commit().await?;
        self.bus
            .publish(Invalidation::Listing(after.id.clone()))
            .await;
        tracing::info!(listing_id = %after.id, actor = %op.actor, action, "listing changed by the operator");
        Ok(after.into())
    }

    /// Reads the changed listing back and records the change, in its transaction.
    async fn listing_changed(
        &self,
        conn: &mut AnyConnection,
        op: &Operator,
        action: &str,
        reason: Option<&str>,
        before: store::ListingRow,
        now: i64,
    ) -> Result<store::ListingRow> {
        let after = store::listing(conn, &before.id)
            .await?
            .ok_or(AdminError::ListingNotFound)?;
        let state = |l: &store::ListingRow| {
            json!({
                "status": l.status.as_str(),
                "suspended_by_operator": l.is_held(),
                "status_before_suspension": l.status_before_suspension,
                "suspension_reason": l.suspension_reason,
            })
        };
        self.insert_audit(
            conn,
            op,
            &AuditEntry {
                action,
                target_type: "listing",
                target_id: &after.id,
                reason,
                before: Some(state(&before)),
                after: Some(state(&after)),
            },
            now,
        )
        .await?;
        Ok(after)
    }

    /// Records an operator action in its own transaction (for actions that change no
    /// row, such as a plugin reload).
    pub async fn record(&self, op: &Operator, entry: AuditEntry<'_>) -> Result<AuditRecord> {
        let mut tx = self.db.begin().await?;
        let record = self.record_in(&mut tx, op, &entry).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Records an operator action inside the caller's transaction, so the change and its
    /// audit row commit (or roll back) together.
    pub async fn record_in(
        &self,
        conn: &mut AnyConnection,
        op: &Operator,
        entry: &AuditEntry<'_>,
    ) -> Result<AuditRecord> {
        self.insert_audit(conn, op, entry, now_ms()).await
    }

    async fn insert_audit(
        &self,
        conn: &mut AnyConnection,
        op: &Operator,
        entry: &AuditEntry<'_>,
        now: i64,
    ) -> Result<AuditRecord> {
        let row = store::AuditRow {
            id: crate::storage::append_id().to_string(),
            actor: op.actor.clone(),
            action: entry.action.to_owned(),
            target_type: entry.target_type.to_owned(),
            target_id: entry.target_id.to_owned(),
            reason: entry.reason.map(str::to_owned),
            before: entry.before.as_ref().map(Value::to_string),
            after: entry.after.as_ref().map(Value::to_string),
            client_addr: op.client_addr.clone(),
            request_id: op.request_id.clone(),
            created_at: now,
        };
        store::insert_audit(conn, &row).await?;
        Ok(row.into())
    }

    /// Agents of any status, newest first.
    pub async fn agents(&self, filter: AgentFilter) -> Result<(Vec<AdminAgent>, i64, Page)> {
        let page = Page::new(filter.page, filter.limit);
        let (rows, total) = store::agents(self.db.pool(), &filter, page).await?;
        Ok((rows.into_iter().map(Into::into).collect(), total, page))
    }

    /// Listings of any status, newest first.
    pub async fn listings(&self, filter: ListingFilter) -> Result<(Vec<AdminListing>, i64, Page)> {
        let page = Page::new(filter.page, filter.limit);
        let (rows, total) = store::listings(self.db.pool(), &filter, page).await?;
        Ok((rows.into_iter().map(Into::into).collect(), total, page))
    }

    /// Marketplace totals over `[from, to)` (default: the 24 hours before now).
    pub async fn stats(&self, q: StatsQuery) -> Result<MarketplaceStats> {
        let (from, to) = stats_range(&q, now_ms())?;
        self.pending.flush().await;
        let pool = self.db.pool();
        let calls = store::call_totals(pool, from, to).await?;
        let money = store::money_totals(pool, from, to).await?;
        let mut by_status: BTreeMap<String, i64> = GatewayRequestStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
        for (status, n) in store::calls_by_status(pool, from, to).await? {
            *by_status.entry(status).or_default() += n;
        }
        Ok(MarketplaceStats {
            from: rfc3339(from),
            to: rfc3339(to),
            currency: "USD",
            fee_rate: crate::ledger::FEE_RATE,
            gateway_calls: calls.calls,
            paid_calls: calls.paid_calls,
            failed_calls: calls.failed_calls,
            failure_rate: rate(calls.failed_calls, calls.calls),
            distinct_buyers: calls.distinct_buyers,
            distinct_sellers: calls.distinct_sellers,
            gross_volume_cents: money.gross,
            marketplace_fees_cents: money.fees,
            seller_credits_cents: money.seller_credits,
            refunds_cents: money.refunds,
            fee_reversals_cents: money.fee_reversals,
            seller_credit_reversals_cents: money.seller_credit_reversals,
            net_marketplace_fees_cents: money.fees - money.fee_reversals,
            calls_by_status: by_status,
        })
    }

    /// Failed gateway calls, newest first.
    pub async fn failed_requests(&self, page: Page) -> Result<(Vec<FailedRequest>, i64)> {
        self.pending.flush().await;
        let (rows, total) = store::failed_requests(self.db.pool(), page).await?;
        Ok((rows.into_iter().map(Into::into).collect(), total))
    }

    /// The audit log, newest first.
    pub async fn audit(&self, filter: AuditFilter) -> Result<(Vec<AuditRecord>, i64, Page)> {
        let page = Page::new(filter.page, filter.limit);
        let (rows, total) = store::audit(self.db.pool(), &filter, page).await?;
        Ok((rows.into_iter().map(Into::into).collect(), total, page))
    }
}

/// `part / whole` to four decimals; 0 when `whole` is 0.
fn rate(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        return 0.0;
    }
    (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0
}

/// A suspension reason: trimmed, empty is none, at most [`MAX_REASON_CHARS`], no
/// control characters but line feed and tab.
fn clean_reason(reason: Option<String>) -> Result<Option<String>> {
    let Some(r) = reason.as_deref().map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    if r.chars().count() > MAX_REASON_CHARS {
        return Err(AdminError::invalid(
            "reason",
            format!("must be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    if r.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(AdminError::invalid(
            "reason",
            "must not contain control characters",
        ));
    }
    Ok(Some(r.to_owned()))
}

/// An instant of the stats range: Unix seconds, or RFC 3339; as Unix milliseconds.
fn parse_instant(field: &'static str, value: &str) -> Result<i64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<i64>() {
        return seconds
            .checked_mul(1000)
            .ok_or_else(|| AdminError::invalid(field, "is out of range"));
    }
    let t = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            AdminError::invalid(
                field,
                "must be RFC 3339 (2025-01-31T00:00:00Z) or Unix seconds",
            )
        })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| AdminError::invalid(field, "is out of range"))
}

/// The `[from, to)` range of a stats query, in Unix milliseconds.
fn stats_range(q: &StatsQuery, now: i64) -> Result<(i64, i64)> {
    // By default up to and including the current millisecond: a call stamped in it
    // counts.
    let to = match q.to.as_deref() {
        Some(t) => parse_instant("to", t)?,
        None => now.saturating_add(1),
    };
    let from = match q.from.as_deref() {
        Some(f) => parse_instant("from", f)?,
        None => to.saturating_sub(DEFAULT_STATS_RANGE_MS),
    };
    if from >= to {
        return Err(AdminError::invalid("from", "must be before `to`"));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "an-operator-credential-of-32-chars!!";

    #[test]
    fn the_credential_is_checked_by_its_hash() {
        let c = AdminCredential::new(TOKEN);
        c.check(Some(&format!("Bearer {TOKEN}"))).unwrap();
        c.check(Some(&format!("bearer   {TOKEN}  "))).unwrap();
        for missing in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer    "),
            Some(TOKEN),
            Some("Basic dXNlcjpwYXNz"),
        ] {
            assert!(
                matches!(c.check(missing), Err(AdminError::TokenRequired)),
                "{missing:?}"
            );
        }
        for wrong in [
            "Bearer am_k_3yQwV9nq2vJkD7pXhR5sT8uW1zA4bC6e",
            "Bearer an-operator-credential-of-32-chars!",
            "Bearer AN-OPERATOR-CREDENTIAL-OF-32-CHARS!!",
        ] {
            assert!(
                matches!(c.check(Some(wrong)), Err(AdminError::TokenInvalid)),
                "{wrong}"
            );
        }
    }

    #[test]
    fn the_credential_is_never_shown() {
        let c = AdminCredential::new(TOKEN);
        let shown = format!("{c:?} {}", c.actor());
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(
            !shown.contains(&crate::storage::lower_hex(&c.hash)),
            "{shown}"
        );
        assert!(c.actor().starts_with("admin:"));
        assert_eq!(c.actor().len(), "admin:".len() + 8);
        assert_eq!(c.actor(), AdminCredential::new(TOKEN).actor());
        assert_ne!(c.actor(), AdminCredential::new("another").actor());
    }

    #[test]
    fn stats_ranges_take_rfc3339_or_seconds_and_default_to_a_day() {
        let now = 1_700_000_000_000;
        let q = |from: Option<&str>, to: Option<&str>| StatsQuery {
            from: from.map(Into::into),
            to: to.map(Into::into),
        };
        assert_eq!(
            stats_range(&q(None, None), now).unwrap(),
            (now + 1 - 86_400_000, now + 1)
        );
        assert_eq!(
            stats_range(&q(Some("1700000000"), Some("2023-11-14T22:13:21Z")), now).unwrap(),
            (1_700_000_000_000, 1_700_000_001_000)
        );
        assert!(stats_range(&q(Some("yesterday"), None), now).is_err());
        assert!(stats_range(&q(Some("1700000001"), Some("1700000000")), now).is_err());
        assert!(stats_range(&q(Some("9223372036854775807"), None), now).is_err());
    }

    #[test]
    fn reasons_are_trimmed_and_bounded() {
        assert_eq!(clean_reason(None).unwrap(), None);
        assert_eq!(clean_reason(Some("  ".into())).unwrap(), None);
        assert_eq!(
            clean_reason(Some(" fraud\nreport ".into()))
                .unwrap()
                .as_deref(),
            Some("fraud\nreport")
        );
        assert!(clean_reason(Some("x".repeat(501))).is_err());
        assert!(clean_reason(Some("a\u{7}b".into())).is_err());
    }

    #[test]
    fn rates_have_four_decimals() {
        assert_eq!(rate(0, 0), 0.0);
        assert_eq!(rate(1, 3), 0.3333);
        assert_eq!(rate(2, 2), 1.0);
    }
}

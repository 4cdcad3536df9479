//! SQL of the admin domain: suspensions (conditional updates of `profiles` and
//! `listings`), the operator's list views, the statistics over the gateway's history and
//! the ledger, and the append-only `admin_audit_log`. Portable between SQLite and
//! PostgreSQL; sums are cast to `BIGINT` (PostgreSQL's `SUM` of integers is `numeric`).

use sqlx::{AnyConnection, AnyPool, FromRow};

use super::model::{
    AdminAgent, AdminListing, AgentFilter, AuditFilter, AuditRecord, FailedRequest, ListingFilter,
};
use crate::catalog::{ListingStatus, PricingModel};
use crate::gateway::model::GatewayRequestStatus;
use crate::identity::Role;
use crate::storage::{Page, rfc3339};

/// Text parameters of a statement whose filters are chosen at run time.
#[derive(Default)]
struct Filters {
    clauses: Vec<String>,
    args: Vec<String>,
}

impl Filters {
    /// Adds `column = $n` for a value that is present.
    fn eq(&mut self, column: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.args.push(v.to_owned());
            self.clauses
                .push(format!("{column} = ${}", self.args.len()));
        }
    }

    fn condition(&self) -> String {
        if self.clauses.is_empty() {
            "1 = 1".into()
        } else {
            self.clauses.join(" AND ")
        }
    }

    /// Placeholders of LIMIT and OFFSET, after the filters'.
    fn page_placeholders(&self) -> (String, String) {
        let n = self.args.len();
        (format!("${}", n + 1), format!("${}", n + 2))
    }

    async fn count(&self, pool: &AnyPool, from: &str) -> sqlx::Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM {from} WHERE {}", self.condition());
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
        for a in &self.args {
            q = q.bind(a.clone());
        }
        q.fetch_one(pool).await
    }

    async fn page<T>(&self, pool: &AnyPool, sql: String, page: Page) -> sqlx::Result<Vec<T>>
    where
        T: for<'r> FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let mut q = sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql));
        for a in &self.args {
            q = q.bind(a.clone());
        }
        q.bind(i64::from(page.limit))
            .bind(page.offset())
            .fetch_all(pool)
            .await
    }
}

#[derive(Debug, FromRow)]
pub struct AgentRow {
    pub id: String,
    pub display_name: Option<String>,
    pub role: String,
    pub status: String,
    pub active_api_keys: i64,
    pub listings: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub suspended_at: Option<i64>,
    pub suspended_by: Option<String>,
    pub suspension_reason: Option<String>,
}

impl AgentRow {
    pub fn is_suspended(&self) -> bool {
        self.status == "suspended"
    }
}

impl From<AgentRow> for AdminAgent {
    fn from(r: AgentRow) -> Self {
        AdminAgent {
            id: r.id,
            display_name: r.display_name,
            role: Role::parse(&r.role),
            status: r.status,
            active_api_keys: r.active_api_keys,
            listings: r.listings,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
            suspended_at: r.suspended_at.map(rfc3339),
            suspended_by: r.suspended_by,
            suspension_reason: r.suspension_reason,
        }
    }
}

const AGENT_COLUMNS: &str = "p.id, p.display_name, p.role, p.status, \
     (SELECT COUNT(*) FROM api_keys k WHERE k.profile_id = p.id AND k.revoked_at IS NULL) AS active_api_keys, \
     (SELECT COUNT(*) FROM listings l WHERE l.seller_id = p.id) AS listings, \
     p.created_at, p.updated_at, p.suspended_at, p.suspended_by, p.suspension_reason";

pub async fn agent(conn: &mut AnyConnection, id: &str) -> sqlx::Result<Option<AgentRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {AGENT_COLUMNS} FROM profiles p WHERE p.id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Suspends an active agent; false when it is not active (already suspended, or gone).
pub async fn suspend_agent(
    conn: &mut AnyConnection,
    id: &str,
    actor: &str,
    reason: Option<&str>,
    now: i64,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE profiles SET status = 'suspended', suspended_at = $1, suspended_by = $2, \
         suspension_reason = $3, updated_at = $1 WHERE id = $4 AND status = 'active'",
    )
    .bind(now)
    .bind(actor)
    .bind(reason)
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Reinstates a suspended agent; false when it is not suspended.
pub async fn reinstate_agent(conn: &mut AnyConnection, id: &str, now: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE profiles SET status = 'active', suspended_at = NULL, suspended_by = NULL, \
         suspension_reason = NULL, updated_at = $1 WHERE id = $2 AND status = 'suspended'",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// The agents matching the filters, newest first, and how many match.
pub async fn agents(
    pool: &AnyPool,
    filter: &AgentFilter,
    page: Page,
) -> sqlx::Result<(Vec<AgentRow>, i64)> {
    let mut f = Filters::default();
    f.eq("p.status", filter.status.map(|s| s.as_str()));
    f.eq("p.role", filter.role.map(Role::as_str));
    let (limit, offset) = f.page_placeholders();
    let sql = format!(
        "SELECT {AGENT_COLUMNS} FROM profiles p WHERE {} \
         ORDER BY p.created_at DESC, p.id LIMIT {limit} OFFSET {offset}",
        f.condition()
    );
    let rows = f.page(pool, sql, page).await?;
    Ok((rows, f.count(pool, "profiles p").await?))
}

#[derive(Debug, FromRow)]
pub struct ListingRow {
    pub id: String,
    pub slug: String,
    pub seller_id: String,
    pub seller_status: Option<String>,
    pub name: String,
    pub category: Option<String>,
    #[sqlx(try_from = "String")]
    pub pricing_model: PricingModel,
    pub price_cents: i64,
    #[sqlx(try_from = "String")]
    pub status: ListingStatus,
    pub status_before_suspension: Option<String>,
    pub suspended_at: Option<i64>,
    pub suspended_by: Option<String>,
    pub suspension_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ListingRow {
    /// Whether an operator's suspension holds it.
    pub fn is_held(&self) -> bool {
        self.suspended_by.is_some()
    }
}

impl From<ListingRow> for AdminListing {
    fn from(r: ListingRow) -> Self {
        AdminListing {
            suspended_by_operator: r.is_held(),
            id: r.id,
            slug: r.slug,
            seller_id: r.seller_id,
            seller_status: r.seller_status.unwrap_or_else(|| "active".into()),
            name: r.name,
            category: r.category,
            pricing_model: r.pricing_model,
            price_cents: r.price_cents,
            status: r.status,
            status_before_suspension: r
                .status_before_suspension
                .as_deref()
                .map(ListingStatus::parse),
            suspended_at: r.suspended_at.map(rfc3339),
            suspended_by: r.suspended_by,
            suspension_reason: r.suspension_reason,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

const LISTING_COLUMNS: &str = "l.id, l.slug, l.seller_id, \
     (SELECT p.status FROM profiles p WHERE p.id = l.seller_id) AS seller_status, \
     l.name, l.category, l.pricing_model, l.price_cents, l.status, l.status_before_suspension, \
     l.suspended_at, l.suspended_by, l.suspension_reason, l.created_at, l.updated_at";

/// A listing by UUID or slug, any status.
pub async fn listing(
    conn: &mut AnyConnection,
    id_or_slug: &str,
) -> sqlx::Result<Option<ListingRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {LISTING_COLUMNS} FROM listings l WHERE l.id = $1 OR l.slug = $1"
    )))
    .bind(id_or_slug)
    .fetch_optional(conn)
    .await
}

/// Puts an operator's suspension on a listing, keeping its status to restore; false
/// when one already holds it.
pub async fn suspend_listing(
    conn: &mut AnyConnection,
    id: &str,
    actor: &str,
    reason: Option<&str>,
    now: i64,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE listings SET status_before_suspension = status, status = 'suspended', \
         suspended_at = $1, suspended_by = $2, suspension_reason = $3, updated_at = $1 \
         WHERE id = $4 AND suspended_by IS NULL",
    )
    .bind(now)
    .bind(actor)
    .bind(reason)
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Lifts an operator's suspension, restoring the status the listing had before it;
/// false when none holds it.
pub async fn reinstate_listing(conn: &mut AnyConnection, id: &str, now: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE listings SET status = COALESCE(status_before_suspension, 'active'), \
         status_before_suspension = NULL, suspended_at = NULL, suspended_by = NULL, \
         suspension_reason = NULL, updated_at = $1 WHERE id = $2 AND suspended_by IS NOT NULL",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// The listings matching the filters, newest first, and how many match.
pub async fn listings(
    pool: &AnyPool,
    filter: &ListingFilter,
    page: Page,
) -> sqlx::Result<(Vec<ListingRow>, i64)> {
    let mut f = Filters::default();
    f.eq("l.status", filter.status.map(ListingStatus::as_str));
    f.eq("l.seller_id", filter.seller_id.as_deref());
    f.eq("l.category", filter.category.as_deref());
    let (limit, offset) = f.page_placeholders();
    let sql = format!(
        "SELECT {LISTING_COLUMNS} FROM listings l WHERE {} \
         ORDER BY l.created_at DESC, l.id LIMIT {limit} OFFSET {offset}",
        f.condition()
    );
    let rows = f.page(pool, sql, page).await?;
    Ok((rows, f.count(pool, "listings l").await?))
}

/// Call counts of the gateway's history in `[from, to)`.
#[derive(Debug, FromRow)]
pub struct CallTotals {
    pub calls: i64,
    pub paid_calls: i64,
    pub failed_calls: i64,
    pub distinct_buyers: i64,
    pub distinct_sellers: i64,
}

pub async fn call_totals(pool: &AnyPool, from: i64, to: i64) -> sqlx::Result<CallTotals> {
    sqlx::query_as(
        "SELECT COUNT(*) AS calls, \
         CAST(COALESCE(SUM(CASE WHEN billable = 1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS paid_calls, \
         CAST(COALESCE(SUM(CASE WHEN error_code IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS failed_calls, \
         COUNT(DISTINCT buyer_id) AS distinct_buyers, COUNT(DISTINCT seller_id) AS distinct_sellers \
         FROM gateway_requests WHERE created_at >= $1 AND created_at < $2",
    )
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await
}

/// Attempts in `[from, to)` by stored status.
pub async fn calls_by_status(
    pool: &AnyPool,
    from: i64,
    to: i64,
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT status, COUNT(*) FROM gateway_requests \
         WHERE created_at >= $1 AND created_at < $2 GROUP BY status",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
}

/// Ledger totals in `[from, to)`, each as a positive amount.
#[derive(Debug, FromRow)]
pub struct MoneyTotals {
    pub gross: i64,
    pub fees: i64,
    pub seller_credits: i64,
    pub refunds: i64,
    pub fee_reversals: i64,
    pub seller_credit_reversals: i64,
}

pub async fn money_totals(pool: &AnyPool, from: i64, to: i64) -> sqlx::Result<MoneyTotals> {
    let sum = |entries: &str, sign: &str, name: &str| {
        format!(
            "CAST(COALESCE(SUM(CASE WHEN entry_type IN ({entries}) THEN {sign}amount_cents ELSE 0 END), 0) AS BIGINT) AS {name}"
        )
    };
    let columns = [
        // Calls paid through a provider or x402, and calls paid from balances.
        sum("'gateway_debit', 'balance_debit'", "-", "gross"),
        sum("'marketplace_fee'", "", "fees"),
        sum("'seller_credit'", "", "seller_credits"),
        sum("'gateway_refund'", "", "refunds"),
        sum("'marketplace_fee_reversal'", "-", "fee_reversals"),
        sum("'seller_credit_reversal'", "-", "seller_credit_reversals"),
    ]
    .join(", ");
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM ledger_entries WHERE created_at >= $1 AND created_at < $2"
    )))
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await
}

#[derive(Debug, FromRow)]
pub struct FailedRow {
    pub id: String,
    pub listing_id: String,
    pub listing_name: Option<String>,
    pub buyer_id: String,
    pub seller_id: String,
    #[sqlx(try_from = "String")]
    pub status: GatewayRequestStatus,
    pub error_code: String,
    pub seller_status_code: Option<i64>,
    pub latency_ms: Option<i64>,
    pub billable: i64,
    pub charged_cents: i64,
    pub created_at: i64,
}

impl From<FailedRow> for FailedRequest {
    fn from(r: FailedRow) -> Self {
        FailedRequest {
            id: r.id,
            listing_id: r.listing_id,
            listing_name: r.listing_name,
            buyer_id: r.buyer_id,
            seller_id: r.seller_id,
            status: r.status,
            error_code: r.error_code,
            seller_status_code: r.seller_status_code,
            latency_ms: r.latency_ms,
            billable: r.billable != 0,
            charged_cents: r.charged_cents,
            created_at: rfc3339(r.created_at),
        }
    }
}

/// Failed gateway calls, newest first, and how many there are.
pub async fn failed_requests(pool: &AnyPool, page: Page) -> sqlx::Result<(Vec<FailedRow>, i64)> {
    let rows = sqlx::query_as(
        "SELECT r.id, r.listing_id, l.name AS listing_name, r.buyer_id, r.seller_id, r.status, \
         r.error_code, r.seller_status_code, r.latency_ms, r.billable, r.charged_cents, r.created_at \
         FROM gateway_requests r LEFT JOIN listings l ON l.id = r.listing_id \
         WHERE r.error_code IS NOT NULL ORDER BY r.created_at DESC, r.id DESC LIMIT $1 OFFSET $2",
    )
    .bind(i64::from(page.limit))
    .bind(page.offset())
    .fetch_all(pool)
    .await?;
    let total =
        sqlx::query_scalar("SELECT COUNT(*) FROM gateway_requests WHERE error_code IS NOT NULL")
            .fetch_one(pool)
            .await?;
    Ok((rows, total))
}

/// One audit row as stored.
#[derive(Debug, FromRow)]
pub struct AuditRow {
    pub id: String,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub reason: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub client_addr: Option<String>,
    pub request_id: Option<String>,
    pub created_at: i64,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        let json = |t: Option<String>| t.and_then(|t| serde_json::from_str(&t).ok());
        AuditRecord {
            id: r.id,
            actor: r.actor,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            reason: r.reason,
            before: json(r.before),
            after: json(r.after),
            client_addr: r.client_addr,
            request_id: r.request_id,
            created_at: rfc3339(r.created_at),
        }
    }
}

/// Appends an audit row (inside the transaction of the change it describes).
pub async fn insert_audit(conn: &mut AnyConnection, r: &AuditRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO admin_audit_log (id, actor, action, target_type, target_id, reason, before, \
         after, client_addr, request_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&r.id)
    .bind(&r.actor)
    .bind(&r.action)
    .bind(&r.target_type)
    .bind(&r.target_id)
    .bind(r.reason.as_deref())
    .bind(r.before.as_deref())
    .bind(r.after.as_deref())
    .bind(r.client_addr.as_deref())
    .bind(r.request_id.as_deref())
    .bind(r.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Audit rows matching the filters, newest first, and how many match.
pub async fn audit(
    pool: &AnyPool,
    filter: &AuditFilter,
    page: Page,
) -> sqlx::Result<(Vec<AuditRow>, i64)> {
    let mut f = Filters::default();
    f.eq("action", filter.action.as_deref());
    f.eq("target_type", filter.target_type.as_deref());
    f.eq("target_id", filter.target_id.as_deref());
    let (limit, offset) = f.page_placeholders();
    let sql = format!(
        "SELECT id, actor, action, target_type, target_id, reason, before, after, client_addr, \
         request_id, created_at FROM admin_audit_log WHERE {} \
         ORDER BY created_at DESC, id DESC LIMIT {limit} OFFSET {offset}",
        f.condition()
    );
    let rows = f.page(pool, sql, page).await?;
    Ok((rows, f.count(pool, "admin_audit_log").await?))
}

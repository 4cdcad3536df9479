//! Ledger: the append-only money record. A settled gateway call writes three entries
//! that sum to zero (`gateway_debit` from the buyer, `seller_credit` to the seller,
//! `marketplace_fee` to the marketplace) in the same transaction that consumes its
//! payment, together with the call's signed receipt ([`receipts`]); `adjustment` is
//! reserved for operator corrections. The database refuses
//! updates and deletes of `ledger_entries` on both backends.

pub mod http;
pub mod receipts;

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, AnyPool, FromRow};
use utoipa::{IntoParams, ToSchema};

use crate::storage::{Page, rfc3339};

/// The marketplace fee in basis points (4.9 %).
pub const FEE_BPS: i64 = 490;
/// The same fee as a rate, as the seeds show it.
pub const FEE_RATE: f64 = 0.049;

/// `round_half_up(charged * 490 / 10000)`: the marketplace's cut of a charge in cents.
pub fn fee_cents(charged_cents: i64) -> i64 {
    (charged_cents * FEE_BPS + 5_000) / 10_000
}

/// Ledger entry types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryType {
    GatewayDebit,
    SellerCredit,
    MarketplaceFee,
    Adjustment,
}

impl EntryType {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryType::GatewayDebit => "gateway_debit",
            EntryType::SellerCredit => "seller_credit",
            EntryType::MarketplaceFee => "marketplace_fee",
            EntryType::Adjustment => "adjustment",
        }
    }
}

/// One ledger entry as shown to its profile. Amounts are signed cents: debits negative.
#[derive(Debug, Clone, Serialize, ToSchema, FromRow)]
pub struct LedgerEntryRow {
    pub id: String,
    pub gateway_request_id: Option<String>,
    pub profile_id: Option<String>,
    pub entry_type: String,
    pub amount_cents: i64,
    pub currency: String,
    pub relay_request_id: Option<String>,
    pub listing_id: Option<String>,
    pub created_at: i64,
}

/// The wire form of a ledger entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LedgerEntry {
    pub id: String,
    pub entry_type: String,
    /// Signed cents: negative for the buyer's debit, positive for credits and fees.
    pub amount_cents: i64,
    pub currency: String,
    pub gateway_request_id: Option<String>,
    pub relay_request_id: Option<String>,
    pub listing_id: Option<String>,
    pub created_at: String,
}

impl From<LedgerEntryRow> for LedgerEntry {
    fn from(r: LedgerEntryRow) -> Self {
        Self {
            id: r.id,
            entry_type: r.entry_type,
            amount_cents: r.amount_cents,
            currency: r.currency,
            gateway_request_id: r.gateway_request_id,
            relay_request_id: r.relay_request_id,
            listing_id: r.listing_id,
            created_at: rfc3339(r.created_at),
        }
    }
}

/// The three balanced entries of one settled call.
pub struct SettledCall<'a> {
    pub gateway_request_id: &'a str,
    pub buyer_id: &'a str,
    pub seller_id: &'a str,
    pub listing_id: &'a str,
    pub relay_request_id: &'a str,
    pub charged_cents: i64,
    pub currency: &'a str,
    pub now: i64,
}

/// Writes a settled call's entries; call inside the transaction that consumes the payment.
pub async fn record_settled_call(
    conn: &mut AnyConnection,
    c: &SettledCall<'_>,
) -> sqlx::Result<()> {
    let fee = fee_cents(c.charged_cents);
    let entries = [
        (EntryType::GatewayDebit, Some(c.buyer_id), -c.charged_cents),
        (
            EntryType::SellerCredit,
            Some(c.seller_id),
            c.charged_cents - fee,
        ),
        (EntryType::MarketplaceFee, None, fee),
    ];
    for (kind, profile, amount) in entries {
        sqlx::query(
            "INSERT INTO ledger_entries (id, gateway_request_id, profile_id, entry_type, amount_cents, \
             currency, relay_request_id, listing_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(crate::storage::append_id().to_string())
        .bind(c.gateway_request_id)
        .bind(profile)
        .bind(kind.as_str())
        .bind(amount)
        .bind(c.currency)
        .bind(c.relay_request_id)
        .bind(c.listing_id)
        .bind(c.now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// `GET /ledger` filters.
#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub entry_type: Option<EntryType>,
    /// Unix milliseconds, inclusive.
    pub from: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub to: Option<i64>,
    pub page: Option<u32>,
    pub limit: Option<u32>,
}

/// The caller's entries, newest first, and how many match.
pub async fn list(
    pool: &AnyPool,
    profile_id: &str,
    q: &LedgerQuery,
    page: Page,
) -> sqlx::Result<(Vec<LedgerEntry>, i64)> {
    let filter =
        "profile_id = $1 AND ($2 = '' OR entry_type = $2) AND created_at >= $3 AND created_at < $4";
    let kind = q.entry_type.map_or("", EntryType::as_str);
    let (from, to) = (q.from.unwrap_or(0), q.to.unwrap_or(i64::MAX));
    let rows: Vec<LedgerEntryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, gateway_request_id, profile_id, entry_type, amount_cents, currency, relay_request_id, \
         listing_id, created_at FROM ledger_entries WHERE {filter} ORDER BY created_at DESC, id LIMIT $5 OFFSET $6"
    )))
    .bind(profile_id)
    .bind(kind)
    .bind(from)
    .bind(to)
    .bind(i64::from(page.limit))
    .bind(page.offset())
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM ledger_entries WHERE {filter}"
    )))
    .bind(profile_id)
    .bind(kind)
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    Ok((rows.into_iter().map(Into::into).collect(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_rounds_half_up() {
        assert_eq!(fee_cents(100), 5); // 4.9 -> 5
        assert_eq!(fee_cents(1), 0); // 0.049 -> 0
        assert_eq!(fee_cents(10), 0); // 0.49 -> 0
        assert_eq!(fee_cents(11), 1); // 0.539 -> 1
        assert_eq!(fee_cents(1000), 49);
        assert_eq!(fee_cents(10_204), 500); // 499.996 -> 500
        assert_eq!(fee_cents(3_061), 150); // 149.989 -> 150
        for c in [1, 7, 99, 100, 12345] {
            assert_eq!(c - fee_cents(c) + fee_cents(c), c);
        }
    }
}

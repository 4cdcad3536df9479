//! Ledger: the append-only money record. A settled gateway call writes three entries
//! that sum to zero (`gateway_debit` from the buyer, `seller_credit` to the seller,
//! `marketplace_fee` to the marketplace) in the same transaction that consumes its
//! payment, together with the call's signed receipt ([`receipts`]). A paid call that
//! was interrupted (the host died while forwarding it, and no retry took it over) is
//! undone by three mirrored entries (`gateway_refund` to the buyer,
//! `seller_credit_reversal`, `marketplace_fee_reversal`), written in the transaction
//! that marks the call `interrupted`; never by changing the original entries.
//! `adjustment` is reserved for operator corrections. The database refuses updates and
//! deletes of `ledger_entries` on both backends, and a second reversal of one call.
//!
//! A paid call that fails at the seller after its payment settled is reversed the same
//! way, in the transaction that records the failure. Every `gateway_refund` is credited
//! to the buyer's marketplace balance ([`balance`]); a call paid from that balance
//! writes `balance_debit` instead of `gateway_debit`, and a top-up ([`deposits`]) writes
//! `deposit_payment` (paid in through the provider) and `deposit` (credited). So a
//! profile's balance is always the sum of its `gateway_refund`, `balance_debit` and
//! `deposit` entries, and every operation's entries still sum to zero.

pub mod balance;
pub mod deposits;
pub mod http;
pub mod receipts;

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, AnyPool, FromRow};
use utoipa::{IntoParams, ToSchema};

use crate::pagination::Total;
use crate::storage::{self, Page, rfc3339};

/// The marketplace fee in basis points (4.9 %).
pub const FEE_BPS: i64 = 490;
/// The same fee as a rate, as the API shows it.
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
    /// A call paid from the buyer's balance.
    BalanceDebit,
    SellerCredit,
    MarketplaceFee,
    GatewayRefund,
    SellerCreditReversal,
    MarketplaceFeeReversal,
    /// A top-up paid in through the payment provider.
    DepositPayment,
    /// A top-up credited to the balance.
    Deposit,
    Adjustment,
}

impl EntryType {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryType::GatewayDebit => "gateway_debit",
            EntryType::BalanceDebit => "balance_debit",
            EntryType::SellerCredit => "seller_credit",
            EntryType::MarketplaceFee => "marketplace_fee",
            EntryType::GatewayRefund => "gateway_refund",
            EntryType::SellerCreditReversal => "seller_credit_reversal",
            EntryType::MarketplaceFeeReversal => "marketplace_fee_reversal",
            EntryType::DepositPayment => "deposit_payment",
            EntryType::Deposit => "deposit",
            EntryType::Adjustment => "adjustment",
        }
    }

    /// The entry that undoes this one, for the three entries of a charge.
    fn reversal(self) -> Option<Self> {
        match self {
            EntryType::GatewayDebit | EntryType::BalanceDebit => Some(EntryType::GatewayRefund),
            EntryType::SellerCredit => Some(EntryType::SellerCreditReversal),
            EntryType::MarketplaceFee => Some(EntryType::MarketplaceFeeReversal),
            _ => None,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            EntryType::GatewayDebit,
            EntryType::BalanceDebit,
            EntryType::SellerCredit,
            EntryType::MarketplaceFee,
            EntryType::GatewayRefund,
            EntryType::SellerCreditReversal,
            EntryType::MarketplaceFeeReversal,
            EntryType::DepositPayment,
            EntryType::Deposit,
            EntryType::Adjustment,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
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
    /// Paid from the buyer's balance (debited by the caller in the same transaction).
    pub from_balance: bool,
}

/// Writes a settled call's entries; call inside the transaction that consumes the payment.
pub async fn record_settled_call(
    conn: &mut AnyConnection,
    c: &SettledCall<'_>,
) -> sqlx::Result<()> {
    let fee = fee_cents(c.charged_cents);
    let debit = if c.from_balance {
        EntryType::BalanceDebit
    } else {
        EntryType::GatewayDebit
    };
    let entries = [
        (debit, Some(c.buyer_id), -c.charged_cents),
        (
            EntryType::SellerCredit,
            Some(c.seller_id),
            c.charged_cents - fee,
        ),
        (EntryType::MarketplaceFee, None, fee),
    ];
    let entries = entries.map(|(kind, profile_id, amount_cents)| NewEntry {
        gateway_request_id: Some(c.gateway_request_id),
        profile_id,
        kind,
        amount_cents,
        currency: c.currency,
        relay_request_id: Some(c.relay_request_id),
        listing_id: Some(c.listing_id),
        now: c.now,
    });
    insert_all(conn, &entries).await
}

/// Undoes a call's charge: one mirrored entry for each of its charge entries (none for a
/// free call), and the refund credited to the buyer's balance. Call inside the
/// transaction that marks the call interrupted or failed; the database refuses a second
/// reversal of the same call. Returns the amount refunded to the buyer.
pub async fn record_reversal(
    conn: &mut AnyConnection,
    gateway_request_id: &str,
    now: i64,
) -> sqlx::Result<i64> {
    let charged: Vec<LedgerEntryRow> = sqlx::query_as(
        "SELECT id, gateway_request_id, profile_id, entry_type, amount_cents, currency, relay_request_id, \
         listing_id, created_at FROM ledger_entries WHERE gateway_request_id = $1 \
         AND entry_type IN ('gateway_debit', 'balance_debit', 'seller_credit', 'marketplace_fee')",
    )
    .bind(gateway_request_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut refunded = 0;
    let mut reversals = Vec::with_capacity(charged.len());
    for e in &charged {
        let Some(kind) = EntryType::parse(&e.entry_type).and_then(EntryType::reversal) else {
            continue;
        };
        if kind == EntryType::GatewayRefund {
            refunded -= e.amount_cents;
            if let Some(buyer) = e.profile_id.as_deref() {
                balance::credit(conn, buyer, &e.currency, -e.amount_cents, now).await?;
            }
        }
        reversals.push(NewEntry {
            gateway_request_id: Some(gateway_request_id),
            profile_id: e.profile_id.as_deref(),
            kind,
            amount_cents: -e.amount_cents,
            currency: &e.currency,
            relay_request_id: e.relay_request_id.as_deref(),
            listing_id: e.listing_id.as_deref(),
            now,
        });
    }
    insert_all(conn, &reversals).await?;
    Ok(refunded)
}

/// One entry to append.
pub(crate) struct NewEntry<'a> {
    pub gateway_request_id: Option<&'a str>,
    pub profile_id: Option<&'a str>,
    pub kind: EntryType,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub relay_request_id: Option<&'a str>,
    pub listing_id: Option<&'a str>,
    pub now: i64,
}

/// Appends `entries` in one statement (a call's entries are written together).
pub(crate) async fn insert_all(
    conn: &mut AnyConnection,
    entries: &[NewEntry<'_>],
) -> sqlx::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO ledger_entries (id, gateway_request_id, profile_id, entry_type, amount_cents, \
         currency, relay_request_id, listing_id, created_at) VALUES {}",
        storage::Backend::of(conn)
            .values_list("($1, $2, $3, $4, $5, $6, $7, $8, $9)", entries.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for e in entries {
        q = q
            .bind(crate::storage::append_id().to_string())
            .bind(e.gateway_request_id)
            .bind(e.profile_id)
            .bind(e.kind.as_str())
            .bind(e.amount_cents)
            .bind(e.currency)
            .bind(e.relay_request_id)
            .bind(e.listing_id)
            .bind(e.now);
    }
    q.execute(conn).await?;
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

/// The caller's entries, newest first, and how many match (counted up to
/// [`Total::CAP`]).
pub async fn list(
    pool: &AnyPool,
    profile_id: &str,
    q: &LedgerQuery,
    page: Page,
) -> sqlx::Result<(Vec<LedgerEntry>, Total)> {
    let mut filter = "profile_id = $1 AND created_at >= $2 AND created_at < $3".to_owned();
    if q.entry_type.is_some() {
        filter.push_str(" AND entry_type = $4");
    }
    let (rows, total) = storage::newest_first::<LedgerEntryRow>(
        pool,
        "ledger_entries",
        "id, gateway_request_id, profile_id, entry_type, amount_cents, currency, relay_request_id, \
         listing_id, created_at",
        &[filter],
        profile_id,
        (q.from.unwrap_or(0), q.to.unwrap_or(i64::MAX)),
        q.entry_type.map(EntryType::as_str),
        page,
    )
    .await?;
    Ok((rows.into_iter().map(Into::into).collect(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reversal_mirrors_the_charge_once() {
        let (_dir, db) = crate::storage::temp_sqlite().await;
        crate::storage::test_profile(&db, "buyer").await;
        let mut tx = db.begin().await.unwrap();
        let call = SettledCall {
            gateway_request_id: "gw_req_1",
            buyer_id: "buyer",
            seller_id: "seller",
            listing_id: "listing",
            relay_request_id: "relay",
            charged_cents: 25,
            currency: "USD",
            now: 1,
            from_balance: false,
        };
        record_settled_call(&mut tx, &call).await.unwrap();
        assert_eq!(record_reversal(&mut tx, "gw_req_1", 2).await.unwrap(), 25);
        tx.commit().await.unwrap();
        let rows: Vec<(Option<String>, String, i64)> = sqlx::query_as(
            "SELECT profile_id, entry_type, amount_cents FROM ledger_entries ORDER BY created_at, entry_type",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert_eq!(rows.len(), 6, "three entries and their mirror: {rows:?}");
        assert_eq!(rows.iter().map(|r| r.2).sum::<i64>(), 0);
        let entry = |kind: &str| rows.iter().find(|r| r.1 == kind).unwrap().clone();
        assert_eq!(
            entry("gateway_refund"),
            (Some("buyer".into()), "gateway_refund".into(), 25)
        );
        assert_eq!(
            entry("seller_credit_reversal"),
            (Some("seller".into()), "seller_credit_reversal".into(), -24)
        );
        assert_eq!(
            entry("marketplace_fee_reversal"),
            (None, "marketplace_fee_reversal".into(), -1)
        );
        // The refund went to the buyer's balance.
        assert_eq!(balance::of(db.pool(), "buyer", "USD").await.unwrap(), 25);
        // The database refuses a second reversal of the same call.
        let mut tx = db.begin().await.unwrap();
        assert!(record_reversal(&mut tx, "gw_req_1", 3).await.is_err());
        tx.rollback().await.unwrap();
        // A call without charge entries (a free call) has nothing to reverse.
        let mut tx = db.begin().await.unwrap();
        assert_eq!(record_reversal(&mut tx, "gw_req_free", 3).await.unwrap(), 0);
        tx.rollback().await.unwrap();
    }

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

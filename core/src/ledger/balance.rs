//! A profile's marketplace balance: refunds of failed paid calls and top-ups land here,
//! and a buyer may pay calls from it (`X-Crochet-Pay-From: balance`).
//!
//! One row per profile and currency. Every change is made in the transaction that writes
//! the ledger entries explaining it, so the balance always equals the sum of the
//! profile's `gateway_refund`, `balance_debit` and `deposit` entries. A debit is one
//! conditional `UPDATE` (`amount_cents >= $n`), so racing calls cannot spend the same
//! cents twice; and the database refuses a negative balance outright (`CHECK
//! (amount_cents >= 0)`), whatever the code does.
//!
//! Withdrawals are not offered by the API. An operator pays a balance out off-band and
//! records it as an `adjustment` entry with the matching debit of the balance, in one
//! transaction, like every other balance movement.

use serde::Serialize;
use sqlx::{AnyConnection, AnyPool};
use utoipa::ToSchema;

use crate::storage::rfc3339;

/// The currency balances are kept in when a profile has none yet.
pub const DEFAULT_CURRENCY: &str = "USD";

/// Adds `cents` to a profile's balance (creating it). Call inside the transaction that
/// writes the entries explaining the credit.
pub async fn credit(
    conn: &mut AnyConnection,
    profile_id: &str,
    currency: &str,
    cents: i64,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO balances (profile_id, currency, amount_cents, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (profile_id, currency) DO UPDATE SET \
         amount_cents = balances.amount_cents + excluded.amount_cents, updated_at = excluded.updated_at",
    )
    .bind(profile_id)
    .bind(currency)
    .bind(cents)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes `cents` from a profile's balance if it holds that much; false (and nothing
/// changed) when it does not. Call inside the transaction that writes the debit entry.
pub async fn debit(
    conn: &mut AnyConnection,
    profile_id: &str,
    currency: &str,
    cents: i64,
    now: i64,
) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE balances SET amount_cents = amount_cents - $1, updated_at = $2 \
         WHERE profile_id = $3 AND currency = $4 AND amount_cents >= $1",
    )
    .bind(cents)
    .bind(now)
    .bind(profile_id)
    .bind(currency)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// A profile's balance in `currency` (0 when it has none).
pub async fn of(pool: &AnyPool, profile_id: &str, currency: &str) -> sqlx::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT amount_cents FROM balances WHERE profile_id = $1 AND currency = $2",
    )
    .bind(profile_id)
    .bind(currency)
    .fetch_optional(pool)
    .await?
    .unwrap_or(0))
}

/// `GET /balance`: what the caller holds, per currency.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Balance {
    /// The balance in [`DEFAULT_CURRENCY`], in cents.
    pub available_cents: i64,
    pub currency: String,
    /// Every currency the profile holds a balance in (the first is `currency`).
    pub balances: Vec<CurrencyBalance>,
    /// Where the movements are: `GET /ledger` with these entry types.
    pub movement_entry_types: Vec<&'static str>,
}

/// A balance in one currency.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CurrencyBalance {
    pub currency: String,
    pub amount_cents: i64,
    pub updated_at: Option<String>,
}

/// The entry types that move a balance.
pub const MOVEMENTS: [&str; 3] = ["gateway_refund", "balance_debit", "deposit"];

/// A profile's balances.
pub async fn view(pool: &AnyPool, profile_id: &str) -> sqlx::Result<Balance> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT currency, amount_cents, updated_at FROM balances WHERE profile_id = $1 ORDER BY currency",
    )
    .bind(profile_id)
    .fetch_all(pool)
    .await?;
    let mut balances: Vec<CurrencyBalance> = rows
        .into_iter()
        .map(|(currency, amount_cents, at)| CurrencyBalance {
            currency,
            amount_cents,
            updated_at: Some(rfc3339(at)),
        })
        .collect();
    balances.sort_by_key(|b| b.currency != DEFAULT_CURRENCY);
    if balances
        .first()
        .is_none_or(|b| b.currency != DEFAULT_CURRENCY)
    {
        balances.insert(
            0,
            CurrencyBalance {
                currency: DEFAULT_CURRENCY.into(),
                amount_cents: 0,
                updated_at: None,
            },
        );
    }
    Ok(Balance {
        available_cents: balances[0].amount_cents,
        currency: DEFAULT_CURRENCY.into(),
        balances,
        movement_entry_types: MOVEMENTS.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_balance_never_goes_negative() {
        let (_dir, db) = crate::storage::temp_sqlite().await;
        crate::storage::test_profile(&db, "p").await;
        let mut tx = db.begin().await.unwrap();
        assert!(!debit(&mut tx, "p", "USD", 1, 1).await.unwrap());
        credit(&mut tx, "p", "USD", 10, 1).await.unwrap();
        credit(&mut tx, "p", "USD", 5, 2).await.unwrap();
        assert!(debit(&mut tx, "p", "USD", 15, 3).await.unwrap());
        assert!(!debit(&mut tx, "p", "USD", 1, 4).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(of(db.pool(), "p", "USD").await.unwrap(), 0);
        // The database itself refuses a negative balance.
        let refused = sqlx::query("UPDATE balances SET amount_cents = -1 WHERE profile_id = 'p'")
            .execute(db.pool())
            .await;
        assert!(refused.is_err());
        let v = view(db.pool(), "p").await.unwrap();
        assert_eq!((v.available_cents, v.currency.as_str()), (0, "USD"));
        let none = view(db.pool(), "nobody").await.unwrap();
        assert_eq!(none.balances.len(), 1);
    }
}

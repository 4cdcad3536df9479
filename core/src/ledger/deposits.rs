//! Prepaid top-ups of a balance: `POST /balance/deposits`.
//!
//! A deposit follows the gateway's payment flow. The first request asks the configured
//! provider for a payment requirement of the amount and answers 402 with it; the buyer
//! pays, then repeats the request with `X-Crochet-Relay-Request-Id`. When the provider
//! reports the payment settled, one transaction moves the deposit from
//! `awaiting_payment` to `credited` (a conditional `UPDATE`, so however many
//! confirmations race, one wins), credits the balance and appends the two entries
//! (`deposit_payment` of the amount paid in, `deposit` of the credit; they sum to zero).
//! A repeat after that answers with the deposit as it stands and credits nothing.
//!
//! A deposit paid but never confirmed (the client stopped in between) is not left
//! uncredited: the recovery janitor ([`sweep`]) asks the provider about deposits still
//! awaiting payment after [`SWEEP_AFTER`] and credits the settled ones the same way,
//! once. It stops asking about a deposit a day after it was created; a confirmation by
//! its owner still works after that.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::FromRow;
use utoipa::ToSchema;

use super::{EntryType, NewEntry, balance};
use crate::metrics::PaymentEvent;
use crate::payments::{
    PaymentError, PaymentProvider, RequirementRequest, Route, Settlement, SettlementQuery,
};
use crate::storage::{Database, now_ms, rfc3339};

/// The largest top-up one request may ask for (cents).
pub const MAX_DEPOSIT_CENTS: i64 = 1_000_000;

/// `POST /balance/deposits` body. On the confirming retry it may be left out; if sent,
/// it must name the same amount.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    /// Cents to add to the balance (1 to 1,000,000).
    pub amount_cents: Option<i64>,
    /// `USD` (the default).
    pub currency: Option<String>,
}

/// A deposit as shown to its profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Deposit {
    pub id: String,
    /// `awaiting_payment`, `credited` or `failed`.
    pub status: String,
    pub amount_cents: i64,
    pub currency: String,
    pub relay_request_id: String,
    pub provider: String,
    pub created_at: String,
    pub credited_at: Option<String>,
}

#[derive(Debug, FromRow)]
struct Row {
    id: String,
    profile_id: String,
    provider: String,
    relay_request_id: String,
    amount_cents: i64,
    currency: String,
    status: String,
    created_at: i64,
    credited_at: Option<i64>,
}

impl From<Row> for Deposit {
    fn from(r: Row) -> Self {
        Self {
            id: r.id,
            status: r.status,
            amount_cents: r.amount_cents,
            currency: r.currency,
            relay_request_id: r.relay_request_id,
            provider: r.provider,
            created_at: rfc3339(r.created_at),
            credited_at: r.credited_at.map(rfc3339),
        }
    }
}

/// A confirmed deposit and the balance after it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DepositConfirmation {
    pub deposit: Deposit,
    /// True for the request that credited it; false for a repeat.
    pub credited_now: bool,
    /// The balance in the deposit's currency, in cents.
    pub balance_cents: i64,
}

/// The 402 of a deposit: what to pay and how to confirm.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DepositPayment {
    pub deposit_id: String,
    pub relay_request_id: String,
    pub provider: String,
    pub amount_cents: i64,
    pub currency: String,
    /// The provider's instructions.
    #[schema(value_type = Object)]
    pub requirements: Value,
    /// Repeat the request with these headers once paid.
    #[schema(value_type = Object)]
    pub retry_headers: Value,
}

/// A deposit whose payment is not settled yet (202): confirm again later.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PendingDeposit {
    /// `pending`.
    pub status: &'static str,
    pub retryable: bool,
    pub retry_after_seconds: u64,
    pub relay_request_id: String,
    /// `retry_deposit_later`.
    pub next_action: &'static str,
    /// The provider's own status word.
    pub provider_status: String,
}

/// What a confirming request found, when it is not an error.
pub enum Confirmed {
    Credited(Box<DepositConfirmation>),
    /// Not settled yet.
    Pending(PendingDeposit),
}

/// Why a deposit request was refused (the 402 that asks for payment included).
#[derive(Debug, thiserror::Error)]
pub enum DepositError {
    #[error("{field} {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("Pay the deposit, then repeat this request with X-Crochet-Relay-Request-Id.")]
    PaymentRequired(Box<DepositPayment>),
    #[error("no deposit of this profile has this relay request id")]
    NotFound,
    #[error("this relay request id pays a deposit of {0} cents; the body names another amount")]
    AmountMismatch(i64),
    #[error("the deposit's payment failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Provider(#[from] PaymentError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

const COLUMNS: &str = "id, profile_id, provider, relay_request_id, amount_cents, currency, status, \
     created_at, credited_at";

/// Asks the provider for a requirement of `amount_cents` and records the deposit; the
/// answer is always the 402 to send ([`DepositError::PaymentRequired`]) or why none
/// could be issued.
pub async fn create(
    db: &Database,
    provider: &dyn PaymentProvider,
    profile_id: &str,
    req: &DepositRequest,
    route: Route,
) -> DepositError {
    match create_inner(db, provider, profile_id, req, route).await {
        Ok(payment) => DepositError::PaymentRequired(Box::new(payment)),
        Err(e) => e,
    }
}

async fn create_inner(
    db: &Database,
    provider: &dyn PaymentProvider,
    profile_id: &str,
    req: &DepositRequest,
    route: Route,
) -> Result<DepositPayment, DepositError> {
    let amount_cents = req.amount_cents.ok_or(DepositError::Invalid {
        field: "amount_cents",
        message: "is required".into(),
    })?;
    if !(1..=MAX_DEPOSIT_CENTS).contains(&amount_cents) {
        return Err(DepositError::Invalid {
            field: "amount_cents",
            message: format!("must be 1 to {MAX_DEPOSIT_CENTS}"),
        });
    }
    let currency = currency_of(req)?;
    let id = format!("dep_{}", crate::storage::append_id().simple());
    let requirement = provider
        .create_requirement(&RequirementRequest {
            buyer_id: profile_id.to_owned(),
            // A deposit pays the marketplace: no listing, no seller payout.
            listing_id: id.clone(),
            seller_id: String::new(),
            seller_payout: None,
            amount_cents,
            currency: currency.clone(),
            route,
        })
        .await?;
    sqlx::query(
        "INSERT INTO balance_deposits (id, profile_id, provider, relay_request_id, amount_cents, currency, \
         requirements, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'awaiting_payment', $8)",
    )
    .bind(&id)
    .bind(profile_id)
    .bind(provider.name())
    .bind(&requirement.request_id)
    .bind(amount_cents)
    .bind(&currency)
    .bind(requirement.requirements.to_string())
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    crate::metrics::payment(provider.name(), PaymentEvent::RequirementIssued);
    Ok(DepositPayment {
        deposit_id: id,
        retry_headers: json!({"X-Crochet-Relay-Request-Id": requirement.request_id}),
        relay_request_id: requirement.request_id,
        provider: provider.name().to_owned(),
        amount_cents,
        currency,
        requirements: requirement.requirements,
    })
}

fn currency_of(req: &DepositRequest) -> Result<String, DepositError> {
    match req.currency.as_deref().map(str::trim) {
        None => Ok(balance::DEFAULT_CURRENCY.to_owned()),
        Some(c) if c.eq_ignore_ascii_case(balance::DEFAULT_CURRENCY) => {
            Ok(balance::DEFAULT_CURRENCY.to_owned())
        }
        Some(_) => Err(DepositError::Invalid {
            field: "currency",
            message: format!("must be {}", balance::DEFAULT_CURRENCY),
        }),
    }
}

async fn by_relay_id(
    db: &Database,
    profile_id: &str,
    relay_request_id: &str,
) -> sqlx::Result<Option<Row>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM balance_deposits WHERE relay_request_id = $1 AND profile_id = $2"
    )))
    .bind(relay_request_id)
    .bind(profile_id)
    .fetch_optional(db.pool())
    .await
}

/// How long a deposit is left to its owner's confirmation before the janitor asks.
pub const SWEEP_AFTER: std::time::Duration = std::time::Duration::from_secs(60);
/// How long after its creation the janitor keeps asking about a deposit.
pub const SWEEP_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Credits deposits whose payment settled but that nobody confirmed: those still
/// awaiting payment, created between [`SWEEP_FOR`] and `after` ago, at most 100 a sweep.
/// A failed payment marks its deposit failed; a pending one is asked about again next
/// time. Returns how many were credited.
pub async fn sweep(
    db: &Database,
    provider: &dyn PaymentProvider,
    after: std::time::Duration,
) -> Result<usize, DepositError> {
    let now = now_ms();
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let open: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM balance_deposits WHERE status = 'awaiting_payment' \
         AND created_at <= $1 AND created_at > $2 ORDER BY created_at LIMIT 100"
    )))
    .bind(now.saturating_sub(ms(after)))
    .bind(now.saturating_sub(ms(SWEEP_FOR)))
    .fetch_all(db.pool())
    .await?;
    let mut credited = 0;
    for row in open {
        let (profile, relay) = (row.profile_id.clone(), row.relay_request_id.clone());
        match confirm(db, provider, &profile, &relay, None).await {
            Ok(Confirmed::Credited(c)) if c.credited_now => {
                credited += 1;
                tracing::info!(
                    deposit_id = %c.deposit.id,
                    "credited a settled deposit its owner had not confirmed"
                );
            }
            Ok(_) | Err(DepositError::Failed(_)) => {}
            Err(e) => tracing::warn!(deposit_id = %row.id, error = %e, "could not check a deposit"),
        }
    }
    Ok(credited)
}

/// The caller's deposits, newest first (a paid deposit the client never confirmed is
/// found here by its `relay_request_id`), and how many there are.
pub async fn list(
    db: &Database,
    profile_id: &str,
    page: crate::storage::Page,
) -> sqlx::Result<(Vec<Deposit>, i64)> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM balance_deposits WHERE profile_id = $1 \
         ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    )))
    .bind(profile_id)
    .bind(i64::from(page.limit))
    .bind(page.offset())
    .fetch_all(db.pool())
    .await?;
    let total: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM balance_deposits WHERE profile_id = $1")
            .bind(profile_id)
            .fetch_one(db.pool())
            .await?;
    Ok((rows.into_iter().map(Into::into).collect(), total))
}

/// The confirming request: credits the deposit once its payment settled.
pub async fn confirm(
    db: &Database,
    provider: &dyn PaymentProvider,
    profile_id: &str,
    relay_request_id: &str,
    req: Option<&DepositRequest>,
) -> Result<Confirmed, DepositError> {
    let row = by_relay_id(db, profile_id, relay_request_id)
        .await?
        .ok_or(DepositError::NotFound)?;
    if let Some(amount) = req.and_then(|r| r.amount_cents)
        && amount != row.amount_cents
    {
        return Err(DepositError::AmountMismatch(row.amount_cents));
    }
    match row.status.as_str() {
        "credited" => return already(db, row).await,
        "failed" => {
            return Err(DepositError::Failed(
                "the provider reported it failed".into(),
            ));
        }
        _ => {}
    }
    let settlement = provider
        .settlement(&SettlementQuery {
            request_id: row.relay_request_id.clone(),
            amount_cents: row.amount_cents,
            currency: row.currency.clone(),
        })
        .await?;
    match settlement {
        Settlement::Pending {
            retry_after_seconds,
            provider_status,
        } => {
            crate::metrics::payment(provider.name(), PaymentEvent::Pending);
            Ok(Confirmed::Pending(PendingDeposit {
                status: "pending",
                retryable: true,
                retry_after_seconds,
                relay_request_id: row.relay_request_id,
                next_action: "retry_deposit_later",
                provider_status,
            }))
        }
        Settlement::Failed { reason, .. } => {
            crate::metrics::payment(provider.name(), PaymentEvent::Failed);
            sqlx::query(
                "UPDATE balance_deposits SET status = 'failed' WHERE id = $1 AND status = 'awaiting_payment'",
            )
            .bind(&row.id)
            .execute(db.pool())
            .await?;
            Err(DepositError::Failed(reason))
        }
        Settlement::Settled { .. } => {
            crate::metrics::payment(provider.name(), PaymentEvent::Settled);
            credit(db, row).await
        }
    }
}

/// Credits a settled deposit, once: the racing confirmation that loses the conditional
/// `UPDATE` answers with the deposit as the winner left it.
async fn credit(db: &Database, row: Row) -> Result<Confirmed, DepositError> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    let won = sqlx::query(
        "UPDATE balance_deposits SET status = 'credited', credited_at = $1 \
         WHERE id = $2 AND status = 'awaiting_payment'",
    )
    .bind(now)
    .bind(&row.id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !won {
        tx.rollback().await?;
        let row = by_relay_id(db, &row.profile_id, &row.relay_request_id)
            .await?
            .ok_or(DepositError::NotFound)?;
        return already(db, row).await;
    }
    balance::credit(
        &mut tx,
        &row.profile_id,
        &row.currency,
        row.amount_cents,
        now,
    )
    .await?;
    let entry = |kind, amount_cents| NewEntry {
        gateway_request_id: None,
        profile_id: Some(&row.profile_id),
        kind,
        amount_cents,
        currency: &row.currency,
        relay_request_id: Some(&row.relay_request_id),
        listing_id: None,
        now,
    };
    super::insert_all(
        &mut tx,
        &[
            entry(EntryType::DepositPayment, -row.amount_cents),
            entry(EntryType::Deposit, row.amount_cents),
        ],
    )
    .await?;
    tx.commit().await?;
    crate::metrics::deposit_credited(row.amount_cents);
    tracing::info!(deposit_id = %row.id, amount_cents = row.amount_cents, "deposit credited");
    let balance_cents = balance::of(db.pool(), &row.profile_id, &row.currency).await?;
    Ok(Confirmed::Credited(Box::new(DepositConfirmation {
        deposit: Deposit {
            status: "credited".into(),
            credited_at: Some(rfc3339(now)),
            ..Deposit::from(row)
        },
        credited_now: true,
        balance_cents,
    })))
}

async fn already(db: &Database, row: Row) -> Result<Confirmed, DepositError> {
    if row.status == "failed" {
        return Err(DepositError::Failed(
            "the provider reported it failed".into(),
        ));
    }
    let balance_cents = balance::of(db.pool(), &row.profile_id, &row.currency).await?;
    Ok(Confirmed::Credited(Box::new(DepositConfirmation {
        deposit: row.into(),
        credited_now: false,
        balance_cents,
    })))
}

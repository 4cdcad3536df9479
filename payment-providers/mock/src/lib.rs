//! The mock payment provider: settles per-call payments without moving money, for
//! development and tests. It never exists in `production` (the host refuses to start
//! with it there).
//!
//! Its requirements are `{"scheme": "mock", "amount_cents", "currency", "settle_url"}`;
//! the buyer completes a payment by `POST settle_url` with its API key and an optional
//! `{"outcome": "settled" | "pending" | "failed"}` (default `settled`). It applies the
//! same route minimum as Relay: EVM routes below 10 cents are refused, so the
//! `PAYMENT_ROUTE_MINIMUM_NOT_MET` path is testable without Relay.
//!
//! State lives in the host database (table `mock_payments`, created by the host's
//! migrations), so a restart loses nothing.

use async_trait::async_trait;
use crochet_payment::{
    EVM_ROUTE_MINIMUM_CENTS, PaymentChain, PaymentError, PaymentProvider, PaymentRequirement,
    RequirementRequest, Settlement, SettlementQuery,
};
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, FromRow};

/// What a buyer's `POST settle_url` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MockOutcome {
    #[default]
    Settled,
    Pending,
    Failed,
}

impl MockOutcome {
    fn status(self) -> &'static str {
        match self {
            MockOutcome::Settled => "settled",
            MockOutcome::Pending => "pending",
            MockOutcome::Failed => "failed",
        }
    }
}

/// One mock payment as stored.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct MockPayment {
    pub request_id: String,
    pub buyer_id: String,
    pub listing_id: String,
    pub seller_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub chain: String,
    pub origin_currency: Option<String>,
    /// `awaiting_payment`, `pending`, `settled` or `failed`.
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl MockPayment {
    fn is_final(&self) -> bool {
        self.status == "settled" || self.status == "failed"
    }
}

/// Why a settle request was refused.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// Unknown id, or not this buyer's payment (the two are not told apart).
    #[error("no such mock payment for this buyer")]
    NotFound,
    #[error("the mock payment is already {0}")]
    AlreadyFinal(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The mock provider.
#[derive(Clone)]
pub struct MockProvider {
    pool: AnyPool,
    public_url: String,
}

const COLUMNS: &str = "request_id, buyer_id, listing_id, seller_id, amount_cents, currency, chain, \
     origin_currency, status, created_at, updated_at";

impl MockProvider {
    /// `public_url` is the host's absolute base URL; settle URLs are built from it.
    pub fn new(pool: AnyPool, public_url: &str) -> Self {
        Self {
            pool,
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    /// The settle URL of a request id.
    pub fn settle_url(&self, request_id: &str) -> String {
        format!(
            "{}/api/v1/payments/mock/{request_id}/settle",
            self.public_url
        )
    }

    /// One payment, if it exists.
    pub async fn get(&self, request_id: &str) -> Result<Option<MockPayment>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM mock_payments WHERE request_id = $1"
        )))
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Completes (or stalls, or fails) a buyer's own mock payment. Settled and failed are
    /// final; repeating the same final outcome is a no-op.
    pub async fn settle(
        &self,
        request_id: &str,
        buyer_id: &str,
        outcome: MockOutcome,
    ) -> Result<MockPayment, MockError> {
        let current = self
            .get(request_id)
            .await?
            .filter(|p| p.buyer_id == buyer_id)
            .ok_or(MockError::NotFound)?;
        if current.is_final() {
            return if current.status == outcome.status() {
                Ok(current)
            } else {
                Err(MockError::AlreadyFinal(current.status))
            };
        }
        // Only a non-final payment moves; a racing settle of another outcome loses.
        let moved = sqlx::query(
            "UPDATE mock_payments SET status = $1, updated_at = $2 \
             WHERE request_id = $3 AND status IN ('awaiting_payment', 'pending')",
        )
        .bind(outcome.status())
        .bind(now_ms())
        .bind(request_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let after = self.get(request_id).await?.ok_or(MockError::NotFound)?;
        if moved == 0 && after.status != outcome.status() {
            return Err(MockError::AlreadyFinal(after.status));
        }
        Ok(after)
    }
}

#[async_trait]
impl PaymentProvider for MockProvider {
    fn name(&self) -> &'static str {
        "mock"
    }

    async fn create_requirement(
        &self,
        req: &RequirementRequest,
    ) -> Result<PaymentRequirement, PaymentError> {
        let chain = req.route.chain();
        if chain == PaymentChain::Evm && req.amount_cents < EVM_ROUTE_MINIMUM_CENTS {
            return Err(PaymentError::RouteMinimum {
                minimum_cents: Some(EVM_ROUTE_MINIMUM_CENTS),
                on_solana: false,
                message: format!(
                    "EVM routes need at least {EVM_ROUTE_MINIMUM_CENTS} cents; this call costs {} cents",
                    req.amount_cents
                ),
            });
        }
        if req.amount_cents <= 0 {
            return Err(PaymentError::UnsupportedRoute(
                "amount must be positive".into(),
            ));
        }
        let request_id = format!("mock_{}", uuid::Uuid::new_v4().simple());
        let now = now_ms();
        let chain_name = match chain {
            PaymentChain::Evm => "evm",
            PaymentChain::Solana => "solana",
        };
        let origin = req.route.origin_currency.map(|c| c.as_str());
        sqlx::query(
            "INSERT INTO mock_payments (request_id, buyer_id, listing_id, seller_id, amount_cents, currency, \
             chain, origin_currency, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'awaiting_payment', $9, $9)",
        )
        .bind(&request_id)
        .bind(&req.buyer_id)
        .bind(&req.listing_id)
        .bind(&req.seller_id)
        .bind(req.amount_cents)
        .bind(&req.currency)
        .bind(chain_name)
        .bind(origin)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| PaymentError::Unavailable(format!("mock provider storage: {e}")))?;
        Ok(PaymentRequirement {
            requirements: serde_json::json!({
                "scheme": "mock",
                "amount_cents": req.amount_cents,
                "currency": req.currency,
                "settle_url": self.settle_url(&request_id),
                "chain": chain_name,
                "origin_currency": origin,
            }),
            request_id,
        })
    }

    async fn settlement(&self, query: &SettlementQuery) -> Result<Settlement, PaymentError> {
        let payment = self
            .get(&query.request_id)
            .await
            .map_err(|e| PaymentError::Unavailable(format!("mock provider storage: {e}")))?
            .ok_or(PaymentError::UnknownRequest)?;
        if payment.amount_cents != query.amount_cents || payment.currency != query.currency {
            return Ok(Settlement::Failed {
                reason: "the mock payment was for a different amount".into(),
                refunded: false,
            });
        }
        Ok(match payment.status.as_str() {
            "settled" => Settlement::Settled {
                amount_cents: payment.amount_cents,
                currency: payment.currency,
                payer: Some(payment.buyer_id),
                tx_refs: vec![format!("mocktx_{}", payment.request_id)],
            },
            "failed" => Settlement::Failed {
                reason: "the mock payment failed".into(),
                refunded: false,
            },
            other => Settlement::Pending {
                retry_after_seconds: if other == "pending" { 2 } else { 5 },
                provider_status: other.to_owned(),
            },
        })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crochet_payment::{OriginCurrency, Route};

    async fn pool(path: &std::path::Path) -> AnyPool {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = AnyPool::connect(&url).await.unwrap();
        let exists = sqlx::query("SELECT 1 FROM mock_payments")
            .execute(&pool)
            .await
            .is_ok();
        if !exists {
            sqlx::raw_sql(include_str!("../../../migrations/sqlite/0003_payments.sql"))
                .execute(&pool)
                .await
                .unwrap();
        }
        pool
    }

    fn request(amount_cents: i64, currency: Option<OriginCurrency>) -> RequirementRequest {
        RequirementRequest {
            buyer_id: "buyer".into(),
            listing_id: "listing".into(),
            seller_id: "seller".into(),
            seller_payout: None,
            amount_cents,
            currency: "USD".into(),
            route: Route {
                origin_currency: currency,
                ..Route::default()
            },
        }
    }

    fn query(id: &str, amount_cents: i64) -> SettlementQuery {
        SettlementQuery {
            request_id: id.into(),
            amount_cents,
            currency: "USD".into(),
        }
    }

    #[tokio::test]
    async fn requirement_settle_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("m.db");
        let mock = MockProvider::new(pool(&db).await, "http://127.0.0.1:8080/");
        let req = mock
            .create_requirement(&request(100, Some(OriginCurrency::Sol)))
            .await
            .unwrap();
        assert!(req.request_id.starts_with("mock_"));
        assert_eq!(req.requirements["scheme"], "mock");
        assert_eq!(req.requirements["amount_cents"], 100);
        assert_eq!(req.requirements["currency"], "USD");
        assert_eq!(
            req.requirements["settle_url"],
            format!(
                "http://127.0.0.1:8080/api/v1/payments/mock/{}/settle",
                req.request_id
            )
        );
        let id = req.request_id;
        assert!(matches!(
            mock.settlement(&query(&id, 100)).await.unwrap(),
            Settlement::Pending { .. }
        ));
        assert!(matches!(
            mock.settle(&id, "someone-else", MockOutcome::Settled).await,
            Err(MockError::NotFound)
        ));
        mock.settle(&id, "buyer", MockOutcome::Pending)
            .await
            .unwrap();
        let p = mock.settlement(&query(&id, 100)).await.unwrap();
        assert_eq!(
            p,
            Settlement::Pending {
                retry_after_seconds: 2,
                provider_status: "pending".into()
            }
        );

        // A new provider on the same database file sees the same payment.
        let again = MockProvider::new(pool(&db).await, "http://127.0.0.1:8080");
        again
            .settle(&id, "buyer", MockOutcome::Settled)
            .await
            .unwrap();
        match again.settlement(&query(&id, 100)).await.unwrap() {
            Settlement::Settled {
                amount_cents,
                payer,
                tx_refs,
                ..
            } => {
                assert_eq!(amount_cents, 100);
                assert_eq!(payer.as_deref(), Some("buyer"));
                assert_eq!(tx_refs.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        // Final states do not move; repeating the same outcome is harmless.
        again
            .settle(&id, "buyer", MockOutcome::Settled)
            .await
            .unwrap();
        assert!(matches!(
            again.settle(&id, "buyer", MockOutcome::Failed).await,
            Err(MockError::AlreadyFinal(_))
        ));
        // A query for another amount is not this payment.
        assert!(matches!(
            again.settlement(&query(&id, 101)).await.unwrap(),
            Settlement::Failed { .. }
        ));
        assert_eq!(
            again.settlement(&query("mock_nope", 1)).await,
            Err(PaymentError::UnknownRequest)
        );
    }

    #[tokio::test]
    async fn failed_outcome_and_evm_minimum() {
        let dir = tempfile::tempdir().unwrap();
        let mock = MockProvider::new(pool(&dir.path().join("m.db")).await, "http://h");
        match mock
            .create_requirement(&request(5, Some(OriginCurrency::Usdc)))
            .await
        {
            Err(PaymentError::RouteMinimum {
                minimum_cents: Some(10),
                on_solana: false,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        // The same price on Solana is fine, and so is 10 cents on EVM.
        mock.create_requirement(&request(5, Some(OriginCurrency::Sol)))
            .await
            .unwrap();
        let r = mock
            .create_requirement(&request(10, Some(OriginCurrency::Eth)))
            .await
            .unwrap();
        mock.settle(&r.request_id, "buyer", MockOutcome::Failed)
            .await
            .unwrap();
        assert!(matches!(
            mock.settlement(&query(&r.request_id, 10)).await.unwrap(),
            Settlement::Failed {
                refunded: false,
                ..
            }
        ));
    }
}

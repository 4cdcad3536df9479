//! The buyer's marketplace balance: what it holds, and top-ups through the payment
//! provider. A call pays from it with [`crate::CallOptions::from_balance`].

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::time::Instant;

use crate::client::decode;
use crate::models::{Balance, Deposit, DepositConfirmation, PageQuery};
use crate::{Client, ClientError, Payer, Retry};

impl Client {
    /// The caller's balance: refunds of failed paid calls and top-ups, less the calls
    /// paid from it.
    pub async fn balance(&self) -> Result<Balance, ClientError> {
        decode(
            Self::data(self.request(Method::GET, "/balance")).await?,
            "balance",
        )
    }

    /// The caller's deposits, newest first, with their status and relay request id (to
    /// confirm one paid but never confirmed).
    pub async fn deposits(&self, page: PageQuery) -> Result<Vec<Deposit>, ClientError> {
        decode(
            Self::data(self.request(Method::GET, "/balance/deposits").query(&page)).await?,
            "deposits",
        )
    }

    /// Tops the balance up by `amount_cents`: asks for the deposit's payment, has
    /// `payer` pay it, and confirms until it is credited (waiting while it is pending,
    /// up to `deadline`). Confirming again is harmless: a deposit is credited once.
    pub async fn deposit(
        &self,
        amount_cents: i64,
        payer: &dyn Payer,
        deadline: Duration,
    ) -> Result<DepositConfirmation, ClientError> {
        let body = json!({ "amount_cents": amount_cents });
        let asked = Self::send(self.request(Method::POST, "/balance/deposits").json(&body)).await?;
        let code = asked.body["error"]["code"].as_str().unwrap_or_default();
        if (asked.status, code) != (402, "PAYMENT_REQUIRED") {
            return Err(ClientError::from_envelope(asked.status, &asked.body));
        }
        let relay_request_id = match payer
            .pay(self, &asked.body["error"]["details"]["payment"])
            .await?
        {
            Retry::Relay { relay_request_id } => relay_request_id,
            Retry::X402 { .. } => {
                return Err(ClientError::Unexpected {
                    status: 402,
                    message: "deposits are paid through the provider, not with x402".into(),
                });
            }
        };
        self.confirm_deposit(&relay_request_id, deadline).await
    }

    /// Confirms a paid deposit by its relay request id, waiting while it is pending.
    pub async fn confirm_deposit(
        &self,
        relay_request_id: &str,
        deadline: Duration,
    ) -> Result<DepositConfirmation, ClientError> {
        let until = Instant::now() + deadline;
        loop {
            let answer = Self::send(
                self.request(Method::POST, "/balance/deposits")
                    .header("X-Crochet-Relay-Request-Id", relay_request_id),
            )
            .await?;
            if answer.status != 202 {
                return decode(answer.data()?, "deposit");
            }
            let wait = answer.body["data"]["retry_after_seconds"]
                .as_u64()
                .unwrap_or(1)
                .max(1);
            if Instant::now() + Duration::from_secs(wait) > until {
                return Err(ClientError::PaymentPending {
                    retry_after_seconds: wait,
                    relay_request_id: Some(relay_request_id.to_owned()),
                    idempotency_key: String::new(),
                });
            }
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
    }
}

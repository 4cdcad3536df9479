//! The payment phase of a paid call: between the request adapter and the accounting
//! of the call.
//!
//! Without `X-Crochet-Relay-Request-Id` the provider issues a requirement (402), bound to
//! buyer, listing and body hash, and reused for a repeated `Idempotency-Key`. With one,
//! the provider reports whether it settled: pending (202), failed (402), or settled, and
//! then the call may be forwarded. A relay request id whose payment was already consumed
//! is either taken over (its earlier attempt never finished, see [`super::recovery`]) or
//! refused. Attempts that end here get a history row; no money moves. Each requirement
//! issued and each settlement answer is counted by provider (`crochet_payments_total`).
//!
//! With `X-Crochet-Pay-From: balance` there is no requirement and no round trip: the
//! call is paid from the buyer's balance when it is accounted. Its payment row (provider
//! `balance`, id `bal_…`) is written and consumed in the accounting transaction, beside
//! the balance's debit, so an `Idempotency-Key` repeat finds it and is never charged
//! twice, and recovery treats it like any settled payment.
//!
//! A key's limits ([`crate::identity::limits`]) are checked here before a payment is
//! asked for: its highest price, and whether its spend caps leave room for the price.
//! The caps are counted for real when the call is accounted.

use serde_json::{Value, json};

use super::Gateway;
use super::error::GatewayError;
use super::model::{GatewayRequestStatus as Status, PaymentObject, PendingPayment};
use super::pipeline::{GatewayCall, Result, Target, new_request_id};
use super::recorder::FinishedRequest;
use crate::identity::limits::{LimitRefusal, Spend};
use crate::metrics::PaymentEvent;
use crate::payments::{
    OriginCurrency, PaymentChain, PaymentError, RequirementRequest, Route, Settlement,
    SettlementQuery, WalletRef,
};
use crate::storage::now_ms;

/// The provider name of a payment made from the buyer's balance.
pub(super) const BALANCE_PROVIDER: &str = "balance";

/// What the payment phase decided, when it did not refuse the call.
pub(super) enum Verified {
    /// Settlement is pending: answer 202.
    Pending(PendingPayment),
    /// Settled: the call may be forwarded.
    Paid(Paid),
    /// An x402 payment, verified: the call may be forwarded, and is settled after.
    X402(Box<super::x402::X402Paid>),
}

/// A payment that may be forwarded.
pub(super) struct Paid {
    pub(super) relay_request_id: String,
    pub(super) charged_cents: i64,
    pub(super) currency: String,
    /// Paid from the buyer's balance: the payment row and the debit are written when
    /// the call is accounted.
    pub(super) from_balance: bool,
    /// Set when this attempt took over a call whose earlier attempt never finished: its
    /// row, ledger entries and receipt exist, and it is forwarded under the same id.
    pub(super) resumed: Option<Resumed>,
}

/// A call taken over from an attempt that never finished.
pub(super) struct Resumed {
    pub(super) request_id: String,
    pub(super) attempt: i64,
}

impl Gateway {
    /// Payment phase, for a paid listing only, after the request adapter and before the
    /// call is accounted. Writes the issued payment (and its idempotency key) when it
    /// asks for one, and a history row for an attempt that ends here; moves no money.
    pub(super) async fn payment(&self, call: &GatewayCall, target: &Target) -> Result<Verified> {
        let from_balance = call.pays_from_balance()?;
        let payment = match (&call.relay_request_id, &call.payment_signature) {
            (Some(_), Some(_)) => Err(GatewayError::ConflictingPayments),
            (Some(_), None) | (None, Some(_)) if from_balance => {
                Err(GatewayError::ConflictingPayments)
            }
            (None, None) if from_balance => self.balance_payment(call, target).await,
            (None, Some(_)) if call.buyer.limits.as_ref().is_some_and(|l| l.has_cap()) => {
                Err(GatewayError::KeyLimit(LimitRefusal::X402WithCap))
            }
            (None, Some(header)) => match self.within_price_limit(call, target) {
                Ok(()) => self
                    .x402_verify(call, target, header)
                    .await
                    .map(|p| Verified::X402(Box::new(p))),
                Err(e) => Err(e),
            },
            // A buyer known only by its wallet has no provider flow.
            (None, None) if call.buyer.api_key_id.is_empty() => Err(self
                .x402_only_payment(target.listing())
                .unwrap_or_else(|e| e)),
            (None, None) => Err(self
                .require_payment(call, target)
                .await
                .unwrap_or_else(|e| e)),
            (Some(id), None) => self.verify_payment(call, target, id).await,
        };
        match &payment {
            Ok(Verified::Paid(_) | Verified::X402(_)) => {}
            Ok(Verified::Pending(_)) => {
                self.record_attempt(call, target, Status::PaymentPending, None)
                    .await;
            }
            Err(e) => {
                if let Some((status, code)) = attempt_status(e) {
                    self.record_attempt(call, target, status, code).await;
                }
            }
        }
        payment
    }

    /// A history row for an attempt that ended before forwarding (no money moved).
    async fn record_attempt(
        &self,
        call: &GatewayCall,
        target: &Target,
        status: Status,
        error_code: Option<&'static str>,
    ) {
        self.recorder
            .record(FinishedRequest {
                id: new_request_id(),
                buyer_id: call.buyer.profile_id.clone(),
                seller_id: target.listing().seller_id.clone(),
                listing_id: target.listing().id.clone(),
                relay_request_id: call.relay_request_id.clone(),
                status,
                currency: target.listing().pricing_currency.clone(),
                request_bytes: i64::try_from(call.body.len()).unwrap_or(i64::MAX),
                request_sha256: target.body_sha256.clone(),
                response_bytes: None,
                response_sha256: None,
                seller_status_code: None,
                latency_ms: None,
                error_code,
                created_at: now_ms(),
            })
            .await;
    }

    /// A payment requirement (or the one an Idempotency-Key already has).
    /// Always returns the error to answer with: a 402, or why none could be issued.
    async fn require_payment(&self, call: &GatewayCall, target: &Target) -> Result<GatewayError> {
        let buyer = &call.buyer.profile_id;
        if let Some(key) = &call.idempotency_key
            && let Some(existing) =
                super::store::idempotent_payment(self.db.pool(), buyer, key).await?
        {
            return self.replay(existing, target);
        }
        self.affordable(call, target).await?;
        let route = self.route(call).await?;
        let req = RequirementRequest {
            buyer_id: buyer.clone(),
            listing_id: target.listing().id.clone(),
            seller_id: target.listing().seller_id.clone(),
            seller_payout: None,
            amount_cents: target.listing().price_cents,
            currency: target.listing().pricing_currency.clone(),
            route,
        };
        let provider = self.payments.provider();
        let requirement = provider
            .create_requirement(&req)
            .await
            .map_err(provider_error)?;
        let now = now_ms();
        let stored = super::store::NewPayment {
            request_id: &requirement.request_id,
            provider: provider.name(),
            buyer_id: buyer,
            listing_id: &target.listing().id,
            seller_id: &target.listing().seller_id,
            amount_cents: req.amount_cents,
            currency: &req.currency,
            body_sha256: &target.body_sha256,
            requirements: &requirement.requirements.to_string(),
            now,
        };
        let mut tx = self.db.begin().await?;
        super::store::insert_payment(&mut tx, &stored).await?;
        if let Some(key) = &call.idempotency_key
            && !super::store::insert_idempotency(
                &mut tx,
                buyer,
                key,
                &target.listing().id,
                &target.body_sha256,
                &requirement.request_id,
                now,
            )
            .await?
        {
            // A racing call with the same key won; answer with its payment.
            tx.rollback().await?;
            let existing = super::store::idempotent_payment(self.db.pool(), buyer, key)
                .await?
                .ok_or(GatewayError::IdempotencyConflict)?;
            return self.replay(existing, target);
        }
        tx.commit().await?;
        crate::metrics::payment(provider.name(), PaymentEvent::RequirementIssued);
        Ok(GatewayError::PaymentRequired(Box::new(
            self.payment_object(
                target,
                requirement.request_id,
                requirement.requirements,
                provider.name().to_owned(),
                (req.amount_cents, req.currency),
            ),
        )))
    }

    /// The price limit of the caller's key, if it has one.
    fn within_price_limit(&self, call: &GatewayCall, target: &Target) -> Result<()> {
        match &call.buyer.limits {
            Some(limits) => limits
                .allows_price(target.listing().price_cents)
                .map_err(GatewayError::KeyLimit),
            None => Ok(()),
        }
    }

    /// Whether the caller's key may pay this listing's price now: its price limit, and
    /// room under its caps given what it spent. Checked before a payment is asked for;
    /// the caps are counted atomically when the call is accounted.
    async fn affordable(&self, call: &GatewayCall, target: &Target) -> Result<()> {
        let Some(limits) = &call.buyer.limits else {
            return Ok(());
        };
        let spend = if limits.has_cap() {
            let mut conn = self.db.pool().acquire().await?;
            crate::identity::store::spend_of(&mut conn, &call.buyer.api_key_id)
                .await?
                .unwrap_or_default()
        } else {
            Spend::default()
        };
        limits
            .affords(target.listing().price_cents, &spend, now_ms())
            .map_err(GatewayError::KeyLimit)
    }

    /// A call paid from the balance: a repeat of its Idempotency-Key goes where the
    /// first call went; otherwise the key's limits and the balance are checked (the
    /// debit itself is made, atomically, when the call is accounted).
    async fn balance_payment(&self, call: &GatewayCall, target: &Target) -> Result<Verified> {
        let buyer = &call.buyer.profile_id;
        let listing = target.listing();
        if let Some(key) = &call.idempotency_key
            && let Some(existing) =
                super::store::idempotent_payment(self.db.pool(), buyer, key).await?
        {
            if existing.listing_id != listing.id
                || existing.body_sha256 != target.body_sha256
                || existing.provider != BALANCE_PROVIDER
            {
                return Err(GatewayError::IdempotencyConflict);
            }
            let gr = existing.gateway_request_id.clone().unwrap_or_default();
            return self.resume(target, existing, gr).await.map(Verified::Paid);
        }
        self.affordable(call, target).await?;
        let balance_cents =
            crate::ledger::balance::of(self.db.pool(), buyer, &listing.pricing_currency).await?;
        if balance_cents < listing.price_cents {
            return Err(GatewayError::InsufficientBalance {
                balance_cents,
                price_cents: listing.price_cents,
                currency: listing.pricing_currency.clone(),
            });
        }
        Ok(Verified::Paid(Paid {
            relay_request_id: format!("bal_{}", crate::storage::append_id().simple()),
            charged_cents: listing.price_cents,
            currency: listing.pricing_currency.clone(),
            from_balance: true,
            resumed: None,
        }))
    }

    /// Writes a balance payment's row (and its Idempotency-Key) in the accounting
    /// transaction, ready to be consumed by it. Returns the refusal when a racing call
    /// with the same Idempotency-Key got there first.
    pub(super) async fn issue_balance_payment(
        &self,
        tx: &mut sqlx::AnyConnection,
        call: &GatewayCall,
        target: &Target,
        paid: &Paid,
        now: i64,
    ) -> Result<Option<GatewayError>> {
        let listing = target.listing();
        let buyer = &call.buyer.profile_id;
        let row = super::store::NewPayment {
            request_id: &paid.relay_request_id,
            provider: BALANCE_PROVIDER,
            buyer_id: buyer,
            listing_id: &listing.id,
            seller_id: &listing.seller_id,
            amount_cents: paid.charged_cents,
            currency: &paid.currency,
            body_sha256: &target.body_sha256,
            requirements: "{}",
            now,
        };
        super::store::insert_payment(tx, &row).await?;
        if let Some(key) = &call.idempotency_key
            && !super::store::insert_idempotency(
                tx,
                buyer,
                key,
                &listing.id,
                &target.body_sha256,
                &paid.relay_request_id,
                now,
            )
            .await?
        {
            return Ok(Some(GatewayError::IdempotencyInFlight));
        }
        Ok(None)
    }

    /// The 402 an Idempotency-Key already produced, if it was for this listing and body.
    fn replay(&self, p: super::store::PaymentRow, target: &Target) -> Result<GatewayError> {
        if p.listing_id != target.listing().id
            || p.body_sha256 != target.body_sha256
            || p.provider == BALANCE_PROVIDER
        {
            return Err(GatewayError::IdempotencyConflict);
        }
        if let Some(gr) = p.gateway_request_id.filter(|_| p.status == "consumed") {
            return Err(GatewayError::PaymentConsumed(gr));
        }
        Ok(GatewayError::PaymentRequired(Box::new(
            self.payment_object(
                target,
                p.request_id,
                serde_json::from_str(&p.requirements).unwrap_or(Value::Null),
                p.provider,
                (p.amount_cents, p.currency),
            ),
        )))
    }

    /// The payment object of a 402: the provider's requirement, and the x402 offer when
    /// x402 is on.
    fn payment_object(
        &self,
        target: &Target,
        request_id: String,
        requirements: Value,
        provider: String,
        (amount_cents, currency): (i64, String),
    ) -> PaymentObject {
        let listing = target.listing();
        let x402 = self.x402_offer(listing, "PAYMENT-SIGNATURE header is required");
        let mut flows = vec![provider.clone()];
        if x402.is_some() {
            flows.push("x402".into());
        }
        PaymentObject {
            retry_headers: json!({"X-Crochet-Relay-Request-Id": request_id}),
            relay_request_id: Some(request_id),
            requirements,
            amount_cents,
            currency,
            provider,
            flows,
            x402,
        }
    }

    /// The payment route from the `X-Crochet-Origin-*` headers and the buyer's wallets.
    async fn route(&self, call: &GatewayCall) -> Result<Route> {
        let origin_currency = match call.origin_currency.as_deref() {
            None => None,
            Some(v) => {
                Some(
                    OriginCurrency::parse(v).ok_or_else(|| GatewayError::InvalidRoute {
                        header: "X-Crochet-Origin-Currency",
                        message: "must be USDC, ETH or SOL".into(),
                    })?,
                )
            }
        };
        let origin_chain_id = match call.origin_chain_id.as_deref() {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| GatewayError::InvalidRoute {
                        header: "X-Crochet-Origin-Chain-Id",
                        message: "must be a numeric chain id".into(),
                    })?,
            ),
        };
        let wallets: Vec<WalletRef> = self
            .identity
            .payment_wallets(&call.buyer.profile_id)
            .await
            .map_err(|e| GatewayError::ProviderUnavailable(e.to_string()))?
            .into_iter()
            .map(crate::payments::wallet_ref)
            .collect();
        let payer =
            match call.origin_wallet_id.as_deref() {
                Some(id) => Some(wallets.iter().find(|w| w.id == id).cloned().ok_or_else(
                    || GatewayError::InvalidRoute {
                        header: "X-Crochet-Origin-Wallet-Id",
                        message: "is not an active payment wallet of this profile".into(),
                    },
                )?),
                None => {
                    // Pay from a wallet on the chosen chain; with no choice, prefer Solana.
                    let probe = Route {
                        origin_currency,
                        origin_chain_id,
                        payer: None,
                    };
                    let wanted = if origin_currency.is_none() && origin_chain_id.is_none() {
                        PaymentChain::Solana
                    } else {
                        probe.chain()
                    };
                    wallets
                        .iter()
                        .find(|w| w.chain == wanted)
                        .or(wallets.first())
                        .cloned()
                }
            };
        Ok(Route {
            origin_currency,
            origin_chain_id,
            payer,
        })
    }

    /// The settlement of a relay request id. A payment already consumed goes to
    /// [`Gateway::resume`].
    async fn verify_payment(
        &self,
        call: &GatewayCall,
        target: &Target,
        id: &str,
    ) -> Result<Verified> {
        let payment = super::store::payment(self.db.pool(), id)
            .await?
            .filter(|p| p.buyer_id == call.buyer.profile_id && p.listing_id == target.listing().id)
            .ok_or(GatewayError::PaymentNotFound)?;
        if payment.body_sha256 != target.body_sha256 {
            return Err(GatewayError::BodyMismatch);
        }
        if let Some(gr) = payment
            .gateway_request_id
            .clone()
            .filter(|_| payment.status == "consumed")
        {
            return self.resume(target, payment, gr).await.map(Verified::Paid);
        }
        let query = SettlementQuery {
            request_id: payment.request_id.clone(),
            amount_cents: payment.amount_cents,
            currency: payment.currency.clone(),
        };
        let provider = self.payments.provider();
        let settlement = provider.settlement(&query).await.map_err(provider_error)?;
        let event = match &settlement {
            Settlement::Pending { .. } => PaymentEvent::Pending,
            Settlement::Failed { .. } => PaymentEvent::Failed,
            Settlement::Settled { .. } => PaymentEvent::Settled,
        };
        crate::metrics::payment(provider.name(), event);
        match settlement {
            Settlement::Pending {
                retry_after_seconds,
                provider_status,
            } => Ok(Verified::Pending(PendingPayment {
                status: "pending",
                retryable: true,
                retry_after_seconds,
                relay_request_id: payment.request_id,
                next_action: "retry_gateway_payment_later",
                provider_status,
            })),
            Settlement::Failed { reason, refunded } => {
                Err(GatewayError::PaymentFailed { reason, refunded })
            }
            Settlement::Settled { .. } => Ok(Verified::Paid(Paid {
                relay_request_id: payment.request_id,
                charged_cents: payment.amount_cents,
                currency: payment.currency,
                from_balance: false,
                resumed: None,
            })),
        }
    }
}

/// The history status of a payment-phase refusal (`None`: not recorded, e.g. a bad header).
fn attempt_status(e: &GatewayError) -> Option<(Status, Option<&'static str>)> {
    Some(match e {
        GatewayError::PaymentRequired(_) => (Status::PaymentRequired, None),
        GatewayError::PaymentFailed { .. } => (Status::PaymentFailed, Some("PAYMENT_FAILED")),
        GatewayError::RouteMinimum { .. } => (
            Status::PaymentRouteRefused,
            Some("PAYMENT_ROUTE_MINIMUM_NOT_MET"),
        ),
        GatewayError::PaymentConsumed(_) => {
            (Status::PaymentAlreadyUsed, Some("PAYMENT_ALREADY_USED"))
        }
        GatewayError::BodyMismatch => (Status::PaymentBodyMismatch, Some("PAYMENT_BODY_MISMATCH")),
        GatewayError::X402Invalid { .. } => (Status::PaymentRejected, Some("PAYMENT_INVALID")),
        GatewayError::PayerNotLinked { .. } => {
            (Status::PaymentRejected, Some("PAYER_WALLET_NOT_LINKED"))
        }
        _ => return None,
    })
}

/// The gateway's form of a payment provider's error.
pub(crate) fn provider_error(e: PaymentError) -> GatewayError {
    match e {
        PaymentError::RouteMinimum {
            minimum_cents,
            on_solana,
            message,
        } => GatewayError::RouteMinimum {
            on_solana,
            minimum_cents,
            message,
        },
        PaymentError::UnsupportedRoute(m) => GatewayError::UnsupportedRoute(m),
        PaymentError::UnknownRequest => GatewayError::PaymentNotFound,
        PaymentError::RateLimited {
            retry_after_seconds,
        } => GatewayError::ProviderRateLimited(retry_after_seconds),
        PaymentError::Unavailable(m) | PaymentError::Misconfigured(m) => {
            GatewayError::ProviderUnavailable(m)
        }
    }
}

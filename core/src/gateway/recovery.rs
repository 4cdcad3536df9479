//! Recovery of paid calls that a crash interrupted.
//!
//! A paid call is accounted before it is forwarded: one transaction consumes the payment
//! and writes the request row (state `forwarding`), the three ledger entries and the
//! receipt. If the host dies before the row gets its outcome (kill -9, out of memory,
//! power), the row would stay `forwarding` with the buyer charged. Three rules resolve it:
//!
//! 1. **Leases.** The attempt that forwards a call holds a lease on its row: the host
//!    instance ([`Recovery::instance`]), an expiry of the endpoint's timeout plus
//!    `[gateway] lease_grace_seconds`, and an attempt number. Only the attempt holding
//!    the row may record its outcome.
//! 2. **Retries take over.** A retry of the same payment (same relay request id, buyer,
//!    listing and body) while the lease is live gets 409 `GATEWAY_REQUEST_IN_PROGRESS`
//!    with the seconds left. Once the lease has passed, the first retry takes the row
//!    over (one conditional `UPDATE`, so racing retries cannot both win) and forwards the
//!    call again under the **same** `X-Crochet-Request-Id`. No new ledger entry or
//!    receipt is written: delivery to the seller is at least once, accounting exactly
//!    once. Sellers use the request id as their idempotency key.
//! 3. **The janitor resolves the rest.** A row still `forwarding`
//!    `[gateway] interrupted_after_seconds` after its lease passed is marked
//!    `interrupted`, and in the same transaction its charge is undone by mirrored ledger
//!    entries (`gateway_refund`, `seller_credit_reversal`, `marketplace_fee_reversal`).
//!    The buyer sees the state in `GET /gateway-requests`, the reversal in `GET /ledger`,
//!    and the receipt's `status` becomes `reversed`; a later retry gets 409
//!    `GATEWAY_REQUEST_INTERRUPTED` and nothing is forwarded.
//!
//! Free calls write their history row only after the forward (through the batched
//! recorder), so a crash never leaves one `forwarding`; it can lose the rows still
//! queued, which move no money.

use std::time::Duration;

use super::Gateway;
use super::error::GatewayError;
use super::model::GatewayRequestStatus as Status;
use super::payment::{Paid, Resumed};
use super::pipeline::Target;
use super::store::{self, CallState, PaymentRow};
use crate::storage::now_ms;

/// Operator settings of recovery (`[gateway]` in the configuration).
#[derive(Debug, Clone)]
pub struct RecoverySettings {
    /// Added to the endpoint's timeout to make a forwarding lease.
    pub lease_grace: Duration,
    /// How long after its lease an unfinished, unretried call is resolved.
    pub interrupted_after: Duration,
    /// A test-only crash point (see [`FaultPoint`]); `None` in every normal run.
    pub fault: Option<FaultPoint>,
}

impl Default for RecoverySettings {
    fn default() -> Self {
        Self {
            lease_grace: Duration::from_secs(30),
            interrupted_after: Duration::from_secs(900),
            fault: None,
        }
    }
}

/// Where a test makes the host abort, to prove recovery from a crash at that line.
/// Only set from `CROCHET_TEST_FAULT_POINT`, which a development host reads at start-up
/// and a production host refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// Right after a paid call's accounting transaction commits, before the seller is
    /// called (`after_accounting`).
    AfterAccounting,
}

impl FaultPoint {
    /// The environment variable that names a fault point.
    pub const ENV: &'static str = "CROCHET_TEST_FAULT_POINT";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "after_accounting" => Some(Self::AfterAccounting),
            _ => None,
        }
    }
}

/// This instance's identity and the recovery settings, shared by every call.
#[derive(Debug)]
pub struct Recovery {
    instance: String,
    pub(super) settings: RecoverySettings,
}

impl Recovery {
    pub fn new(settings: RecoverySettings) -> Self {
        Self {
            instance: format!("inst_{}", uuid::Uuid::new_v4().simple()),
            settings,
        }
    }

    /// This host instance, as recorded in the leases it holds.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// How long an attempt that forwards with `timeout` holds its call.
    pub fn lease_ms(&self, timeout: Duration) -> i64 {
        i64::try_from((timeout + self.settings.lease_grace).as_millis()).unwrap_or(i64::MAX)
    }

    /// Aborts the process if a test asked for a crash at `point`.
    pub fn fault_point(&self, point: FaultPoint) {
        if self.settings.fault == Some(point) {
            tracing::error!(?point, "aborting at a test fault point");
            std::process::abort();
        }
    }

    /// How often the janitor looks for abandoned calls: often enough to resolve them
    /// within about a quarter of `interrupted_after`, at most once a second, at least
    /// once a minute.
    pub fn sweep_interval(&self) -> Duration {
        (self.settings.interrupted_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }
}

/// Why a retry of a consumed payment cannot forward now.
fn refusal(request_id: String, state: Option<&CallState>, now: i64) -> GatewayError {
    match state.map(|s| (s.status, s.lease_until)) {
        Some((Status::Forwarding, lease_until)) => GatewayError::CallInProgress {
            request_id,
            retry_after_seconds: u64::try_from((lease_until.unwrap_or(0) - now).max(0))
                .unwrap_or(0)
                .div_ceil(1000)
                .max(1),
        },
        Some((Status::Interrupted, _)) => GatewayError::CallInterrupted(request_id),
        _ => GatewayError::PaymentConsumed(request_id),
    }
}

impl Gateway {
    /// The payment phase for a payment already consumed by `request_id`: takes the call over if
    /// its earlier attempt never finished and its lease has passed; otherwise says why
    /// not (in progress, interrupted, or already used).
    pub(super) async fn resume(
        &self,
        target: &Target,
        payment: PaymentRow,
        request_id: String,
    ) -> Result<Paid, GatewayError> {
        let pool = self.db.pool();
        let now = now_ms();
        let state = store::call_state(pool, &request_id).await?;
        let Some(seen) = state
            .as_ref()
            .filter(|s| s.status == Status::Forwarding && s.lease_until.unwrap_or(0) <= now)
        else {
            return Err(refusal(request_id, state.as_ref(), now));
        };
        let lease_until = now + self.recovery.lease_ms(target.endpoint().timeout);
        let Some(attempt) = store::take_over(
            pool,
            &request_id,
            seen,
            self.recovery.instance(),
            now,
            lease_until,
        )
        .await?
        else {
            // Another retry won, or the janitor resolved it: say which.
            let state = store::call_state(pool, &request_id).await?;
            return Err(refusal(request_id, state.as_ref(), now));
        };
        tracing::info!(
            gateway_request_id = %request_id,
            attempt,
            "taking over a paid call whose earlier attempt never finished"
        );
        Ok(Paid {
            from_balance: payment.provider == super::payment::BALANCE_PROVIDER,
            relay_request_id: payment.request_id,
            charged_cents: payment.amount_cents,
            currency: payment.currency,
            resumed: Some(Resumed {
                request_id,
                attempt,
            }),
        })
    }

    /// After a forward whose outcome could not be recorded because the call was resolved
    /// meanwhile: an interrupted (and reversed) call is refused; one finished by a later
    /// attempt keeps this attempt's answer.
    pub(super) async fn resolved_meanwhile(&self, request_id: &str) -> Result<(), GatewayError> {
        let state = store::call_state(self.db.pool(), request_id).await?;
        tracing::warn!(
            gateway_request_id = %request_id,
            status = state.as_ref().map(|s| s.status.as_str()),
            "a forwarding attempt finished after its call was resolved"
        );
        match state {
            Some(s) if s.status == Status::Interrupted => {
                Err(GatewayError::CallInterrupted(request_id.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// Resolves calls still `forwarding` long after their lease passed: each is marked
    /// `interrupted` and its charge reversed, in one transaction per call. Returns how
    /// many were resolved.
    pub async fn resolve_interrupted(&self) -> Result<usize, GatewayError> {
        let interrupted_after =
            i64::try_from(self.recovery.settings.interrupted_after.as_millis()).unwrap_or(i64::MAX);
        let mut resolved = 0;
        loop {
            let now = now_ms();
            let cutoff = now.saturating_sub(interrupted_after);
            let batch = store::abandoned(self.db.pool(), cutoff, 100).await?;
            if batch.is_empty() {
                return Ok(resolved);
            }
            let mut progressed = false;
            for id in &batch {
                let mut tx = self.db.begin().await?;
                if !store::mark_interrupted(&mut tx, id, cutoff, now).await? {
                    tx.rollback().await?;
                    continue;
                }
                let refunded = store::reverse_charge(&mut tx, id, now).await?;
                tx.commit().await?;
                // The charge's entries followed the fee rule, so their mirrors do too.
                crate::metrics::charge_reversed(refunded, crate::ledger::fee_cents(refunded));
                tracing::warn!(
                    gateway_request_id = %id,
                    refunded_cents = refunded,
                    "resolved an interrupted call: its charge is reversed"
                );
                resolved += 1;
                progressed = true;
            }
            if !progressed || batch.len() < 100 {
                return Ok(resolved);
            }
        }
    }

    /// Runs [`Self::resolve_interrupted`], [`Self::resolve_x402`] and the sweep of
    /// unconfirmed deposits ([`crate::ledger::deposits::sweep`]) now and then every
    /// [`Recovery::sweep_interval`], until aborted.
    pub fn spawn_recovery_janitor(&self) -> tokio::task::JoinHandle<()> {
        let gateway = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(gateway.recovery.sweep_interval());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = gateway.resolve_interrupted().await {
                    tracing::warn!(error = %e, "could not resolve interrupted calls");
                }
                if let Err(e) = gateway.resolve_x402().await {
                    tracing::warn!(error = %e, "could not resolve open x402 payments");
                }
                let provider = gateway.payments.provider().as_ref();
                let after = crate::ledger::deposits::SWEEP_AFTER;
                if let Err(e) = crate::ledger::deposits::sweep(&gateway.db, provider, after).await {
                    tracing::warn!(error = %e, "could not check unconfirmed deposits");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_is_told_why_it_cannot_forward() {
        let state = |status, lease_until| CallState {
            status,
            lease_until,
            attempts: 1,
        };
        let id = || "gw_req_1".to_owned();
        match refusal(id(), Some(&state(Status::Forwarding, Some(10_500))), 1_000) {
            GatewayError::CallInProgress {
                retry_after_seconds,
                ..
            } => assert_eq!(retry_after_seconds, 10),
            other => panic!("{other:?}"),
        }
        // A lease that passed a moment ago (a racing retry won it): retry in a second.
        assert!(matches!(
            refusal(id(), Some(&state(Status::Forwarding, Some(900))), 1_000),
            GatewayError::CallInProgress {
                retry_after_seconds: 1,
                ..
            }
        ));
        assert!(matches!(
            refusal(id(), Some(&state(Status::Interrupted, None)), 1_000),
            GatewayError::CallInterrupted(_)
        ));
        assert!(matches!(
            refusal(id(), Some(&state(Status::Completed, None)), 1_000),
            GatewayError::PaymentConsumed(_)
        ));
        assert!(matches!(
            refusal(id(), None, 1_000),
            GatewayError::PaymentConsumed(_)
        ));
    }

    #[test]
    fn leases_outlast_the_endpoint_timeout() {
        let r = Recovery::new(RecoverySettings::default());
        assert_eq!(r.lease_ms(Duration::from_secs(30)), 60_000);
        assert!(r.instance().starts_with("inst_"));
        assert_eq!(r.sweep_interval(), Duration::from_secs(60));
        let quick = Recovery::new(RecoverySettings {
            interrupted_after: Duration::from_secs(2),
            ..RecoverySettings::default()
        });
        assert_eq!(quick.sweep_interval(), Duration::from_secs(1));
    }
}

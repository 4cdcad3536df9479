//! x402 payments of the gateway: a paid listing's offer, and a retry paid with
//! `PAYMENT-SIGNATURE`, which is verified before the forward and **settled only when
//! the seller answered 2xx JSON**.
//!
//! The life of one payment, kept in its `x402_payments` row:
//!
//! 1. **Check** (payment phase): the payload is decoded and checked offline against the
//!    listing's offer for its network (version, scheme, network, asset, amount,
//!    `payTo`, the validity window, and on EVM the EIP-712 signature). A keyed buyer
//!    must pay from one of its linked wallets, unless the operator allows any payer.
//! 2. **Seen before?** A payment whose nonce (network, asset, payer, nonce) is stored,
//!    or an idempotency key (`Idempotency-Key`, else the `payment-identifier`
//!    extension's id) that already paid for a call, is refused with
//!    `PAYMENT_ALREADY_USED` (or `IDEMPOTENCY_KEY_REUSED` for another listing or body).
//! 3. **Verify**: the facilitator's `/verify`. No answer: nothing was written, and the
//!    buyer may retry the same payment.
//! 4. **Claim**: the row is inserted as `verified` (with a keyless buyer's wallet-only
//!    profile, the first time). Nonce and idempotency key are unique, so of retries
//!    racing past step 2 exactly one inserts; the others get `PAYMENT_ALREADY_USED`.
//! 5. **Forward**, exactly once, under the gateway request id the claim fixed.
//! 6. **Settle**: a good answer moves the row to `settling` (with the answer's sizes
//!    and hashes), then the facilitator's `/settle`. Settled: in one transaction the row
//!    becomes `settled` and the call gets its history row, ledger entries, receipt and
//!    score event, as a relay payment does. Refused: `settle_failed`, the answer is
//!    withheld, the history row says `served_unpaid`. A seller that failed: `not_settled`,
//!    nothing is settled, and the buyer's authorization expires unused.
//!
//! `/settle` is never retried once it may have reached the facilitator. When its answer
//! is lost (or the host stops while the row is `settling`), the row stays `settling` and
//! the buyer is told so; the janitor ([`Gateway::resolve_x402`]) settles it again once
//! `[gateway] lease_grace_seconds` passed. Settling one authorization twice cannot move
//! money twice (an EIP-3009 nonce is spent once on chain), so the second answer is a
//! success (the facilitator remembered it) or a refusal; a refusal then cannot tell
//! "never settled" from "settled the first time", so the row becomes `unconfirmed`,
//! logged for the operator to reconcile against the chain. A row left `verified` by a
//! crash is `abandoned` after `[gateway] interrupted_after_seconds`: nothing was settled.

use std::time::{SystemTime, UNIX_EPOCH};

use crochet_payment_x402::facilitator::FacilitatorError;
use crochet_payment_x402::networks::{self, Family};
use crochet_payment_x402::{
    ExactEvmPayload, PaymentPayload, PaymentRequired, PaymentRequirements, ResourceInfo,
    SettleResponse, decode_header, encode_header,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, AnyPool, FromRow};

use super::Gateway;
use super::error::GatewayError;
use super::model::{
    ChargedAmount, Fees, GatewayRequestStatus as Status, GatewaySuccess, PaymentObject,
    PaymentStatus,
};
use super::pipeline::{Answered, GatewayCall, Outcome, Result, Target};
use super::recorder::FinishedRequest;
use crate::catalog::store::ListingRow;
use crate::identity::Principal;
use crate::identity::crypto::Chain;
use crate::ledger::{self, FEE_RATE, fee_cents};
use crate::metrics::PaymentEvent;
use crate::payments::x402::X402;
use crate::reputation::events::{self, ScoreEvent};
use crate::seller_client::signing;
use crate::storage::now_ms;

/// The name payments of this flow are counted under (`crochet_payments_total`).
const FLOW: &str = "x402";

/// A signed authorization must stay valid this long beyond the seller's timeout, so
/// that it can still be settled once the seller answered.
const SETTLE_MARGIN_SECS: u64 = 15;

/// A verified x402 payment whose call is being forwarded.
pub(super) struct X402Paid {
    pub(super) id: String,
    pub(super) gateway_request_id: String,
    pub(super) payload: PaymentPayload,
    pub(super) requirements: PaymentRequirements,
    pub(super) payer: String,
    pub(super) amount_cents: i64,
    pub(super) currency: String,
}

/// The buyer of a keyless x402 call, told by the wallet that signed the payment.
pub struct KeylessBuyer {
    pub principal: Principal,
    /// Set when no registered agent links the wallet: its wallet-only profile is
    /// written once the facilitator verified the payment.
    pub wallet_only: Option<String>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The wallet-only buyer profile of an EVM address: a fixed id derived from it, so
/// every purchase from the wallet is the same buyer's.
fn wallet_only_id(address: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"crochet x402 wallet-only buyer\0")
        .chain_update(address.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

fn invalid(reason: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::X402Invalid {
        reason: reason.to_owned(),
        message: message.into(),
        offer: None,
    }
}

/// Decodes a `PAYMENT-SIGNATURE` header.
fn decode(header: &str) -> Result<PaymentPayload> {
    decode_header::<PaymentPayload>(header)
        .map_err(|e| invalid("invalid_payload", format!("PAYMENT-SIGNATURE: {e}")))
}

impl Gateway {
    fn x402(&self) -> Option<&X402> {
        self.payments.x402()
    }

    /// What a paid listing is, as an x402 resource.
    fn resource(&self, listing: &ListingRow) -> ResourceInfo {
        ResourceInfo {
            url: format!("{}/api/v1/gateway/{}", self.issuer, listing.id),
            description: Some(listing.name.clone()),
            mime_type: Some("application/json".into()),
        }
    }

    /// The x402 offer of a paid listing, when x402 is on and some network can carry
    /// its price.
    pub(super) fn x402_offer(&self, listing: &ListingRow, error: &str) -> Option<PaymentRequired> {
        let x402 = self.x402()?;
        let offer = x402.payment_required(self.resource(listing), listing.price_cents, error);
        (!offer.accepts.is_empty()).then_some(offer)
    }

    /// The payment object of a 402 that offers x402 only (a buyer without an API key).
    pub(super) fn x402_only_payment(&self, listing: &ListingRow) -> Result<GatewayError> {
        let offer = self
            .x402_offer(listing, "PAYMENT-SIGNATURE header is required")
            .ok_or(GatewayError::X402NotOffered(
                "no offered network can carry this listing's price",
            ))?;
        Ok(GatewayError::PaymentRequired(Box::new(PaymentObject {
            relay_request_id: None,
            requirements: serde_json::to_value(&offer).unwrap_or(Value::Null),
            retry_headers: json!({"PAYMENT-SIGNATURE": "<base64 x402 PaymentPayload>"}),
            amount_cents: listing.price_cents,
            currency: listing.pricing_currency.clone(),
            provider: FLOW.into(),
            flows: vec![FLOW.into()],
            x402: Some(offer),
        })))
    }

    /// The 402 of a paid listing for a caller without an API key: x402 only. A free
    /// listing, or x402 turned off (or keyless x402), needs an API key instead (`None`).
    pub async fn keyless_offer(&self, listing_ref: &str) -> Option<Result<GatewayError>> {
        let x402 = self.x402()?;
        if !x402.keyless() {
            return None;
        }
        let resolved = match self.callable(listing_ref).await {
            Ok(resolved) => resolved,
            Err(e) => return Some(Err(e)),
        };
        let listing = &resolved.listing;
        if listing.pricing_model() == crate::catalog::PricingModel::Free {
            return None;
        }
        Some(self.x402_only_payment(listing))
    }

    /// The buyer of a call paid with x402 and no API key: the registered agent that
    /// links the paying wallet, else that wallet's own buyer. Only the payload's shape is
    /// checked here; the payment phase checks the payment itself before a wallet-only
    /// buyer's profile is written. `None`: keyless x402 is off.
    pub async fn keyless_buyer(&self, header: &str) -> Option<Result<KeylessBuyer>> {
        let x402 = self.x402()?;
        if !x402.keyless() {
            return None;
        }
        Some(self.keyless_buyer_of(header).await)
    }

    async fn keyless_buyer_of(&self, header: &str) -> Result<KeylessBuyer> {
        let payload = decode(header)?;
        if !matches!(
            networks::family(&payload.accepted.network),
            Some(Family::Evm { .. })
        ) {
            return Err(invalid(
                "invalid_network",
                "a payment without an API key must be made on an EVM network (the paying wallet identifies the buyer); send an API key to pay on Solana",
            ));
        }
        let evm: ExactEvmPayload = serde_json::from_value(payload.payload.clone())
            .map_err(|e| invalid("invalid_payload", format!("payload: {e}")))?;
        let payer = crochet_payment_x402::evm::parse_address(&evm.authorization.from)
            .map(|a| crochet_payment_x402::evm::address_hex(&a))
            .map_err(|e| invalid("invalid_payload", e.to_string()))?;
        match self
            .identity
            .payer(Chain::Evm, &payer)
            .await
            .map_err(|e| invalid("invalid_payload", e.to_string()))?
        {
            Some(principal) => Ok(KeylessBuyer {
                principal,
                wallet_only: None,
            }),
            None => Ok(KeylessBuyer {
                principal: Principal::wallet_only(
                    wallet_only_id(&payer),
                    crate::identity::Role::Buyer,
                ),
                wallet_only: Some(payer),
            }),
        }
    }

    /// Payment phase of a retry with `PAYMENT-SIGNATURE`: check, verify and claim.
    pub(super) async fn x402_verify(
        &self,
        call: &GatewayCall,
        target: &Target,
        header: &str,
    ) -> Result<X402Paid> {
        let x402 = self.x402().ok_or(GatewayError::X402NotOffered(
            "x402 is not enabled on this marketplace",
        ))?;
        let listing = target.listing();
        let with_offer = |e: GatewayError| match e {
            GatewayError::X402Invalid {
                reason, message, ..
            } => GatewayError::X402Invalid {
                reason,
                message,
                offer: self
                    .x402_offer(listing, "the payment was refused; sign a new one")
                    .map(Box::new),
            },
            other => other,
        };
        let payload = decode(header).map_err(with_offer)?;
        let requirements = x402
            .requirement_for(&payload.accepted.network, listing.price_cents)
            .ok_or_else(|| {
                with_offer(invalid(
                    "invalid_network",
                    format!(
                        "network `{}` is not offered for this listing",
                        payload.accepted.network
                    ),
                ))
            })?;
        let min_remaining = target.endpoint().timeout.as_secs() + SETTLE_MARGIN_SECS;
        let (payer, nonce) = match networks::family(&requirements.network) {
            Some(Family::Evm { .. }) => {
                let check = crochet_payment_x402::evm::check_exact_evm(
                    &payload,
                    &requirements,
                    now_secs(),
                    min_remaining,
                )
                .map_err(|e| {
                    with_offer(GatewayError::X402Invalid {
                        reason: e.reason.to_owned(),
                        message: e.message,
                        offer: None,
                    })
                })?;
                (Some(check.payer), check.nonce)
            }
            _ => {
                // A Solana payment is a partly signed transaction that only the
                // facilitator can take apart: check what it says it accepted, and key it
                // by the transaction itself.
                if !same_requirements(&payload.accepted, &requirements) {
                    return Err(with_offer(invalid(
                        "invalid_payment_requirements",
                        "the payment's `accepted` does not match the offer for its network",
                    )));
                }
                let tx = payload.payload.to_string();
                (None, hex::encode(Sha256::digest(tx.as_bytes())))
            }
        };
        if let Some(payer) = &payer {
            self.check_payer(x402, &call.buyer, payer).await?;
        }
        let idempotency_key = call
            .idempotency_key
            .clone()
            .or_else(|| payment_identifier(&payload));
        let id = format!("x402_{}", crate::storage::append_id().simple());
        let gateway_request_id = super::pipeline::new_request_id();
        let payer_key = payer.clone().unwrap_or_default();
        let nonce_key = format!(
            "{}|{}|{}|{}",
            requirements.network,
            requirements.asset.to_ascii_lowercase(),
            payer_key,
            nonce
        );
        // A payment (or key) seen before is refused without asking the facilitator.
        if let Some(refusal) = self
            .seen(&nonce_key, call, target, idempotency_key.as_deref())
            .await?
        {
            return Err(refusal);
        }
        let verified = x402
            .facilitator()
            .verify(&payload, &requirements)
            .await
            .map_err(|e| {
                GatewayError::ProviderUnavailable(format!(
                    "the x402 facilitator could not verify the payment: {e}"
                ))
            })?;
        let payer = match (verified.is_valid, payer, verified.payer) {
            (true, Some(local), _) => local,
            // A Solana payer is known once the facilitator read the transaction.
            (true, None, Some(reported)) => {
                self.check_payer(x402, &call.buyer, &reported).await?;
                reported
            }
            (valid, _, _) => {
                let reason = verified
                    .invalid_reason
                    .filter(|_| !valid)
                    .unwrap_or_else(|| "invalid_payload".into());
                crate::metrics::payment(FLOW, PaymentEvent::Failed);
                return Err(with_offer(invalid(
                    &reason,
                    "the facilitator refused the payment",
                )));
            }
        };
        let now = now_ms();
        let row = NewRow {
            id: &id,
            nonce_key: &nonce_key,
            gateway_request_id: &gateway_request_id,
            buyer_id: &call.buyer.profile_id,
            listing,
            idempotency_key: idempotency_key.as_deref(),
            requirements: &requirements,
            payer: &payer,
            body_sha256: &target.body_sha256,
            request_bytes: call.body.len(),
            payload: &serde_json::to_string(&payload).unwrap_or_default(),
            now,
        };
        // The claim: of racing retries of one payment (or key), one inserts its row.
        let claimed = match &call.keyless_wallet {
            None => store::claim(self.db.pool(), &row).await?,
            Some(address) => {
                let mut tx = self.db.begin().await?;
                store::insert_wallet_buyer(&mut tx, &call.buyer.profile_id, address, now).await?;
                let claimed = store::claim(&mut *tx, &row).await?;
                tx.commit().await?;
                claimed
            }
        };
        if !claimed {
            return Err(self
                .seen(&nonce_key, call, target, idempotency_key.as_deref())
                .await?
                .unwrap_or_else(|| {
                    GatewayError::ProviderUnavailable(
                        "a concurrent attempt with this payment did not finish; retry".into(),
                    )
                }));
        }
        Ok(X402Paid {
            id,
            gateway_request_id,
            payload,
            requirements,
            payer,
            amount_cents: listing.price_cents,
            currency: listing.pricing_currency.clone(),
        })
    }

    /// A keyed buyer pays from a wallet of its own, unless the operator allows any.
    async fn check_payer(&self, x402: &X402, buyer: &Principal, payer: &str) -> Result<()> {
        if buyer.api_key_id.is_empty() || x402.any_payer() {
            return Ok(());
        }
        let wallets = self
            .identity
            .payment_wallets(&buyer.profile_id)
            .await
            .map_err(|e| GatewayError::ProviderUnavailable(e.to_string()))?;
        // EVM addresses compare without case; Solana's base58 ones exactly.
        let same = |address: &str| match payer.starts_with("0x") {
            true => address.eq_ignore_ascii_case(payer),
            false => address == payer,
        };
        if wallets.iter().any(|w| same(&w.wallet_address)) {
            Ok(())
        } else {
            Err(GatewayError::PayerNotLinked {
                payer: payer.to_owned(),
            })
        }
    }

    /// Why this payment cannot be used: it (or its idempotency key) already paid for a
    /// call, or the key did for another listing or body. `None`: neither is taken.
    async fn seen(
        &self,
        nonce_key: &str,
        call: &GatewayCall,
        target: &Target,
        idempotency_key: Option<&str>,
    ) -> Result<Option<GatewayError>> {
        if let Some(row) = store::by_nonce(self.db.pool(), nonce_key).await? {
            return Ok(Some(GatewayError::PaymentConsumed(row.gateway_request_id)));
        }
        if let Some(key) = idempotency_key
            && let Some(row) =
                store::by_idempotency(self.db.pool(), &call.buyer.profile_id, key).await?
        {
            if row.listing_id != target.listing().id || row.body_sha256 != target.body_sha256 {
                return Ok(Some(GatewayError::IdempotencyConflict));
            }
            return Ok(Some(GatewayError::PaymentConsumed(row.gateway_request_id)));
        }
        Ok(None)
    }

    /// After the seller's answer: settle a good one and answer with it, or leave the
    /// payment unsettled.
    pub(super) async fn x402_finish(
        &self,
        call: &GatewayCall,
        target: &Target,
        paid: X402Paid,
        answered: Answered,
    ) -> Result<Outcome> {
        let listing = target.listing();
        let facts = ResponseFacts::of(&answered);
        let Some(response) = answered.response.filter(|_| answered.code.is_none()) else {
            // The seller failed: nothing is settled.
            store::set_status(self.db.pool(), &paid.id, &["verified"], "not_settled", None).await?;
            self.recorder
                .record(history_row(
                    call,
                    target,
                    &paid,
                    answered.status,
                    answered.code,
                    &facts,
                ))
                .await;
            let context = json!({
                "request_id": paid.gateway_request_id,
                "listing_id": listing.id,
                "relay_request_id": paid.id,
                "charged_amount": {"amount_cents": 0, "currency": paid.currency},
                "payment_settled": false,
                "x402": "the payment was not settled: the authorization expires unused",
                "seller_endpoint_called": true,
                "seller_status_code": facts.seller_status_code,
            });
            return Err(GatewayError::SellerFailed {
                code: answered.code.unwrap_or("SELLER_REQUEST_FAILED"),
                message: answered.message,
                paid: false,
                context: Box::new(context),
            });
        };
        if !store::mark_settling(self.db.pool(), &paid.id, &facts).await? {
            return Err(GatewayError::X402SettlementFailed {
                gateway_request_id: paid.gateway_request_id.clone(),
                reason: "abandoned".into(),
                response: Box::new(failed_settlement(&paid, "abandoned")),
            });
        }
        let settled = self
            .x402()
            .ok_or(GatewayError::X402NotOffered("x402 was turned off"))?
            .facilitator()
            .settle(&paid.payload, &paid.requirements)
            .await;
        let settled = match settled {
            Ok(s) if s.success => s,
            Ok(s) => {
                let reason = s
                    .error_reason
                    .clone()
                    .unwrap_or_else(|| "settlement_failed".into());
                return Err(self
                    .served_unpaid(call, target, &paid, &facts, reason, s)
                    .await?);
            }
            Err(FacilitatorError::Unreachable(m)) => {
                tracing::warn!(x402_payment = %paid.id, error = %m, "x402: the facilitator was unreachable for /settle");
                let reason = "facilitator_unreachable".to_owned();
                let s = failed_settlement(&paid, &reason);
                return Err(self
                    .served_unpaid(call, target, &paid, &facts, reason, s)
                    .await?);
            }
            Err(e) => {
                store::count_settle_attempt(self.db.pool(), &paid.id).await?;
                tracing::warn!(x402_payment = %paid.id, error = %e, "x402: the answer of /settle was lost; the janitor settles it again");
                crate::metrics::payment(FLOW, PaymentEvent::Pending);
                return Err(GatewayError::X402SettlementUnconfirmed(
                    paid.gateway_request_id.clone(),
                ));
            }
        };
        let row = store::row(self.db.pool(), &paid.id)
            .await?
            .ok_or(GatewayError::PaymentNotFound)?;
        if !self.record_settlement(&row, &settled).await? {
            // The janitor settled it meanwhile; the answer is the same.
            tracing::info!(x402_payment = %paid.id, "x402: settled by another attempt");
        }
        crate::metrics::payment(FLOW, PaymentEvent::Settled);
        let fee = fee_cents(paid.amount_cents);
        Ok(Outcome::Forwarded(Box::new(GatewaySuccess {
            request_id: paid.gateway_request_id,
            listing_id: listing.id.clone(),
            billable: true,
            payment: Some(PaymentStatus {
                status: "settled",
                relay_request_id: paid.id,
                flow: Some(FLOW),
                transaction: Some(settled.transaction.clone()),
                network: Some(settled.network.clone()),
                payer: Some(paid.payer),
            }),
            charged_amount: ChargedAmount {
                amount_cents: paid.amount_cents,
                currency: paid.currency,
            },
            fees: Fees {
                fee_rate: FEE_RATE,
                fee_amount_cents: fee,
                seller_receives_cents: paid.amount_cents - fee,
            },
            seller_status_code: response.status,
            seller_response: serde_json::from_slice(&response.body)
                .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned()),
            payment_response: Some(encode_header(&settled)),
        })))
    }

    /// A settlement refused after the seller answered: the answer is withheld and the
    /// history row says the call was served unpaid.
    async fn served_unpaid(
        &self,
        call: &GatewayCall,
        target: &Target,
        paid: &X402Paid,
        facts: &ResponseFacts,
        reason: String,
        response: SettleResponse,
    ) -> Result<GatewayError> {
        store::set_status(
            self.db.pool(),
            &paid.id,
            &["settling"],
            "settle_failed",
            Some(&reason),
        )
        .await?;
        crate::metrics::payment(FLOW, PaymentEvent::Failed);
        self.recorder
            .record(history_row(
                call,
                target,
                paid,
                Status::ServedUnpaid,
                Some("PAYMENT_SETTLEMENT_FAILED"),
                facts,
            ))
            .await;
        Ok(GatewayError::X402SettlementFailed {
            gateway_request_id: paid.gateway_request_id.clone(),
            reason,
            response: Box::new(response),
        })
    }

    /// Writes a settled payment's outcome in one transaction: the row becomes
    /// `settled`, the call gets its history row, ledger entries, receipt and score
    /// event. False when the row was no longer `settling` (settled by another attempt).
    async fn record_settlement(&self, row: &Row, settled: &SettleResponse) -> Result<bool> {
        let now = now_ms();
        let fee = fee_cents(row.amount_cents);
        let mut tx = self.db.begin().await?;
        if !store::mark_settled(&mut tx, &row.id, &settled.transaction, now).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        store::insert_settled_request(&mut tx, row, fee, now).await?;
        let call = ledger::SettledCall {
            gateway_request_id: &row.gateway_request_id,
            buyer_id: &row.buyer_id,
            seller_id: &row.seller_id,
            listing_id: &row.listing_id,
            relay_request_id: &row.id,
            charged_cents: row.amount_cents,
            currency: &row.currency,
            now,
            from_balance: false,
        };
        ledger::record_settled_call(&mut tx, &call).await?;
        let receipt = ledger::receipts::ReceiptFacts {
            gateway_request_id: &row.gateway_request_id,
            listing_id: &row.listing_id,
            buyer_id: &row.buyer_id,
            seller_id: &row.seller_id,
            relay_request_id: &row.id,
            charged_cents: row.amount_cents,
            fee_cents: fee,
            currency: &row.currency,
            issuer: &self.issuer,
            now,
        };
        ledger::receipts::issue(&mut tx, &self.receipts, &receipt).await?;
        let event = ScoreEvent {
            id: &row.gateway_request_id,
            kind: crate::reputation::events::EventKind::CallSucceeded,
            subject_id: &row.seller_id,
            actor_id: &row.buyer_id,
            listing_id: &row.listing_id,
            gateway_request_id: Some(&row.gateway_request_id),
            n: 1,
            amount_cents: row.amount_cents,
            rating: None,
            created_at: now,
        };
        events::record(&mut tx, &event).await?;
        tx.commit().await?;
        crate::metrics::call_charged(row.amount_cents, fee, false);
        Ok(true)
    }

    /// Resolves x402 payments a crash or a lost answer left open: a `settling` one is
    /// settled again (see the module docs), a `verified` one is abandoned. Returns how many were resolved.
    pub async fn resolve_x402(&self) -> Result<usize> {
        let Some(x402) = self.x402() else {
            return Ok(0);
        };
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        let settings = &self.recovery.settings;
        let settling = store::stale(
            self.db.pool(),
            &["settling"],
            now - ms(settings.lease_grace),
        );
        let open = store::stale(
            self.db.pool(),
            &["verified"],
            now - ms(settings.interrupted_after),
        );
        let (settling, open) = tokio::join!(settling, open);
        let mut resolved = 0;
        for row in open?.into_iter().chain(settling?) {
            if row.status != "settling" {
                if store::set_status(self.db.pool(), &row.id, &["verified"], "abandoned", None)
                    .await?
                {
                    tracing::warn!(x402_payment = %row.id, "x402: abandoned a payment whose call never finished; nothing was settled");
                    resolved += 1;
                }
                continue;
            }
            let (Ok(payload), Ok(requirements)) = (
                serde_json::from_str::<PaymentPayload>(&row.payload),
                serde_json::from_str::<PaymentRequirements>(&row.requirements),
            ) else {
                continue;
            };
            match x402.facilitator().settle(&payload, &requirements).await {
                Ok(s) if s.success => {
                    if self.record_settlement(&row, &s).await? {
                        tracing::info!(x402_payment = %row.id, "x402: settled a payment whose answer was lost");
                        resolved += 1;
                    }
                }
                Ok(s) => {
                    // A row still `settling` had its settlement sent (or its host stopped
                    // right before or after sending it): a refusal now may mean that the
                    // first one went through.
                    let reason = s.error_reason.unwrap_or_else(|| "settlement_failed".into());
                    if store::set_status(
                        self.db.pool(),
                        &row.id,
                        &["settling"],
                        "unconfirmed",
                        Some(&reason),
                    )
                    .await?
                    {
                        crate::metrics::payment(FLOW, PaymentEvent::Failed);
                        tracing::error!(x402_payment = %row.id, lost_answers = row.settle_attempts, reason = %reason, "x402: a settlement left open was refused when sent again; reconcile it against the chain");
                        resolved += 1;
                    }
                }
                Err(FacilitatorError::NoAnswer(_)) => {
                    store::count_settle_attempt(self.db.pool(), &row.id).await?;
                }
                Err(e) => {
                    tracing::warn!(x402_payment = %row.id, error = %e, "x402: cannot settle again yet");
                }
            }
        }
        Ok(resolved)
    }
}

/// The `payment-identifier` extension's id, when the payload carries one.
fn payment_identifier(payload: &PaymentPayload) -> Option<String> {
    let id = payload
        .extensions
        .as_ref()?
        .get("payment-identifier")?
        .get("info")?
        .get("id")?
        .as_str()?;
    let ok = (16..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| format!("x402:{id}"))
}

/// Whether a payload's `accepted` is the offer (addresses compared case-insensitively).
fn same_requirements(a: &PaymentRequirements, b: &PaymentRequirements) -> bool {
    a.scheme == b.scheme
        && a.network == b.network
        && a.amount == b.amount
        && a.asset.eq_ignore_ascii_case(&b.asset)
        && a.pay_to.eq_ignore_ascii_case(&b.pay_to)
}

/// The settle response told to a buyer when the facilitator gave none.
fn failed_settlement(paid: &X402Paid, reason: &str) -> SettleResponse {
    SettleResponse {
        success: false,
        error_reason: Some(reason.to_owned()),
        payer: Some(paid.payer.clone()),
        transaction: String::new(),
        network: paid.requirements.network.clone(),
        amount: None,
    }
}

/// The seller's answer as the history keeps it: sizes and hashes, never the body.
pub(super) struct ResponseFacts {
    response_bytes: Option<i64>,
    response_sha256: Option<String>,
    seller_status_code: Option<i64>,
    latency_ms: i64,
}

impl ResponseFacts {
    fn of(answered: &Answered) -> Self {
        let r = answered.response.as_ref();
        Self {
            response_bytes: r.map(|r| i64::try_from(r.body.len()).unwrap_or(i64::MAX)),
            response_sha256: r.map(|r| signing::body_sha256(&r.body)),
            seller_status_code: r.map(|r| i64::from(r.status)),
            latency_ms: answered.latency_ms,
        }
    }
}

/// The history row of an x402 call that was not charged.
fn history_row(
    call: &GatewayCall,
    target: &Target,
    paid: &X402Paid,
    status: Status,
    error_code: Option<&'static str>,
    facts: &ResponseFacts,
) -> FinishedRequest {
    let listing = target.listing();
    FinishedRequest {
        id: paid.gateway_request_id.clone(),
        buyer_id: call.buyer.profile_id.clone(),
        seller_id: listing.seller_id.clone(),
        listing_id: listing.id.clone(),
        relay_request_id: Some(paid.id.clone()),
        status,
        currency: paid.currency.clone(),
        request_bytes: i64::try_from(call.body.len()).unwrap_or(i64::MAX),
        request_sha256: target.body_sha256.clone(),
        response_bytes: facts.response_bytes,
        response_sha256: facts.response_sha256.clone(),
        seller_status_code: facts.seller_status_code,
        latency_ms: Some(facts.latency_ms),
        error_code,
        created_at: now_ms(),
    }
}

/// A claim of one payment.
struct NewRow<'a> {
    id: &'a str,
    nonce_key: &'a str,
    gateway_request_id: &'a str,
    buyer_id: &'a str,
    listing: &'a ListingRow,
    idempotency_key: Option<&'a str>,
    requirements: &'a PaymentRequirements,
    payer: &'a str,
    body_sha256: &'a str,
    request_bytes: usize,
    payload: &'a str,
    now: i64,
}

/// An x402 payment as stored.
#[derive(Debug, Clone, FromRow)]
pub(super) struct Row {
    id: String,
    gateway_request_id: String,
    buyer_id: String,
    listing_id: String,
    seller_id: String,
    amount_cents: i64,
    currency: String,
    body_sha256: String,
    request_bytes: i64,
    payload: String,
    requirements: String,
    status: String,
    settle_attempts: i64,
    response_bytes: Option<i64>,
    response_sha256: Option<String>,
    seller_status_code: Option<i64>,
    latency_ms: Option<i64>,
    created_at: i64,
}

/// SQL of `x402_payments` and `x402_buyers`.
mod store {
    use super::*;

    const COLUMNS: &str = "id, gateway_request_id, buyer_id, listing_id, seller_id, amount_cents, currency, \
         body_sha256, request_bytes, payload, requirements, status, settle_attempts, response_bytes, \
         response_sha256, seller_status_code, latency_ms, created_at";

    /// Inserts a verified payment (`verified`); false when the payment or the
    /// idempotency key is already claimed.
    pub(super) async fn claim(
        conn: impl sqlx::Executor<'_, Database = sqlx::Any>,
        r: &NewRow<'_>,
    ) -> sqlx::Result<bool> {
        Ok(sqlx::query(
            "INSERT INTO x402_payments (id, nonce_key, gateway_request_id, buyer_id, listing_id, seller_id, \
             idempotency_key, network, asset, payer, amount_atomic, amount_cents, currency, body_sha256, \
             request_bytes, payload, requirements, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, 'verified', $18, $18) \
             ON CONFLICT DO NOTHING",
        )
        .bind(r.id)
        .bind(r.nonce_key)
        .bind(r.gateway_request_id)
        .bind(r.buyer_id)
        .bind(&r.listing.id)
        .bind(&r.listing.seller_id)
        .bind(r.idempotency_key)
        .bind(&r.requirements.network)
        .bind(&r.requirements.asset)
        .bind(r.payer)
        .bind(&r.requirements.amount)
        .bind(r.listing.price_cents)
        .bind(&r.listing.pricing_currency)
        .bind(r.body_sha256)
        .bind(i64::try_from(r.request_bytes).unwrap_or(i64::MAX))
        .bind(r.payload)
        .bind(serde_json::to_string(r.requirements).unwrap_or_default())
        .bind(r.now)
        .execute(conn)
        .await?
        .rows_affected()
            == 1)
    }

    /// Who holds a claim.
    #[derive(FromRow)]
    pub(super) struct Claim {
        pub(super) gateway_request_id: String,
        pub(super) listing_id: String,
        pub(super) body_sha256: String,
    }

    pub(super) async fn by_nonce(pool: &AnyPool, nonce_key: &str) -> sqlx::Result<Option<Claim>> {
        sqlx::query_as(
            "SELECT gateway_request_id, listing_id, body_sha256 FROM x402_payments WHERE nonce_key = $1",
        )
        .bind(nonce_key)
        .fetch_optional(pool)
        .await
    }

    pub(super) async fn by_idempotency(
        pool: &AnyPool,
        buyer_id: &str,
        key: &str,
    ) -> sqlx::Result<Option<Claim>> {
        sqlx::query_as(
            "SELECT gateway_request_id, listing_id, body_sha256 FROM x402_payments \
             WHERE buyer_id = $1 AND idempotency_key = $2",
        )
        .bind(buyer_id)
        .bind(key)
        .fetch_optional(pool)
        .await
    }

    pub(super) async fn row(pool: &AnyPool, id: &str) -> sqlx::Result<Option<Row>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM x402_payments WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(pool)
        .await
    }

    /// Moves a row from one of `from` to `to`; false when it was in none of them.
    pub(super) async fn set_status(
        pool: &AnyPool,
        id: &str,
        from: &[&str],
        to: &str,
        reason: Option<&str>,
    ) -> sqlx::Result<bool> {
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 5)).collect();
        let sql = format!(
            "UPDATE x402_payments SET status = $1, error_reason = COALESCE($2, error_reason), updated_at = $3 \
             WHERE id = $4 AND status IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to)
            .bind(reason)
            .bind(now_ms())
            .bind(id);
        for s in from {
            q = q.bind(*s);
        }
        Ok(q.execute(pool).await?.rows_affected() == 1)
    }

    /// `verified` → `settling`, keeping the seller's answer as sizes and hashes.
    pub(super) async fn mark_settling(
        pool: &AnyPool,
        id: &str,
        f: &ResponseFacts,
    ) -> sqlx::Result<bool> {
        Ok(sqlx::query(
            "UPDATE x402_payments SET status = 'settling', response_bytes = $1, response_sha256 = $2, \
             seller_status_code = $3, latency_ms = $4, updated_at = $5 WHERE id = $6 AND status = 'verified'",
        )
        .bind(f.response_bytes)
        .bind(f.response_sha256.as_deref())
        .bind(f.seller_status_code)
        .bind(f.latency_ms)
        .bind(now_ms())
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected()
            == 1)
    }

    pub(super) async fn count_settle_attempt(pool: &AnyPool, id: &str) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE x402_payments SET settle_attempts = settle_attempts + 1, updated_at = $1 WHERE id = $2",
        )
        .bind(now_ms())
        .bind(id)
        .execute(pool)
        .await?;
        Ok(())
    }

    pub(super) async fn mark_settled(
        conn: &mut AnyConnection,
        id: &str,
        transaction: &str,
        now: i64,
    ) -> sqlx::Result<bool> {
        Ok(sqlx::query(
            "UPDATE x402_payments SET status = 'settled', transaction_ref = $1, updated_at = $2 \
             WHERE id = $3 AND status = 'settling'",
        )
        .bind(transaction)
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected()
            == 1)
    }

    /// The history row of a settled call, complete.
    pub(super) async fn insert_settled_request(
        conn: &mut AnyConnection,
        r: &Row,
        fee: i64,
        now: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO gateway_requests (id, buyer_id, seller_id, listing_id, relay_request_id, status, billable, \
             charged_cents, fee_cents, seller_cents, currency, request_bytes, request_sha256, response_bytes, \
             response_sha256, seller_status_code, latency_ms, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'completed', 1, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(&r.gateway_request_id)
        .bind(&r.buyer_id)
        .bind(&r.seller_id)
        .bind(&r.listing_id)
        .bind(&r.id)
        .bind(r.amount_cents)
        .bind(fee)
        .bind(r.amount_cents - fee)
        .bind(&r.currency)
        .bind(r.request_bytes)
        .bind(&r.body_sha256)
        .bind(r.response_bytes)
        .bind(r.response_sha256.as_deref())
        .bind(r.seller_status_code)
        .bind(r.latency_ms)
        .bind(r.created_at)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Writes a wallet-only buyer's profile (once per wallet).
    pub(super) async fn insert_wallet_buyer(
        conn: &mut AnyConnection,
        profile_id: &str,
        address: &str,
        now: i64,
    ) -> sqlx::Result<()> {
        let name = format!("x402 buyer {address}");
        sqlx::query(
            "INSERT INTO profiles (id, display_name, role, status, created_at, updated_at) \
             VALUES ($1, $2, 'buyer', 'active', $3, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(profile_id)
        .bind(name)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO x402_buyers (address, profile_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (address) DO NOTHING",
        )
        .bind(address)
        .bind(profile_id)
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Rows in one of `statuses` last touched before `cutoff`, oldest first (a hundred
    /// at a time).
    pub(super) async fn stale(
        pool: &AnyPool,
        statuses: &[&str],
        cutoff: i64,
    ) -> sqlx::Result<Vec<Row>> {
        let placeholders: Vec<String> =
            (0..statuses.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT {COLUMNS} FROM x402_payments WHERE updated_at < $1 AND status IN ({}) \
             ORDER BY updated_at LIMIT 100",
            placeholders.join(", ")
        );
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(cutoff);
        for s in statuses {
            q = q.bind(*s);
        }
        q.fetch_all(pool).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wallet_only_buyer_has_one_fixed_profile_id() {
        let a = wallet_only_id("0x857b06519e91e3a54538791bdbb0e22373e36b66");
        assert_eq!(
            a,
            wallet_only_id("0x857b06519e91e3a54538791bdbb0e22373e36b66")
        );
        assert_ne!(
            a,
            wallet_only_id("0x0000000000000000000000000000000000000001")
        );
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }

    #[test]
    fn payment_identifiers_are_checked_and_namespaced() {
        let mut p: PaymentPayload = serde_json::from_value(json!({
            "x402Version": 2,
            "accepted": {"scheme": "exact", "network": "eip155:8453", "amount": "1", "asset": "0x", "payTo": "0x", "maxTimeoutSeconds": 60},
            "payload": {},
            "extensions": {"payment-identifier": {"info": {"required": false, "id": "pay_7d5d747be160e280"}}}
        }))
        .unwrap();
        assert_eq!(
            payment_identifier(&p).as_deref(),
            Some("x402:pay_7d5d747be160e280")
        );
        p.extensions = Some(json!({"payment-identifier": {"info": {"id": "short"}}}));
        assert_eq!(payment_identifier(&p), None);
        p.extensions =
            Some(json!({"payment-identifier": {"info": {"id": "has spaces in it, sixteen+"}}}));
        assert_eq!(payment_identifier(&p), None);
    }
}

//! The pay-per-call pipeline of `POST /gateway/{listing_id}`. [`Gateway::call`] runs a
//! call through its phases in order, each a method that says when it runs and what it
//! may change:
//!
//! 1. `resolve`: active listing of a seller in good standing, usable endpoint, a JSON
//!    body within the endpoint's limit. The buyer was authenticated by the HTTP
//!    extractor before.
//! 2. `policy`: the operator's policy plugins, before any payment exists, so a refused
//!    call is never charged.
//! 3. `adapt_request` (see `adapter.rs`): the listing's seller adapter reshapes the
//!    body; a body it rejects is refused here, still before payment.
//! 4. `payment` (paid listings only, see `payment.rs`): a 402 requirement, a 202 while
//!    settlement is pending, or a settled payment.
//! 5. `account`: a settled payment is consumed by one conditional `UPDATE`, in the
//!    transaction that writes its ledger entries, its signed receipt and its request
//!    row, so however many retries race, exactly one forwards. The row is leased to
//!    this attempt ([`super::recovery`]).
//! 6. `sign_and_send`: the exact (adapted) body is signed and sent through the guarded
//!    client ([`crate::seller_client`]).
//! 7. `classify` and `adapt_response` (`adapter.rs`): the seller's answer becomes an
//!    outcome, and the adapter reshapes a good one.
//! 8. `record`: the request row gets the outcome (sizes, hashes, status, latency; never
//!    bodies) and the seller's score its event.
//! 9. `reply`: the buyer's answer.
//!
//! What a call's log line and metrics need beyond its result (the listing it resolved
//! to, the seller's status) is gathered in [`CallFacts`] as it runs; the HTTP handler
//! writes the line. Money counters move here and in recovery, after the commit.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::Gateway;
use super::adapter::Adapter;
use super::error::GatewayError;
use super::model::{GatewayRequestStatus as Status, *};
use super::payment::{Paid, Verified};
use super::recorder::FinishedRequest;
use super::recovery::FaultPoint;
use super::x402::X402Paid;
use crate::catalog::store::ListingRow;
use crate::catalog::{ListingForCall, ListingStatus, PricingModel, ResolvedEndpoint};
use crate::identity::Principal;
use crate::identity::limits::{LimitRefusal, ListingFacts};
use crate::ledger::{self, FEE_RATE, fee_cents};
use crate::plugins::{Attempt, CallKind, PaymentFlow};
use crate::reputation::events::{self, ScoreEvent};
use crate::seller_client::signing::{self, SignedHeaders};
use crate::seller_client::upstream::{
    EndpointUrlError, UpstreamError, UpstreamRequest, UpstreamResponse,
};
use crate::storage::now_ms;

pub(super) type Result<T, E = GatewayError> = std::result::Result<T, E>;

/// One buyer call, as the HTTP layer hands it over.
pub struct GatewayCall {
    pub buyer: Principal,
    pub listing_ref: String,
    /// The buyer's exact body, forwarded without a copy.
    pub body: Bytes,
    pub relay_request_id: Option<String>,
    /// x402's `PAYMENT-SIGNATURE` (base64 JSON), for a call paid with x402.
    pub payment_signature: Option<String>,
    /// For a keyless x402 call from a wallet no agent links: that wallet, whose
    /// wallet-only buyer profile is written once the payment is verified.
    pub keyless_wallet: Option<String>,
    pub idempotency_key: Option<String>,
    /// `X-Crochet-Pay-From` as sent: `balance` pays from the buyer's balance.
    pub pay_from: Option<String>,
    pub origin_currency: Option<String>,
    pub origin_chain_id: Option<String>,
    pub origin_wallet_id: Option<String>,
    /// The client's address, for policies.
    pub client_ip: std::net::IpAddr,
    /// The request headers the policies are shown (`plugins.forward_headers`).
    pub policy_headers: Vec<(String, String)>,
}

impl GatewayCall {
    /// Whether the buyer pays from its balance (`X-Crochet-Pay-From: balance`).
    pub(super) fn pays_from_balance(&self) -> Result<bool> {
        match self.pay_from.as_deref() {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("balance") => Ok(true),
            Some(_) => Err(GatewayError::InvalidPayFrom),
        }
    }
}

/// What a call's log line and metrics report beyond its result, gathered as it runs.
#[derive(Default)]
pub struct CallFacts {
    /// The listing the call resolved to (none when resolve refused it).
    pub listing: Option<Arc<ListingForCall>>,
    /// The seller's HTTP status, when it answered.
    pub seller_status: Option<u16>,
}

/// A call's result that is not an error.
pub enum Outcome {
    /// 200: forwarded and answered.
    Forwarded(Box<GatewaySuccess>),
    /// 202: settlement pending.
    Pending(PendingPayment),
}

/// What the resolve phase found, and the request adapter made of the body.
pub(super) struct Target {
    resolved: Arc<ListingForCall>,
    pub(super) body_sha256: String,
    pub(super) adapter: Option<Adapter>,
    /// What the adapter made of the body; `None`: the buyer's body as sent.
    pub(super) adapted_body: Option<Bytes>,
}

impl Target {
    pub(super) fn listing(&self) -> &ListingRow {
        &self.resolved.listing
    }

    pub(super) fn endpoint(&self) -> &ResolvedEndpoint {
        &self.resolved.endpoint
    }
}

/// A call on its way to the seller: its id, its attempt and what it costs.
struct Forwarding {
    request_id: String,
    /// 1, or more when this attempt took over one that never finished.
    attempt: i64,
    /// When the call was accounted (Unix ms): the row's time and the signature's.
    now: i64,
    paid: Option<Paid>,
    charged_cents: i64,
    fee_cents: i64,
    currency: String,
}

/// What came of sending a call to the seller.
pub(super) struct Answered {
    /// The history status.
    pub(super) status: Status,
    /// `None`: the call succeeded.
    pub(super) code: Option<&'static str>,
    pub(super) message: String,
    pub(super) response: Option<UpstreamResponse>,
    pub(super) latency_ms: i64,
}

/// A new gateway request id: `gw_req_` and a time-ordered UUID ([`crate::storage::append_id`]).
pub(super) fn new_request_id() -> String {
    format!("gw_req_{}", crate::storage::append_id().simple())
}

impl Gateway {
    /// Runs one call through every phase; `facts` gathers what its log line needs.
    ///
    /// The phases a free call without policies skips (policies, payment, the paid
    /// call's transactions) are boxed: their state would otherwise make this future
    /// several kilobytes, copied whole each time the router boxes or moves it.
    pub async fn call(&self, call: &GatewayCall, facts: &mut CallFacts) -> Result<Outcome> {
        let mut target = self.resolve(call).await?;
        facts.listing = Some(target.resolved.clone());
        if let Some(limits) = &call.buyer.limits {
            let listing = target.listing();
            limits
                .allows(&ListingFacts {
                    id: &listing.id,
                    slug: &listing.slug,
                    seller_id: &listing.seller_id,
                    category: listing.category.as_deref(),
                })
                .map_err(GatewayError::KeyLimit)?;
        }
        if !self.policies.is_empty() {
            Box::pin(self.policy(call, &target)).await?;
        }
        self.adapt_request(call, &mut target).await?;
        let (paid, x402) = match target.listing().pricing_model() {
            PricingModel::Free if call.payment_signature.is_some() => {
                return Err(GatewayError::X402NotOffered(
                    "the listing is free; call it without PAYMENT-SIGNATURE",
                ));
            }
            PricingModel::Free => (None, None),
            PricingModel::PerCall => match Box::pin(self.payment(call, &target)).await? {
                Verified::Paid(paid) => (Some(paid), None),
                Verified::X402(x402) => (None, Some(x402)),
                Verified::Pending(pending) => return Ok(Outcome::Pending(pending)),
            },
        };
        let forwarding = self.account(call, &target, paid, x402.as_deref()).await?;
        let (answer, latency_ms) = self.sign_and_send(call, &target, &forwarding).await;
        let answered = Self::classify(answer, latency_ms);
        facts.seller_status = answered.response.as_ref().map(|r| r.status);
        let answered = self.adapt_response(&target, answered).await;
        if let Some(x402) = x402 {
            return Box::pin(self.x402_finish(call, &target, *x402, answered)).await;
        }
        let refunded = self.record(call, &target, &forwarding, &answered).await?;
        Self::reply(&target, forwarding, answered, refunded)
    }

    /// Resolve phase, first: the listing, its endpoint and the body. Changes nothing.
    async fn resolve(&self, call: &GatewayCall) -> Result<Target> {
        let resolved = self.callable(&call.listing_ref).await?;
        let endpoint = &resolved.endpoint;
        if call.body.len() > endpoint.max_request_bytes {
            return Err(GatewayError::BodyTooLarge(endpoint.max_request_bytes));
        }
        // Skipping a string does not validate its UTF-8; the seller gets the exact bytes.
        std::str::from_utf8(&call.body).map_err(|e| GatewayError::InvalidBody(e.to_string()))?;
        serde_json::from_slice::<serde::de::IgnoredAny>(&call.body)
            .map_err(|e| GatewayError::InvalidBody(e.to_string()))?;
        Ok(Target {
            body_sha256: signing::body_sha256(&call.body),
            resolved,
            adapter: None,
            adapted_body: None,
        })
    }

    /// The listing `listing_ref` names, if it can be called now: active, of a seller in
    /// good standing, with a usable endpoint.
    pub(super) async fn callable(&self, listing_ref: &str) -> Result<Arc<ListingForCall>> {
        let resolved = self
            .catalog
            .listing_for_call(listing_ref)
            .await?
            .ok_or(GatewayError::ListingNotFound)?;
        let (listing, endpoint) = (&resolved.listing, &resolved.endpoint);
        match listing.status {
            ListingStatus::Active => {}
            ListingStatus::Draft => return Err(GatewayError::ListingNotFound),
            other => return Err(GatewayError::ListingNotActive(other.as_str().to_owned())),
        }
        if listing.is_seller_suspended() {
            return Err(GatewayError::SellerSuspended);
        }
        if endpoint.url.is_none() || !endpoint.active {
            return Err(GatewayError::EndpointUnavailable);
        }
        Ok(resolved)
    }

    /// Policy phase, after resolve and before any payment exists: the policy plugins,
    /// in configured order. May refuse the call; changes nothing but the plugins'
    /// counters.
    async fn policy(&self, call: &GatewayCall, target: &Target) -> Result<()> {
        let listing = target.listing();
        let mut ctx = crate::plugins::policy::context(
            CallKind::Gateway,
            "POST /api/v1/gateway/{listing_id}",
            call.client_ip.to_string(),
        );
        ctx.buyer_id = Some(call.buyer.profile_id.clone());
        ctx.seller_id = Some(listing.seller_id.clone());
        ctx.listing_id = Some(listing.id.clone());
        ctx.price_cents = u64::try_from(listing.price_cents).unwrap_or(0);
        ctx.currency = listing.pricing_currency.clone();
        ctx.origin_currency = call.origin_currency.clone();
        ctx.origin_chain_id = call.origin_chain_id.clone();
        ctx.origin_wallet_id = call.origin_wallet_id.clone();
        ctx.body_size = call.body.len() as u64;
        ctx.body_sha256 = target.body_sha256.clone();
        // Checked to be JSON by resolve, so it is UTF-8.
        ctx.body_json = String::from_utf8_lossy(&call.body).into_owned();
        // A keyless buyer's wallet-only profile is written once its payment is verified,
        // after the policies: until then it has no score to look up.
        let buyer = async {
            match call.keyless_wallet {
                Some(_) => None,
                None => self.reputation.badge(&call.buyer.profile_id).await,
            }
        };
        let (buyer, seller) = tokio::join!(buyer, self.reputation.badge(&listing.seller_id));
        ctx.buyer_score = buyer;
        ctx.seller_score = seller;
        ctx.headers = call.policy_headers.clone();
        ctx.payment = match listing.pricing_model() {
            PricingModel::Free => PaymentFlow::Free,
            PricingModel::PerCall if call.payment_signature.is_some() => PaymentFlow::X402,
            PricingModel::PerCall => PaymentFlow::Requirement,
        };
        ctx.attempt = match (&ctx.payment, &call.relay_request_id) {
            (PaymentFlow::Requirement, Some(_)) | (PaymentFlow::X402, _) => Attempt::PaidRetry,
            _ => Attempt::First,
        };
        self.policies
            .check(&mut ctx, Some(&target.resolved.policy_config))
            .await
            .map_err(GatewayError::Policy)
    }

    /// Account phase, after payment and before the seller is called: gives the call its
    /// request id. For a settled payment it consumes the payment and writes the request
    /// row (leased to this attempt), the ledger entries and the receipt, in one
    /// transaction. A resumed call has all of this already; a free call writes nothing
    /// here (its row is recorded after the forward, through the batched recorder).
    async fn account(
        &self,
        call: &GatewayCall,
        target: &Target,
        paid: Option<Paid>,
        x402: Option<&X402Paid>,
    ) -> Result<Forwarding> {
        let listing = target.listing();
        let now = now_ms();
        let (request_id, attempt) = match (paid.as_ref().and_then(|p| p.resumed.as_ref()), x402) {
            (Some(r), _) => (r.request_id.clone(), r.attempt),
            // The claim fixed the x402 call's id; nothing is accounted before settlement.
            (None, Some(x)) => (x.gateway_request_id.clone(), 1),
            (None, None) => (new_request_id(), 1),
        };
        let (charged_cents, currency) = paid
            .as_ref()
            .map_or((0, listing.pricing_currency.clone()), |p| {
                (p.charged_cents, p.currency.clone())
            });
        let fwd = Forwarding {
            request_id,
            attempt,
            now,
            charged_cents,
            fee_cents: fee_cents(charged_cents),
            currency,
            paid,
        };
        let Some(p) = fwd.paid.as_ref().filter(|p| p.resumed.is_none()) else {
            return Ok(fwd);
        };
        // Boxed, like the finishing transaction in `record`: see `call`.
        Box::pin(async {
            let request_id = fwd.request_id.as_str();
            let buyer = &call.buyer;
            let mut tx = self.db.begin().await?;
            if p.from_balance
                && let Some(refusal) = self
                    .issue_balance_payment(&mut tx, call, target, p, now)
                    .await?
            {
                tx.rollback().await?;
                return Err(refusal);
            }
            // The one decision point for racing retries: only one UPDATE matches 'issued'.
            let key = Some(buyer.api_key_id.as_str()).filter(|k| !k.is_empty());
            if !super::store::consume_payment(&mut tx, &p.relay_request_id, request_id, key, now)
                .await?
            {
                tx.rollback().await?;
                let used = super::store::payment(self.db.pool(), &p.relay_request_id).await?;
                return Err(GatewayError::PaymentConsumed(
                    used.and_then(|u| u.gateway_request_id).unwrap_or_default(),
                ));
            }
            // The key's spend, counted against its caps by one conditional UPDATE: racing
            // calls cannot overshoot. Refused: nothing is charged, and a provider's payment
            // stays unused for a later retry.
            if !buyer.api_key_id.is_empty()
                && !crate::identity::store::count_spend(
                    &mut tx,
                    &buyer.api_key_id,
                    buyer.key_created_at,
                    p.charged_cents,
                    now,
                )
                .await?
            {
                tx.rollback().await?;
                let mut conn = self.db.pool().acquire().await?;
                let spend = crate::identity::store::spend_of(&mut conn, &buyer.api_key_id)
                    .await?
                    .unwrap_or_default();
                let limits = buyer.limits.as_deref().cloned().unwrap_or_default();
                return Err(GatewayError::KeyLimit(LimitRefusal::at_settlement(
                    &limits,
                    p.charged_cents,
                    &spend,
                    now,
                )));
            }
            if p.from_balance
                && !ledger::balance::debit(
                    &mut tx,
                    &buyer.profile_id,
                    &p.currency,
                    p.charged_cents,
                    now,
                )
                .await?
            {
                tx.rollback().await?;
                let balance_cents =
                    ledger::balance::of(self.db.pool(), &buyer.profile_id, &p.currency).await?;
                return Err(GatewayError::InsufficientBalance {
                    balance_cents,
                    price_cents: p.charged_cents,
                    currency: p.currency.clone(),
                });
            }
            let row = super::store::NewRequest {
                id: request_id,
                buyer_id: &call.buyer.profile_id,
                seller_id: &listing.seller_id,
                listing_id: &listing.id,
                relay_request_id: Some(&p.relay_request_id),
                billable: true,
                charged_cents: fwd.charged_cents,
                fee_cents: fwd.fee_cents,
                currency: &fwd.currency,
                request_bytes: call.body.len(),
                request_sha256: &target.body_sha256,
                now,
                lease_owner: self.recovery.instance(),
                lease_until: now + self.recovery.lease_ms(target.endpoint().timeout),
            };
            super::store::insert_request(&mut tx, &row).await?;
            let settled = ledger::SettledCall {
                gateway_request_id: request_id,
                buyer_id: &call.buyer.profile_id,
                seller_id: &listing.seller_id,
                listing_id: &listing.id,
                relay_request_id: &p.relay_request_id,
                charged_cents: p.charged_cents,
                currency: &p.currency,
                now,
                from_balance: p.from_balance,
            };
            ledger::record_settled_call(&mut tx, &settled).await?;
            let receipt = ledger::receipts::ReceiptFacts {
                gateway_request_id: request_id,
                listing_id: &listing.id,
                buyer_id: &call.buyer.profile_id,
                seller_id: &listing.seller_id,
                relay_request_id: &p.relay_request_id,
                charged_cents: p.charged_cents,
                fee_cents: fwd.fee_cents,
                currency: &p.currency,
                issuer: &self.issuer,
                now,
            };
            ledger::receipts::issue(&mut tx, &self.receipts, &receipt).await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;
        let from_balance = fwd.paid.as_ref().is_some_and(|p| p.from_balance);
        crate::metrics::call_charged(fwd.charged_cents, fwd.fee_cents, from_balance);
        self.recovery.fault_point(FaultPoint::AfterAccounting);
        Ok(fwd)
    }

    /// Sign-and-send phase, after accounting: signs the body the seller gets (the
    /// adapted one, if any) and sends it through the guarded client. Changes nothing;
    /// returns the seller's answer, or why there is none, and how long it took (ms).
    async fn sign_and_send(
        &self,
        call: &GatewayCall,
        target: &Target,
        fwd: &Forwarding,
    ) -> (Result<UpstreamResponse, UpstreamError>, i64) {
        // The buyer's body was hashed by resolve; an adapted one is hashed here.
        let (body, body_sha256) = match &target.adapted_body {
            Some(adapted) => (adapted.clone(), signing::body_sha256(adapted)),
            None => (call.body.clone(), target.body_sha256.clone()),
        };
        let endpoint = target.endpoint();
        let signed = SignedHeaders::for_body_hash(
            &endpoint.signing_secret,
            fwd.now / 1000,
            &fwd.request_id,
            &target.listing().id,
            &call.buyer.profile_id,
            body_sha256,
        );
        let headers = signed.into_header_map(endpoint.auth_header.as_ref());
        let started = Instant::now();
        // `resolve` only builds a target whose endpoint has a URL.
        let answer = match endpoint.url.as_ref() {
            Some(url) => {
                self.upstream
                    .send(UpstreamRequest {
                        url,
                        headers,
                        body,
                        timeout: endpoint.timeout,
                        max_response_bytes: endpoint.max_response_bytes,
                    })
                    .await
            }
            None => Err(UpstreamError::Url(EndpointUrlError::Invalid(
                "the endpoint has no URL".into(),
            ))),
        };
        let elapsed = started.elapsed();
        crate::metrics::seller_call(elapsed);
        let latency_ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
        (answer, latency_ms)
    }

    /// Classify phase, right after the send: the seller's answer as a history status
    /// and, unless it succeeded (2xx JSON), an error code and message. Changes nothing.
    fn classify(answer: Result<UpstreamResponse, UpstreamError>, latency_ms: i64) -> Answered {
        let (status, code, message, response) = match answer {
            Ok(r) if (200..300).contains(&r.status) && r.is_json => {
                (Status::Completed, None, String::new(), Some(r))
            }
            Ok(r) if !(200..300).contains(&r.status) => {
                let m = format!("the seller answered HTTP {}", r.status);
                (
                    Status::SellerError,
                    Some("SELLER_ERROR_RESPONSE"),
                    m,
                    Some(r),
                )
            }
            Ok(r) => (
                Status::SellerError,
                Some("SELLER_INVALID_RESPONSE"),
                "the seller did not answer JSON".into(),
                Some(r),
            ),
            Err(UpstreamError::Timeout) => (
                Status::SellerTimeout,
                Some("SELLER_TIMEOUT"),
                "the seller did not answer in time".into(),
                None,
            ),
            Err(e) => (Status::SellerError, Some(e.code()), e.to_string(), None),
        };
        Answered {
            status,
            code,
            message,
            response,
            latency_ms,
        }
    }

    /// Record phase, after the answer is final: the request row gets the outcome.
    /// A paid call's row is updated with its score event in one transaction, unless the
    /// call was resolved meanwhile (a later attempt, or the janitor after the lease); a
    /// paid call that failed is reversed in that transaction, its charge refunded to
    /// the buyer's balance (returned: the cents refunded). A free call's row goes to the
    /// batched recorder.
    async fn record(
        &self,
        call: &GatewayCall,
        target: &Target,
        fwd: &Forwarding,
        answered: &Answered,
    ) -> Result<Option<i64>> {
        let listing = target.listing();
        let (bytes, sha, seller_status) = match &answered.response {
            Some(r) => (
                Some(r.body.len()),
                Some(signing::body_sha256(&r.body)),
                Some(r.status),
            ),
            None => (None, None, None),
        };
        let Some(p) = &fwd.paid else {
            let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            self.recorder
                .record(FinishedRequest {
                    id: fwd.request_id.clone(),
                    buyer_id: call.buyer.profile_id.clone(),
                    seller_id: listing.seller_id.clone(),
                    listing_id: listing.id.clone(),
                    relay_request_id: None,
                    status: answered.status,
                    currency: fwd.currency.clone(),
                    request_bytes: as_i64(call.body.len()),
                    request_sha256: target.body_sha256.clone(),
                    response_bytes: bytes.map(as_i64),
                    response_sha256: sha,
                    seller_status_code: seller_status.map(i64::from),
                    latency_ms: Some(answered.latency_ms),
                    error_code: answered.code,
                    created_at: fwd.now,
                })
                .await;
            return Ok(None);
        };
        let request_id = fwd.request_id.as_str();
        Box::pin(async {
            let mut tx = self.db.begin().await?;
            let finish = super::store::Finish {
                id: request_id,
                attempt: fwd.attempt,
                status: answered.status,
                response_bytes: bytes,
                response_sha256: sha.as_deref(),
                seller_status_code: seller_status,
                latency_ms: answered.latency_ms,
                error_code: answered.code,
            };
            if !super::store::finish_request(&mut tx, &finish).await? {
                tx.rollback().await?;
                return self.resolved_meanwhile(request_id).await.map(|()| None);
            }
            let now = now_ms();
            let refunded = match answered.code {
                Some(_) => Some(super::store::reverse_charge(&mut tx, request_id, now).await?),
                None => None,
            };
            if let Some(kind) = answered.status.score_event(answered.code) {
                let event = ScoreEvent {
                    id: request_id,
                    kind,
                    subject_id: &listing.seller_id,
                    actor_id: &call.buyer.profile_id,
                    listing_id: &listing.id,
                    gateway_request_id: Some(request_id),
                    n: 1,
                    amount_cents: p.charged_cents,
                    rating: None,
                    created_at: now,
                };
                events::record(&mut tx, &event).await?;
            }
            tx.commit().await?;
            if let Some(cents) = refunded {
                crate::metrics::charge_reversed(cents, fee_cents(cents));
                tracing::info!(
                    gateway_request_id = %request_id,
                    refunded_cents = cents,
                    "the seller failed after payment: the charge is refunded to the buyer's balance"
                );
            }
            Ok(refunded)
        })
        .await
    }

    /// Reply phase, last: the buyer's answer. A success relays the seller's JSON with
    /// what was charged; a failure says whether the charge stands and what the seller
    /// answered. Changes nothing.
    fn reply(
        target: &Target,
        fwd: Forwarding,
        answered: Answered,
        refunded: Option<i64>,
    ) -> Result<Outcome> {
        let listing = target.listing();
        let Forwarding {
            request_id,
            paid,
            charged_cents: charged,
            fee_cents: fee,
            currency,
            ..
        } = fwd;
        let from_balance = paid.as_ref().is_some_and(|p| p.from_balance);
        let relay_request_id = paid.map(|p| p.relay_request_id);
        let billable = relay_request_id.is_some();
        match (answered.code, answered.response) {
            (None, Some(r)) => Ok(Outcome::Forwarded(Box::new(GatewaySuccess {
                request_id,
                listing_id: listing.id.clone(),
                billable,
                payment: relay_request_id.map(|relay_request_id| PaymentStatus {
                    status: "verified",
                    relay_request_id,
                    flow: from_balance.then_some("balance"),
                    transaction: None,
                    network: None,
                    payer: None,
                }),
                charged_amount: ChargedAmount {
                    amount_cents: charged,
                    currency,
                },
                fees: Fees {
                    fee_rate: if billable { FEE_RATE } else { 0.0 },
                    fee_amount_cents: fee,
                    seller_receives_cents: charged - fee,
                },
                seller_status_code: r.status,
                // Relayed verbatim; it was checked to be JSON (by the client, or after
                // the adapter), so the fallback cannot happen.
                seller_response: serde_json::from_slice(&r.body)
                    .unwrap_or_else(|_| RawValue::NULL.to_owned()),
                payment_response: None,
            }))),
            (code, r) => {
                let mut context = json!({
                    "request_id": request_id,
                    "listing_id": listing.id,
                    "relay_request_id": relay_request_id,
                    "charged_amount": {"amount_cents": charged, "currency": currency},
                    "payment_settled": billable,
                    "seller_endpoint_called": true,
                });
                if let Some(cents) = refunded {
                    context["refunded"] = json!(true);
                    context["refund"] =
                        json!({"amount_cents": cents, "currency": currency, "to": "balance"});
                }
                if let Some(r) = r {
                    context["seller_status_code"] = json!(r.status);
                    if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
                        context["seller_response"] = v;
                    }
                }
                Err(GatewayError::SellerFailed {
                    code: code.unwrap_or("SELLER_REQUEST_FAILED"),
                    message: answered.message,
                    paid: billable,
                    context: Box::new(context),
                })
            }
        }
    }
}

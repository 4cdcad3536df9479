//! The pay-per-call pipeline of `POST /gateway/{listing_id}`, one phase per step, in
//! the order a call goes through them:
//!
//! 1. **authenticate**: the HTTP extractor resolves the buyer before [`Gateway::call`].
//! 2. **resolve listing**: active listing, configured and active endpoint, body is JSON
//!    and within the endpoint's request limit.
//! 3. **policy**: the operator's policy plugins (rate limits, validation; see
//!    [`super::policy`]) run after authentication and before any payment exists, so a
//!    refused call is never charged. Then the listing's **seller adapter**, if it has
//!    one, reshapes the body; a body it rejects is refused here too, before payment.
//! 4. **payment**: free listings skip it (and get no receipt). Without `X-Crochet-Relay-Request-Id`, the
//!    provider issues a requirement (402), bound to buyer, listing and body hash, and
//!    reused for a repeated `Idempotency-Key`. With one, the provider reports settlement.
//!    A settled payment is consumed by one conditional `UPDATE`, in the same
//!    transaction that writes its three ledger entries, its signed receipt and its
//!    request row, so however many retries race, exactly one forwards. The row is
//!    leased to the forwarding attempt; a retry of a consumed payment whose call never
//!    finished takes it over once the lease has passed ([`super::recovery`]).
//! 5. **sign and forward / adapt response**: the exact (adapted) body is signed
//!    (`signing`) and sent through the guarded client (`upstream`); the adapter turns
//!    the seller's reply back into what the buyer receives.
//! 6. **record**: the request row gets the outcome: sizes, hashes, status, latency.
//!    Bodies are never stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::error::GatewayError;
use super::model::*;
use crate::catalog::store::ListingRow;
use crate::catalog::{Catalog, ListingForCall, PricingModel, ResolvedEndpoint};
use crate::identity::{Identity, Principal};
use crate::ledger::{self, FEE_RATE, fee_cents};
use crate::payments::{
    OriginCurrency, PaymentChain, PaymentError, Payments, RequirementRequest, Route, Settlement,
    SettlementQuery, WalletRef,
};
use crate::plugins::policy::PolicyChain;
use crate::plugins::{AdapterPlugin, CallKind, PluginHost};
use crate::reputation::Reputation;
use crate::reputation::events::{self, EventKind, ScoreEvent};
use crate::seller_client::signing::{self, SignedHeaders};
use crate::seller_client::upstream::{
    EndpointUrlError, UpstreamClient, UpstreamError, UpstreamRequest,
};
use crate::storage::recorder::{FinishedRequest, Recorder};
use crate::storage::{Database, now_ms};

type Result<T, E = GatewayError> = std::result::Result<T, E>;

/// One buyer call, as the HTTP layer hands it over.
pub struct GatewayCall {
    pub buyer: Principal,
    pub listing_ref: String,
    /// The buyer's exact body, forwarded without a copy.
    pub body: Bytes,
    pub relay_request_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub origin_currency: Option<String>,
    pub origin_chain_id: Option<String>,
    pub origin_wallet_id: Option<String>,
    /// The client's address, for policies.
    pub client_ip: std::net::IpAddr,
}

/// A call's result that is not an error.
pub enum Outcome {
    /// 200: forwarded and answered.
    Forwarded(Box<GatewaySuccess>),
    /// 202: settlement pending.
    Pending(PendingPayment),
}

/// The gateway service.
#[derive(Clone)]
pub struct Gateway {
    pub(super) db: Database,
    catalog: Catalog,
    identity: Identity,
    payments: Payments,
    upstream: UpstreamClient,
    receipts: crate::ledger::receipts::ReceiptSigner,
    /// The host's public URL, named as issuer in receipts.
    issuer: String,
    /// Batched history rows of calls that move no money.
    recorder: Recorder,
    policies: PolicyChain,
    plugins: PluginHost,
    /// Buyer and seller scores for the policy context.
    reputation: Reputation,
    /// Compiled seller adapters by `<source>:<sha256>:<updated_at>` (any change to a
    /// listing's adapter makes a new key).
    adapters: Arc<Mutex<HashMap<String, Adapter>>>,
    /// Leases of paid calls and the resolution of abandoned ones.
    pub(super) recovery: Arc<super::recovery::Recovery>,
}

/// What the gateway is built from.
pub struct GatewayParts {
    pub db: Database,
    pub catalog: Catalog,
    pub identity: Identity,
    pub payments: Payments,
    pub upstream: UpstreamClient,
    pub receipts: crate::ledger::receipts::ReceiptSigner,
    /// The host's public URL, named as issuer in receipts.
    pub issuer: String,
    pub plugins: PluginHost,
    pub policies: PolicyChain,
    /// The batched history writer (shared with reputation, which flushes it).
    pub recorder: Recorder,
    pub reputation: Reputation,
    pub recovery: super::recovery::RecoverySettings,
}

/// A listing's seller adapter with its configuration.
#[derive(Clone)]
struct Adapter {
    plugin: AdapterPlugin,
    config: Arc<str>,
}

/// What phase 2 resolved.
pub(super) struct Target {
    resolved: Arc<ListingForCall>,
    body_sha256: String,
    adapter: Option<Adapter>,
    /// What the adapter made of the body; `None`: the buyer's body as sent.
    adapted_body: Option<Bytes>,
}

impl Target {
    fn listing(&self) -> &ListingRow {
        &self.resolved.listing
    }

    pub(super) fn endpoint(&self) -> &ResolvedEndpoint {
        &self.resolved.endpoint
    }

    /// The endpoint's URL; `resolve` only builds a target whose endpoint has one.
    fn url(&self) -> Option<&reqwest::Url> {
        self.resolved.endpoint.url.as_ref()
    }
}

/// A new gateway request id: `gw_req_` and a time-ordered UUID ([`crate::storage::append_id`]).
fn new_request_id() -> String {
    format!("gw_req_{}", crate::storage::append_id().simple())
}

/// A payment that may be forwarded.
pub(super) struct Paid {
    pub(super) relay_request_id: String,
    pub(super) charged_cents: i64,
    pub(super) currency: String,
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
    pub fn new(parts: GatewayParts) -> Self {
        let GatewayParts {
            db,
            catalog,
            identity,
            payments,
            upstream,
            receipts,
            issuer,
            plugins,
            policies,
            recorder,
            reputation,
            recovery,
        } = parts;
        Self {
            db,
            catalog,
            identity,
            payments,
            upstream,
            receipts,
            issuer,
            recorder,
            policies,
            plugins,
            reputation,
            adapters: Arc::default(),
            recovery: Arc::new(super::recovery::Recovery::new(recovery)),
        }
    }

    /// Waits until every queued history row is committed (before history reads and at
    /// shutdown).
    pub async fn flush(&self) {
        self.recorder.flush().await;
    }

    /// Runs one call through every phase.
    ///
    /// The phases a free call without policies skips (policies, payment, the paid
    /// call's transactions) are boxed: their state would otherwise make this future
    /// several kilobytes, copied whole each time the router boxes or moves it.
    pub async fn call(&self, call: GatewayCall) -> Result<Outcome> {
        let mut target = self.resolve(&call).await?;
        if !self.policies.is_empty() {
            Box::pin(self.policy(&call, &target)).await?;
        }
        self.adapt_request(&call, &mut target).await?;
        let paid = match target.listing().pricing_model() {
            PricingModel::Free => None,
            PricingModel::PerCall => {
                let payment = match &call.relay_request_id {
                    None => Err(Box::pin(self.require_payment(&call, &target))
                        .await
                        .unwrap_or_else(|e| e)),
                    Some(id) => Box::pin(self.verify_payment(&call, &target, id)).await,
                };
                match payment {
                    Ok(Verified::Paid(p)) => Some(p),
                    Ok(Verified::Pending(p)) => {
                        self.record_attempt(&call, &target, "payment_pending", None)
                            .await?;
                        return Ok(Outcome::Pending(p));
                    }
                    Err(e) => {
                        if let Some((status, code)) = attempt_status(&e) {
                            self.record_attempt(&call, &target, status, code).await?;
                        }
                        return Err(e);
                    }
                }
            }
        };
        self.forward(&call, &target, paid).await
    }

    /// A history row for an attempt that ended before forwarding (no money moved).
    async fn record_attempt(
        &self,
        call: &GatewayCall,
        target: &Target,
        status: &'static str,
        error_code: Option<&'static str>,
    ) -> Result<()> {
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
        Ok(())
    }

    /// Phase 2: the listing, its endpoint and the body.
    async fn resolve(&self, call: &GatewayCall) -> Result<Target> {
        let resolved = self
            .catalog
            .listing_for_call(&call.listing_ref)
            .await?
            .ok_or(GatewayError::ListingNotFound)?;
        let (listing, endpoint) = (&resolved.listing, &resolved.endpoint);
        match listing.status.as_str() {
            "active" => {}
            "draft" => return Err(GatewayError::ListingNotFound),
            other => return Err(GatewayError::ListingNotActive(other.to_owned())),
        }
        if endpoint.url.is_none() || !endpoint.active {
            return Err(GatewayError::EndpointUnavailable);
        }
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

    /// Phase 3: the policy plugins, in configured order (after authentication, before
    /// payment).
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
        // Checked to be JSON in phase 2, so it is UTF-8.
        ctx.body_json = String::from_utf8_lossy(&call.body).into_owned();
        let (buyer, seller) = tokio::join!(
            self.reputation.badge(&call.buyer.profile_id),
            self.reputation.badge(&listing.seller_id)
        );
        ctx.buyer_score = buyer;
        ctx.seller_score = seller;
        self.policies
            .check(&mut ctx, Some(&target.resolved.policy_config))
            .await
            .map_err(GatewayError::Policy)
    }

    /// Phase 3b: the listing's seller adapter reshapes the body that will be signed and
    /// sent; a body it rejects is refused before payment.
    async fn adapt_request(&self, call: &GatewayCall, target: &mut Target) -> Result<()> {
        let Some(key) = target.listing().adapter.clone() else {
            return Ok(());
        };
        let adapter = self.adapter(&target.listing().id, &key).await?;
        let body = String::from_utf8_lossy(&call.body);
        let adapted = adapter
            .plugin
            .adapt_request(&adapter.config, &body)
            .await
            .map_err(|e| {
                tracing::warn!(plugin = adapter.plugin.name(), error = %e, "seller adapter failed");
                GatewayError::AdapterUnavailable
            })?
            .map_err(GatewayError::AdapterRejected)?;
        serde_json::from_str::<serde::de::IgnoredAny>(&adapted).map_err(|_| {
            GatewayError::AdapterRejected("the adapter did not produce JSON".into())
        })?;
        target.adapted_body = Some(adapted.into());
        target.adapter = Some(adapter);
        Ok(())
    }

    /// The compiled adapter of a listing (compiled once per adapter version).
    async fn adapter(&self, listing_id: &str, key: &str) -> Result<Adapter> {
        if let Some(a) = self.adapters.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(a);
        }
        let row = self
            .catalog
            .adapter_component(listing_id)
            .await?
            .ok_or(GatewayError::AdapterUnavailable)?;
        let host = self.plugins.clone();
        let name = format!("adapter:{listing_id}");
        let plugin = tokio::task::spawn_blocking(move || host.adapter(&name, &row.1))
            .await
            .map_err(|_| GatewayError::AdapterUnavailable)?
            .map_err(|e| {
                tracing::warn!(listing_id, error = %e, "cannot load seller adapter");
                GatewayError::AdapterUnavailable
            })?;
        let adapter = Adapter {
            plugin,
            config: row.0.into(),
        };
        if let Ok(mut map) = self.adapters.lock() {
            // Old versions of this listing's adapter are never asked for again.
            map.retain(|k, _| !k.ends_with(&format!("@{listing_id}")));
            map.insert(key.to_owned(), adapter.clone());
        }
        Ok(adapter)
    }

    /// Phase 4a: a payment requirement (or the one an Idempotency-Key already has).
    /// Always returns the error to answer with: a 402, or why none could be issued.
    async fn require_payment(&self, call: &GatewayCall, target: &Target) -> Result<GatewayError> {
        let buyer = &call.buyer.profile_id;
        if let Some(key) = &call.idempotency_key
            && let Some(existing) =
                super::store::idempotent_payment(self.db.pool(), buyer, key).await?
        {
            return self.replay(existing, target);
        }
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
        Ok(GatewayError::PaymentRequired(Box::new(PaymentObject {
            retry_headers: json!({"X-Crochet-Relay-Request-Id": requirement.request_id}),
            relay_request_id: requirement.request_id,
            requirements: requirement.requirements,
            amount_cents: req.amount_cents,
            currency: req.currency,
            provider: provider.name().to_owned(),
        })))
    }

    /// The 402 an Idempotency-Key already produced, if it was for this listing and body.
    fn replay(&self, p: super::store::PaymentRow, target: &Target) -> Result<GatewayError> {
        if p.listing_id != target.listing().id || p.body_sha256 != target.body_sha256 {
            return Err(GatewayError::IdempotencyConflict);
        }
        if let Some(gr) = p.gateway_request_id.filter(|_| p.status == "consumed") {
            return Err(GatewayError::PaymentConsumed(gr));
        }
        Ok(GatewayError::PaymentRequired(Box::new(PaymentObject {
            retry_headers: json!({"X-Crochet-Relay-Request-Id": p.request_id}),
            requirements: serde_json::from_str(&p.requirements).unwrap_or(Value::Null),
            relay_request_id: p.request_id,
            amount_cents: p.amount_cents,
            currency: p.currency,
            provider: p.provider,
        })))
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
            .map(|w| WalletRef {
                id: w.id,
                address: w.wallet_address,
                chain: match w.chain {
                    crate::identity::crypto::Chain::Evm => PaymentChain::Evm,
                    crate::identity::crypto::Chain::Solana => PaymentChain::Solana,
                },
            })
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

    /// Phase 4b: the settlement of a relay request id, and its consumption.
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
        match self
            .payments
            .provider()
            .settlement(&query)
            .await
            .map_err(provider_error)?
        {
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
                resumed: None,
            })),
        }
    }

    /// Phases 5 and 6: consume the payment with its ledger entries, sign, forward, record.
    async fn forward(
        &self,
        call: &GatewayCall,
        target: &Target,
        paid: Option<Paid>,
    ) -> Result<Outcome> {
        let listing = &target.listing();
        let now = now_ms();
        let resumed = paid.as_ref().and_then(|p| p.resumed.as_ref());
        let (request_id, attempt) = match resumed {
            Some(r) => (r.request_id.clone(), r.attempt),
            None => (new_request_id(), 1),
        };
        let (charged, currency) = paid
            .as_ref()
            .map_or((0, listing.pricing_currency.clone()), |p| {
                (p.charged_cents, p.currency.clone())
            });
        let fee = fee_cents(charged);
        let row = super::store::NewRequest {
            id: &request_id,
            buyer_id: &call.buyer.profile_id,
            seller_id: &listing.seller_id,
            listing_id: &listing.id,
            relay_request_id: paid.as_ref().map(|p| p.relay_request_id.as_str()),
            billable: paid.is_some(),
            charged_cents: charged,
            fee_cents: fee,
            currency: &currency,
            request_bytes: call.body.len(),
            request_sha256: &target.body_sha256,
            now,
            lease_owner: self.recovery.instance(),
            lease_until: now + self.recovery.lease_ms(target.endpoint().timeout),
        };
        // Accounted calls: consume the payment, write the request row, the ledger entries
        // and the receipt in one transaction, before anything is forwarded. Free calls are
        // recorded after the forward, through the batched recorder. A resumed call has
        // all of this already. (Boxed, like the finishing transaction below: see `call`.)
        if let Some(p) = paid.as_ref().filter(|p| p.resumed.is_none()) {
            Box::pin(async {
                let mut tx = self.db.begin().await?;
                // The one decision point for racing retries: only one UPDATE matches 'issued'.
                if !super::store::consume_payment(&mut tx, &p.relay_request_id, &request_id, now)
                    .await?
                {
                    tx.rollback().await?;
                    let used = super::store::payment(self.db.pool(), &p.relay_request_id).await?;
                    return Err(GatewayError::PaymentConsumed(
                        used.and_then(|u| u.gateway_request_id).unwrap_or_default(),
                    ));
                }
                super::store::insert_request(&mut tx, &row).await?;
                ledger::record_settled_call(
                    &mut tx,
                    &ledger::SettledCall {
                        gateway_request_id: &request_id,
                        buyer_id: &call.buyer.profile_id,
                        seller_id: &listing.seller_id,
                        listing_id: &listing.id,
                        relay_request_id: &p.relay_request_id,
                        charged_cents: p.charged_cents,
                        currency: &p.currency,
                        now,
                    },
                )
                .await?;
                ledger::receipts::issue(
                    &mut tx,
                    &self.receipts,
                    &ledger::receipts::ReceiptFacts {
                        gateway_request_id: &request_id,
                        listing_id: &listing.id,
                        buyer_id: &call.buyer.profile_id,
                        seller_id: &listing.seller_id,
                        relay_request_id: &p.relay_request_id,
                        charged_cents: p.charged_cents,
                        fee_cents: fee,
                        currency: &p.currency,
                        issuer: &self.issuer,
                        now,
                    },
                )
                .await?;
                tx.commit().await?;
                Ok(())
            })
            .await?;
            self.recovery
                .fault_point(super::recovery::FaultPoint::AfterAccounting);
        }

        // The buyer's body was hashed in phase 2; an adapted one is hashed here.
        let (body, body_sha256) = match &target.adapted_body {
            Some(adapted) => (adapted.clone(), signing::body_sha256(adapted)),
            None => (call.body.clone(), target.body_sha256.clone()),
        };
        let signed = SignedHeaders::for_body_hash(
            &target.endpoint().signing_secret,
            now / 1000,
            &request_id,
            &listing.id,
            &call.buyer.profile_id,
            body_sha256,
        );
        let headers = signed.into_header_map(target.endpoint().auth_header.as_ref());
        let started = Instant::now();
        let answer = match target.url() {
            Some(url) => {
                self.upstream
                    .send(UpstreamRequest {
                        url,
                        headers,
                        body,
                        timeout: target.endpoint().timeout,
                        max_response_bytes: target.endpoint().max_response_bytes,
                    })
                    .await
            }
            None => Err(UpstreamError::Url(EndpointUrlError::Invalid(
                "the endpoint has no URL".into(),
            ))),
        };
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);

        let payment = paid.as_ref().map(|p| PaymentStatus {
            status: "verified",
            relay_request_id: p.relay_request_id.clone(),
        });
        let (status, code, message, response) = match answer {
            Ok(r) if (200..300).contains(&r.status) && r.is_json => {
                ("completed", None, String::new(), Some(r))
            }
            Ok(r) if !(200..300).contains(&r.status) => {
                let m = format!("the seller answered HTTP {}", r.status);
                ("seller_error", Some("SELLER_ERROR_RESPONSE"), m, Some(r))
            }
            Ok(r) => (
                "seller_error",
                Some("SELLER_INVALID_RESPONSE"),
                "the seller did not answer JSON".into(),
                Some(r),
            ),
            Err(UpstreamError::Timeout) => (
                "seller_timeout",
                Some("SELLER_TIMEOUT"),
                "the seller did not answer in time".into(),
                None,
            ),
            Err(e) => ("seller_error", Some(e.code()), e.to_string(), None),
        };
        let (status, code, message, response) = match (&target.adapter, code, response) {
            (Some(adapter), None, Some(mut r)) => {
                match adapt_response(adapter, r.status, &r.body).await {
                    Ok(body) => {
                        r.body = body;
                        (status, None, message, Some(r))
                    }
                    Err(why) => ("seller_error", Some("SELLER_ADAPTER_FAILED"), why, Some(r)),
                }
            }
            other => (status, other.1, message, other.2),
        };
        let (bytes, sha, seller_status) = match &response {
            Some(r) => (
                Some(r.body.len()),
                Some(signing::body_sha256(&r.body)),
                Some(r.status),
            ),
            None => (None, None, None),
        };
        if let Some(p) = &paid {
            // The outcome and its score event land together, unless the call was
            // resolved meanwhile (a later attempt, or the janitor after the lease).
            Box::pin(async {
                let mut tx = self.db.begin().await?;
                let finish = super::store::Finish {
                    id: &request_id,
                    attempt,
                    status,
                    response_bytes: bytes,
                    response_sha256: sha.as_deref(),
                    seller_status_code: seller_status,
                    latency_ms,
                    error_code: code,
                };
                if !super::store::finish_request(&mut tx, &finish).await? {
                    tx.rollback().await?;
                    return self.resolved_meanwhile(&request_id).await;
                }
                if let Some(kind) = EventKind::of_call(status, code) {
                    events::record(
                        &mut tx,
                        &ScoreEvent {
                            id: &request_id,
                            kind,
                            subject_id: &listing.seller_id,
                            actor_id: &call.buyer.profile_id,
                            listing_id: &listing.id,
                            gateway_request_id: Some(&request_id),
                            n: 1,
                            amount_cents: p.charged_cents,
                            rating: None,
                            created_at: now_ms(),
                        },
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok::<_, GatewayError>(())
            })
            .await?;
        } else {
            let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            self.recorder
                .record(FinishedRequest {
                    id: request_id.clone(),
                    buyer_id: call.buyer.profile_id.clone(),
                    seller_id: listing.seller_id.clone(),
                    listing_id: listing.id.clone(),
                    relay_request_id: None,
                    status,
                    currency: currency.clone(),
                    request_bytes: as_i64(call.body.len()),
                    request_sha256: target.body_sha256.clone(),
                    response_bytes: bytes.map(as_i64),
                    response_sha256: sha,
                    seller_status_code: seller_status.map(i64::from),
                    latency_ms: Some(latency_ms),
                    error_code: code,
                    created_at: now,
                })
                .await;
        }

        match (code, response) {
            (None, Some(r)) => Ok(Outcome::Forwarded(Box::new(GatewaySuccess {
                request_id,
                listing_id: listing.id.clone(),
                billable: paid.is_some(),
                payment,
                charged_amount: ChargedAmount {
                    amount_cents: charged,
                    currency,
                },
                fees: Fees {
                    fee_rate: if paid.is_some() { FEE_RATE } else { 0.0 },
                    fee_amount_cents: fee,
                    seller_receives_cents: charged - fee,
                },
                seller_status_code: r.status,
                // Relayed verbatim; it was checked to be JSON (by the client, or after
                // the adapter), so the fallback cannot happen.
                seller_response: serde_json::from_slice(&r.body)
                    .unwrap_or_else(|_| RawValue::NULL.to_owned()),
            }))),
            (code, r) => {
                let mut context = json!({
                    "request_id": request_id,
                    "listing_id": listing.id,
                    "relay_request_id": paid.as_ref().map(|p| p.relay_request_id.clone()),
                    "charged_amount": {"amount_cents": charged, "currency": currency},
                    "payment_settled": paid.is_some(),
                    "seller_endpoint_called": true,
                });
                if let Some(r) = r {
                    context["seller_status_code"] = json!(r.status);
                    if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
                        context["seller_response"] = v;
                    }
                }
                Err(GatewayError::SellerFailed {
                    code: code.unwrap_or("SELLER_REQUEST_FAILED"),
                    message,
                    paid: paid.is_some(),
                    context: Box::new(context),
                })
            }
        }
    }
}

/// The seller's reply as the listing's adapter reshapes it, or why it could not.
async fn adapt_response(
    adapter: &Adapter,
    status: u16,
    body: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    let text = String::from_utf8_lossy(body);
    let out = match adapter
        .plugin
        .adapt_response(&adapter.config, status, &text)
        .await
    {
        Ok(Ok(out)) => out,
        Ok(Err(reason)) => return Err(format!("the seller adapter rejected the reply: {reason}")),
        Err(e) => return Err(format!("the seller adapter failed: {e}")),
    };
    serde_json::from_str::<serde::de::IgnoredAny>(&out)
        .map_err(|_| "the seller adapter did not produce JSON".to_owned())?;
    Ok(out.into_bytes())
}

enum Verified {
    Pending(PendingPayment),
    Paid(Paid),
}

/// The history status of a payment-phase refusal (`None`: not recorded, e.g. a bad header).
fn attempt_status(e: &GatewayError) -> Option<(&'static str, Option<&'static str>)> {
    Some(match e {
        GatewayError::PaymentRequired(_) => ("payment_required", None),
        GatewayError::PaymentFailed { .. } => ("payment_failed", Some("PAYMENT_FAILED")),
        GatewayError::RouteMinimum { .. } => (
            "payment_route_refused",
            Some("PAYMENT_ROUTE_MINIMUM_NOT_MET"),
        ),
        GatewayError::PaymentConsumed(_) => ("payment_already_used", Some("PAYMENT_ALREADY_USED")),
        GatewayError::BodyMismatch => ("payment_body_mismatch", Some("PAYMENT_BODY_MISMATCH")),
        _ => return None,
    })
}

fn provider_error(e: PaymentError) -> GatewayError {
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

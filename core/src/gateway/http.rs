//! HTTP handlers of `POST /gateway/{listing_id}` and `GET /gateway-requests`.
//!
//! Each call that reaches the gateway (authenticated, with a JSON body) gets one log
//! line (`gateway call`: info when it succeeded, asked for payment or is pending, warn
//! otherwise) and is counted in `crochet_gateway_calls_total`. The line carries the
//! gateway request id (`X-Crochet-Request-Id`, when the call has one), the listing and
//! buyer ids, the outcome, the error code, the seller's status and the latency; the
//! `request` span around it adds the HTTP `x-request-id`. Never a key, secret, endpoint
//! URL, header or signature.

use axum::Json;
use axum::body::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::discovery::{DiscoveryPage, DiscoveryQuery};
use super::error::{GatewayError, PAYMENT_RESPONSE};
use super::model::{GatewayRequestRow, GatewaySuccess, HistoryQuery, PendingPayment};
use super::pipeline::{CallFacts, GatewayCall, Outcome};
use crate::app::AppState;
use crate::http::error::RequestError;
use crate::http::error::{ApiError, ErrorEnvelope, ErrorSpec};
use crate::http::extract::{
    ApiBytes, ApiPath, ApiQuery, Auth, MaybeAuth, PolicyHeaders, is_json_content_type,
};
use crate::http::{Envelope, PagedEnvelope, ok, paged};
use crate::identity::Principal;
use crate::metrics::GatewayOutcome;
use crate::plugins::policy::PolicyRefusal;
use crate::storage::Page;

/// The gateway routes, relative to `/api/v1`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(call))
        .routes(routes!(history))
        .routes(routes!(discovery_resources))
        .routes(routes!(crate::ledger::http::ledger))
        .routes(routes!(crate::ledger::http::list_receipts))
        .routes(routes!(crate::ledger::http::get_receipt))
}

/// The gateway's optional request headers, read in place (extracting the whole
/// `HeaderMap` would copy it on every call). MCP's `call_listing` fills the same fields
/// from its arguments.
#[derive(Default)]
pub(crate) struct CallHeaders {
    pub relay_request_id: Option<String>,
    pub payment_signature: Option<String>,
    pub idempotency_key: Option<String>,
    /// `X-Crochet-Pay-From` (`balance`).
    pub pay_from: Option<String>,
    pub origin_currency: Option<String>,
    pub origin_chain_id: Option<String>,
    pub origin_wallet_id: Option<String>,
    /// Whether `Content-Type` declares JSON (see [`is_json_content_type`]).
    pub json_body: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for CallHeaders {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = |name: &str| header(&parts.headers, name);
        Ok(Self {
            relay_request_id: header("x-crochet-relay-request-id"),
            payment_signature: header("payment-signature"),
            idempotency_key: header("idempotency-key"),
            pay_from: header("x-crochet-pay-from"),
            origin_currency: header("x-crochet-origin-currency"),
            origin_chain_id: header("x-crochet-origin-chain-id"),
            origin_wallet_id: header("x-crochet-origin-wallet-id"),
            json_body: is_json_content_type(&parts.headers),
        })
    }
}

/// A header's trimmed text; absent, empty or not visible ASCII: `None`.
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Call a seller capability. Paid listings answer 402 with a payment requirement; retry
/// the same body with `X-Crochet-Relay-Request-Id` once paid (202 while pending).
///
/// Where the marketplace takes x402, the 402 also carries `PAYMENT-REQUIRED`, and a
/// retry may carry `PAYMENT-SIGNATURE` instead: the payment is verified, the call
/// forwarded, and the payment settled only if the seller answered 2xx JSON (the answer
/// then carries `PAYMENT-RESPONSE`). Such a retry needs no API key where keyless x402
/// is allowed: the paying wallet is the buyer.
///
/// The body must be UTF-8 JSON sent with a JSON content type; it is forwarded byte for
/// byte, escapes included.
///
/// With `X-Crochet-Pay-From: balance` the call is paid from the buyer's marketplace
/// balance in this one request. If the seller fails after a payment settled, the charge
/// is refunded to that balance. An API key with limits is refused (403) before any
/// payment when the listing, seller or price is outside them or its spend caps leave no
/// room; caps are counted atomically when the call is charged.
#[utoipa::path(post, path = "/gateway/{listing_id}", tag = "gateway", security(("api_key" = [])),
    params(
        ("listing_id" = String, Path, description = "Listing UUID or slug"),
        ("X-Crochet-Relay-Request-Id" = Option<String>, Header, description = "The relay_request_id of a completed payment"),
        ("PAYMENT-SIGNATURE" = Option<String>, Header, description = "An x402 v2 payment payload (base64 JSON) for one of the offers in PAYMENT-REQUIRED"),
        ("Idempotency-Key" = Option<String>, Header, description = "Repeats return the same payment requirement (or, paying from the balance, the same call: never charged twice)"),
        ("X-Crochet-Pay-From" = Option<String>, Header, description = "`balance`: pay from the marketplace balance in this one request, no 402 round trip"),
        ("X-Crochet-Origin-Currency" = Option<String>, Header, description = "USDC, ETH or SOL"),
        ("X-Crochet-Origin-Chain-Id" = Option<String>, Header, description = "Origin chain id"),
        ("X-Crochet-Origin-Wallet-Id" = Option<String>, Header, description = "Payer wallet id from GET /me/wallets"),
    ),
    request_body(content = Object, description = "The exact JSON the seller receives"),
    responses(
        (status = 200, body = Envelope<GatewaySuccess>),
        (status = 202, description = "Settlement pending", body = Envelope<PendingPayment>),
        (status = 400, description = "Invalid body or route; PAYMENT_ROUTE_MINIMUM_NOT_MET", body = ErrorEnvelope),
        (status = 402, description = "PAYMENT_REQUIRED (with the x402 offer in PAYMENT-REQUIRED), INSUFFICIENT_BALANCE (paying from the balance), PAYMENT_FAILED, PAYMENT_INVALID (x402 payment refused before the seller was called) or PAYMENT_SETTLEMENT_FAILED (x402: the seller answered, settlement failed, the answer is withheld)", body = ErrorEnvelope),
        (status = 403, description = "PAYER_WALLET_NOT_LINKED: the x402 payer is not a wallet of this agent; the API key's limits refuse the call: LISTING_NOT_ALLOWED_FOR_KEY, SELLER_NOT_ALLOWED_FOR_KEY, PRICE_LIMIT_EXCEEDED, SPEND_LIMIT_EXCEEDED, PAYMENT_FLOW_NOT_ALLOWED_FOR_KEY (nothing forwarded, nothing charged)", body = ErrorEnvelope),
        (status = 415, description = "Content-Type is not JSON", body = ErrorEnvelope),
        (status = 409, description = "Payment already used, call still in progress (GATEWAY_REQUEST_IN_PROGRESS) or interrupted and reversed (GATEWAY_REQUEST_INTERRUPTED), body mismatch, idempotency conflict, listing not active", body = ErrorEnvelope),
        (status = 502, description = "The seller failed: after a settled payment the charge is refunded to the buyer's balance (details.refund); an x402 payment is then not settled. Or PAYMENT_SETTLEMENT_UNCONFIRMED", body = ErrorEnvelope),
    ))]
async fn call(
    State(s): State<AppState>,
    MaybeAuth(buyer): MaybeAuth,
    ApiPath(listing_id): ApiPath<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: CallHeaders,
    PolicyHeaders(policy_headers): PolicyHeaders,
    ApiBytes(body): ApiBytes,
) -> Result<Response, ApiError> {
    if !headers.json_body {
        return Err(RequestError::UnsupportedMediaType.into());
    }
    let request = CallRequest {
        buyer,
        listing_ref: listing_id,
        body,
        headers,
        policy_headers,
        client_ip: peer.ip(),
        transport: "rest",
    };
    // Boxed once here, so the router's own boxing of this handler's future moves a
    // pointer rather than the whole pipeline's state.
    Ok(match Box::pin(answer(&s, request)).await {
        CallAnswer::Forwarded(mut success) => {
            let payment_response = success.payment_response.take();
            let mut response = ok(*success).into_response();
            if let Some(value) = payment_response.and_then(|v| HeaderValue::try_from(v).ok()) {
                response.headers_mut().insert(PAYMENT_RESPONSE, value);
            }
            response
        }
        CallAnswer::Pending(pending) => (StatusCode::ACCEPTED, ok(pending)).into_response(),
        CallAnswer::Refused(refusal) => refusal.respond(),
    })
}

/// One gateway call as it arrives, over REST or MCP.
pub(crate) struct CallRequest {
    /// The authenticated buyer; `None` for a call without a key (keyless x402).
    pub buyer: Option<Principal>,
    pub listing_ref: String,
    pub body: Bytes,
    pub headers: CallHeaders,
    pub policy_headers: Vec<(String, String)>,
    pub client_ip: IpAddr,
    /// `rest` or `mcp`, for the log line.
    pub transport: &'static str,
}

/// What a gateway call answered, before it becomes an HTTP response or an MCP result.
pub(crate) enum CallAnswer {
    Forwarded(Box<GatewaySuccess>),
    Pending(PendingPayment),
    /// The refusal (a 402 included).
    Refused(Box<Refusal>),
}

/// A refused call: the error, the REST answer it makes (worked out once, for the log
/// line and the answer alike) and the x402 header it carries.
pub(crate) struct Refusal {
    pub error: ApiError,
    pub spec: ErrorSpec,
    pub x402_header: Option<(&'static str, String)>,
}

impl Refusal {
    fn new(error: ApiError) -> Box<Self> {
        let x402_header = match &error {
            ApiError::Gateway(e) => e.x402_header(),
            _ => None,
        };
        let spec = error.spec();
        Box::new(Self {
            error,
            spec,
            x402_header,
        })
    }

    /// The REST response, with the x402 header.
    fn respond(self) -> Response {
        with_x402_header(self.error.respond(self.spec), self.x402_header)
    }
}

/// Runs one gateway call: finds the buyer of a keyless x402 call, runs the pipeline,
/// and logs and counts the outcome. REST's `POST /gateway/{id}` and MCP's
/// `call_listing` both come here, so both run the same pipeline.
pub(crate) async fn answer(s: &AppState, request: CallRequest) -> CallAnswer {
    let started = Instant::now();
    let CallRequest {
        buyer,
        listing_ref,
        body,
        headers,
        policy_headers,
        client_ip,
        transport,
    } = request;
    let (buyer, keyless_wallet) = match buyer {
        Some(buyer) => (buyer, None),
        // Paying from a balance needs the balance's owner.
        None if headers.pay_from.is_some() => match s.identity.authenticate(None).await {
            Ok(buyer) => (buyer, None),
            Err(e) => return CallAnswer::Refused(Refusal::new(e.into())),
        },
        None => {
            let keyless = match &headers.payment_signature {
                Some(payment) => s
                    .gateway
                    .keyless_buyer(payment)
                    .await
                    .map(|r| r.map(|b| (b.principal, b.wallet_only))),
                // A stock x402 client's first call: the x402 offer of a paid listing.
                None => s
                    .gateway
                    .keyless_offer(&listing_ref)
                    .await
                    .map(|r| Err(r.unwrap_or_else(|e| e))),
            };
            match keyless {
                Some(Ok(buyer)) => buyer,
                Some(Err(e)) => return CallAnswer::Refused(Refusal::new(ApiError::Gateway(e))),
                // x402 without a key is off (or the listing is free): a key is needed.
                None => match s.identity.authenticate(None).await {
                    Ok(buyer) => (buyer, None),
                    Err(e) => return CallAnswer::Refused(Refusal::new(e.into())),
                },
            }
        }
    };
    let call = GatewayCall {
        buyer,
        listing_ref,
        body,
        relay_request_id: headers.relay_request_id,
        payment_signature: headers.payment_signature,
        keyless_wallet,
        idempotency_key: headers.idempotency_key,
        pay_from: headers.pay_from,
        origin_currency: headers.origin_currency,
        origin_chain_id: headers.origin_chain_id,
        origin_wallet_id: headers.origin_wallet_id,
        client_ip,
        policy_headers,
    };
    let mut facts = CallFacts::default();
    let result = Box::pin(s.gateway.call(&call, &mut facts)).await;
    let report = Report {
        call: &call,
        facts: &facts,
        started,
        transport,
    };
    match result {
        Ok(Outcome::Forwarded(success)) => {
            report.success(GatewayOutcome::Forwarded, Some(&success.request_id));
            CallAnswer::Forwarded(success)
        }
        Ok(Outcome::Pending(pending)) => {
            report.success(GatewayOutcome::PaymentPending, None);
            CallAnswer::Pending(pending)
        }
        Err(e) => {
            let refusal = Refusal::new(ApiError::Gateway(e));
            if let ApiError::Gateway(e) = &refusal.error {
                report.failure(e, &refusal.spec);
            }
            CallAnswer::Refused(refusal)
        }
    }
}

fn with_x402_header(mut response: Response, header: Option<(&'static str, String)>) -> Response {
    if let Some((name, value)) = header
        && let Ok(value) = HeaderValue::try_from(value)
    {
        response.headers_mut().insert(name, value);
    }
    response
}

/// The log line and the metrics of one gateway call.
struct Report<'a> {
    call: &'a GatewayCall,
    facts: &'a CallFacts,
    started: Instant,
    transport: &'static str,
}

impl Report<'_> {
    /// The listing's id once resolved, else what the path named (an id or a slug).
    fn listing_id(&self) -> &str {
        self.facts
            .listing
            .as_ref()
            .map_or(self.call.listing_ref.as_str(), |l| l.listing.id.as_str())
    }

    fn latency_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// A forwarded or pending call.
    fn success(&self, outcome: GatewayOutcome, gateway_request_id: Option<&str>) {
        crate::metrics::gateway_call(outcome, None, self.facts.seller_status);
        tracing::info!(
            gateway_request_id,
            listing_id = self.listing_id(),
            buyer_id = %self.call.buyer.profile_id,
            outcome = outcome.as_str(),
            seller_status = self.facts.seller_status,
            latency_ms = self.latency_ms(),
            transport = self.transport,
            "gateway call"
        );
    }

    /// A call answered with an error (a 402 included).
    fn failure(&self, e: &GatewayError, spec: &ErrorSpec) {
        let (code, status) = (&spec.body.code, spec.status);
        let outcome = match e {
            GatewayError::PaymentRequired(_) => GatewayOutcome::PaymentRequired,
            GatewayError::Policy(PolicyRefusal::Denied { .. }) => GatewayOutcome::PolicyRefused,
            GatewayError::SellerFailed { .. } => GatewayOutcome::SellerFailed,
            _ if status.is_server_error() => GatewayOutcome::Error,
            _ => GatewayOutcome::Refused,
        };
        crate::metrics::gateway_call(outcome, Some(code), self.facts.seller_status);
        let (gateway_request_id, listing_id) = (e.gateway_request_id(), self.listing_id());
        let buyer_id = &self.call.buyer.profile_id;
        let (seller_status, latency_ms) = (self.facts.seller_status, self.latency_ms());
        let (outcome, transport) = (outcome.as_str(), self.transport);
        if matches!(e, GatewayError::PaymentRequired(_)) {
            tracing::info!(gateway_request_id, listing_id, %buyer_id, outcome, error_code = %code,
                seller_status, latency_ms, transport, "gateway call");
        } else {
            tracing::warn!(gateway_request_id, listing_id, %buyer_id, outcome, error_code = %code,
                seller_status, latency_ms, transport, "gateway call");
        }
    }
}

/// The catalog's paid listings as x402 resources, in x402's discovery format (its own
/// shape, not the usual envelope). Exists only while the marketplace takes x402.
#[utoipa::path(get, path = "/discovery/resources", tag = "gateway", params(DiscoveryQuery),
    responses((status = 200, body = DiscoveryPage), (status = 400, description = "X402_NOT_OFFERED: x402 is off", body = ErrorEnvelope)))]
async fn discovery_resources(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<DiscoveryQuery>,
) -> Result<Json<DiscoveryPage>, ApiError> {
    let Some(x402) = s.payments.x402() else {
        return Err(ApiError::Gateway(GatewayError::X402NotOffered(
            "x402 is not enabled on this marketplace, so it lists no x402 resources",
        )));
    };
    Ok(Json(
        super::discovery::feed(&s.catalog, x402, &s.public_url, &q).await?,
    ))
}

/// Gateway request history as buyer, seller or both: metadata and hashes, never bodies.
#[utoipa::path(get, path = "/gateway-requests", tag = "gateway", security(("api_key" = [])), params(HistoryQuery),
    responses((status = 200, body = PagedEnvelope<GatewayRequestRow>), (status = 401, body = ErrorEnvelope)))]
async fn history(
    State(s): State<AppState>,
    Auth(who): Auth,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<PagedEnvelope<GatewayRequestRow>>, ApiError> {
    let (items, page, total) = history_of(&s, &who.profile_id, &q).await?;
    Ok(paged(items, page, total))
}

/// A page of the caller's gateway history, over REST or MCP.
pub(crate) async fn history_of(
    s: &AppState,
    profile_id: &str,
    q: &HistoryQuery,
) -> Result<(Vec<GatewayRequestRow>, Page, crate::pagination::Total), ApiError> {
    let page = Page::new(q.page, q.limit);
    // Rows of this instance still queued in the recorder are committed first.
    s.gateway.flush().await;
    let (items, total) = super::store::history(s.db.pool(), profile_id, q, page)
        .await
        .map_err(ApiError::internal)?;
    Ok((items, page, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes a client can put in the optional headers read as a trimmed,
        /// non-empty value or as absent, never a panic.
        #[test]
        fn optional_headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                headers.insert("idempotency-key", v.clone());
                headers.insert(axum::http::header::CONTENT_TYPE, v);
            }
            if let Some(v) = header(&headers, "idempotency-key") {
                prop_assert!(!v.is_empty());
                prop_assert_eq!(v.trim(), v.as_str());
            }
            prop_assert!(header(&headers, "x-crochet-origin-currency").is_none());
            let _ = is_json_content_type(&headers);
        }
    }
}

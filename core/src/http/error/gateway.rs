//! How gateway errors, policy refusals and plugin failures become responses: status,
//! code, details and the recovery an agent follows.

use super::*;
use crate::identity::limits::LimitRefusal;

const GATEWAY_PRESERVE: [&str; 4] = [
    "listing_id",
    "request_body",
    "idempotency_key",
    "relay_request_id",
];

pub(super) fn gateway_spec(e: &GatewayError, msg: String) -> ErrorSpec {
    use GatewayError as G;
    use StatusCode as S;
    let supported_route = |summary: &str| Recovery {
        retryable: true,
        next_action: Some("choose_supported_payment_route"),
        summary: summary.into(),
        preserve: vec!["listing_id", "request_body"],
        ..Recovery::default()
    };
    match e {
        G::ListingNotFound => spec(S::NOT_FOUND, "LISTING_NOT_FOUND", msg),
        G::ListingNotActive(_) | G::SellerSuspended => spec(S::CONFLICT, "LISTING_NOT_ACTIVE", msg),
        G::EndpointUnavailable => spec(S::SERVICE_UNAVAILABLE, "SELLER_ENDPOINT_UNAVAILABLE", msg).recovery(Recovery {
            retryable: true,
            next_action: Some("retry_gateway_request_later"),
            summary: "The seller's endpoint is not taking calls; nothing was charged. Retry later with a fresh Idempotency-Key.".into(),
            preserve: vec!["listing_id", "request_body"],
            retry_after_seconds: Some(60),
            ..Recovery::default()
        }),
        G::InvalidBody(_) => spec(S::BAD_REQUEST, "INVALID_JSON", msg),
        G::BodyTooLarge(limit) => spec(S::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", msg).details(json!({"max_request_bytes": limit})),
        G::InvalidRoute { header, .. } => spec(S::BAD_REQUEST, "INVALID_PAYMENT_ROUTE", msg)
            .details(json!({"header": header}))
            .recovery(supported_route("Fix or drop the X-Crochet-Origin-* header and retry.")),
        G::UnsupportedRoute(_) => spec(S::BAD_REQUEST, "UNSUPPORTED_PAYMENT_ROUTE", msg)
            .recovery(supported_route("Choose a supported wallet/currency/chain combination (link a Solana wallet with POST /me/wallets if you have none).")),
        G::RouteMinimum { on_solana, minimum_cents, .. } => {
            let details = json!({
                "seller_endpoint_called": false,
                "recommended_origin_currency": "SOL",
                "recommended_gateway_headers": {"X-Crochet-Origin-Currency": "SOL"},
                "minimum_amount_cents": minimum_cents,
            });
            let recovery = if *on_solana {
                Recovery {
                    retryable: false,
                    next_action: Some("choose_higher_priced_listing_or_ask_operator"),
                    summary: "Even the Solana route cannot carry this price. Do not loop: choose a higher-priced listing or ask the operator.".into(),
                    retry_same_route: Some(false),
                    ..Recovery::default()
                }
            } else {
                Recovery {
                    retryable: true,
                    next_action: Some("retry_with_solana_payment_route"),
                    summary: "Retry with X-Crochet-Origin-Currency: SOL and a new Idempotency-Key; do not retry this EVM route.".into(),
                    preserve: vec!["listing_id", "request_body"],
                    discard: vec!["idempotency_key"],
                    retry_same_route: Some(false),
                    use_new_idempotency_key: Some(true),
                    ..Recovery::default()
                }
            };
            spec(S::BAD_REQUEST, "PAYMENT_ROUTE_MINIMUM_NOT_MET", "This payment route cannot support the listing's low per-call price.".into())
                .details(details)
                .recovery(recovery)
        }
        G::PaymentRequired(payment) => {
            let (summary, msg) = match (&payment.relay_request_id, &payment.x402) {
                (Some(_), None) => ("Complete the payment in error.details.payment.requirements, then retry the same JSON body with X-Crochet-Relay-Request-Id (and the same Idempotency-Key).", msg),
                (Some(_), Some(_)) => ("Either complete the payment in error.details.payment.requirements and retry the same JSON body with X-Crochet-Relay-Request-Id (and the same Idempotency-Key), or sign one of the x402 offers in the PAYMENT-REQUIRED header (also in error.details.payment.x402) and retry the same body with PAYMENT-SIGNATURE.", msg),
                _ => ("Sign one of the x402 offers in the PAYMENT-REQUIRED header (also in error.details.payment.x402) and retry the same JSON body with PAYMENT-SIGNATURE; the payment is settled only if the seller answers well.", "Payment required: retry this call with an x402 PAYMENT-SIGNATURE.".to_owned()),
            };
            let payment = serde_json::to_value(payment.as_ref()).unwrap_or(Value::Null);
            let mut s = spec(S::PAYMENT_REQUIRED, "PAYMENT_REQUIRED", msg)
                .details(json!({"payment": payment}))
                .recovery(Recovery {
                    retryable: true,
                    next_action: Some("complete_gateway_payment"),
                    summary: summary.into(),
                    preserve: GATEWAY_PRESERVE.to_vec(),
                    ..Recovery::default()
                });
            s.data = Some(json!({"payment": payment}));
            s
        }
        G::PaymentNotFound => spec(S::NOT_FOUND, "PAYMENT_REQUEST_NOT_FOUND", msg),
        G::BodyMismatch => spec(S::CONFLICT, "PAYMENT_BODY_MISMATCH", msg).recovery(Recovery {
            retryable: true,
            summary: "A relay request id pays for one exact body: retry with the original body, or call without X-Crochet-Relay-Request-Id to get a new payment requirement.".into(),
            preserve: vec!["relay_request_id"],
            ..Recovery::default()
        }),
        G::PaymentFailed { refunded, .. } => spec(S::PAYMENT_REQUIRED, "PAYMENT_FAILED", msg)
            .details(json!({"refunded": refunded}))
            .recovery(supported_route("The payment did not settle. Start a new payment (call without X-Crochet-Relay-Request-Id, with a new Idempotency-Key), on a supported route.")),
        G::PaymentConsumed(gr) => spec(S::CONFLICT, "PAYMENT_ALREADY_USED", msg)
            .details(json!({"gateway_request_id": gr}))
            .recovery(Recovery {
                retryable: false,
                summary: "This payment already paid for a call: inspect it with GET /gateway-requests. Do not pay again automatically.".into(),
                ..Recovery::default()
            }),
        G::IdempotencyConflict => spec(S::CONFLICT, "IDEMPOTENCY_KEY_REUSED", msg).recovery(Recovery {
            retryable: true,
            next_action: Some("retry_gateway_request_later"),
            summary: "Use a new Idempotency-Key for a different listing or body.".into(),
            discard: vec!["idempotency_key"],
            ..Recovery::default()
        }),
        G::IdempotencyInFlight => spec(S::CONFLICT, "GATEWAY_REQUEST_IN_PROGRESS", msg).recovery(Recovery {
            retryable: true,
            next_action: Some("retry_gateway_payment_later"),
            summary: "Another request with this Idempotency-Key is paying for the same call right now; nothing was charged by this one. Retry with the same key in a second: it answers with that call's outcome.".into(),
            preserve: GATEWAY_PRESERVE.to_vec(),
            retry_after_seconds: Some(1),
            ..Recovery::default()
        }),
        G::ProviderUnavailable(_) => spec(S::SERVICE_UNAVAILABLE, "PAYMENT_PROVIDER_UNAVAILABLE", msg).recovery(Recovery {
            retryable: true,
            next_action: Some("retry_gateway_payment_later"),
            summary: "The payment provider did not answer; keep relay_request_id, body and Idempotency-Key and retry later.".into(),
            preserve: GATEWAY_PRESERVE.to_vec(),
            retry_after_seconds: Some(10),
            ..Recovery::default()
        }),
        G::ProviderRateLimited(secs) => spec(S::TOO_MANY_REQUESTS, "RATE_LIMITED", msg).recovery(Recovery {
            retryable: true,
            next_action: Some("retry_after_delay"),
            summary: "Wait retry_after_seconds, then retry.".into(),
            retry_after_seconds: Some(*secs),
            ..Recovery::default()
        }),
        G::SellerFailed { code, context, paid: true, .. } => spec(S::BAD_GATEWAY, code, msg).details((**context).clone()).recovery(Recovery {
            retryable: true,
            next_action: Some("retry_from_balance_or_choose_another_seller"),
            summary: "The seller failed after payment was settled, so the charge was refunded to your marketplace balance (details.refund; GET /balance). Do not pay again automatically: check the seller's trust signals first; to retry, pay from the balance with X-Crochet-Pay-From: balance and a new Idempotency-Key.".into(),
            preserve: vec!["listing_id", "request_body"],
            discard: vec!["relay_request_id", "idempotency_key"],
            ..Recovery::default()
        }),
        G::SellerFailed { code, context, paid: false, .. } => spec(S::BAD_GATEWAY, code, msg).details((**context).clone()).recovery(Recovery {
            retryable: true,
            next_action: Some("retry_gateway_request_later"),
            summary: "The seller failed and nothing was charged (a free call, or an x402 payment that was not settled: its authorization expires unused). Retry later, or check the seller's trust signals first.".into(),
            preserve: vec!["listing_id", "request_body"],
            retry_after_seconds: Some(30),
            ..Recovery::default()
        }),
        G::CallInProgress { request_id, retry_after_seconds } => spec(S::CONFLICT, "GATEWAY_REQUEST_IN_PROGRESS", msg)
            .details(json!({"gateway_request_id": request_id, "retry_after_seconds": retry_after_seconds}))
            .recovery(Recovery {
                retryable: true,
                next_action: Some("retry_gateway_payment_later"),
                summary: "An earlier attempt of this paid call is still being forwarded, or the host forwarding it stopped. Keep relay_request_id, the same body and Idempotency-Key, wait retry_after_seconds, then retry: if the earlier attempt never finished, the retry forwards the call again under the same request id (sellers deduplicate by X-Crochet-Request-Id). Do not pay again.".into(),
                preserve: GATEWAY_PRESERVE.to_vec(),
                retry_after_seconds: Some(*retry_after_seconds),
                ..Recovery::default()
            }),
        G::CallInterrupted(request_id) => spec(S::CONFLICT, "GATEWAY_REQUEST_INTERRUPTED", msg)
            .details(json!({"gateway_request_id": request_id, "charge_reversed": true}))
            .recovery(Recovery {
                retryable: true,
                next_action: Some("retry_gateway_request_later"),
                summary: "This paid call was interrupted before it finished and nobody retried it in time; its charge was reversed in the ledger (GET /ledger). To make the call, start again without X-Crochet-Relay-Request-Id and with a new Idempotency-Key.".into(),
                preserve: vec!["listing_id", "request_body"],
                discard: vec!["relay_request_id", "idempotency_key"],
                ..Recovery::default()
            }),
        G::ConflictingPayments => spec(S::BAD_REQUEST, "CONFLICTING_PAYMENTS", msg).recovery(Recovery {
            retryable: true,
            summary: "Send either X-Crochet-Relay-Request-Id or PAYMENT-SIGNATURE, not both.".into(),
            preserve: vec!["listing_id", "request_body"],
            ..Recovery::default()
        }),
        G::X402NotOffered(_) => spec(S::BAD_REQUEST, "X402_NOT_OFFERED", msg).recovery(Recovery {
            retryable: false,
            summary: "Drop PAYMENT-SIGNATURE: this marketplace or listing does not take x402 payments; use the payment object of the 402 instead.".into(),
            preserve: vec!["listing_id", "request_body"],
            ..Recovery::default()
        }),
        G::X402Invalid { reason, .. } => spec(S::PAYMENT_REQUIRED, "PAYMENT_INVALID", msg)
            .details(json!({"reason": reason, "seller_endpoint_called": false, "payment_settled": false}))
            .recovery(Recovery {
                retryable: true,
                next_action: Some("sign_new_x402_payment"),
                summary: "The x402 payment was refused before the seller was called and nothing was charged. Sign a new payment for an offer in the PAYMENT-REQUIRED header (right network, asset, amount and payTo, valid for maxTimeoutSeconds, a fresh nonce) and retry the same body.".into(),
                preserve: vec!["listing_id", "request_body"],
                discard: vec!["payment_signature"],
                ..Recovery::default()
            }),
        G::PayerNotLinked { payer } => spec(S::FORBIDDEN, "PAYER_WALLET_NOT_LINKED", msg)
            .details(json!({"payer": payer, "seller_endpoint_called": false}))
            .recovery(Recovery {
                retryable: true,
                next_action: Some("link_payer_wallet"),
                summary: "Pay from a wallet linked to this profile (GET /me/wallets), link this one with POST /me/wallets, or call without the API key to buy as that wallet.".into(),
                preserve: vec!["listing_id", "request_body"],
                ..Recovery::default()
            }),
        G::X402SettlementFailed { gateway_request_id, reason, .. } => spec(S::PAYMENT_REQUIRED, "PAYMENT_SETTLEMENT_FAILED", msg)
            .details(json!({"gateway_request_id": gateway_request_id, "reason": reason, "seller_endpoint_called": true, "payment_settled": false, "seller_response_withheld": true}))
            .recovery(Recovery {
                retryable: true,
                next_action: Some("sign_new_x402_payment"),
                summary: "The seller answered but the payment did not settle (often: not enough funds), so the answer is withheld and nothing was charged. Fund the wallet or pay from another, then call again with a new payment.".into(),
                preserve: vec!["listing_id", "request_body"],
                discard: vec!["payment_signature", "idempotency_key"],
                use_new_idempotency_key: Some(true),
                ..Recovery::default()
            }),
        G::X402SettlementUnconfirmed(gr) => spec(S::BAD_GATEWAY, "PAYMENT_SETTLEMENT_UNCONFIRMED", msg)
            .details(json!({"gateway_request_id": gr, "seller_endpoint_called": true}))
            .recovery(Recovery {
                retryable: false,
                next_action: Some("check_gateway_request_later"),
                summary: "The settlement's answer was lost. Do not pay again: the host settles this payment again shortly (a payment can settle only once); GET /gateway-requests shows the outcome, and a receipt exists once it settled.".into(),
                retry_after_seconds: Some(60),
                ..Recovery::default()
            }),
        G::Policy(PolicyRefusal::Denied { plugin, denial }) => policy_denial_spec(plugin, denial),
        G::Policy(PolicyRefusal::Unavailable { plugin }) => plugin_unavailable_spec(plugin, msg),
        G::AdapterRejected(_) => spec(S::UNPROCESSABLE_ENTITY, "ADAPTER_REJECTED_REQUEST", msg)
            .recovery(Recovery {
                retryable: false,
                summary: "The listing's adapter cannot use this body; read the listing's connection_instructions and send the shape it expects.".into(),
                ..Recovery::default()
            }),
        G::AdapterUnavailable => plugin_unavailable_spec("seller-adapter", msg),
        G::KeyLimit(refusal) => key_limit_spec(refusal, msg),
        G::InvalidPayFrom => spec(S::BAD_REQUEST, "INVALID_PAY_FROM", msg)
            .details(json!({"header": "X-Crochet-Pay-From"}))
            .recovery(Recovery {
                retryable: true,
                summary: "Send `X-Crochet-Pay-From: balance` to pay from the marketplace balance, or leave the header out to pay per call.".into(),
                preserve: vec!["listing_id", "request_body"],
                ..Recovery::default()
            }),
        G::InsufficientBalance { balance_cents, price_cents, currency } => spec(S::PAYMENT_REQUIRED, "INSUFFICIENT_BALANCE", msg)
            .details(json!({
                "balance_cents": balance_cents,
                "price_cents": price_cents,
                "currency": currency,
                "seller_endpoint_called": false,
                "charged": false,
            }))
            .recovery(Recovery {
                retryable: true,
                next_action: Some("top_up_balance"),
                summary: "The balance does not cover this call and nothing was charged. Top it up with POST /balance/deposits, or call without X-Crochet-Pay-From to pay this call on its own.".into(),
                preserve: vec!["listing_id", "request_body"],
                ..Recovery::default()
            }),
        G::Catalog(e) => catalog_spec(e, msg),
        G::Database(e) => database_spec(e),
    }
}

/// A key's limits refused the call: a 403 saying which limit, what is left and when.
fn key_limit_spec(refusal: &LimitRefusal, msg: String) -> ErrorSpec {
    use crate::identity::limits::LimitRefusal as L;
    let ask_owner = |summary: &str| Recovery {
        retryable: false,
        next_action: Some("ask_key_owner"),
        summary: summary.into(),
        ..Recovery::default()
    };
    let base = json!({"seller_endpoint_called": false, "charged": false});
    let with = |mut extra: Value| {
        if let (Some(o), Some(b)) = (extra.as_object_mut(), base.as_object()) {
            o.extend(b.clone());
        }
        extra
    };
    match refusal {
        L::ListingNotAllowed { listing_id, category } => spec(StatusCode::FORBIDDEN, "LISTING_NOT_ALLOWED_FOR_KEY", msg)
            .details(with(json!({"limit": "listing_ids", "listing_id": listing_id, "category": category})))
            .recovery(ask_owner("This key may call only the listings or categories its limits name (GET /api-keys shows them). Choose one of those, or ask the profile that issued the key to widen them.")),
        L::SellerNotAllowed { seller_id } => spec(StatusCode::FORBIDDEN, "SELLER_NOT_ALLOWED_FOR_KEY", msg)
            .details(with(json!({"limit": "seller_ids", "seller_id": seller_id})))
            .recovery(ask_owner("This key may buy only from the sellers its limits name (GET /api-keys). Choose a listing of one of them, or ask the key's owner.")),
        L::PriceTooHigh { max_price_cents, price_cents } => spec(StatusCode::FORBIDDEN, "PRICE_LIMIT_EXCEEDED", msg)
            .details(with(json!({"limit": "max_price_cents", "limit_cents": max_price_cents, "price_cents": price_cents})))
            .recovery(ask_owner("The listing costs more per call than this key may pay. Choose a cheaper listing, or ask the key's owner to raise max_price_cents.")),
        L::SpendLimit { window, limit_cents, spent_cents, remaining_cents, price_cents, resets_at } => spec(StatusCode::FORBIDDEN, "SPEND_LIMIT_EXCEEDED", msg)
            .details(with(json!({
                "limit": window.field(),
                "limit_cents": limit_cents,
                "spent_cents": spent_cents,
                "remaining_cents": remaining_cents,
                "price_cents": price_cents,
                "resets_at": crate::storage::rfc3339(*resets_at),
            })))
            .recovery(Recovery {
                retryable: true,
                next_action: Some("wait_for_spend_window"),
                summary: "This call would take the key past its spend limit; nothing was charged (a payment already made for it stays unused: retry with the same X-Crochet-Relay-Request-Id once the window resets). Wait until resets_at, choose a call within remaining_cents, or ask the key's owner to raise the limit. Do not loop.".into(),
                retry_after_seconds: u64::try_from((resets_at - crate::storage::now_ms()).max(0) / 1000).ok(),
                preserve: vec!["listing_id", "request_body", "relay_request_id"],
                ..Recovery::default()
            }),
        L::X402WithCap => spec(StatusCode::FORBIDDEN, "PAYMENT_FLOW_NOT_ALLOWED_FOR_KEY", msg)
            .details(with(json!({"limit": "daily_cents/monthly_cents", "flow": "x402"})))
            .recovery(Recovery {
                retryable: true,
                summary: "Drop PAYMENT-SIGNATURE: pay through the payment object of the 402 (X-Crochet-Relay-Request-Id) or from the balance (X-Crochet-Pay-From: balance).".into(),
                preserve: vec!["listing_id", "request_body"],
                discard: vec!["payment_signature"],
                ..Recovery::default()
            }),
    }
}

/// A deposit's refusal (its 402 included).
pub(super) fn deposit_spec(e: &DepositError, msg: String) -> ErrorSpec {
    use StatusCode as S;
    match e {
        DepositError::Invalid { field, .. } => spec(S::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", msg).details(json!({"field": field})),
        DepositError::PaymentRequired(payment) => {
            let payment = serde_json::to_value(payment.as_ref()).unwrap_or(Value::Null);
            let mut s = spec(S::PAYMENT_REQUIRED, "PAYMENT_REQUIRED", msg)
                .details(json!({"payment": payment}))
                .recovery(Recovery {
                    retryable: true,
                    next_action: Some("complete_deposit_payment"),
                    summary: "Complete the payment in error.details.payment.requirements, then repeat POST /balance/deposits with X-Crochet-Relay-Request-Id; the balance is credited once.".into(),
                    preserve: vec!["relay_request_id", "amount_cents"],
                    ..Recovery::default()
                });
            s.data = Some(json!({"payment": payment}));
            s
        }
        DepositError::NotFound => spec(S::NOT_FOUND, "DEPOSIT_NOT_FOUND", msg),
        DepositError::AmountMismatch(amount) => spec(S::CONFLICT, "DEPOSIT_AMOUNT_MISMATCH", msg).details(json!({"amount_cents": amount})),
        DepositError::Failed(_) => spec(S::PAYMENT_REQUIRED, "PAYMENT_FAILED", msg).recovery(Recovery {
            retryable: true,
            summary: "The deposit's payment did not settle. Start a new deposit (POST /balance/deposits without X-Crochet-Relay-Request-Id).".into(),
            ..Recovery::default()
        }),
        DepositError::Provider(p) => gateway_spec(&crate::gateway::provider_error(p.clone()), msg),
        DepositError::Database(e) => database_spec(e),
    }
}

/// A policy plugin's refusal: its status and code, the failing field, and for rate
/// limits when to retry.
pub(super) fn policy_denial_spec(plugin: &str, denial: &crate::plugins::Denial) -> ErrorSpec {
    let status = StatusCode::from_u16(denial.status)
        .ok()
        .filter(StatusCode::is_client_error)
        .unwrap_or(StatusCode::FORBIDDEN);
    let well_formed = |c: &str| {
        !c.is_empty()
            && c.len() <= 64
            && c.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    };
    let code = if well_formed(&denial.code) {
        Cow::Owned(denial.code.clone())
    } else {
        Cow::Borrowed("POLICY_DENIED")
    };
    let mut details = json!({"plugin": plugin});
    if let Some(field) = &denial.field {
        details["field"] = json!(field);
    }
    let recovery = match (status, denial.retry_after_seconds) {
        (StatusCode::TOO_MANY_REQUESTS, secs) => Recovery {
            retryable: true,
            next_action: Some("retry_after_delay"),
            summary: "Wait retry_after_seconds, then retry.".into(),
            retry_after_seconds: Some(u64::from(secs.unwrap_or(1).max(1))),
            preserve: vec!["listing_id", "request_body"],
            ..Recovery::default()
        },
        _ => Recovery {
            retryable: false,
            summary: "The marketplace's policy refused this request; change it as the message says before trying again.".into(),
            ..Recovery::default()
        },
    };
    let mut out = spec(status, "POLICY_DENIED", truncate(&denial.message, 1000))
        .details(details)
        .recovery(recovery);
    out.body.code = code;
    out
}

/// A plugin that failed while configured fail-closed.
fn plugin_unavailable_spec(plugin: &str, msg: String) -> ErrorSpec {
    spec(StatusCode::SERVICE_UNAVAILABLE, "PLUGIN_UNAVAILABLE", msg)
        .details(json!({"plugin": plugin}))
        .recovery(Recovery {
            retryable: true,
            next_action: Some("retry_gateway_request_later"),
            summary: "A marketplace plugin failed and nothing was charged; retry later with the same body and a fresh Idempotency-Key.".into(),
            preserve: vec!["listing_id", "request_body"],
            retry_after_seconds: Some(5),
            ..Recovery::default()
        })
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

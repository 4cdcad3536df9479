//! The one place where errors become HTTP responses.
//!
//! Every domain has its own `thiserror` type; [`ApiError`] wraps them, and
//! [`ApiError::spec`] decides status, stable `SCREAMING_SNAKE` code, message, details and
//! the `recovery` hint. Handlers return `Result<_, ApiError>` and use `?`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use std::borrow::Cow;

use crate::admin::AdminError;
use crate::catalog::CatalogError;
use crate::gateway::GatewayError;
use crate::identity::IdentityError;
use crate::ledger::deposits::DepositError;
use crate::plugins::LoadError;
use crate::plugins::policy::PolicyRefusal;
use crate::reputation::ReputationError;
use crate::storage::StorageError;

mod gateway;

use gateway::gateway_spec;

/// Where agents read more about a recovery action.
const SKILL_DOCS: &str = "https://getcrochet.ai/agent-skill";

/// Malformed requests, found before any domain code runs.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    Validation(String),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("Content-Type must be {0}")]
    UnsupportedMediaTypeOf(&'static str),
    #[error("request body is larger than the host's limit (max_body_bytes)")]
    PayloadTooLarge,
    #[error("invalid path parameter: {0}")]
    BadPath(String),
    #[error("invalid query string: {0}")]
    BadQuery(String),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A control character in a path or query value, or in a JSON body.
    #[error("control character U+{:04X} is not allowed in the {location}{}", u32::from(*.character), .field.as_deref().map(|f| format!(" (`{f}`)")).unwrap_or_default())]
    InvalidCharacter {
        /// `path`, `query` or `body`.
        location: &'static str,
        /// The parameter or JSON field, when known.
        field: Option<String>,
        character: char,
    },
    #[error("the request body did not arrive in time (body_read_timeout_ms)")]
    BodyTimeout,
    #[error("the request body could not be read: {0}")]
    UnreadableBody(String),
    #[error("the request has more than {0} header fields")]
    TooManyHeaders(usize),
    #[error("the request's header section is larger than the host accepts")]
    HeadersTooLarge,
    #[error("the request line or a header field is not valid HTTP/1.1")]
    MalformedHttp,
    #[error("the request target is longer than the host accepts")]
    UriTooLong,
    #[error("the host is serving as many connections as it accepts")]
    ServerBusy,
}

/// Every error a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Reputation(#[from] ReputationError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Deposit(#[from] DepositError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    PluginLoad(#[from] LoadError),
    #[error("no such payment for this buyer")]
    PaymentNotFound,
    #[error("no such receipt for this profile")]
    ReceiptNotFound,
    #[error("this payment is already {0}")]
    PaymentFinal(String),
    /// A failure of the host itself; the details are logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// `error.recovery` of the envelope: whether and how to retry.
#[derive(Debug, Serialize, ToSchema, Default, Clone)]
pub struct Recovery {
    pub retryable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_action: Option<&'static str>,
    pub summary: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preserve: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub discard: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docs_url: Option<String>,
    /// Route-minimum answers: never retry the same payment route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_same_route: Option<bool>,
    /// Route-minimum answers: retry with a new Idempotency-Key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_new_idempotency_key: Option<bool>,
}

/// `error` of the envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable `SCREAMING_SNAKE` code; policy plugins may name their own.
    #[schema(value_type = String)]
    pub code: Cow<'static, str>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

/// The failure envelope: `{"success": false, "error": {...}}`; a 402 also carries
/// `data.payment`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub success: bool,
    pub error: ErrorBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

/// Everything a response needs, decided from an error.
pub struct ErrorSpec {
    pub status: StatusCode,
    pub body: ErrorBody,
    pub data: Option<Value>,
}

fn spec(status: StatusCode, code: &'static str, message: String) -> ErrorSpec {
    ErrorSpec {
        status,
        body: ErrorBody {
            code: Cow::Borrowed(code),
            message,
            details: None,
            recovery: None,
        },
        data: None,
    }
}

impl ErrorSpec {
    fn details(mut self, details: Value) -> Self {
        self.body.details = Some(details);
        self
    }

    fn recovery(mut self, recovery: Recovery) -> Self {
        self.body.recovery = Some(recovery);
        self
    }
}

fn send_api_key() -> Recovery {
    Recovery {
        retryable: true,
        next_action: Some("send_api_key_authorization"),
        summary: "Send `Authorization: Bearer am_k_...` (use data.authorization_header from the key-issuing response). If the key is lost, recover it with POST /auth/challenge then POST /auth/recover.".into(),
        docs_url: Some(format!("{SKILL_DOCS}#hard-auth-rules")),
        ..Recovery::default()
    }
}

fn restart_challenge() -> Recovery {
    Recovery {
        retryable: true,
        next_action: Some("restart_wallet_challenge"),
        summary: "Discard this nonce, pow_nonce and signature; request a fresh challenge with POST /auth/challenge, sign its exact message and solve its proof-of-work.".into(),
        preserve: vec!["wallet_address"],
        discard: vec!["nonce", "pow_nonce", "signature"],
        docs_url: Some(format!("{SKILL_DOCS}#wallet-signature-rules")),
        ..Recovery::default()
    }
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    /// Status, code, message, details and recovery for this error.
    pub fn spec(&self) -> ErrorSpec {
        use IdentityError as I;
        use StatusCode as S;
        let msg = self.to_string();
        match self {
            ApiError::Request(e) => match e {
                RequestError::InvalidJson(_) => spec(S::BAD_REQUEST, "INVALID_JSON", msg),
                RequestError::Validation(_) => spec(S::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", msg),
                RequestError::UnsupportedMediaType | RequestError::UnsupportedMediaTypeOf(_) => spec(S::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE", msg),
                RequestError::PayloadTooLarge => spec(S::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", msg),
                RequestError::BadPath(_) => spec(S::BAD_REQUEST, "INVALID_PATH_PARAMETER", msg),
                RequestError::BadQuery(_) => spec(S::BAD_REQUEST, "INVALID_QUERY", msg),
                RequestError::RouteNotFound(_) => spec(S::NOT_FOUND, "ROUTE_NOT_FOUND", msg),
                RequestError::MethodNotAllowed => spec(S::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", msg),
                RequestError::InvalidCharacter { location, field, character } => {
                    let mut details = json!({"in": location, "character": format!("U+{:04X}", u32::from(*character))});
                    if let Some(field) = field {
                        details["field"] = json!(field);
                    }
                    spec(S::BAD_REQUEST, "INVALID_CHARACTER", msg).details(details).recovery(Recovery {
                        retryable: false,
                        summary: "Remove the control character: path and query values may contain none, JSON bodies only tab, line feed and carriage return.".into(),
                        ..Recovery::default()
                    })
                }
                RequestError::BodyTimeout => spec(S::REQUEST_TIMEOUT, "REQUEST_TIMEOUT", msg),
                RequestError::UnreadableBody(_) => spec(S::BAD_REQUEST, "BAD_REQUEST", msg),
                RequestError::TooManyHeaders(_) => spec(S::REQUEST_HEADER_FIELDS_TOO_LARGE, "TOO_MANY_HEADERS", msg),
                RequestError::HeadersTooLarge => spec(S::REQUEST_HEADER_FIELDS_TOO_LARGE, "HEADERS_TOO_LARGE", msg),
                RequestError::MalformedHttp => spec(S::BAD_REQUEST, "MALFORMED_REQUEST", msg),
                RequestError::UriTooLong => spec(S::URI_TOO_LONG, "URI_TOO_LONG", msg),
                RequestError::ServerBusy => spec(S::SERVICE_UNAVAILABLE, "SERVER_BUSY", msg).recovery(Recovery {
                    retryable: true,
                    next_action: Some("retry_after_delay"),
                    summary: "The host is at its connection limit; retry shortly on a new connection.".into(),
                    retry_after_seconds: Some(1),
                    ..Recovery::default()
                }),
            },
            ApiError::Identity(e) => match e {
                I::InvalidWalletAddress(_) => spec(S::BAD_REQUEST, "INVALID_WALLET_ADDRESS", msg)
                    .details(json!({"field": "wallet_address"})),
                I::Invalid { field, .. } => {
                    spec(S::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", msg).details(json!({"field": field}))
                }
                I::ChallengeNotFound => spec(S::BAD_REQUEST, "CHALLENGE_NOT_FOUND", msg).recovery(restart_challenge()),
                I::ChallengeMismatch(field) => spec(S::BAD_REQUEST, "CHALLENGE_MISMATCH", msg)
                    .details(json!({"field": field}))
                    .recovery(restart_challenge()),
                I::ChallengeExpired => spec(S::BAD_REQUEST, "CHALLENGE_EXPIRED", msg).recovery(restart_challenge()),
                I::ChallengeUsed => spec(S::CONFLICT, "CHALLENGE_ALREADY_USED", msg).recovery(restart_challenge()),
                I::InvalidPow => spec(S::BAD_REQUEST, "INVALID_POW", msg).recovery(restart_challenge()),
                I::InvalidSignature(_) => spec(S::UNAUTHORIZED, "INVALID_SIGNATURE", msg).recovery(restart_challenge()),
                I::WalletAlreadyRegistered => spec(S::CONFLICT, "WALLET_ALREADY_REGISTERED", msg).recovery(Recovery {
                    retryable: false,
                    next_action: Some("recover_api_key"),
                    summary: "This wallet already has a profile: request POST /auth/challenge with purpose `recover`, then POST /auth/recover for a fresh API key.".into(),
                    preserve: vec!["wallet_address"],
                    discard: vec!["nonce", "pow_nonce", "signature"],
                    docs_url: Some(format!("{SKILL_DOCS}#hard-auth-rules")),
                    ..Recovery::default()
                }),
                I::WalletNotRegistered => spec(S::NOT_FOUND, "WALLET_NOT_REGISTERED", msg).recovery(Recovery {
                    retryable: false,
                    summary: "Register this wallet with POST /auth/challenge then POST /register.".into(),
                    ..Recovery::default()
                }),
                I::WalletCannotRecover => spec(S::FORBIDDEN, "WALLET_NOT_RECOVERY_ENABLED", msg),
                I::WalletNotLinked => spec(S::FORBIDDEN, "WALLET_NOT_LINKED", msg),
                I::WalletAlreadyLinked => spec(S::CONFLICT, "WALLET_ALREADY_LINKED", msg),
                I::LastRecoveryWallet => spec(S::CONFLICT, "LAST_RECOVERY_WALLET", msg).recovery(Recovery {
                    retryable: false,
                    summary: "Link or enable another recovery wallet first (POST /me/wallets), then retry this change with a fresh update_wallet proof.".into(),
                    ..Recovery::default()
                }),
                I::WalletNotFound => spec(S::NOT_FOUND, "WALLET_NOT_FOUND", msg),
                I::ApiKeyNotFound => spec(S::NOT_FOUND, "API_KEY_NOT_FOUND", msg),
                I::AgentNotFound => spec(S::NOT_FOUND, "AGENT_NOT_FOUND", msg),
                I::AuthMissing => spec(S::UNAUTHORIZED, "AUTH_REQUIRED", msg).recovery(send_api_key()),
                I::AuthMalformed => spec(S::UNAUTHORIZED, "INVALID_AUTHORIZATION_HEADER", msg).recovery(send_api_key()),
                I::InvalidApiKey => spec(S::UNAUTHORIZED, "INVALID_API_KEY", msg).recovery(send_api_key()),
                I::ApiKeyExpired => spec(S::UNAUTHORIZED, "API_KEY_EXPIRED", msg).recovery(Recovery {
                    retryable: false,
                    next_action: Some("ask_key_owner"),
                    summary: "This key's expiry has passed. Do not retry with it: ask the profile that issued it for a new key (POST /api-keys) or a later expiry (PATCH /api-keys/{id}).".into(),
                    ..Recovery::default()
                }),
                I::LimitedKey => spec(S::FORBIDDEN, "KEY_MANAGEMENT_NOT_ALLOWED", msg).recovery(Recovery {
                    retryable: false,
                    summary: "Keys with limits cannot manage keys (so a sub-agent cannot lift its own limits); a key without limits of the same profile can.".into(),
                    ..Recovery::default()
                }),
                I::AgentSuspended => spec(S::FORBIDDEN, "AGENT_SUSPENDED", msg).recovery(ask_operator(
                    "The marketplace's operator has suspended this agent: none of its API keys work until the operator reinstates it. Do not retry; contact the operator.",
                )),
                I::Database(e) => database_spec(e),
            },
            ApiError::Catalog(e) => catalog_spec(e, msg),
            ApiError::Gateway(e) => gateway_spec(e, msg),
            ApiError::Reputation(e) => reputation_spec(e, msg),
            ApiError::Admin(e) => admin_spec(e, msg),
            ApiError::Deposit(e) => gateway::deposit_spec(e, msg),
            ApiError::PluginLoad(e) => {
                let plugin = match e {
                    LoadError::Config(_) => None,
                    LoadError::DuplicateName(name) => Some(name),
                    LoadError::Source { plugin, .. } | LoadError::Refused { plugin, .. } | LoadError::DigestMismatch { plugin, .. } | LoadError::Trial { plugin, .. } | LoadError::Misconfigured { plugin, .. } | LoadError::ConfigRejected { plugin, .. } => Some(plugin),
                };
                spec(S::UNPROCESSABLE_ENTITY, "PLUGIN_RELOAD_REFUSED", msg)
                    .details(json!({"plugin": plugin}))
                    .recovery(Recovery {
                        retryable: false,
                        summary: "Nothing changed: the running plugins go on serving. Fix the plugin or the [plugins] configuration, then reload again.".into(),
                        ..Recovery::default()
                    })
            }
            ApiError::PaymentNotFound => spec(S::NOT_FOUND, "PAYMENT_NOT_FOUND", msg),
            ApiError::ReceiptNotFound => spec(S::NOT_FOUND, "RECEIPT_NOT_FOUND", msg),
            ApiError::PaymentFinal(_) => spec(S::CONFLICT, "PAYMENT_ALREADY_FINAL", msg),
            ApiError::Storage(StorageError::Sqlx(e)) => database_spec(e),
            ApiError::Storage(_) | ApiError::Internal(_) => internal_spec(),
        }
    }
}

fn restart_listing_challenge() -> Recovery {
    Recovery {
        retryable: true,
        next_action: Some("restart_listing_challenge"),
        summary: "Request a fresh challenge with POST /listings/challenge, solve it, and send the listing again with the new pow_nonce.".into(),
        preserve: vec!["listing_body"],
        discard: vec!["pow_nonce"],
        ..Recovery::default()
    }
}

fn catalog_spec(e: &CatalogError, msg: String) -> ErrorSpec {
    use CatalogError as C;
    use StatusCode as S;
    match e {
        C::Invalid { field, .. } => spec(S::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", msg).details(json!({"field": field})),
        C::ListingNotFound => spec(S::NOT_FOUND, "LISTING_NOT_FOUND", msg),
        C::NotOwner => spec(S::FORBIDDEN, "NOT_LISTING_OWNER", msg),
        C::SuspendedByOperator => spec(S::FORBIDDEN, "LISTING_SUSPENDED_BY_OPERATOR", msg).recovery(ask_operator(
            "The marketplace's operator has suspended this listing; only the operator can reinstate it. Do not retry; contact the operator.",
        )),
        C::SellerRoleRequired => spec(S::FORBIDDEN, "SELLER_ROLE_REQUIRED", msg).recovery(Recovery {
            retryable: false,
            summary: "Listings need a profile registered with role `seller` or `both`. Register a seller profile with another wallet (POST /auth/challenge, POST /register with \"role\": \"seller\") and publish from it.".into(),
            ..Recovery::default()
        }),
        C::ChallengeNotFound => {
            spec(S::BAD_REQUEST, "LISTING_CHALLENGE_NOT_FOUND", msg).recovery(restart_listing_challenge())
        }
        C::ChallengeExpired => spec(S::BAD_REQUEST, "LISTING_CHALLENGE_EXPIRED", msg).recovery(restart_listing_challenge()),
        C::ChallengeUsed => spec(S::CONFLICT, "LISTING_CHALLENGE_ALREADY_USED", msg).recovery(restart_listing_challenge()),
        C::InvalidPow => spec(S::BAD_REQUEST, "INVALID_POW", msg).recovery(restart_listing_challenge()),
        C::Endpoint(u) => {
            spec(S::UNPROCESSABLE_ENTITY, u.code(), msg).details(json!({"field": "private_endpoint_url"}))
        }
        C::Upstream(u) => spec(S::UNPROCESSABLE_ENTITY, u.code(), msg).details(json!({"field": "private_endpoint_url"})),
        C::EndpointNotConfigured => spec(S::CONFLICT, "ENDPOINT_NOT_CONFIGURED", msg),
        C::AdapterNotFound => spec(S::NOT_FOUND, "ADAPTER_NOT_FOUND", msg),
        C::InvalidAdapter(_) => spec(S::UNPROCESSABLE_ENTITY, "INVALID_ADAPTER_COMPONENT", msg),
        C::Database(e) => database_spec(e),
        C::Secrets(_) | C::Internal(_) => internal_spec(),
    }
}

fn reputation_spec(e: &ReputationError, msg: String) -> ErrorSpec {
    use ReputationError as R;
    use StatusCode as S;
    match e {
        R::Invalid { field, .. } => spec(S::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", msg).details(json!({"field": field})),
        R::ListingNotFound => spec(S::NOT_FOUND, "LISTING_NOT_FOUND", msg),
        R::AgentNotFound => spec(S::NOT_FOUND, "AGENT_NOT_FOUND", msg),
        R::OwnListing => spec(S::FORBIDDEN, "CANNOT_REVIEW_OWN_LISTING", msg).recovery(Recovery {
            retryable: false,
            summary: "Reviews come from buyers; a seller's reputation is built by the buyers it serves.".into(),
            ..Recovery::default()
        }),
        R::PurchaseRequired(days) => spec(S::FORBIDDEN, "REVIEW_PURCHASE_REQUIRED", msg)
            .details(json!({"review_window_days": days}))
            .recovery(Recovery {
                retryable: false,
                summary: "Review after a successful call to this listing through POST /gateway/{listing_id}; check GET /gateway-requests?role=buyer for your recent calls.".into(),
                ..Recovery::default()
            }),
        R::DuplicateReview => spec(S::CONFLICT, "REVIEW_ALREADY_EXISTS", msg).recovery(Recovery {
            retryable: false,
            next_action: Some("do_not_retry_duplicate_review"),
            summary: "This buyer has already reviewed this listing; stop retrying this review create request.".into(),
            docs_url: Some(format!("{SKILL_DOCS}#reviews-score-and-claim")),
            ..Recovery::default()
        }),
        R::Scorer(_) => spec(S::SERVICE_UNAVAILABLE, "SCORER_UNAVAILABLE", msg).recovery(Recovery {
            retryable: true,
            next_action: Some("retry_after_delay"),
            summary: "The score could not be computed right now; retry shortly.".into(),
            retry_after_seconds: Some(5),
            ..Recovery::default()
        }),
        R::Database(e) => database_spec(e),
        R::Corrupt(_) => internal_spec(),
    }
}

fn ask_operator(summary: &str) -> Recovery {
    Recovery {
        retryable: false,
        next_action: Some("contact_marketplace_operator"),
        summary: summary.into(),
        ..Recovery::default()
    }
}

fn admin_spec(e: &AdminError, msg: String) -> ErrorSpec {
    use AdminError as A;
    use StatusCode as S;
    let send_token = || {
        Recovery {
        retryable: false,
        summary: "Admin routes take the operator's credential (admin_token), `Authorization: Bearer <admin token>`; agents' API keys are never accepted here.".into(),
        ..Recovery::default()
    }
    };
    match e {
        A::TokenRequired => {
            spec(S::UNAUTHORIZED, "ADMIN_TOKEN_REQUIRED", msg).recovery(send_token())
        }
        A::TokenInvalid => spec(S::FORBIDDEN, "ADMIN_TOKEN_INVALID", msg).recovery(send_token()),
        A::Invalid { field, .. } => {
            spec(S::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", msg).details(json!({"field": field}))
        }
        A::AgentNotFound => spec(S::NOT_FOUND, "AGENT_NOT_FOUND", msg),
        A::ListingNotFound => spec(S::NOT_FOUND, "LISTING_NOT_FOUND", msg),
        A::AgentAlreadySuspended => spec(S::CONFLICT, "AGENT_ALREADY_SUSPENDED", msg),
        A::AgentNotSuspended => spec(S::CONFLICT, "AGENT_NOT_SUSPENDED", msg),
        A::ListingAlreadySuspended => spec(S::CONFLICT, "LISTING_ALREADY_SUSPENDED", msg),
        A::ListingNotSuspended => spec(S::CONFLICT, "LISTING_NOT_SUSPENDED", msg),
        A::Database(e) => database_spec(e),
    }
}

fn internal_spec() -> ErrorSpec {
    spec(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        "The gateway hit an internal error; the request was not completed.".into(),
    )
    .recovery(Recovery {
        retryable: true,
        next_action: Some("retry_after_delay"),
        summary: "Wait, then retry the request.".into(),
        retry_after_seconds: Some(5),
        ..Recovery::default()
    })
}

/// A database failure: retryable only when waiting can help (see [`database_retryable`]).
fn database_spec(e: &sqlx::Error) -> ErrorSpec {
    if database_retryable(e) {
        return internal_spec();
    }
    spec(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        "The gateway hit an internal error; the request was not completed.".into(),
    )
    .recovery(Recovery {
        retryable: false,
        summary: "The database refused this request; the same request will fail the same way. Change it, or report it to the operator.".into(),
        ..Recovery::default()
    })
}

/// Whether a database error may go away on retry: lost or exhausted connections, I/O,
/// serialization failures and deadlocks (PostgreSQL `40001`, `40P01`), lock and busy
/// timeouts (`55P03`, `57014`, SQLite `BUSY`/`LOCKED`), resource shortages (class `53`),
/// connection exceptions (class `08`) and server shutdowns (class `57P`). Everything else
/// (data exceptions, class `22`; integrity violations, class `23`; constraint errors of
/// SQLite; decoding and protocol errors) fails the same way every time.
pub fn database_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if db.kind() != sqlx::error::ErrorKind::Other {
                return false; // unique, foreign key, not null, check, exclusion
            }
            let Some(code) = db.code() else {
                return false;
            };
            if code.len() == 5 {
                // A PostgreSQL SQLSTATE.
                matches!(&*code, "40001" | "40P01" | "55P03" | "57014")
                    || code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
            } else {
                // A SQLite (extended) result code: the primary code is its low byte.
                // BUSY 5, LOCKED 6, IOERR 10, PROTOCOL 15.
                code.parse::<i32>()
                    .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 15))
            }
        }
        _ => false,
    }
}

impl ApiError {
    /// The status and the serialized envelope, for answers written below the router
    /// (built once at start-up, not per request).
    pub fn envelope_bytes(&self) -> (StatusCode, Vec<u8>) {
        let ErrorSpec { status, body, data } = self.spec();
        let envelope = ErrorEnvelope {
            success: false,
            error: body,
            data,
        };
        // An envelope of strings and numbers always serializes.
        (status, serde_json::to_vec(&envelope).unwrap_or_default())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let spec = self.spec();
        self.respond(spec)
    }
}

impl ApiError {
    /// The response of this error from its [`spec`](Self::spec), for a handler that read
    /// the spec first (the gateway logs and counts each call's error code).
    pub fn respond(&self, spec: ErrorSpec) -> Response {
        let ErrorSpec { status, body, data } = spec;
        if status.is_server_error() {
            tracing::error!(error = %self, code = %body.code, "request failed");
        } else {
            tracing::debug!(code = %body.code, "request refused");
        }
        let retry_after = body.recovery.as_ref().and_then(|r| r.retry_after_seconds);
        let envelope = ErrorEnvelope {
            success: false,
            error: body,
            data,
        };
        let mut response = (status, axum::Json(envelope)).into_response();
        // 409 too: a paid call still being forwarded says when to retry it.
        let throttled = status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::SERVICE_UNAVAILABLE
            || status == StatusCode::CONFLICT;
        if let Some(secs) = retry_after.filter(|_| throttled) {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

#[cfg(test)]
mod tests;

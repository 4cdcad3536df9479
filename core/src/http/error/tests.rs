//! Tests of the error-to-response mapping.

use super::*;

#[test]
fn every_identity_error_has_a_stable_code_and_status() {
    use crate::identity::crypto::ProofError;
    let cases: Vec<(IdentityError, u16, &str, Option<&str>)> = vec![
        (
            IdentityError::ChallengeExpired,
            400,
            "CHALLENGE_EXPIRED",
            Some("restart_wallet_challenge"),
        ),
        (
            IdentityError::ChallengeUsed,
            409,
            "CHALLENGE_ALREADY_USED",
            Some("restart_wallet_challenge"),
        ),
        (
            IdentityError::InvalidSignature(ProofError::SignatureMismatch),
            401,
            "INVALID_SIGNATURE",
            Some("restart_wallet_challenge"),
        ),
        (
            IdentityError::WalletAlreadyRegistered,
            409,
            "WALLET_ALREADY_REGISTERED",
            Some("recover_api_key"),
        ),
        (
            IdentityError::AuthMissing,
            401,
            "AUTH_REQUIRED",
            Some("send_api_key_authorization"),
        ),
        (
            IdentityError::InvalidApiKey,
            401,
            "INVALID_API_KEY",
            Some("send_api_key_authorization"),
        ),
        (
            IdentityError::Database(sqlx::Error::PoolTimedOut),
            500,
            "INTERNAL_ERROR",
            Some("retry_after_delay"),
        ),
    ];
    for (err, status, code, action) in cases {
        let s = ApiError::from(err).spec();
        assert_eq!(s.status.as_u16(), status, "{code}");
        assert_eq!(s.body.code, code);
        assert_eq!(
            s.body.recovery.and_then(|r| r.next_action),
            action,
            "{code}"
        );
    }
}

#[test]
fn route_minimum_on_solana_stops_the_loop() {
    let e = GatewayError::RouteMinimum {
        on_solana: true,
        minimum_cents: None,
        message: String::new(),
    };
    let s = ApiError::from(e).spec();
    let r = s.body.recovery.unwrap();
    assert_eq!(
        r.next_action,
        Some("choose_higher_priced_listing_or_ask_operator")
    );
    assert!(!r.retryable);
    assert_eq!(s.body.details.unwrap()["seller_endpoint_called"], false);
}

/// A database error with a given code and kind, as a driver would report it.
#[derive(Debug)]
struct FakeDbError(&'static str, fn() -> sqlx::error::ErrorKind);

impl std::fmt::Display for FakeDbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fake database error {}", self.0)
    }
}

impl std::error::Error for FakeDbError {}

impl sqlx::error::DatabaseError for FakeDbError {
    fn message(&self) -> &str {
        "fake"
    }
    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self.0))
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> sqlx::error::ErrorKind {
        (self.1)()
    }
}

fn db(code: &'static str) -> sqlx::Error {
    sqlx::Error::Database(Box::new(FakeDbError(code, || {
        sqlx::error::ErrorKind::Other
    })))
}

#[test]
fn database_errors_are_retryable_only_when_waiting_helps() {
    use sqlx::error::ErrorKind;
    let retryable = [
        sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed,
        sqlx::Error::Io(std::io::Error::other("reset")),
        db("40001"),
        db("40P01"),
        db("55P03"),
        db("57014"),
        db("08006"),
        db("53300"),
        db("57P01"),
        db("5"),   // SQLITE_BUSY
        db("517"), // SQLITE_BUSY_SNAPSHOT
        db("6"),   // SQLITE_LOCKED
        db("266"), // SQLITE_IOERR_READ
    ];
    let retryable_of = |s: ErrorSpec| s.body.recovery.map(|r| r.retryable);
    for e in &retryable {
        assert!(database_retryable(e), "{e}");
        assert_eq!(retryable_of(database_spec(e)), Some(true), "{e}");
    }
    let final_ = [
        db("22021"), // invalid byte sequence (a NUL in PostgreSQL text)
        db("22P02"),
        db("22003"),
        db("23505"),
        db("42P01"),
        db("2067"), // SQLITE_CONSTRAINT_UNIQUE
        db("19"),
        db("1"),
        sqlx::Error::Database(Box::new(FakeDbError("23505", || {
            ErrorKind::UniqueViolation
        }))),
        sqlx::Error::Database(Box::new(FakeDbError("5", || ErrorKind::CheckViolation))),
        sqlx::Error::RowNotFound,
        sqlx::Error::ColumnNotFound("x".into()),
        sqlx::Error::Protocol("x".into()),
    ];
    for e in &final_ {
        assert!(!database_retryable(e), "{e}");
        assert_eq!(retryable_of(database_spec(e)), Some(false), "{e}");
    }
    // Every domain's database errors go through the same classification.
    for api in [
        ApiError::from(IdentityError::Database(db("22021"))),
        ApiError::from(CatalogError::Database(db("22021"))),
        ApiError::from(ReputationError::Database(db("22021"))),
        ApiError::from(GatewayError::Database(db("23505"))),
        ApiError::from(StorageError::Sqlx(db("22021"))),
    ] {
        let s = api.spec();
        assert_eq!(s.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(retryable_of(s), Some(false), "{api}");
    }
}

#[test]
fn internal_errors_do_not_leak_details() {
    let s = ApiError::internal("secret connection string").spec();
    assert!(!s.body.message.contains("secret"));
}

mod properties {
    use super::super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever a policy plugin answers, the refusal is a 4xx with a well-formed
        /// code and a bounded message.
        #[test]
        fn plugin_denials_are_always_well_formed_4xx(
            status in any::<u16>(),
            code in ".{0,80}",
            message in ".{0,1200}",
            field in proptest::option::of(".{0,80}"),
            retry in proptest::option::of(any::<u32>()),
        ) {
            let denial = crate::plugins::Denial {
                status,
                code,
                message,
                field,
                retry_after_seconds: retry,
            };
            let s = super::gateway::policy_denial_spec("p", &denial);
            prop_assert!(s.status.is_client_error());
            prop_assert!(!s.body.code.is_empty() && s.body.code.len() <= 64);
            prop_assert!(s.body.code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'));
            prop_assert!(s.body.message.chars().count() <= 1001);
            let r = s.body.recovery.unwrap();
            if s.status == StatusCode::TOO_MANY_REQUESTS {
                prop_assert!(r.retry_after_seconds.is_some_and(|s| s >= 1));
            }
        }
    }
}

#[test]
fn operator_errors_have_stable_codes_and_statuses() {
    use crate::admin::AdminError as A;
    let cases: Vec<(ApiError, u16, &str)> = vec![
        (A::TokenRequired.into(), 401, "ADMIN_TOKEN_REQUIRED"),
        (A::TokenInvalid.into(), 403, "ADMIN_TOKEN_INVALID"),
        (A::AgentNotFound.into(), 404, "AGENT_NOT_FOUND"),
        (A::ListingNotFound.into(), 404, "LISTING_NOT_FOUND"),
        (
            A::AgentAlreadySuspended.into(),
            409,
            "AGENT_ALREADY_SUSPENDED",
        ),
        (A::AgentNotSuspended.into(), 409, "AGENT_NOT_SUSPENDED"),
        (
            A::ListingAlreadySuspended.into(),
            409,
            "LISTING_ALREADY_SUSPENDED",
        ),
        (A::ListingNotSuspended.into(), 409, "LISTING_NOT_SUSPENDED"),
        (A::invalid("from", "x").into(), 422, "VALIDATION_ERROR"),
        (IdentityError::AgentSuspended.into(), 403, "AGENT_SUSPENDED"),
        (
            CatalogError::SuspendedByOperator.into(),
            403,
            "LISTING_SUSPENDED_BY_OPERATOR",
        ),
        (
            GatewayError::SellerSuspended.into(),
            409,
            "LISTING_NOT_ACTIVE",
        ),
    ];
    for (err, status, code) in cases {
        let s = err.spec();
        assert_eq!(s.status.as_u16(), status, "{code}");
        assert_eq!(s.body.code, code);
    }
    // What an agent refused for its standing is told: not retryable, ask the operator.
    let s = ApiError::from(IdentityError::AgentSuspended).spec();
    let r = s.body.recovery.unwrap();
    assert!(!r.retryable);
    assert_eq!(r.next_action, Some("contact_marketplace_operator"));
}

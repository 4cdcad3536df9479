//! The catalog domain's error type; its HTTP form is decided in `crate::http::error`.

use crate::seller_client::upstream::EndpointUrlError;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{field} {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("listing not found")]
    ListingNotFound,
    #[error("only the listing's seller can do this")]
    NotOwner,
    #[error(
        "the marketplace's operator has suspended this listing; it cannot be changed until the operator reinstates it"
    )]
    SuspendedByOperator,
    #[error("this profile was registered as a buyer only and cannot publish listings")]
    SellerRoleRequired,
    #[error("no open listing challenge: request one with POST /listings/challenge")]
    ChallengeNotFound,
    #[error("the listing challenge has expired")]
    ChallengeExpired,
    #[error("the listing challenge has already been used")]
    ChallengeUsed,
    #[error("pow_nonce does not solve the listing challenge")]
    InvalidPow,
    #[error("private_endpoint_url is not allowed: {0}")]
    Endpoint(#[from] EndpointUrlError),
    #[error(
        "this listing has no private endpoint URL yet: set one with PUT /listings/{{id}}/endpoint"
    )]
    EndpointNotConfigured,
    #[error("the seller endpoint cannot be reached: {0}")]
    Upstream(crate::seller_client::upstream::UpstreamError),
    #[error("stored endpoint secret cannot be read: {0}")]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error("this listing has no seller adapter")]
    AdapterNotFound,
    #[error("the component is not a usable seller adapter: {0}")]
    InvalidAdapter(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl CatalogError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

//! The admin domain's error type; its HTTP form is decided in `crate::http::error`.

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "the admin routes need the operator's credential: `Authorization: Bearer <admin token>`"
    )]
    TokenRequired,
    #[error("this is not the operator's credential")]
    TokenInvalid,
    #[error("{field} {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("agent not found")]
    AgentNotFound,
    #[error("listing not found")]
    ListingNotFound,
    #[error("this agent is already suspended")]
    AgentAlreadySuspended,
    #[error("this agent is not suspended")]
    AgentNotSuspended,
    #[error("this listing is already suspended by the operator")]
    ListingAlreadySuspended,
    #[error("this listing is not suspended by the operator")]
    ListingNotSuspended,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl AdminError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

//! The reputation domain's error type; its HTTP form is decided in `crate::http::error`.

#[derive(Debug, thiserror::Error)]
pub enum ReputationError {
    #[error("{field} {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("listing not found")]
    ListingNotFound,
    #[error("no agent has this id")]
    AgentNotFound,
    #[error("a seller cannot review its own listing")]
    OwnListing,
    #[error(
        "reviewing needs a successful gateway call to this listing by this buyer in the last {0} days"
    )]
    PurchaseRequired(u32),
    #[error("this buyer has already reviewed this listing")]
    DuplicateReview,
    #[error("the scoring plugin failed: {0}")]
    Scorer(#[from] crate::plugins::PluginError),
    #[error("a stored score cannot be read: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl ReputationError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

//! The identity domain's error type. Its HTTP form (status, code, recovery hint) is
//! decided in one place: `crate::http::error`.

use super::crypto::ProofError;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("wallet_address is invalid: {0}")]
    InvalidWalletAddress(ProofError),
    #[error("{field} {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no wallet challenge exists for this nonce")]
    ChallengeNotFound,
    #[error("the challenge was issued for a different {0}")]
    ChallengeMismatch(&'static str),
    #[error("the challenge has expired")]
    ChallengeExpired,
    #[error("the challenge has already been used")]
    ChallengeUsed,
    #[error("pow_nonce does not solve the proof-of-work challenge")]
    InvalidPow,
    #[error("invalid signature: {0}")]
    InvalidSignature(ProofError),
    #[error("this wallet is already registered to a profile")]
    WalletAlreadyRegistered,
    #[error("this wallet is not registered to any profile")]
    WalletNotRegistered,
    #[error("this wallet is not an active recovery-enabled wallet")]
    WalletCannotRecover,
    #[error("the proving wallet is not an active wallet of this profile")]
    WalletNotLinked,
    #[error("this wallet is already linked to a profile")]
    WalletAlreadyLinked,
    #[error("the change would leave the profile without an active recovery-enabled wallet")]
    LastRecoveryWallet,
    #[error("wallet not found")]
    WalletNotFound,
    #[error("API key not found")]
    ApiKeyNotFound,
    #[error("agent not found")]
    AgentNotFound,
    #[error("missing Authorization header")]
    AuthMissing,
    #[error("Authorization header must be `Bearer am_k_…`")]
    AuthMalformed,
    #[error("API key is invalid or revoked")]
    InvalidApiKey,
    #[error("this API key has expired (its limits.expires_at has passed)")]
    ApiKeyExpired,
    #[error(
        "a key with limits cannot issue, change or revoke other keys; use a key without limits"
    )]
    LimitedKey,
    #[error("this agent is suspended by the marketplace's operator; its API keys do not work")]
    AgentSuspended,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl IdentityError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

//! Listing proof-of-work: a seller solves a challenge before each new listing.

use super::model::ListingChallenge;
use super::{Catalog, CatalogError, Result, store};
use crate::identity::Principal;
use crate::identity::crypto::verify_pow;
use crate::secrets::random_hex;
use crate::storage::{now_ms, rfc3339};

impl Catalog {
    /// Issues a listing proof-of-work challenge bound to the seller.
    pub async fn create_challenge(&self, who: &Principal) -> Result<ListingChallenge> {
        Self::require_seller(who)?;
        let challenge = random_hex::<32>();
        let now = now_ms();
        let expires_at = now + self.settings.challenge_ttl_ms;
        let difficulty = self.settings.pow_difficulty;
        store::insert_challenge(
            self.db.pool(),
            &challenge,
            &who.profile_id,
            difficulty,
            now,
            expires_at,
        )
        .await?;
        Ok(ListingChallenge {
            challenge,
            difficulty,
            algorithm: "sha256",
            expires_at: rfc3339(expires_at),
        })
    }

    /// Consumes the seller's challenge, then checks the proof; a wrong proof burns it.
    pub(super) async fn consume_pow(
        &self,
        who: &Principal,
        challenge: Option<&str>,
        pow_nonce: &str,
    ) -> Result<()> {
        if pow_nonce.is_empty() || pow_nonce.len() > 256 {
            return Err(CatalogError::invalid(
                "pow_nonce",
                "must be 1 to 256 characters",
            ));
        }
        let row = store::find_challenge(self.db.pool(), &who.profile_id, challenge)
            .await?
            .ok_or(CatalogError::ChallengeNotFound)?;
        if row.consumed_at.is_some() {
            return Err(CatalogError::ChallengeUsed);
        }
        let now = now_ms();
        if row.expires_at <= now {
            return Err(CatalogError::ChallengeExpired);
        }
        if !store::consume_challenge(self.db.pool(), &row.challenge, now).await? {
            return Err(CatalogError::ChallengeUsed);
        }
        let difficulty = u8::try_from(row.difficulty).unwrap_or(u8::MAX);
        if !verify_pow(&row.challenge, pow_nonce, difficulty) {
            return Err(CatalogError::InvalidPow);
        }
        Ok(())
    }
}

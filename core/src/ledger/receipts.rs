//! Receipts: one per billable gateway call, signed by the host with ed25519 so a buyer
//! or seller can verify it offline.
//!
//! The signed bytes are exactly the receipt's `payload` string (compact JSON, fields in
//! a fixed order); `signature` is the base64 ed25519 signature of those bytes under the
//! key named by `key_id`. The host's public keys are published at
//! `GET /.well-known/crochet-receipt-keys` (the current key, and the keys of master keys
//! being rotated out). The signing key is derived from the master key, so every instance
//! of a deployment signs with the same key.
//!
//! # Verifying a receipt offline (Rust)
//!
//! ```
//! use base64::Engine as _;
//! use ed25519_dalek::{Signature, VerifyingKey};
//!
//! /// `public_key` is the hex key from /.well-known/crochet-receipt-keys whose `key_id`
//! /// matches the receipt's; `payload` and `signature` are copied from the receipt.
//! fn verify_receipt(public_key_hex: &str, payload: &str, signature_b64: &str) -> bool {
//!     let Ok(key) = hex::decode(public_key_hex) else { return false };
//!     let Ok(key) = <[u8; 32]>::try_from(key.as_slice()) else { return false };
//!     let Ok(key) = VerifyingKey::from_bytes(&key) else { return false };
//!     let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature_b64) else { return false };
//!     let Ok(sig) = Signature::from_slice(&sig) else { return false };
//!     key.verify_strict(payload.as_bytes(), &sig).is_ok()
//! }
//!
//! let signer = crochet::ledger::receipts::ReceiptSigner::new(&crochet::secrets::MasterKey::generate());
//! let (payload, signature) = signer.sign(r#"{"type":"crochet.receipt.v1"}"#);
//! assert!(verify_receipt(&signer.public_key_hex(), &payload, &signature));
//! assert!(!verify_receipt(&signer.public_key_hex(), r#"{"type":"forged"}"#, &signature));
//! ```

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, AnyPool, FromRow};
use utoipa::ToSchema;

use crate::pagination::Total;
use crate::secrets::MasterKey;
use crate::storage::{self, Page, rfc3339};

/// The host's receipt signing key.
#[derive(Clone)]
pub struct ReceiptSigner {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for ReceiptSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReceiptSigner({})", self.key_id)
    }
}

impl ReceiptSigner {
    /// Derives the signing key from a master key.
    pub fn new(master: &MasterKey) -> Self {
        let key = SigningKey::from_bytes(&master.derive("receipts/ed25519"));
        let key_id = hex::encode(&Sha256::digest(key.verifying_key().as_bytes())[..8]);
        Self { key, key_id }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Hex of the 32-byte ed25519 public key.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Signs `payload`; returns it with the base64 signature.
    pub fn sign(&self, payload: &str) -> (String, String) {
        let sig = self.key.sign(payload.as_bytes());
        (
            payload.to_owned(),
            base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
        )
    }
}

/// A published receipt verification key.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicReceiptKey {
    pub key_id: String,
    /// `ed25519`.
    pub algorithm: &'static str,
    /// Hex of the 32-byte public key.
    pub public_key: String,
    /// `current` or `previous`.
    pub status: &'static str,
}

/// The signed content of a receipt, in its fixed field order.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    receipt_id: &'a str,
    gateway_request_id: &'a str,
    listing_id: &'a str,
    buyer_id: &'a str,
    seller_id: &'a str,
    relay_request_id: &'a str,
    charged_amount_cents: i64,
    fee_amount_cents: i64,
    seller_receives_cents: i64,
    currency: &'a str,
    issuer: &'a str,
    key_id: &'a str,
    issued_at: String,
}

/// What a receipt records.
pub struct ReceiptFacts<'a> {
    pub gateway_request_id: &'a str,
    pub listing_id: &'a str,
    pub buyer_id: &'a str,
    pub seller_id: &'a str,
    pub relay_request_id: &'a str,
    pub charged_cents: i64,
    pub fee_cents: i64,
    pub currency: &'a str,
    pub issuer: &'a str,
    pub now: i64,
}

/// Signs and stores the receipt of a billable call (inside the ledger transaction).
pub async fn issue(
    conn: &mut AnyConnection,
    signer: &ReceiptSigner,
    f: &ReceiptFacts<'_>,
) -> sqlx::Result<String> {
    let id = format!("rcpt_{}", crate::storage::append_id().simple());
    let payload = serde_json::to_string(&Payload {
        kind: "crochet.receipt.v1",
        receipt_id: &id,
        gateway_request_id: f.gateway_request_id,
        listing_id: f.listing_id,
        buyer_id: f.buyer_id,
        seller_id: f.seller_id,
        relay_request_id: f.relay_request_id,
        charged_amount_cents: f.charged_cents,
        fee_amount_cents: f.fee_cents,
        seller_receives_cents: f.charged_cents - f.fee_cents,
        currency: f.currency,
        issuer: f.issuer,
        key_id: signer.key_id(),
        issued_at: rfc3339(f.now),
    })
    .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let (payload, signature) = signer.sign(&payload);
    sqlx::query(
        "INSERT INTO receipts (id, gateway_request_id, buyer_id, seller_id, key_id, payload, signature, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(f.gateway_request_id)
    .bind(f.buyer_id)
    .bind(f.seller_id)
    .bind(signer.key_id())
    .bind(&payload)
    .bind(&signature)
    .bind(f.now)
    .execute(conn)
    .await?;
    Ok(id)
}

#[derive(Debug, FromRow)]
struct ReceiptRow {
    id: String,
    gateway_request_id: String,
    key_id: String,
    payload: String,
    signature: String,
    created_at: i64,
    /// The call's state (`gateway_requests.status`).
    call_status: Option<String>,
    /// Cents refunded to the buyer's balance (the call's `gateway_refund`), if any.
    refunded_cents: Option<i64>,
}

/// A receipt as its buyer or seller sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Receipt {
    pub id: String,
    pub gateway_request_id: String,
    /// The exact signed bytes (compact JSON). Verify against this string, not `content`.
    pub payload: String,
    /// `payload` parsed, for reading.
    #[schema(value_type = Object)]
    pub content: serde_json::Value,
    /// Base64 ed25519 signature of `payload`.
    pub signature: String,
    pub signature_algorithm: &'static str,
    pub key_id: String,
    pub created_at: String,
    /// `charged`, or `reversed` when the call failed at the seller or was interrupted
    /// and its charge was undone by reversal entries in the ledger, the amount refunded
    /// to the buyer's balance (the signed payload stays as issued).
    pub status: &'static str,
    /// The refund of a reversed call: `{amount_cents, to: "balance"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub refund: Option<serde_json::Value>,
    /// The call's state as `GET /gateway-requests` shows it (`forwarding`, `completed`,
    /// `seller_error`, `seller_timeout`, `interrupted`, …).
    pub call_status: Option<String>,
}

impl From<ReceiptRow> for Receipt {
    fn from(r: ReceiptRow) -> Self {
        Self {
            content: serde_json::from_str(&r.payload).unwrap_or(serde_json::Value::Null),
            id: r.id,
            gateway_request_id: r.gateway_request_id,
            payload: r.payload,
            signature: r.signature,
            signature_algorithm: "ed25519",
            key_id: r.key_id,
            created_at: rfc3339(r.created_at),
            status: if r.refunded_cents.is_some() {
                "reversed"
            } else {
                "charged"
            },
            refund: r
                .refunded_cents
                .map(|cents| serde_json::json!({"amount_cents": cents, "to": "balance"})),
            call_status: r.call_status,
        }
    }
}

/// The receipt's columns and its call's state (`r` receipts, `g` gateway_requests).
const COLUMNS: &str = "r.id, r.gateway_request_id, r.key_id, r.payload, r.signature, r.created_at, \
     g.status AS call_status, \
     (SELECT e.amount_cents FROM ledger_entries e WHERE e.gateway_request_id = r.gateway_request_id \
      AND e.entry_type = 'gateway_refund') AS refunded_cents \
     FROM receipts r LEFT JOIN gateway_requests g ON g.id = r.gateway_request_id";

/// The caller's receipts (as buyer or seller), newest first, and how many there are
/// (counted up to [`Total::CAP`]).
pub async fn list(
    pool: &AnyPool,
    profile_id: &str,
    page: Page,
) -> sqlx::Result<(Vec<Receipt>, Total)> {
    // A purchase from oneself is both; the second branch leaves it to the first.
    let branches = [
        "buyer_id = $1".to_owned(),
        "seller_id = $1 AND buyer_id <> $1".to_owned(),
    ];
    let ids = storage::newest_first_ids("receipts", &branches, "$2", "$3", "$4");
    let rows: Vec<ReceiptRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} WHERE r.id IN ({ids}) ORDER BY r.created_at DESC, r.id"
    )))
    .bind(profile_id)
    .bind(page.offset() + i64::from(page.limit))
    .bind(i64::from(page.limit))
    .bind(page.offset())
    .fetch_all(pool)
    .await?;
    let count = sqlx::query_scalar(sqlx::AssertSqlSafe(storage::newest_first_count(
        "receipts", &branches,
    )))
    .bind(profile_id)
    .fetch_one(pool)
    .await?;
    Ok((
        rows.into_iter().map(Into::into).collect(),
        Total::from_capped_count(count),
    ))
}

/// One receipt, if the caller is its buyer or seller.
pub async fn get(pool: &AnyPool, profile_id: &str, id: &str) -> sqlx::Result<Option<Receipt>> {
    let row: Option<ReceiptRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} WHERE r.id = $1 AND (r.buyer_id = $2 OR r.seller_id = $2)"
    )))
    .bind(id)
    .bind(profile_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Into::into))
}

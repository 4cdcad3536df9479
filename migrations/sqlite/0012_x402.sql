-- x402 payments: one row per payment payload a buyer sent in PAYMENT-SIGNATURE.
--
-- The row is the durable state of a payment that is settled only after the seller
-- answered. It is written once the facilitator verified the payment: 'verified' (the call
-- is being forwarded), 'settling' (the seller answered well; the facilitator is
-- settling), then 'settled', 'not_settled' (the seller failed: nothing is settled and the
-- buyer's authorization expires unused), 'settle_failed' (settlement was refused after
-- the seller answered: served unpaid), 'abandoned' (the host stopped before the seller
-- answered: nothing settled) or 'unconfirmed' (a settlement left open was refused when
-- sent again: the operator reconciles it against the chain).
--
-- The buyer (`buyer_id`) may be a wallet-only buyer (`x402_buyers`).
--
-- `nonce_key` (network|asset|payer|nonce, lowercase) is unique, so two racing retries of
-- one payload cannot both pass; `(buyer_id, idempotency_key)` is unique, so one
-- Idempotency-Key or payment-identifier gives one outcome.
CREATE TABLE x402_payments (
    id                 TEXT PRIMARY KEY,
    nonce_key          TEXT    NOT NULL UNIQUE,
    gateway_request_id TEXT    NOT NULL UNIQUE,
    buyer_id           TEXT    NOT NULL,
    listing_id         TEXT    NOT NULL REFERENCES listings (id),
    seller_id          TEXT    NOT NULL REFERENCES profiles (id),
    idempotency_key    TEXT,
    network            TEXT    NOT NULL,
    asset              TEXT    NOT NULL,
    payer              TEXT    NOT NULL,
    amount_atomic      TEXT    NOT NULL,
    amount_cents       INTEGER NOT NULL CHECK (amount_cents > 0),
    currency           TEXT    NOT NULL,
    body_sha256        TEXT    NOT NULL,
    request_bytes      INTEGER NOT NULL,
    payload            TEXT    NOT NULL,
    requirements       TEXT    NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN ('verified', 'settling', 'settled', 'not_settled',
                                                          'settle_failed', 'abandoned', 'unconfirmed')),
    settle_attempts    INTEGER NOT NULL DEFAULT 0,
    transaction_ref    TEXT,
    error_reason       TEXT,
    -- The seller's answer, kept (as sizes and hashes only) while settlement is pending.
    response_bytes     INTEGER,
    response_sha256    TEXT,
    seller_status_code INTEGER,
    latency_ms         INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE UNIQUE INDEX x402_payments_idempotency ON x402_payments (buyer_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX x402_payments_open ON x402_payments (updated_at)
    WHERE status IN ('verified', 'settling');

-- Buyers known only by the wallet that paid (keyless x402 purchases): each has a profile
-- of its own, with no API key and no linked wallet, so it can buy but never review, list
-- or sign in. A wallet linked to a registered profile buys as that profile instead.
CREATE TABLE x402_buyers (
    address    TEXT PRIMARY KEY,
    profile_id TEXT    NOT NULL UNIQUE REFERENCES profiles (id),
    created_at INTEGER NOT NULL
);

-- Gateway: issued per-call payments (bound to buyer, listing and body hash), the
-- idempotency keys that map to them, one row per gateway attempt, and the append-only
-- ledger.

CREATE TABLE gateway_payments (
    request_id         TEXT PRIMARY KEY,
    provider           TEXT    NOT NULL,
    buyer_id           TEXT    NOT NULL REFERENCES profiles (id),
    listing_id         TEXT    NOT NULL REFERENCES listings (id),
    seller_id          TEXT    NOT NULL REFERENCES profiles (id),
    amount_cents       INTEGER NOT NULL CHECK (amount_cents > 0),
    currency           TEXT    NOT NULL,
    body_sha256        TEXT    NOT NULL,
    requirements       TEXT    NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN ('issued', 'consumed')),
    gateway_request_id TEXT,
    created_at         INTEGER NOT NULL,
    consumed_at        INTEGER
);
CREATE INDEX gateway_payments_buyer ON gateway_payments (buyer_id, created_at);

CREATE TABLE gateway_idempotency (
    buyer_id     TEXT    NOT NULL,
    idem_key     TEXT    NOT NULL,
    listing_id   TEXT    NOT NULL,
    body_sha256  TEXT    NOT NULL,
    request_id   TEXT    NOT NULL REFERENCES gateway_payments (request_id),
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (buyer_id, idem_key)
);

CREATE TABLE gateway_requests (
    id                 TEXT PRIMARY KEY,
    buyer_id           TEXT    NOT NULL,
    seller_id          TEXT    NOT NULL,
    listing_id         TEXT    NOT NULL,
    relay_request_id   TEXT,
    status             TEXT    NOT NULL,
    billable           INTEGER NOT NULL,
    charged_cents      INTEGER NOT NULL,
    fee_cents          INTEGER NOT NULL,
    seller_cents       INTEGER NOT NULL,
    currency           TEXT    NOT NULL,
    request_bytes      INTEGER NOT NULL,
    request_sha256     TEXT    NOT NULL,
    response_bytes     INTEGER,
    response_sha256    TEXT,
    seller_status_code INTEGER,
    latency_ms         INTEGER,
    error_code         TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX gateway_requests_buyer ON gateway_requests (buyer_id, created_at);
CREATE INDEX gateway_requests_seller ON gateway_requests (seller_id, created_at);

CREATE TABLE ledger_entries (
    id                 TEXT PRIMARY KEY,
    gateway_request_id TEXT,
    profile_id         TEXT,
    entry_type         TEXT    NOT NULL CHECK (entry_type IN ('gateway_debit', 'seller_credit', 'marketplace_fee', 'adjustment')),
    amount_cents       INTEGER NOT NULL,
    currency           TEXT    NOT NULL,
    relay_request_id   TEXT,
    listing_id         TEXT,
    created_at         INTEGER NOT NULL
);
CREATE INDEX ledger_entries_profile ON ledger_entries (profile_id, created_at);
CREATE INDEX ledger_entries_request ON ledger_entries (gateway_request_id);

-- Append-only: no update or delete path, enforced by the database itself.
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;

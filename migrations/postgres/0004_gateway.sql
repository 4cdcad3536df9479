-- Gateway: issued per-call payments (bound to buyer, listing and body hash), the
-- idempotency keys that map to them, one row per gateway attempt, and the append-only
-- ledger.

CREATE TABLE gateway_payments (
    request_id         TEXT PRIMARY KEY,
    provider           TEXT    NOT NULL,
    buyer_id           TEXT    NOT NULL REFERENCES profiles (id),
    listing_id         TEXT    NOT NULL REFERENCES listings (id),
    seller_id          TEXT    NOT NULL REFERENCES profiles (id),
    amount_cents       BIGINT NOT NULL CHECK (amount_cents > 0),
    currency           TEXT    NOT NULL,
    body_sha256        TEXT    NOT NULL,
    requirements       TEXT    NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN ('issued', 'consumed')),
    gateway_request_id TEXT,
    created_at         BIGINT NOT NULL,
    consumed_at        BIGINT
);
CREATE INDEX gateway_payments_buyer ON gateway_payments (buyer_id, created_at);

CREATE TABLE gateway_idempotency (
    buyer_id     TEXT    NOT NULL,
    idem_key     TEXT    NOT NULL,
    listing_id   TEXT    NOT NULL,
    body_sha256  TEXT    NOT NULL,
    request_id   TEXT    NOT NULL REFERENCES gateway_payments (request_id),
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (buyer_id, idem_key)
);

CREATE TABLE gateway_requests (
    id                 TEXT PRIMARY KEY,
    buyer_id           TEXT    NOT NULL,
    seller_id          TEXT    NOT NULL,
    listing_id         TEXT    NOT NULL,
    relay_request_id   TEXT,
    status             TEXT    NOT NULL,
    billable           BIGINT NOT NULL,
    charged_cents      BIGINT NOT NULL,
    fee_cents          BIGINT NOT NULL,
    seller_cents       BIGINT NOT NULL,
    currency           TEXT    NOT NULL,
    request_bytes      BIGINT NOT NULL,
    request_sha256     TEXT    NOT NULL,
    response_bytes     BIGINT,
    response_sha256    TEXT,
    seller_status_code BIGINT,
    latency_ms         BIGINT,
    error_code         TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX gateway_requests_buyer ON gateway_requests (buyer_id, created_at);
CREATE INDEX gateway_requests_seller ON gateway_requests (seller_id, created_at);

CREATE TABLE ledger_entries (
    id                 TEXT PRIMARY KEY,
    gateway_request_id TEXT,
    profile_id         TEXT,
    entry_type         TEXT    NOT NULL CHECK (entry_type IN ('gateway_debit', 'seller_credit', 'marketplace_fee', 'adjustment')),
    amount_cents       BIGINT NOT NULL,
    currency           TEXT    NOT NULL,
    relay_request_id   TEXT,
    listing_id         TEXT,
    created_at         BIGINT NOT NULL
);
CREATE INDEX ledger_entries_profile ON ledger_entries (profile_id, created_at);
CREATE INDEX ledger_entries_request ON ledger_entries (gateway_request_id);

-- Append-only: no update or delete path, enforced by the database itself.
CREATE FUNCTION ledger_entries_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_entries_no_change BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();

-- Mock payment provider state (development and tests): persisted so a restart loses nothing.
CREATE TABLE mock_payments (
    request_id      TEXT PRIMARY KEY,
    buyer_id        TEXT    NOT NULL,
    listing_id      TEXT    NOT NULL,
    seller_id       TEXT    NOT NULL,
    amount_cents    BIGINT NOT NULL CHECK (amount_cents > 0),
    currency        TEXT    NOT NULL,
    chain           TEXT    NOT NULL CHECK (chain IN ('evm', 'solana')),
    origin_currency TEXT,
    status          TEXT    NOT NULL CHECK (status IN ('awaiting_payment', 'pending', 'settled', 'failed')),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX mock_payments_buyer ON mock_payments (buyer_id, created_at);

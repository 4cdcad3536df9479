-- Receipts: one per billable gateway call, signed by the host (ed25519), written in the
-- same transaction as the call's ledger entries.
CREATE TABLE receipts (
    id                 TEXT PRIMARY KEY,
    gateway_request_id TEXT    NOT NULL UNIQUE,
    buyer_id           TEXT    NOT NULL,
    seller_id          TEXT    NOT NULL,
    key_id             TEXT    NOT NULL,
    payload            TEXT    NOT NULL,
    signature          TEXT    NOT NULL,
    created_at         INTEGER NOT NULL
);
CREATE INDEX receipts_buyer ON receipts (buyer_id, created_at);
CREATE INDEX receipts_seller ON receipts (seller_id, created_at);

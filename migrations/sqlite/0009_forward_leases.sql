-- Recovery of interrupted paid calls.
--
-- A paid call's row is written in state 'forwarding' before the seller is called. The
-- attempt that forwards it holds a lease: `lease_owner` (the host instance), `lease_until`
-- (Unix ms; longer than the endpoint's timeout) and `attempts` (which attempt holds it).
-- A retry of the same payment after the lease has passed takes the call over and forwards
-- it again under the same request id; the janitor resolves rows nobody retried as
-- 'interrupted' and reverses their charge with mirrored ledger entries.
ALTER TABLE gateway_requests ADD COLUMN lease_owner TEXT;
ALTER TABLE gateway_requests ADD COLUMN lease_until INTEGER;
ALTER TABLE gateway_requests ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
CREATE INDEX gateway_requests_forwarding ON gateway_requests (lease_until) WHERE status = 'forwarding';

-- The mirrored entries that undo a call's charge: 'gateway_refund' to the buyer,
-- 'seller_credit_reversal' and 'marketplace_fee_reversal'. SQLite cannot alter a CHECK
-- constraint, so the table is rebuilt; dropping it drops its triggers without firing them.
CREATE TABLE ledger_entries_v2 (
    id                 TEXT PRIMARY KEY,
    gateway_request_id TEXT,
    profile_id         TEXT,
    entry_type         TEXT    NOT NULL CHECK (entry_type IN ('gateway_debit', 'seller_credit', 'marketplace_fee', 'gateway_refund', 'seller_credit_reversal', 'marketplace_fee_reversal', 'adjustment')),
    amount_cents       INTEGER NOT NULL,
    currency           TEXT    NOT NULL,
    relay_request_id   TEXT,
    listing_id         TEXT,
    created_at         INTEGER NOT NULL
);
INSERT INTO ledger_entries_v2 (id, gateway_request_id, profile_id, entry_type, amount_cents, currency,
                               relay_request_id, listing_id, created_at)
    SELECT id, gateway_request_id, profile_id, entry_type, amount_cents, currency,
           relay_request_id, listing_id, created_at
    FROM ledger_entries;
DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_v2 RENAME TO ledger_entries;
CREATE INDEX ledger_entries_profile ON ledger_entries (profile_id, created_at);
CREATE INDEX ledger_entries_request ON ledger_entries (gateway_request_id);
-- A call's charge is reversed at most once.
CREATE UNIQUE INDEX ledger_entries_one_reversal ON ledger_entries (gateway_request_id, entry_type)
    WHERE entry_type IN ('gateway_refund', 'seller_credit_reversal', 'marketplace_fee_reversal');

-- Append-only: no update or delete path, enforced by the database itself.
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries BEGIN
    SELECT RAISE(ABORT, 'ledger_entries is append-only');
END;

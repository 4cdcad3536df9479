-- Recovery of interrupted paid calls.
--
-- A paid call's row is written in state 'forwarding' before the seller is called. The
-- attempt that forwards it holds a lease: `lease_owner` (the host instance), `lease_until`
-- (Unix ms; longer than the endpoint's timeout) and `attempts` (which attempt holds it).
-- A retry of the same payment after the lease has passed takes the call over and forwards
-- it again under the same request id; the janitor resolves rows nobody retried as
-- 'interrupted' and reverses their charge with mirrored ledger entries.
ALTER TABLE gateway_requests ADD COLUMN lease_owner TEXT;
ALTER TABLE gateway_requests ADD COLUMN lease_until BIGINT;
ALTER TABLE gateway_requests ADD COLUMN attempts BIGINT NOT NULL DEFAULT 1;
CREATE INDEX gateway_requests_forwarding ON gateway_requests (lease_until) WHERE status = 'forwarding';

-- The mirrored entries that undo a call's charge: 'gateway_refund' to the buyer,
-- 'seller_credit_reversal' and 'marketplace_fee_reversal'.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_entry_type_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_entry_type_check
    CHECK (entry_type IN ('gateway_debit', 'seller_credit', 'marketplace_fee', 'gateway_refund', 'seller_credit_reversal', 'marketplace_fee_reversal', 'adjustment'));
-- A call's charge is reversed at most once.
CREATE UNIQUE INDEX ledger_entries_one_reversal ON ledger_entries (gateway_request_id, entry_type)
    WHERE entry_type IN ('gateway_refund', 'seller_credit_reversal', 'marketplace_fee_reversal');

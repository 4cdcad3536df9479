-- Buyers' money under their control: spend limits per API key, a prepaid balance,
-- refunds of failed paid calls to that balance, and deposits.
--
-- Spend limits live on the key row. The caps the gateway enforces atomically
-- (`daily_cents`, `monthly_cents`) sit beside the key's spend in the current windows, so
-- counting a call is one conditional UPDATE of one row: racing calls cannot overshoot.
-- The day window is the UTC calendar day (`spent_day_start` = its first millisecond);
-- the 30-day window starts at the key's creation and rolls every 30 days.
ALTER TABLE api_keys ADD COLUMN limit_max_price_cents BIGINT;
ALTER TABLE api_keys ADD COLUMN limit_daily_cents BIGINT;
ALTER TABLE api_keys ADD COLUMN limit_monthly_cents BIGINT;
ALTER TABLE api_keys ADD COLUMN limit_listing_ids TEXT;
ALTER TABLE api_keys ADD COLUMN limit_categories TEXT;
ALTER TABLE api_keys ADD COLUMN limit_seller_ids TEXT;
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
ALTER TABLE api_keys ADD COLUMN spent_day_start BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN spent_day_cents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN spent_month_start BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN spent_month_cents BIGINT NOT NULL DEFAULT 0;

-- The key whose spend a payment's charge counted against (set when the payment is
-- consumed), so that a refund gives that key's spend back; earlier payments have none.
ALTER TABLE gateway_payments ADD COLUMN api_key_id TEXT;

-- A profile's marketplace balance per currency. It can never go negative: the database
-- refuses it, whatever the code does.
CREATE TABLE balances (
    profile_id   TEXT    NOT NULL REFERENCES profiles (id),
    currency     TEXT    NOT NULL,
    amount_cents BIGINT NOT NULL CHECK (amount_cents >= 0),
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (profile_id, currency)
);

-- Prepaid top-ups: a payment requirement through the configured provider, credited once
-- (the conditional UPDATE from 'awaiting_payment' to 'credited' decides racing
-- confirmations).
CREATE TABLE balance_deposits (
    id               TEXT PRIMARY KEY,
    profile_id       TEXT    NOT NULL REFERENCES profiles (id),
    provider         TEXT    NOT NULL,
    relay_request_id TEXT    NOT NULL UNIQUE,
    amount_cents     BIGINT NOT NULL CHECK (amount_cents > 0),
    currency         TEXT    NOT NULL,
    requirements     TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('awaiting_payment', 'credited', 'failed')),
    created_at       BIGINT NOT NULL,
    credited_at      BIGINT
);
CREATE INDEX balance_deposits_profile ON balance_deposits (profile_id, created_at DESC, id);

-- New ledger entry types: 'balance_debit' (a call paid from the balance),
-- 'deposit_payment' (a top-up paid in through the provider) and 'deposit' (its credit to
-- the balance).
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_entry_type_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_entry_type_check
    CHECK (entry_type IN ('gateway_debit', 'balance_debit', 'seller_credit', 'marketplace_fee', 'gateway_refund', 'seller_credit_reversal', 'marketplace_fee_reversal', 'deposit_payment', 'deposit', 'adjustment'));

-- Refunds written before balances existed (interrupted calls) are the balance's opening
-- amount.
INSERT INTO balances (profile_id, currency, amount_cents, updated_at)
    SELECT e.profile_id, e.currency, SUM(e.amount_cents), MAX(e.created_at)
    FROM ledger_entries e JOIN profiles p ON p.id = e.profile_id
    WHERE e.entry_type = 'gateway_refund'
    GROUP BY e.profile_id, e.currency;

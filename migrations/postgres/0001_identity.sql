-- Identity: profiles, their linked wallets, API keys, wallet challenges and human claims.
-- Timestamps are Unix milliseconds; booleans are 0/1 BIGINTs (same shape as SQLite).

CREATE TABLE profiles (
    id            TEXT PRIMARY KEY,
    display_name  TEXT,
    role          TEXT    NOT NULL CHECK (role IN ('buyer', 'seller', 'both')),
    status        TEXT    NOT NULL DEFAULT 'active',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE profile_wallets (
    id                 TEXT PRIMARY KEY,
    profile_id         TEXT    NOT NULL REFERENCES profiles (id),
    chain              TEXT    NOT NULL CHECK (chain IN ('evm', 'solana')),
    address            TEXT    NOT NULL,
    label              TEXT,
    status             TEXT    NOT NULL CHECK (status IN ('active', 'disabled', 'revoked', 'compromised')),
    can_auth           BIGINT NOT NULL,
    can_recover        BIGINT NOT NULL,
    can_pay            BIGINT NOT NULL,
    can_payout         BIGINT NOT NULL,
    is_default_payment BIGINT NOT NULL DEFAULT 0,
    is_default_payout  BIGINT NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    last_used_at       BIGINT,
    UNIQUE (chain, address)
);
CREATE INDEX profile_wallets_profile ON profile_wallets (profile_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    profile_id   TEXT    NOT NULL REFERENCES profiles (id),
    name         TEXT,
    key_prefix   TEXT    NOT NULL,
    key_hash     TEXT    NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_profile ON api_keys (profile_id);

CREATE TABLE auth_challenges (
    nonce          TEXT PRIMARY KEY,
    wallet_address TEXT    NOT NULL,
    chain          TEXT    NOT NULL,
    purpose        TEXT    NOT NULL,
    profile_id     TEXT,
    message        TEXT    NOT NULL,
    pow_challenge  TEXT    NOT NULL,
    pow_difficulty BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    consumed_at    BIGINT
);
CREATE INDEX auth_challenges_expires ON auth_challenges (expires_at);

CREATE TABLE agent_claims (
    id               TEXT PRIMARY KEY,
    profile_id       TEXT    NOT NULL REFERENCES profiles (id),
    wallet_id        TEXT    NOT NULL REFERENCES profile_wallets (id),
    claimant_name    TEXT    NOT NULL,
    claimant_contact TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX agent_claims_profile ON agent_claims (profile_id);

-- Identity: profiles, their linked wallets, API keys, wallet challenges and human claims.
-- Timestamps are Unix milliseconds; booleans are 0/1 integers (same shape as PostgreSQL).

CREATE TABLE profiles (
    id            TEXT PRIMARY KEY,
    display_name  TEXT,
    role          TEXT    NOT NULL CHECK (role IN ('buyer', 'seller', 'both')),
    status        TEXT    NOT NULL DEFAULT 'active',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE profile_wallets (
    id                 TEXT PRIMARY KEY,
    profile_id         TEXT    NOT NULL REFERENCES profiles (id),
    chain              TEXT    NOT NULL CHECK (chain IN ('evm', 'solana')),
    address            TEXT    NOT NULL,
    label              TEXT,
    status             TEXT    NOT NULL CHECK (status IN ('active', 'disabled', 'revoked', 'compromised')),
    can_auth           INTEGER NOT NULL,
    can_recover        INTEGER NOT NULL,
    can_pay            INTEGER NOT NULL,
    can_payout         INTEGER NOT NULL,
    is_default_payment INTEGER NOT NULL DEFAULT 0,
    is_default_payout  INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    last_used_at       INTEGER,
    UNIQUE (chain, address)
);
CREATE INDEX profile_wallets_profile ON profile_wallets (profile_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    profile_id   TEXT    NOT NULL REFERENCES profiles (id),
    name         TEXT,
    key_prefix   TEXT    NOT NULL,
    key_hash     TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
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
    pow_difficulty INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    consumed_at    INTEGER
);
CREATE INDEX auth_challenges_expires ON auth_challenges (expires_at);

CREATE TABLE agent_claims (
    id               TEXT PRIMARY KEY,
    profile_id       TEXT    NOT NULL REFERENCES profiles (id),
    wallet_id        TEXT    NOT NULL REFERENCES profile_wallets (id),
    claimant_name    TEXT    NOT NULL,
    claimant_contact TEXT,
    created_at       INTEGER NOT NULL
);
CREATE INDEX agent_claims_profile ON agent_claims (profile_id);

-- Catalog: listings, their private gateway endpoints (secrets encrypted at rest) and
-- listing proof-of-work challenges.

CREATE TABLE listings (
    id                      TEXT PRIMARY KEY,
    slug                    TEXT    NOT NULL UNIQUE,
    seller_id               TEXT    NOT NULL REFERENCES profiles (id),
    name                    TEXT    NOT NULL,
    description             TEXT    NOT NULL,
    category                TEXT,
    delivery_type           TEXT    NOT NULL,
    auth_method             TEXT    NOT NULL,
    formats                 TEXT    NOT NULL,
    connection_instructions TEXT,
    pricing_model           TEXT    NOT NULL CHECK (pricing_model IN ('free', 'per_call')),
    price_cents             INTEGER NOT NULL CHECK (price_cents >= 0),
    pricing_currency        TEXT    NOT NULL,
    status                  TEXT    NOT NULL CHECK (status IN ('draft', 'active', 'suspended')),
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL
);
CREATE INDEX listings_newest ON listings (status, created_at);
CREATE INDEX listings_price ON listings (status, price_cents);
CREATE INDEX listings_category ON listings (category, status, created_at);
CREATE INDEX listings_seller ON listings (seller_id);

-- Full-text search over name and description, kept in step by triggers.
CREATE VIRTUAL TABLE listings_fts USING fts5 (listing_id UNINDEXED, name, description);
CREATE TRIGGER listings_fts_insert AFTER INSERT ON listings BEGIN
    INSERT INTO listings_fts (listing_id, name, description) VALUES (new.id, new.name, new.description);
END;
CREATE TRIGGER listings_fts_update AFTER UPDATE OF name, description ON listings BEGIN
    DELETE FROM listings_fts WHERE listing_id = old.id;
    INSERT INTO listings_fts (listing_id, name, description) VALUES (new.id, new.name, new.description);
END;
CREATE TRIGGER listings_fts_delete AFTER DELETE ON listings BEGIN
    DELETE FROM listings_fts WHERE listing_id = old.id;
END;

CREATE TABLE listing_gateway_endpoints (
    listing_id         TEXT PRIMARY KEY REFERENCES listings (id) ON DELETE CASCADE,
    url_enc            TEXT,
    upstream_auth_enc  TEXT,
    signing_secret_enc TEXT    NOT NULL,
    timeout_ms         INTEGER NOT NULL,
    max_request_bytes  INTEGER NOT NULL,
    max_response_bytes INTEGER NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN ('active', 'paused')),
    secret_rotated_at  INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

CREATE TABLE listing_challenges (
    challenge   TEXT PRIMARY KEY,
    profile_id  TEXT    NOT NULL REFERENCES profiles (id),
    difficulty  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    consumed_at INTEGER
);
CREATE INDEX listing_challenges_profile ON listing_challenges (profile_id, created_at);

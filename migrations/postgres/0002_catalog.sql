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
    price_cents             BIGINT NOT NULL CHECK (price_cents >= 0),
    pricing_currency        TEXT    NOT NULL,
    status                  TEXT    NOT NULL CHECK (status IN ('draft', 'active', 'suspended')),
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);
CREATE INDEX listings_newest ON listings (status, created_at);
CREATE INDEX listings_price ON listings (status, price_cents);
CREATE INDEX listings_category ON listings (category, status, created_at);
CREATE INDEX listings_seller ON listings (seller_id);

-- Full-text search over name and description.
CREATE INDEX listings_search ON listings USING GIN (to_tsvector('simple', name || ' ' || description));

CREATE TABLE listing_gateway_endpoints (
    listing_id         TEXT PRIMARY KEY REFERENCES listings (id) ON DELETE CASCADE,
    url_enc            TEXT,
    upstream_auth_enc  TEXT,
    signing_secret_enc TEXT    NOT NULL,
    timeout_ms         BIGINT NOT NULL,
    max_request_bytes  BIGINT NOT NULL,
    max_response_bytes BIGINT NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN ('active', 'paused')),
    secret_rotated_at  BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE TABLE listing_challenges (
    challenge   TEXT PRIMARY KEY,
    profile_id  TEXT    NOT NULL REFERENCES profiles (id),
    difficulty  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    consumed_at BIGINT
);
CREATE INDEX listing_challenges_profile ON listing_challenges (profile_id, created_at);

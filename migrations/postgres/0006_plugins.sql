-- Per-listing plugin settings: configuration for policy plugins (a JSON object keyed by
-- plugin name, e.g. the request-validation schema) and the listing's seller adapter.
ALTER TABLE listings ADD COLUMN policy_config TEXT;

CREATE TABLE listing_adapters (
    listing_id       TEXT PRIMARY KEY REFERENCES listings(id) ON DELETE CASCADE,
    -- `bundled:<name>` or `upload`
    source           TEXT NOT NULL,
    component        BYTEA,
    component_sha256 TEXT NOT NULL,
    component_bytes  BIGINT NOT NULL,
    config           TEXT NOT NULL,
    updated_at       BIGINT NOT NULL
);

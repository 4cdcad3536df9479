-- Reputation: reviews, the score events behind the Crochet Score, the score snapshots
-- computed from them, and each agent's current score (for sorting and the verified mark).

CREATE TABLE reviews (
    id                 TEXT PRIMARY KEY,
    listing_id         TEXT    NOT NULL REFERENCES listings (id),
    seller_id          TEXT    NOT NULL REFERENCES profiles (id),
    buyer_id           TEXT    NOT NULL REFERENCES profiles (id),
    rating             BIGINT NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment            TEXT,
    -- The qualifying successful gateway call, and whether it was paid.
    gateway_request_id TEXT    NOT NULL,
    paid               BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    UNIQUE (listing_id, buyer_id)
);
CREATE INDEX reviews_listing ON reviews (listing_id, created_at);

-- A listing's rating summary, kept with each review in the same transaction.
ALTER TABLE listings ADD COLUMN review_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE listings ADD COLUMN rating_sum BIGINT NOT NULL DEFAULT 0;

-- Behaviour as it happens: `call_succeeded`, `seller_error`, `seller_timeout`,
-- `invalid_response` (subject: the seller, actor: the buyer) and `review` (subject: the
-- reviewed seller, actor: the reviewer). `day` is the UTC day number of `created_at`.
-- `n` events of one kind between the same two agents on one listing, recorded in one
-- batch of unpaid calls, are one row (`amount_cents` is their total).
CREATE TABLE score_events (
    id                 TEXT PRIMARY KEY,
    kind               TEXT    NOT NULL CHECK (kind IN ('call_succeeded', 'seller_error', 'seller_timeout', 'invalid_response', 'review')),
    subject_id         TEXT    NOT NULL,
    actor_id           TEXT    NOT NULL,
    listing_id         TEXT    NOT NULL,
    gateway_request_id TEXT,
    amount_cents       BIGINT NOT NULL,
    n                  BIGINT NOT NULL DEFAULT 1 CHECK (n > 0),
    rating             BIGINT,
    day                BIGINT NOT NULL,
    created_at         BIGINT NOT NULL
);
CREATE INDEX score_events_subject ON score_events (subject_id, kind, day);
CREATE INDEX score_events_actor ON score_events (actor_id, kind, day);
CREATE INDEX score_events_created ON score_events (created_at);

-- Every computed score, with the statistics and components that made it.
CREATE TABLE score_snapshots (
    id          TEXT PRIMARY KEY,
    profile_id  TEXT    NOT NULL REFERENCES profiles (id),
    score       BIGINT NOT NULL,
    tier        TEXT    NOT NULL,
    scorer      TEXT    NOT NULL,
    inputs      TEXT    NOT NULL,
    components  TEXT    NOT NULL,
    computed_at BIGINT NOT NULL
);
CREATE INDEX score_snapshots_profile ON score_snapshots (profile_id, computed_at);

-- The newest snapshot of each agent, for listing sorts and the verified mark.
CREATE TABLE agent_scores (
    profile_id  TEXT PRIMARY KEY REFERENCES profiles (id),
    score       BIGINT NOT NULL,
    snapshot_id TEXT    NOT NULL,
    computed_at BIGINT NOT NULL
);

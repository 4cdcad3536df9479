-- Reads that stay fast on a large marketplace: the public catalog and an agent's
-- history are served by indexes in the order they are shown, so a page costs the rows on
-- it (plus the offset), never a scan of every listing or of every call.

-- What the public catalog filters and sorts on, kept on the listing itself:
--   seller_suspended  1 while the operator has the seller suspended (a profile trigger);
--   score_rank        the seller's Crochet Score, -1 while unscored (an agent_scores trigger);
--   rating_rank       the average rating in thousandths, -1 while unrated.
ALTER TABLE listings ADD COLUMN seller_suspended INTEGER NOT NULL DEFAULT 0;
ALTER TABLE listings ADD COLUMN score_rank INTEGER NOT NULL DEFAULT -1;
ALTER TABLE listings ADD COLUMN rating_rank INTEGER GENERATED ALWAYS AS
    (CASE WHEN review_count = 0 THEN -1 ELSE rating_sum * 1000 / review_count END) VIRTUAL;

UPDATE listings SET
    seller_suspended = CASE WHEN EXISTS (SELECT 1 FROM profiles p WHERE p.id = listings.seller_id
                                         AND p.status = 'suspended') THEN 1 ELSE 0 END,
    score_rank = COALESCE((SELECT s.score FROM agent_scores s WHERE s.profile_id = listings.seller_id), -1);

CREATE TRIGGER listings_new_seller_state AFTER INSERT ON listings BEGIN
    UPDATE listings SET
        seller_suspended = CASE WHEN EXISTS (SELECT 1 FROM profiles p WHERE p.id = new.seller_id
                                             AND p.status = 'suspended') THEN 1 ELSE 0 END,
        score_rank = COALESCE((SELECT s.score FROM agent_scores s WHERE s.profile_id = new.seller_id), -1)
    WHERE id = new.id;
END;
CREATE TRIGGER listings_seller_status AFTER UPDATE OF status ON profiles
WHEN old.status IS NOT new.status BEGIN
    UPDATE listings SET seller_suspended = CASE WHEN new.status = 'suspended' THEN 1 ELSE 0 END
    WHERE seller_id = new.id;
END;
CREATE TRIGGER listings_score_insert AFTER INSERT ON agent_scores BEGIN
    UPDATE listings SET score_rank = new.score WHERE seller_id = new.profile_id;
END;
CREATE TRIGGER listings_score_update AFTER UPDATE OF score ON agent_scores
WHEN old.score IS NOT new.score BEGIN
    UPDATE listings SET score_rank = new.score WHERE seller_id = new.profile_id;
END;

-- One partial index per public sort, over listed listings only (active, seller not
-- suspended), each in the order the route shows. Price descending walks the price
-- index backwards.
DROP INDEX listings_price;
DROP INDEX listings_category;
CREATE INDEX listings_listed_newest ON listings (created_at DESC, id)
    WHERE status = 'active' AND seller_suspended = 0;
CREATE INDEX listings_listed_price ON listings (price_cents, created_at DESC, id)
    WHERE status = 'active' AND seller_suspended = 0;
CREATE INDEX listings_listed_score ON listings (score_rank DESC, rating_rank DESC, created_at DESC, id)
    WHERE status = 'active' AND seller_suspended = 0;
CREATE INDEX listings_listed_rating ON listings (rating_rank DESC, review_count DESC, created_at DESC, id)
    WHERE status = 'active' AND seller_suspended = 0;
CREATE INDEX listings_listed_category ON listings (category, created_at DESC, id)
    WHERE status = 'active' AND seller_suspended = 0;

-- Search ranks by BM25 with a word in the name worth four in the description.
INSERT INTO listings_fts (listings_fts, rank) VALUES ('rank', 'bm25(0.0, 4.0, 1.0)');

-- An agent's history, ledger and receipts, newest first, read from the index alone
-- until the page's rows.
DROP INDEX gateway_requests_buyer;
DROP INDEX gateway_requests_seller;
DROP INDEX ledger_entries_profile;
CREATE INDEX gateway_requests_buyer ON gateway_requests (buyer_id, created_at DESC, id);
CREATE INDEX gateway_requests_seller ON gateway_requests (seller_id, created_at DESC, id);
CREATE INDEX ledger_entries_profile ON ledger_entries (profile_id, created_at DESC, id);
DROP INDEX receipts_buyer;
DROP INDEX receipts_seller;
CREATE INDEX receipts_buyer ON receipts (buyer_id, created_at DESC, id);
CREATE INDEX receipts_seller ON receipts (seller_id, created_at DESC, id);

-- The search index names each listing by a number kept on the listing (`search_rowid`),
-- not by the listing's text id. The text id was an unindexed column of the full-text
-- table, so every edit of a name or description (and every delete) scanned the whole
-- index to find the listing's entry, holding the write lock meanwhile (about 170 ms at
-- 200,000 listings); by number it is one lookup. A search also joins its matches to
-- their listings through one covering index instead of the text id's.
--
-- The number is a column of its own, not SQLite's implicit rowid, which VACUUM may
-- renumber on a table without an INTEGER PRIMARY KEY.
DROP TRIGGER listings_fts_insert;
DROP TRIGGER listings_fts_update;
DROP TRIGGER listings_fts_delete;
DROP TABLE listings_fts;

ALTER TABLE listings ADD COLUMN search_rowid INTEGER;
UPDATE listings SET search_rowid = rowid;
CREATE UNIQUE INDEX listings_search ON listings (search_rowid, status, seller_suspended, created_at, id);

-- Ranked by BM25 with a word in the name worth four in the description.
CREATE VIRTUAL TABLE listings_fts USING fts5 (name, description);
INSERT INTO listings_fts (listings_fts, rank) VALUES ('rank', 'bm25(4.0, 1.0)');
INSERT INTO listings_fts (rowid, name, description)
    SELECT search_rowid, name, description FROM listings;

CREATE TRIGGER listings_fts_insert AFTER INSERT ON listings BEGIN
    UPDATE listings SET search_rowid = (SELECT COALESCE(MAX(search_rowid), 0) + 1 FROM listings)
    WHERE id = new.id;
    INSERT INTO listings_fts (rowid, name, description)
        SELECT search_rowid, new.name, new.description FROM listings WHERE id = new.id;
END;
CREATE TRIGGER listings_fts_update AFTER UPDATE OF name, description ON listings BEGIN
    DELETE FROM listings_fts WHERE rowid = old.search_rowid;
    INSERT INTO listings_fts (rowid, name, description)
        VALUES (new.search_rowid, new.name, new.description);
END;
CREATE TRIGGER listings_fts_delete AFTER DELETE ON listings BEGIN
    DELETE FROM listings_fts WHERE rowid = old.search_rowid;
END;

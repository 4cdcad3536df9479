-- Snapshots past `[reputation] snapshot_retention_days` are pruned by age (see
-- reputation::prune_snapshots); this index finds them without a full scan.
CREATE INDEX score_snapshots_computed ON score_snapshots (computed_at);

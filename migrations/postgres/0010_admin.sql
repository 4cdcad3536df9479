-- Operating the marketplace: suspensions by the operator and the audit log of every
-- operator action.

-- An agent's suspension (profiles.status is 'active' or 'suspended'): when, by which
-- operator credential, and why. Cleared when the agent is reinstated.
ALTER TABLE profiles ADD COLUMN suspended_at BIGINT;
ALTER TABLE profiles ADD COLUMN suspended_by TEXT;
ALTER TABLE profiles ADD COLUMN suspension_reason TEXT;
CREATE INDEX profiles_status ON profiles (status, created_at);

-- A listing's suspension by the operator. `suspended_by` is set exactly while an
-- operator's suspension holds (the seller cannot lift it); `status_before_suspension` is
-- the status reinstatement restores (a seller may have suspended or drafted it before).
ALTER TABLE listings ADD COLUMN suspended_at BIGINT;
ALTER TABLE listings ADD COLUMN suspended_by TEXT;
ALTER TABLE listings ADD COLUMN suspension_reason TEXT;
ALTER TABLE listings ADD COLUMN status_before_suspension TEXT;

-- One row per operator action, written in the transaction of the change it describes.
-- `before` and `after` are JSON objects of what changed; `actor` names the credential
-- (`admin:` and a fingerprint of its hash), never the credential itself.
CREATE TABLE admin_audit_log (
    id          TEXT PRIMARY KEY,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target_type TEXT    NOT NULL,
    target_id   TEXT    NOT NULL,
    reason      TEXT,
    before      TEXT,
    after       TEXT,
    client_addr TEXT,
    request_id  TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX admin_audit_log_newest ON admin_audit_log (created_at);
CREATE INDEX admin_audit_log_target ON admin_audit_log (target_type, target_id, created_at);

-- Append-only: no update or delete path, enforced by the database itself.
CREATE FUNCTION admin_audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'admin_audit_log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER admin_audit_log_no_change BEFORE UPDATE OR DELETE ON admin_audit_log
    FOR EACH ROW EXECUTE FUNCTION admin_audit_log_append_only();

-- The operator's statistics and failed-call list read time ranges of the history and
-- the ledger; failures are few, so their index is partial.
CREATE INDEX gateway_requests_created ON gateway_requests (created_at);
CREATE INDEX gateway_requests_failed ON gateway_requests (created_at) WHERE error_code IS NOT NULL;
CREATE INDEX ledger_entries_created ON ledger_entries (created_at);

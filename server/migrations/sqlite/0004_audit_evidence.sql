-- Evidence for auditors: signed checkpoints of the audit chain, tombstones left by the retention
-- purge, and the durable outbox of webhook deliveries.
-- Portable SQL: the PostgreSQL backend's migration mirrors this file type for type.

-- 1 once the retention purge removed the record's bytes (`bytes` is then empty); the hashes stay
-- so the chain still verifies through it.
ALTER TABLE audit_log ADD COLUMN purged INTEGER NOT NULL DEFAULT 0;

-- The gateway's Ed25519 signature over (seq, hash, time) of the chain head, at most once a
-- second while events flow.
CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY,
    hash      BLOB NOT NULL,
    time      TEXT NOT NULL,
    at_ms     BIGINT NOT NULL,
    signature BLOB NOT NULL
);
CREATE INDEX audit_checkpoints_at ON audit_checkpoints (at_ms);

-- One row per (webhook, audit record) to deliver. Filled in the same transaction as the audit
-- records it carries, so a committed event is never lost to a crash before delivery; the body is
-- built from the audit record when it is sent.
CREATE TABLE webhook_outbox (
    id            INTEGER PRIMARY KEY,
    webhook       TEXT NOT NULL,
    audit_seq     BIGINT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    next_at_ms    BIGINT NOT NULL,
    -- 'pending', 'delivered' or 'dead'
    state         TEXT NOT NULL DEFAULT 'pending',
    last_error    TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_at_ms);

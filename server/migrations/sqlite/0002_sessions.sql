-- Session recordings: one row per proxied session and its structured statement log.
-- Portable SQL: the PostgreSQL backend's migration mirrors this file type for type.

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    subject       TEXT NOT NULL,
    name          TEXT NOT NULL,
    connection    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    client_addr   TEXT,
    started_at_ms BIGINT NOT NULL,
    -- NULL while the session is open.
    ended_at_ms   BIGINT,
    bytes_up      BIGINT NOT NULL DEFAULT 0,
    bytes_down    BIGINT NOT NULL DEFAULT 0,
    statements    BIGINT NOT NULL DEFAULT 0,
    blocked       BIGINT NOT NULL DEFAULT 0,
    masked_json   TEXT NOT NULL DEFAULT '{}',
    end_reason    TEXT
);
CREATE INDEX sessions_subject_started ON sessions (subject, started_at_ms);
CREATE INDEX sessions_connection_started ON sessions (connection, started_at_ms);
-- The unfiltered listing (auditors, admins) reads newest first.
CREATE INDEX sessions_started ON sessions (started_at_ms);

-- Parameters are stored as the adapter handed them over: already masked.
-- `row_count`, not `rows`: ROWS is a keyword in both SQLite and PostgreSQL.
CREATE TABLE statements (
    session_id  TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    text        TEXT NOT NULL,
    params_json TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    rule        TEXT,
    reason      TEXT,
    outcome     TEXT NOT NULL,
    tag         TEXT,
    sqlstate    TEXT,
    row_count   BIGINT,
    duration_us BIGINT NOT NULL,
    masked_json TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);

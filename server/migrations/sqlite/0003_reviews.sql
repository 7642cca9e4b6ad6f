-- Just-in-time reviews: access windows and held statements, and the decisions on them.
-- Portable SQL: the PostgreSQL backend's migration mirrors this file type for type (there the id
-- is BIGINT GENERATED ALWAYS AS IDENTITY).

-- `id` is the short number people type (`hoop approve 42`), so it is the rowid, not a random id.
-- `approvers_json` and `min_approvals` are copied from the connection's config when the review is
-- filed: decisions follow the rules in force then, not a later edit of the file.
CREATE TABLE reviews (
    id             INTEGER PRIMARY KEY,
    kind           TEXT NOT NULL,
    connection     TEXT NOT NULL,
    requester      TEXT NOT NULL,
    requester_name TEXT NOT NULL,
    reason         TEXT,
    -- Statement reviews: the text with the masking detectors applied, never the raw statement.
    statement      TEXT,
    session_id     TEXT,
    state          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    duration_secs  BIGINT,
    window_ends_at BIGINT,
    min_approvals  BIGINT NOT NULL,
    approvers_json TEXT NOT NULL,
    updated_at     BIGINT NOT NULL
);
-- The expiry sweep and "to approve" read by state; "mine" and grant checks by requester.
CREATE INDEX reviews_state ON reviews (state, expires_at);
CREATE INDEX reviews_requester ON reviews (requester, connection, state);

-- One row per person per review: a second approval by the same person cannot count twice.
CREATE TABLE review_decisions (
    review_id  BIGINT NOT NULL REFERENCES reviews (id),
    by_subject TEXT NOT NULL,
    name       TEXT NOT NULL,
    at         BIGINT NOT NULL,
    decision   TEXT NOT NULL,
    comment    TEXT,
    UNIQUE (review_id, by_subject)
);

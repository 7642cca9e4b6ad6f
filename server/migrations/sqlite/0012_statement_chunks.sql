-- Statement logs in chunks: one row per session per recorder batch, its statements as a JSON
-- array in seq order. A row per statement cost the gateway about 14 µs of CPU per statement at
-- thousands a second (index upkeep and sqlx's per-value binding; bench/README.md); a chunk
-- carries the statements of up to 20 ms of one session for about the cost of one such row.
-- `verdicts` lists the verdicts that occur in the chunk (`,allow,block,`), for the listing's
-- verdict filter; `statements` and `blocked` count them, for live session counters.
CREATE TABLE statement_chunks (
    session_id  TEXT NOT NULL,
    first_seq   BIGINT NOT NULL,
    last_seq    BIGINT NOT NULL,
    statements  BIGINT NOT NULL,
    blocked     BIGINT NOT NULL,
    verdicts    TEXT NOT NULL,
    last_at_ms  BIGINT NOT NULL,
    records     TEXT NOT NULL,
    PRIMARY KEY (session_id, first_seq)
);

-- Existing logs become one chunk per session.
INSERT INTO statement_chunks
SELECT session_id, MIN(seq), MAX(seq), COUNT(*), SUM(verdict = 'block'),
       ',' || group_concat(DISTINCT verdict) || ',', MAX(at_ms),
       json_group_array(json_object(
           'seq', seq, 'at_ms', at_ms, 'text', text, 'params', json(params_json),
           'verdict', verdict, 'rule', rule, 'reason', reason, 'outcome', outcome, 'tag', tag,
           'sqlstate', sqlstate, 'rows', row_count, 'duration_us', duration_us,
           'masked', json(masked_json)) ORDER BY seq)
FROM statements GROUP BY session_id;

DROP TABLE statements;

-- The old table's shape, one row per statement, for reading the file with SQL (sqlite3, an
-- auditor's query): the gateway itself reads the chunks.
CREATE VIEW statements AS
SELECT c.session_id AS session_id,
       e.value ->> 'seq' AS seq,
       e.value ->> 'at_ms' AS at_ms,
       e.value ->> 'text' AS text,
       COALESCE(e.value -> 'params', '[]') AS params_json,
       e.value ->> 'verdict' AS verdict,
       e.value ->> 'rule' AS rule,
       e.value ->> 'reason' AS reason,
       e.value ->> 'outcome' AS outcome,
       e.value ->> 'tag' AS tag,
       e.value ->> 'sqlstate' AS sqlstate,
       e.value ->> 'rows' AS row_count,
       e.value ->> 'duration_us' AS duration_us,
       COALESCE(e.value -> 'masked', '{}') AS masked_json
FROM statement_chunks c, json_each(c.records) e;

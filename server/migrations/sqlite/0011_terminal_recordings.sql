-- Terminal recordings (asciicast v2) of SSH channels, appended in chunks as the session runs.
-- Numbered 0010 to leave room for migrations on other branches.
CREATE TABLE casts (
    session_id  TEXT NOT NULL,
    channel     BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY (session_id, channel, seq)
);

-- The registry of runners: what each said of itself on its last lease,
-- and when it was last heard from. Lists of clusters and stacks are JSON
-- arrays.
CREATE TABLE runners (
    id        TEXT PRIMARY KEY,
    host      TEXT NOT NULL DEFAULT '',
    clusters  TEXT NOT NULL DEFAULT '[]',
    capacity  INTEGER NOT NULL DEFAULT 0,
    busy      INTEGER NOT NULL DEFAULT 0,
    version   TEXT NOT NULL DEFAULT '',
    driver    TEXT NOT NULL DEFAULT '',
    stacks    TEXT NOT NULL DEFAULT '[]',
    last_seen BIGINT NOT NULL
);
CREATE INDEX runners_last_seen ON runners (last_seen);

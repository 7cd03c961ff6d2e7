-- Projects carry their quotas (0 = the server's default, -1 = no limit)
-- and tokens an optional expiry.
ALTER TABLE projects ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN quota_queued INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN quota_running INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN quota_schedules INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN quota_code_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN quota_rate REAL NOT NULL DEFAULT 0;
UPDATE projects SET updated_at = created_at;

ALTER TABLE tokens ADD COLUMN expires_at INTEGER;

-- A project's queue in lease order, one cluster at a time: what fair
-- share takes each project's head from, and what counts its queued tasks.
CREATE INDEX tasks_project_queue ON tasks (project_id, cluster, priority DESC, due_at, id)
    WHERE status = 'queued';

-- Counting a project's running tasks for its quota.
CREATE INDEX tasks_project_active ON tasks (project_id)
    WHERE status IN ('preparing', 'running');

-- Who changed what. No foreign key: the record of a deleted project's
-- changes outlives it.
CREATE TABLE audit (
    id         TEXT    PRIMARY KEY,
    project_id TEXT    NOT NULL,
    token_id   TEXT    NOT NULL,
    token_name TEXT    NOT NULL,
    token_kind TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX audit_created ON audit (created_at DESC, id DESC);
CREATE INDEX audit_project_created ON audit (project_id, created_at DESC, id DESC);

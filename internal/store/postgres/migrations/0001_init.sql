-- Times are BIGINT unix microseconds UTC, as in the SQLite schema, so they
-- round-trip exactly; env_vars is a JSON object kept as text so that null
-- and {} stay apart.

CREATE TABLE projects (
    id         TEXT   PRIMARY KEY,
    name       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

-- project_id is NULL for admin and runner tokens.
CREATE TABLE tokens (
    id         TEXT   PRIMARY KEY,
    hash       TEXT   NOT NULL UNIQUE,
    kind       TEXT   NOT NULL,
    project_id TEXT   REFERENCES projects (id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

-- latest_revision_id has no foreign key: codes and code_revisions point at
-- each other, and PutCodeRevision keeps them consistent in one transaction.
CREATE TABLE codes (
    id                 TEXT    PRIMARY KEY,
    project_id         TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name               TEXT    NOT NULL,
    latest_revision_id TEXT    NOT NULL,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    paused             BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (project_id, name)
);

CREATE INDEX codes_project_updated ON codes (project_id, updated_at DESC, id DESC);

CREATE TABLE code_revisions (
    id               TEXT    PRIMARY KEY,
    code_id          TEXT    NOT NULL REFERENCES codes (id) ON DELETE CASCADE,
    project_id       TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    rev              INTEGER NOT NULL,
    runtime          TEXT    NOT NULL,
    file_name        TEXT    NOT NULL,
    stack            TEXT    NOT NULL,
    image            TEXT    NOT NULL,
    command          TEXT    NOT NULL,
    config           TEXT    NOT NULL,
    env_vars         TEXT    NOT NULL,
    max_concurrency  INTEGER NOT NULL,
    retries          INTEGER NOT NULL,
    retries_delay    INTEGER NOT NULL,
    default_priority INTEGER NOT NULL,
    package_key      TEXT    NOT NULL,
    package_sha256   TEXT    NOT NULL,
    package_size     BIGINT  NOT NULL,
    created_at       BIGINT  NOT NULL,
    UNIQUE (code_id, rev)
);

-- Tasks reference neither codes nor revisions: they outlive a deleted code.
-- log_seq numbers the task's log chunks: AppendLog bumps it under the
-- task's row lock, so concurrent appenders never pick the same seq.
CREATE TABLE tasks (
    id               TEXT    PRIMARY KEY,
    project_id       TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    code_id          TEXT    NOT NULL,
    code_name        TEXT    NOT NULL,
    code_revision_id TEXT    NOT NULL,
    code_rev         INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    payload          BYTEA   NOT NULL, -- any bytes: a webhook body need not be text
    timeout          INTEGER NOT NULL,
    delay            INTEGER NOT NULL,
    cluster          TEXT    NOT NULL,
    label            TEXT    NOT NULL,
    msg              TEXT    NOT NULL,
    exit_code        INTEGER,
    percent          INTEGER NOT NULL,
    attempt          INTEGER NOT NULL,
    runner_id        TEXT    NOT NULL,
    lease_expires_at BIGINT,
    cancel_request   BOOLEAN NOT NULL,
    retry_of         TEXT    NOT NULL,
    retry_at         TEXT    NOT NULL,
    retry_count      INTEGER NOT NULL,
    schedule_id      TEXT    NOT NULL,
    log_size         BIGINT  NOT NULL,
    log_seq          BIGINT  NOT NULL DEFAULT 0,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    due_at           BIGINT  NOT NULL,
    start_time       BIGINT,
    end_time         BIGINT
);

-- Leasing reads queued tasks in lease order (priority desc, due time, id)
-- across the clusters asked for.
CREATE INDEX tasks_queue ON tasks (priority DESC, due_at, id)
    WHERE status = 'queued';
CREATE INDEX tasks_queue_cluster ON tasks (cluster, priority DESC, due_at, id)
    WHERE status = 'queued';

-- Counting a code's active tasks for max_concurrency.
CREATE INDEX tasks_active_code ON tasks (code_id)
    WHERE status IN ('preparing', 'running');

-- Finding expired leases without reading finished tasks.
CREATE INDEX tasks_lease_expiry ON tasks (lease_expires_at)
    WHERE lease_expires_at IS NOT NULL;

CREATE INDEX tasks_project_created ON tasks (project_id, created_at DESC, id DESC);
CREATE INDEX tasks_project_code_created ON tasks (project_id, code_name, created_at DESC, id DESC);

CREATE TABLE task_logs (
    task_id TEXT   NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL,
    data    BYTEA  NOT NULL,
    PRIMARY KEY (task_id, seq)
);

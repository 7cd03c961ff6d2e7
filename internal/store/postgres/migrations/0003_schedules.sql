-- Schedules. next_start is NULL once a schedule no longer fires; version
-- grows with every change so that a writer holding an old copy loses.

CREATE TABLE schedules (
    id              TEXT    PRIMARY KEY,
    project_id      TEXT    NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    code_name       TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    payload         BYTEA   NOT NULL,
    status          TEXT    NOT NULL,
    start_at        BIGINT,
    end_at          BIGINT,
    run_every       INTEGER NOT NULL,
    cron            TEXT    NOT NULL,
    timezone        TEXT    NOT NULL,
    run_times       INTEGER NOT NULL,
    priority        INTEGER,
    timeout         INTEGER NOT NULL,
    delay           INTEGER NOT NULL,
    cluster         TEXT    NOT NULL,
    label           TEXT    NOT NULL,
    max_concurrency INTEGER NOT NULL,
    run_count       INTEGER NOT NULL,
    last_run_time   BIGINT,
    next_start      BIGINT,
    msg             TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

-- The scheduler reads only schedules that still fire, earliest first.
CREATE INDEX schedules_due ON schedules (next_start) WHERE status = 'scheduled';

CREATE INDEX schedules_project_created ON schedules (project_id, created_at DESC, id DESC);

-- max_concurrency of a schedule counts its unfinished tasks.
CREATE INDEX tasks_schedule_active ON tasks (schedule_id)
    WHERE status IN ('queued', 'preparing', 'running');

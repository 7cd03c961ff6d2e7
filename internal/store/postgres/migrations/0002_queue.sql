-- Exponential backoff of retries, per code revision.
ALTER TABLE code_revisions ADD COLUMN retries_backoff TEXT NOT NULL DEFAULT '';

-- Stats and cancel_all read a code's tasks by status.
CREATE INDEX tasks_code_status ON tasks (code_id, status);

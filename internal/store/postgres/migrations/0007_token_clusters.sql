-- A runner token may be limited to some clusters: a JSON array, [] = any.
ALTER TABLE tokens ADD COLUMN clusters TEXT NOT NULL DEFAULT '[]';

-- A runner token downloads only packages of the tasks it holds.
CREATE INDEX tasks_revision_runner ON tasks (code_revision_id, runner_id) WHERE status IN ('preparing', 'running');

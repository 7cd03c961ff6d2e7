-- Pruning walks finished tasks oldest first without reading the rest.
CREATE INDEX tasks_ended ON tasks (end_time, id) WHERE end_time IS NOT NULL;

-- Clearing links to pruned tasks reads only tasks that have one.
CREATE INDEX tasks_retry_of ON tasks (retry_of) WHERE retry_of != '';
CREATE INDEX tasks_retry_at ON tasks (retry_at) WHERE retry_at != '';

-- The blob sweep asks which package keys are still named.
CREATE INDEX code_revisions_package ON code_revisions (package_key) WHERE package_key != '';

-- Every status change of a task is a non-HOT update, which adds an entry
-- to each index whose predicate the new row meets: an index fewer is work
-- saved on every lease and running mark. Counting a code's active tasks
-- for max_concurrency is served by tasks_code_status (code_id, status),
-- or by another partial index of the active tasks, as well.
DROP INDEX tasks_active_code;

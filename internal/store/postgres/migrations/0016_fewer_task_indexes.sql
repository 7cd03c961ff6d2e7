-- Every status change of a task is a non-HOT update: it adds an entry to
-- each index whose predicate the new row meets, and each update statement
-- opens every index of the table. A task went through 21 index entries
-- (8 queued, 7 leased, 6 ended); these changes take it to 16 (7, 4 and
-- 5), and a running mark from 7 to 4.
--
-- One index of the active tasks serves what three did: a project's
-- running count (its quota), a code's (max_concurrency, cancel_all),
-- whether a runner holds a task of a revision (a package download: the
-- revision gives its project and code), and the overview's unfinished
-- counts (status is included for it). The expired-lease rescue reads it
-- too, checking each active task's expiry in the table: the active tasks
-- are bounded by the runners' capacity, and a heartbeat, which changes
-- only the expiry, touches no index at all now.
CREATE INDEX tasks_active ON tasks (project_id, code_id, code_revision_id, runner_id) INCLUDE (status)
    WHERE status IN ('preparing', 'running');
DROP INDEX tasks_project_active;
DROP INDEX tasks_revision_runner;
DROP INDEX tasks_lease_expiry;

-- A code's tasks by status (its stats) come from the index that lists a
-- project's tasks by code name, which now carries the code id and the
-- status, so the count still reads no table; a code's queued tasks (the
-- overview, cancel_all) from the project's queue, which carries the code
-- id. tasks_code_status, an index of every task, goes.
DROP INDEX tasks_project_code_created;
CREATE INDEX tasks_project_code_created ON tasks (project_id, code_name, created_at DESC, id DESC)
    INCLUDE (code_id, status);
DROP INDEX tasks_project_queue;
CREATE INDEX tasks_project_queue ON tasks (project_id, (-priority), due_at, id) INCLUDE (code_id)
    WHERE status = 'queued';
DROP INDEX tasks_code_status;

-- Made again after tasks_project_queue, as it was before: with an empty
-- queue's statistics the two cost a fair-share lease of one cluster the
-- same, and the planner keeps the index it met first, by creation; this
-- one must win, so that a project's tasks of other clusters are never
-- stepped over.
DROP INDEX tasks_project_cluster_queue;
CREATE INDEX tasks_project_cluster_queue ON tasks (project_id, cluster, (-priority), due_at, id)
    WHERE status = 'queued';

-- A lease for one cluster reads that cluster's queue alone, in lease
-- order: the key must be the lease's own order, (-priority, due_at, id),
-- for the row comparison that walks it from a cursor to be an index
-- condition (the old key, priority DESC, gave the same order but not in
-- the form the planner matches).
DROP INDEX tasks_queue_cluster;
CREATE INDEX tasks_queue_cluster ON tasks (cluster, (-priority), due_at, id)
    WHERE status = 'queued';

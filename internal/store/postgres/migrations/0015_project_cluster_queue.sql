-- Fair share for a runner of one cluster reads each project's head of that
-- cluster: a project's queue per cluster, in lease order, so that a deep
-- queue of one cluster is never stepped over by a lease for another.
CREATE INDEX tasks_project_cluster_queue ON tasks (project_id, cluster, (-priority), due_at, id)
    WHERE status = 'queued';

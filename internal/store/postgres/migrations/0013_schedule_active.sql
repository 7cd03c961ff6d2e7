-- A schedule's unfinished tasks (its max_active check): only tasks made
-- by a schedule are in the index, so the tasks queued by hand or by a
-- webhook (most of them) pay for it neither when queued nor when leased.
DROP INDEX tasks_schedule_active;
CREATE INDEX tasks_schedule_active ON tasks (schedule_id)
    WHERE schedule_id <> '' AND status IN ('queued', 'preparing', 'running');

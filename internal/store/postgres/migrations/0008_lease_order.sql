-- Leasing walks the queue from a cursor with one row comparison, which a
-- btree index serves as a range scan only when every column of the key
-- sorts the same way: priority is negated so the whole key ascends. Each
-- lease then reads just the rows it hands out (and any it steps over),
-- however long the queue and whatever the table's statistics say.
CREATE INDEX tasks_queue_order ON tasks ((-priority), due_at, id)
    WHERE status = 'queued';
DROP INDEX tasks_queue;

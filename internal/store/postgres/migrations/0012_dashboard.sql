-- The dashboard's overview counts a project's ended tasks by code and
-- status over the last hour or day, with their queue waits: this index
-- serves that range and holds every column it reads, so the count never
-- touches the table. Unfinished tasks are left out of it.
CREATE INDEX tasks_project_ended ON tasks (project_id, end_time, code_name, status, start_time, due_at)
    WHERE end_time IS NOT NULL;

-- Listing a project's tasks by label, newest first; unlabelled tasks (most
-- of them) are left out, so enqueues of those pay nothing for it.
CREATE INDEX tasks_project_label_created ON tasks (project_id, label, created_at DESC, id DESC)
    WHERE label != '';

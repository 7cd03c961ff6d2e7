-- Fair share: the projects with queued tasks, least recently served
-- first. When more than one project has queued tasks, a lease visits them
-- in this order and takes each one's head from tasks_project_queue, so
-- one project's long queue cannot starve another project's new task.
-- Triggers add a project when a task of it becomes queued; leasing drops
-- one it finds with no queued task.
--
-- served orders the list. A project that joins it gets a negative value,
-- lower the later it joins, so it comes before every project served
-- since: while one project alone has queued tasks, leasing reads the
-- queue as before and records nothing, and a second project's first task
-- must still be next. Serving a project gives it a positive value above
-- every other.
CREATE SEQUENCE queue_projects_served;
CREATE TABLE queue_projects (
    project_id TEXT   PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    served     BIGINT NOT NULL DEFAULT -nextval('queue_projects_served')
);
CREATE INDEX queue_projects_served_order ON queue_projects (served, project_id);

INSERT INTO queue_projects (project_id)
    SELECT DISTINCT project_id FROM tasks WHERE status = 'queued'
    ON CONFLICT DO NOTHING;

-- One statement per insert statement, not per row: a batch of a thousand
-- tasks adds its project once. ON CONFLICT DO NOTHING takes no lock on an
-- existing row, so enqueues of one project never wait on each other here.
CREATE FUNCTION queue_projects_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_projects (project_id)
        SELECT DISTINCT project_id FROM new_rows WHERE status = 'queued'
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_queued_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue_projects_add();

-- A task given back to the queue (lease expired) is rare: a row trigger.
CREATE FUNCTION queue_projects_requeue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_projects (project_id) VALUES (NEW.project_id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_queued_update AFTER UPDATE OF status ON tasks
    FOR EACH ROW WHEN (NEW.status = 'queued' AND OLD.status <> 'queued')
    EXECUTE FUNCTION queue_projects_requeue();

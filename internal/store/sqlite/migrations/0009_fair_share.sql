-- Fair share: the projects with queued tasks, least recently served
-- first. A lease visits them in this order and takes each one's head from
-- tasks_project_queue, so one project's long queue cannot starve another
-- project's new task. Triggers add a project when a task of it becomes
-- queued; leasing removes one it finds with no queued task.
CREATE TABLE queue_projects (
    project_id TEXT    PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    served     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX queue_projects_served ON queue_projects (served, project_id);

INSERT OR IGNORE INTO queue_projects (project_id)
    SELECT DISTINCT project_id FROM tasks WHERE status = 'queued';

CREATE TRIGGER tasks_queued_insert AFTER INSERT ON tasks
    WHEN NEW.status = 'queued'
BEGIN
    INSERT OR IGNORE INTO queue_projects (project_id) VALUES (NEW.project_id);
END;

CREATE TRIGGER tasks_queued_update AFTER UPDATE OF status ON tasks
    WHEN NEW.status = 'queued' AND OLD.status <> 'queued'
BEGIN
    INSERT OR IGNORE INTO queue_projects (project_id) VALUES (NEW.project_id);
END;

-- Leasing reads each project's queue through tasks_project_queue now; the
-- queue-wide index would only cost every status change a write.
DROP INDEX tasks_queue;

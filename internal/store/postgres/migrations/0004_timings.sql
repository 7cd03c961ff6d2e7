-- Where a task's time went on its runner: a JSON object of ms per phase.
ALTER TABLE tasks ADD COLUMN timings TEXT NOT NULL DEFAULT '';

package postgres

import (
	"context"

	"github.com/mayfly-run/mayfly/internal/store"
)

// The overview's queries, named so the plan test explains the text that
// runs: for what is unfinished, the project's ranges of tasks_project_queue
// and of tasks_active, which hold the code id (and the active ones'
// status: the queued ones' is known), so neither reads the table; for what
// ended, a range of tasks_project_ended, which covers it.
const (
	overviewActive = `SELECT c.name, t.status, COUNT(*) FROM (
			SELECT code_id, 'queued' AS status FROM tasks WHERE project_id = $1 AND status = 'queued'
			UNION ALL
			SELECT code_id, status FROM tasks WHERE project_id = $1 AND status IN ('preparing', 'running')
		) t JOIN codes c ON c.id = t.code_id
		WHERE c.project_id = $1 GROUP BY c.name, t.status`
	overviewEnded = `SELECT (end_time - $1) / $2, code_name, status, COUNT(*),
		COUNT(start_time), COALESCE(SUM(start_time - due_at), 0)::BIGINT, COALESCE(MAX(start_time - due_at), 0)
		FROM tasks WHERE project_id = $3 AND end_time >= $1 GROUP BY 1, 2, 3`
)

func (s *Store) Overview(ctx context.Context, p store.OverviewParams) (store.Overview, error) {
	rows, err := s.pool.Query(ctx, overviewActive, p.ProjectID)
	if err != nil {
		return store.Overview{}, fail(err, "count active tasks of project %s", p.ProjectID)
	}
	var active []store.CodeCount
	for rows.Next() {
		var c store.CodeCount
		var st string
		if err := rows.Scan(&c.CodeName, &st, &c.N); err != nil {
			rows.Close()
			return store.Overview{}, fail(err, "count active tasks of project %s", p.ProjectID)
		}
		c.Status = store.Status(st)
		active = append(active, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return store.Overview{}, fail(err, "count active tasks of project %s", p.ProjectID)
	}
	since := micros(p.Since)
	rows, err = s.pool.Query(ctx, overviewEnded, since, p.Bucket.Microseconds(), p.ProjectID)
	if err != nil {
		return store.Overview{}, fail(err, "count ended tasks of project %s", p.ProjectID)
	}
	defer rows.Close()
	var ended []store.OverviewRow
	for rows.Next() {
		var r store.OverviewRow
		var st string
		if err := rows.Scan(&r.Bucket, &r.CodeName, &st, &r.N, &r.Waited, &r.WaitSum, &r.WaitMax); err != nil {
			return store.Overview{}, fail(err, "count ended tasks of project %s", p.ProjectID)
		}
		r.Status = store.Status(st)
		ended = append(ended, r)
	}
	if err := rows.Err(); err != nil {
		return store.Overview{}, fail(err, "count ended tasks of project %s", p.ProjectID)
	}
	return store.FoldOverview(p, active, ended), nil
}

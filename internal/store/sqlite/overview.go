package sqlite

import (
	"context"

	"github.com/mayfly-run/mayfly/internal/store"
)

// Both queries of the overview, named so the plan test checks the very
// text that runs.
const (
	// overviewActive walks the project's codes and, per code, the
	// tasks_code_status entries of the unfinished statuses.
	overviewActive = `SELECT c.name, t.status, COUNT(*) FROM codes c
		JOIN tasks t ON t.code_id = c.id AND t.status IN ('queued', 'preparing', 'running')
		WHERE c.project_id = ? GROUP BY c.name, t.status`
	// overviewEnded reads a range of tasks_project_ended, which covers it.
	overviewEnded = `SELECT (end_time - ?) / ?, code_name, status, COUNT(*),
		COUNT(start_time), COALESCE(SUM(start_time - due_at), 0), COALESCE(MAX(start_time - due_at), 0)
		FROM tasks WHERE project_id = ? AND end_time >= ? GROUP BY 1, 2, 3`
)

// OverviewQueries are the overview's statements with arguments for p, for
// the plan test.
func OverviewQueries(p store.OverviewParams) map[string][]any {
	since := micros(p.Since)
	return map[string][]any{
		overviewActive: {p.ProjectID},
		overviewEnded:  {since, p.Bucket.Microseconds(), p.ProjectID, since},
	}
}

func (s *Store) Overview(ctx context.Context, p store.OverviewParams) (store.Overview, error) {
	q := OverviewQueries(p)
	rows, err := s.r.QueryContext(ctx, overviewActive, q[overviewActive]...)
	if err != nil {
		return store.Overview{}, fail(err, "count active tasks of project %s", p.ProjectID)
	}
	var active []store.CodeCount
	for rows.Next() {
		var c store.CodeCount
		if err := rows.Scan(&c.CodeName, &c.Status, &c.N); err != nil {
			rows.Close()
			return store.Overview{}, fail(err, "count active tasks of project %s", p.ProjectID)
		}
		active = append(active, c)
	}
	if err := rows.Err(); err != nil {
		return store.Overview{}, fail(err, "count active tasks of project %s", p.ProjectID)
	}
	rows.Close()
	rows, err = s.r.QueryContext(ctx, overviewEnded, q[overviewEnded]...)
	if err != nil {
		return store.Overview{}, fail(err, "count ended tasks of project %s", p.ProjectID)
	}
	defer rows.Close()
	var ended []store.OverviewRow
	for rows.Next() {
		var r store.OverviewRow
		if err := rows.Scan(&r.Bucket, &r.CodeName, &r.Status, &r.N, &r.Waited, &r.WaitSum, &r.WaitMax); err != nil {
			return store.Overview{}, fail(err, "count ended tasks of project %s", p.ProjectID)
		}
		ended = append(ended, r)
	}
	if err := rows.Err(); err != nil {
		return store.Overview{}, fail(err, "count ended tasks of project %s", p.ProjectID)
	}
	return store.FoldOverview(p, active, ended), nil
}

package sqlite

import (
	"context"
	"fmt"
	"slices"

	"github.com/mayfly-run/mayfly/internal/store"
)

// Fair share: queue_projects lists the projects with queued tasks (kept
// by triggers on tasks), least recently served first. A lease visits them
// in that order, one task from each in turn (round robin), each project's
// next task being its own head in lease order (priority desc, due time,
// id) read from tasks_project_queue. Projects served go to the back of
// the order, so with N projects waiting, each gets one of every N tasks
// handed out, however long another's queue is; within a project,
// priorities hold as before. A project visited without a due task goes
// to the back too, and leaves the list once it has no queued task at all.

// fairProjectsVisited bounds the projects one lease looks at.
const fairProjectsVisited = 256

// projectLevelSQL seeks a project's next lower priority in a cluster.
func projectLevelSQL(started bool) string {
	if started {
		return `SELECT priority FROM tasks WHERE status = 'queued' AND project_id = ? AND cluster = ? AND priority < ?
			ORDER BY priority DESC LIMIT 1`
	}
	// The third argument (the current level) is unused before the first
	// level; it keeps the argument list alike.
	return `SELECT priority FROM tasks WHERE status = 'queued' AND project_id = ? AND cluster = ? AND ? IS NOT NULL
		ORDER BY priority DESC LIMIT 1`
}

// projectFillSQL reads the next batch of a project's current level.
const projectFillSQL = `
		SELECT t.id, t.code_id, t.priority, t.due_at, COALESCE(r.max_concurrency, 0), t.project_id,
			CASE WHEN p.quota_running < 0 THEN 0 WHEN p.quota_running = 0 THEN ? ELSE p.quota_running END
		FROM tasks t
		LEFT JOIN code_revisions r ON r.id = t.code_revision_id
		LEFT JOIN codes k ON k.id = t.code_id
		LEFT JOIN projects p ON p.id = t.project_id
		WHERE t.status = 'queued' AND t.project_id = ? AND t.cluster = ? AND t.priority = ?
			AND t.due_at <= ? AND (t.due_at, t.id) > (?, ?)
			AND COALESCE(k.paused, 0) = 0
		ORDER BY t.due_at, t.id
		LIMIT ?`

// picker takes tasks from cursors while counting, per code with a
// max_concurrency and per project with a running-tasks quota, the tasks
// preparing or running across all runners plus those taken so far.
type picker struct {
	tx         *querier
	active     map[string]int
	projActive map[string]int64
}

// next pops the first task of cursors in lease order that no limit holds
// back; ok is false when they hold no more.
func (pk *picker) next(ctx context.Context, cursors []*queueCursor) (candidate, bool, error) {
	for {
		var (
			best     *queueCursor
			bestCand candidate
		)
		for _, c := range cursors {
			cand, ok, err := c.head(ctx)
			if err != nil {
				return candidate{}, false, err
			}
			if ok && (best == nil || cand.before(bestCand)) {
				best, bestCand = c, cand
			}
		}
		if best == nil {
			return candidate{}, false, nil
		}
		best.pop()
		ok, err := pk.fits(ctx, bestCand)
		if err != nil {
			return candidate{}, false, err
		}
		if ok {
			return bestCand, true, nil
		}
	}
}

// fits counts c in if neither its code's max_concurrency nor its
// project's running-tasks quota is reached.
func (pk *picker) fits(ctx context.Context, c candidate) (bool, error) {
	if c.maxConc > 0 {
		n, ok := pk.active[c.codeID]
		if !ok {
			if err := pk.tx.QueryRowContext(ctx,
				`SELECT COUNT(*) FROM tasks WHERE code_id = ? AND status IN ('preparing', 'running')`,
				c.codeID).Scan(&n); err != nil {
				return false, fmt.Errorf("count active tasks of code %s: %w", c.codeID, err)
			}
		}
		pk.active[c.codeID] = n
		if n >= c.maxConc {
			return false, nil
		}
	}
	if c.projMax > 0 {
		n, ok := pk.projActive[c.project]
		if !ok {
			if err := pk.tx.QueryRowContext(ctx,
				`SELECT COUNT(*) FROM tasks WHERE project_id = ? AND status IN ('preparing', 'running')`,
				c.project).Scan(&n); err != nil {
				return false, fmt.Errorf("count running tasks of project %s: %w", c.project, err)
			}
		}
		pk.projActive[c.project] = n
		if n >= c.projMax {
			return false, nil
		}
		pk.projActive[c.project] = n + 1
	}
	if c.maxConc > 0 {
		pk.active[c.codeID]++
	}
	return true, nil
}

// chooseFair picks up to p.Max due tasks, visiting projects in least
// recently served order, and moves the projects it visited to the back.
func chooseFair(ctx context.Context, tx *querier, p store.LeaseParams, clusters []string, now int64, batch int) ([]string, error) {
	// A lease looks at the first fairProjectsVisited projects; those it
	// visits move to the back, so the ones after them come next.
	rows, err := tx.QueryContext(ctx, `SELECT project_id FROM queue_projects ORDER BY served, project_id LIMIT ?`, fairProjectsVisited)
	if err != nil {
		return nil, fmt.Errorf("read projects with queued tasks: %w", err)
	}
	var projects []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read projects with queued tasks: %w", err)
		}
		projects = append(projects, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read projects with queued tasks: %w", err)
	}

	pk := &picker{tx: tx, active: map[string]int{}, projActive: map[string]int64{}}
	cursors := make(map[string][]*queueCursor, len(projects))
	cursorsOf := func(project string) []*queueCursor {
		if cs, ok := cursors[project]; ok {
			return cs
		}
		var cs []*queueCursor
		seen := map[string]bool{}
		for _, cl := range clusters {
			if !seen[cl] {
				seen[cl] = true
				cs = append(cs, &queueCursor{tx: tx, project: project, cluster: cl, now: now, batch: batch, projMax: p.RunningTasks})
			}
		}
		cursors[project] = cs
		return cs
	}
	var (
		chosen []string
		served []string // in the order first served
		empty  []string // visited without a task to take
		done   = map[string]bool{}
	)
	for len(chosen) < p.Max {
		progress := false
		for _, pj := range projects {
			if done[pj] {
				continue
			}
			c, ok, err := pk.next(ctx, cursorsOf(pj))
			if err != nil {
				return nil, err
			}
			if !ok {
				done[pj] = true
				if !slices.Contains(served, pj) {
					empty = append(empty, pj)
				}
				continue
			}
			if !slices.Contains(served, pj) {
				served = append(served, pj)
			}
			chosen = append(chosen, c.id)
			progress = true
			if len(chosen) == p.Max {
				break
			}
		}
		if !progress {
			break
		}
	}

	// Served projects go to the back in the order served, then the
	// empty ones, which leave the list when nothing of theirs is queued.
	var top int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(served), 0) FROM queue_projects`).Scan(&top); err != nil {
		return nil, fmt.Errorf("read lease order of projects: %w", err)
	}
	for i, pj := range append(served, empty...) {
		if _, err := tx.ExecContext(ctx, `UPDATE queue_projects SET served = ? WHERE project_id = ?`, top+int64(i)+1, pj); err != nil {
			return nil, fmt.Errorf("move project %s back in the lease order: %w", pj, err)
		}
	}
	for _, pj := range empty {
		if _, err := tx.ExecContext(ctx, `DELETE FROM queue_projects WHERE project_id = ?
			AND NOT EXISTS (SELECT 1 FROM tasks WHERE project_id = ? AND status = 'queued')`, pj, pj); err != nil {
			return nil, fmt.Errorf("drop project %s from the lease order: %w", pj, err)
		}
	}
	return chosen, nil
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/store"
)

// Fair share. queue_projects lists the projects with queued tasks (kept
// by triggers on tasks), least recently served first. While it lists one
// project, leasing reads the queue in lease order as before (lease.go).
// With more, a lease visits them in that order and takes one task from
// each in turn (round robin), each project's next task being its own head
// in lease order (priority desc, due time, id), read through the index
// tasks_project_queue with a LATERAL join and locked SKIP LOCKED. Projects
// served move to the back of the order, so with N projects waiting each
// gets one of every N tasks handed out, however long another's queue is;
// within a project priorities hold. A project visited without a due task
// moves to the back too, and leaves the list once it has no queued task.

// fairProjectsVisited bounds the projects one lease round looks at.
const fairProjectsVisited = 256

// fairHeadsSQL returns, for the projects $5 in order, each one's first due
// task not in $3, at most $4 of them: the head of each, skipping rows
// other leasers hold. For one cluster (most runners) each head is read
// from tasks_project_cluster_queue, which holds a project's queue per
// cluster: a project's tasks of other clusters are never stepped over.
// For several, from tasks_project_queue, stepping over the tasks of other
// clusters ahead of the head.
func fairHeadsSQL(oneCluster bool) string {
	cluster := `t.cluster = ANY($1)`
	if oneCluster {
		cluster = `t.cluster = ($1::text[])[1]`
	}
	return `
	SELECT q.project_id, h.id, h.code_id, h.priority, h.due_at, h.max_conc, h.proj_max
	FROM unnest($5::text[]) WITH ORDINALITY AS q(project_id, ord)
	CROSS JOIN LATERAL (
		SELECT t.id, t.code_id, t.priority, t.due_at, ` + maxConcSQL + ` AS max_conc,
			` + projMaxSQL("$6") + ` AS proj_max
		FROM tasks t
		WHERE t.project_id = q.project_id AND t.status = 'queued' AND ` + cluster + ` AND t.due_at <= $2
			AND NOT COALESCE((SELECT k.paused FROM codes k WHERE k.id = t.code_id), FALSE) AND t.id <> ALL($3)
		ORDER BY -t.priority, t.due_at, t.id
		LIMIT 1
		FOR UPDATE OF t SKIP LOCKED
	) h
	ORDER BY q.ord
	LIMIT $4`
}

// healEvery is how often leasing puts back projects whose row a lease
// dropped while a task of theirs was being queued (the two crossed).
const healEvery = time.Second

// leaseFair leases by fair share when more than one project has queued
// tasks; ok is false when at most one has, and the caller leases as
// before.
func (s *Store) leaseFair(ctx context.Context, p store.LeaseParams, clusters []string, now, expires int64) (leased []store.Task, ok bool, err error) {
	s.healQueueProjects(ctx)
	var projects []string
	rows, err := s.pool.Query(ctx, `SELECT project_id FROM queue_projects ORDER BY served, project_id LIMIT $1`, fairProjectsVisited)
	if err != nil {
		return nil, false, fmt.Errorf("read projects with queued tasks: %w", err)
	}
	projects, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, false, fmt.Errorf("read projects with queued tasks: %w", err)
	}
	if len(projects) < 2 {
		return nil, false, nil
	}
	err = s.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, leasePlanSQL); err != nil {
			return fmt.Errorf("set lease plan: %w", err)
		}
		active := map[string]int{}
		projActive := map[string]int64{}
		var (
			chosen  []string
			skipped []string // heads a limit held back, or chosen: not to be read again
			served  []string
			empty   []string
			done    = map[string]bool{}
		)
		for round := 0; len(chosen) < p.Max && round < 4*p.Max+16; round++ {
			var visit []string
			for _, pj := range projects {
				if !done[pj] {
					visit = append(visit, pj)
				}
			}
			if len(visit) == 0 {
				break
			}
			heads, err := fairHeads(ctx, tx, clusters, now, append(chosen, skipped...), p.Max-len(chosen), visit, p.RunningTasks)
			if err != nil {
				return err
			}
			got := map[string]bool{}
			for _, h := range heads {
				got[h.project] = true
			}
			// A project before the last one that gave a head, that gave
			// none, has no due task for these clusters.
			last := -1
			for i, pj := range visit {
				if got[pj] {
					last = i
				}
			}
			if len(heads) < p.Max-len(chosen) {
				last = len(visit) - 1
			}
			for _, pj := range visit[:last+1] {
				if !got[pj] {
					done[pj] = true
					if !slices.Contains(served, pj) {
						empty = append(empty, pj)
					}
				}
			}
			if len(heads) == 0 {
				break
			}
			for _, c := range heads {
				fits, err := fitsLimits(ctx, tx, c, active, projActive)
				if err != nil {
					return err
				}
				if !fits {
					skipped = append(skipped, c.id)
					continue
				}
				chosen = append(chosen, c.id)
				if !slices.Contains(served, c.project) {
					served = append(served, c.project)
				}
			}
		}
		if err := moveBack(ctx, tx, append(served, empty...)); err != nil {
			return err
		}
		if len(empty) > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM queue_projects q WHERE q.project_id = ANY($1)
				AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.project_id = q.project_id AND t.status = 'queued')`, empty); err != nil {
				return fmt.Errorf("drop projects without queued tasks from the lease order: %w", err)
			}
		}
		if len(chosen) == 0 {
			return nil
		}
		leased, err = markLeased(ctx, tx, p.RunnerID, expires, now, chosen)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return leased, true, nil
}

func fairHeads(ctx context.Context, tx pgx.Tx, clusters []string, now int64, exclude []string, n int, projects []string, projMax int64) ([]candidate, error) {
	if exclude == nil {
		exclude = []string{}
	}
	rows, err := tx.Query(ctx, leaseSQL(clusters).fairHeads, clusters, now, exclude, n, projects, projMax)
	if err != nil {
		return nil, fmt.Errorf("read heads of project queues: %w", err)
	}
	defer rows.Close()
	var out []candidate
	for rows.Next() {
		var c candidate
		if err := rows.Scan(&c.project, &c.id, &c.codeID, &c.prio, &c.due, &c.maxConc, &c.projMax); err != nil {
			return nil, fmt.Errorf("read heads of project queues: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read heads of project queues: %w", err)
	}
	return out, nil
}

// fitsLimits counts c in if neither its code's max_concurrency nor its
// project's running-tasks quota is reached, counting under the code's and
// the project's row locks as the walk in lease.go does.
func fitsLimits(ctx context.Context, tx pgx.Tx, c candidate, active map[string]int, projActive map[string]int64) (bool, error) {
	if c.maxConc > 0 {
		n, seen := active[c.codeID]
		if !seen {
			var ok bool
			var err error
			if n, ok, err = codeSlots(ctx, tx, c.project, c.codeID); err != nil {
				return false, err
			}
			if !ok {
				n = -1
			}
			active[c.codeID] = n
		}
		if n < 0 || n >= c.maxConc {
			return false, nil
		}
	}
	if c.projMax > 0 {
		n, seen := projActive[c.project]
		if !seen {
			var ok bool
			var err error
			if n, ok, err = projectSlots(ctx, tx, c.project); err != nil {
				return false, err
			}
			if !ok {
				n = -1
			}
			projActive[c.project] = n
		}
		if n < 0 || n >= c.projMax {
			return false, nil
		}
		projActive[c.project] = n + 1
	}
	if c.maxConc > 0 {
		active[c.codeID]++
	}
	return true, nil
}

// moveBack puts projects at the back of the lease order, in the order
// given. A row another leaser is moving is left to it: it goes to the
// back either way.
func moveBack(ctx context.Context, tx pgx.Tx, projects []string) error {
	if len(projects) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `
		WITH o AS (SELECT u.pid, u.ord FROM unnest($1::text[]) WITH ORDINALITY AS u(pid, ord)),
		l AS (SELECT q.project_id FROM queue_projects q WHERE q.project_id = ANY($1) FOR UPDATE SKIP LOCKED),
		b AS (SELECT nextval('queue_projects_served') * 1024 AS base)
		UPDATE queue_projects q SET served = b.base + o.ord
		FROM o, l, b WHERE q.project_id = o.pid AND l.project_id = o.pid`, projects[:min(len(projects), 1000)])
	if err != nil {
		return fmt.Errorf("move projects back in the lease order: %w", err)
	}
	return nil
}

// healQueueProjects puts back, at most once a healEvery, projects with
// queued tasks that queue_projects lacks: a lease that found a project
// empty and dropped it may have crossed a commit that queued one of its
// tasks.
func (s *Store) healQueueProjects(ctx context.Context) {
	now := time.Now().UnixNano()
	last := s.healedAt.Load()
	if now-last < int64(healEvery) || !s.healedAt.CompareAndSwap(last, now) {
		return
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO queue_projects (project_id)
		SELECT p.id FROM projects p
		WHERE NOT EXISTS (SELECT 1 FROM queue_projects q WHERE q.project_id = p.id)
			AND EXISTS (SELECT 1 FROM tasks t WHERE t.project_id = p.id AND t.status = 'queued')
		ON CONFLICT DO NOTHING`)
	if err != nil && !errors.Is(err, context.Canceled) {
		// Best effort: the next lease after healEvery tries again.
		s.healedAt.Store(last)
	}
}

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// Leasing reads the queue through the partial index tasks_project_queue
// on (project_id, cluster, priority DESC, due_at, id). For each project
// (in fair-share order, see lease_fair.go) and cluster asked for, a
// queueCursor walks one priority level at a time with a range scan
// (project_id = ? AND cluster = ? AND priority = ? AND due_at <= now), so
// tasks of other clusters and tasks not yet due are never read; a
// project's cursors are merged in Go into the order priority DESC,
// due_at, id. Rows come in
// bounded batches and the walk stops as soon as Max tasks are chosen, so a
// lease costs about the same with a thousand queued tasks as with a
// million, except when it has to step over tasks of codes that are paused
// or at their max_concurrency.

// candidate is a queued, due task as leasing sees it.
type candidate struct {
	id      string
	codeID  string
	prio    int64
	due     int64
	maxConc int
	// project and projMax: the task's project and its running-tasks
	// quota (0: none).
	project string
	projMax int64
}

// before reports whether a comes before b in lease order.
func (a candidate) before(b candidate) bool {
	if a.prio != b.prio {
		return a.prio > b.prio
	}
	if a.due != b.due {
		return a.due < b.due
	}
	return a.id < b.id
}

// queueCursor yields one cluster's due tasks in lease order, of one
// project when project is set.
type queueCursor struct {
	tx      *querier
	project string
	cluster string
	now     int64
	batch   int
	// projMax is the running-tasks quota of projects that set none.
	projMax int64

	started bool  // a priority level has been entered
	inLevel bool  // the current level may still hold rows past the cursor
	prio    int64 // current level
	due     int64 // cursor within the level: last (due_at, id) read
	id      string
	done    bool
	buf     []candidate
}

// head returns the next candidate without consuming it; ok is false when
// the cluster has no more due tasks.
func (c *queueCursor) head(ctx context.Context) (cand candidate, ok bool, err error) {
	for len(c.buf) == 0 && !c.done {
		if !c.inLevel {
			if err := c.nextLevel(ctx); err != nil {
				return candidate{}, false, err
			}
			continue
		}
		if err := c.fill(ctx); err != nil {
			return candidate{}, false, err
		}
	}
	if len(c.buf) == 0 {
		return candidate{}, false, nil
	}
	return c.buf[0], true, nil
}

func (c *queueCursor) pop() { c.buf = c.buf[1:] }

// nextLevel seeks the next lower priority that has queued tasks.
func (c *queueCursor) nextLevel(ctx context.Context) error {
	query, args := projectLevelSQL(c.started), []any{c.project, c.cluster, c.prio}
	var p int64
	err := c.tx.QueryRowContext(ctx, query, args...).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) {
		c.done = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("find next priority in cluster %q: %w", c.cluster, err)
	}
	c.started, c.inLevel = true, true
	c.prio, c.due, c.id = p, math.MinInt64, ""
	return nil
}

// fill reads the next batch of the current level. Tasks of paused codes are
// filtered out here; concurrency limits are left to the caller, which also
// counts what it chose in this call.
func (c *queueCursor) fill(ctx context.Context) error {
	query, args := projectFillSQL, []any{c.projMax, c.project, c.cluster, c.prio, c.now, c.due, c.id, c.batch}
	rows, err := c.tx.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("read queue of cluster %q: %w", c.cluster, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var cand candidate
		if err := rows.Scan(&cand.id, &cand.codeID, &cand.prio, &cand.due, &cand.maxConc, &cand.project, &cand.projMax); err != nil {
			return fmt.Errorf("read queue of cluster %q: %w", c.cluster, err)
		}
		c.buf = append(c.buf, cand)
		c.due, c.id = cand.due, cand.id
		n++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read queue of cluster %q: %w", c.cluster, err)
	}
	if n < c.batch {
		c.inLevel = false
	}
	return nil
}

func (s *Store) LeaseTasks(ctx context.Context, p store.LeaseParams) ([]store.Task, error) {
	if p.Max <= 0 {
		return nil, nil
	}
	clusters := p.Clusters
	if len(clusters) == 0 {
		clusters = []string{""}
	}
	batch := min(max(4*p.Max, 16), 1000)
	asked := time.Now()

	var leased []store.Task
	err := s.withTx(ctx, func(tx *querier) error {
		now, expires := micros(p.Now), micros(store.LeaseStart(p.Now, asked, p.LeaseDuration).Add(p.LeaseDuration))
		chosen, err := chooseFair(ctx, tx, p, clusters, now, batch)
		if err != nil {
			return err
		}

		leased = make([]store.Task, 0, len(chosen))
		for _, id := range chosen {
			t, err := scanTask(tx.QueryRowContext(ctx, `UPDATE tasks
				SET status = 'preparing', runner_id = ?, attempt = attempt + 1,
					lease_expires_at = ?, updated_at = ?
				WHERE id = ? AND status = 'queued'
				RETURNING `+taskCols,
				p.RunnerID, expires, now, id))
			if err != nil {
				return fmt.Errorf("mark task %s preparing: %w", id, err)
			}
			leased = append(leased, t)
		}
		return nil
	})
	if err != nil {
		return nil, fail(err, "lease tasks for runner %s", p.RunnerID)
	}
	return leased, nil
}

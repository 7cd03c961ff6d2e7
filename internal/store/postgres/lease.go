package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/store"
)

// Leasing reads the queue in lease order (priority desc, due time, id) in
// batches, with FOR UPDATE SKIP LOCKED: rows another leaser holds
// are stepped over instead of waited for, and a row another leaser took
// and committed meanwhile is re-checked and dropped, so no task is ever
// handed out twice. The walk stops as soon as Max tasks are chosen.
//
// max_concurrency is counted under a lock on the code's row (FOR NO KEY
// UPDATE, which leaves foreign-key checks of new revisions alone), taken
// SKIP LOCKED too: a code whose row another leaser holds is left to that
// leaser for this call. Since leasing never waits for a lock it can never
// deadlock, and since the count is made after the lock is taken, it sees
// every lease of that code committed before, so two leasers never both
// take a code's last free slot.

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

// leaseQueueSQL is where both lease paths read the queue: due, queued
// tasks of the clusters ($1) whose code is not paused, after the cursor
// ($3 priority, $4 due time, $5 id) in lease order, at most $6, locking
// the rows it returns and stepping over rows others hold.
//
// A lease for one cluster (most runners serve one) reads that cluster's
// queue alone, in order, from tasks_queue_cluster. One for several reads
// the whole queue in order (tasks_queue_order) and steps over the tasks of
// other clusters, which costs as many rows as those tasks ahead of its
// own: with 100,000 tasks queued for the default cluster, a lease for
// another took 0.2 to 0.4 s to find nothing, and an idle runner of a
// private cluster asks again on every enqueue.
func leaseQueueSQL(oneCluster bool) string {
	cluster := `t.cluster = ANY($1)`
	if oneCluster {
		cluster = `t.cluster = ($1::text[])[1]`
	}
	return `
	FROM tasks t
	WHERE t.status = 'queued' AND ` + cluster + ` AND t.due_at <= $2
		AND NOT COALESCE((SELECT k.paused FROM codes k WHERE k.id = t.code_id), FALSE)
		AND (-t.priority, t.due_at, t.id) > (-$3::bigint, $4::bigint, $5::text)
	ORDER BY -t.priority, t.due_at, t.id
	LIMIT $6
	FOR UPDATE OF t SKIP LOCKED`
}

// maxConcSQL and projMaxSQL are a queued task's code's max_concurrency (0:
// none) and its project's running-tasks quota (0: none; def the
// parameter of the server's default), each looked up by primary key in a
// subquery of its own: unlike a join, which the planner may make a scan
// of the other table per task when its statistics are of empty tables,
// a subquery can only be that lookup, whatever the statistics and plan
// settings (the grouped leases run under a generic plan made once).
const maxConcSQL = `COALESCE((SELECT r.max_concurrency FROM code_revisions r WHERE r.id = t.code_revision_id), 0)`

func projMaxSQL(def string) string {
	return `(SELECT ` + projectQuotaSQL(def) + ` FROM projects p WHERE p.id = t.project_id)`
}

// leaseStatements are the statements of a lease, for a number of clusters.
type leaseStatements struct {
	batch     string // leaseBatchSQL
	fast      string // leaseFastSQL
	fairHeads string // fairHeadsSQL
}

var leaseByClusters = [2]leaseStatements{
	{batch: leaseBatchSQL(false), fast: leaseFastSQL(false), fairHeads: fairHeadsSQL(false)},
	{batch: leaseBatchSQL(true), fast: leaseFastSQL(true), fairHeads: fairHeadsSQL(true)},
}

// leaseSQL is the statements of a lease for clusters.
func leaseSQL(clusters []string) leaseStatements {
	if len(clusters) == 1 {
		return leaseByClusters[1]
	}
	return leaseByClusters[0]
}

func leaseBatchSQL(oneCluster bool) string {
	return `SELECT t.id, t.code_id, t.priority, t.due_at, ` + maxConcSQL + `, t.project_id, ` +
		projMaxSQL("$7") + leaseQueueSQL(oneCluster)
}

// projectQuotaSQL is a queued task's project's running-tasks quota (0:
// none), def being the parameter of the server's default.
func projectQuotaSQL(def string) string {
	return `CASE WHEN p.quota_running < 0 THEN 0 WHEN p.quota_running = 0 THEN ` + def + `::bigint ELSE p.quota_running END`
}

// leasePlanSQL makes the lease transaction's queries take their order from
// an index rather than sort: with statistics from a time the queue was
// empty the planner otherwise reads every queued task of the clusters and
// sorts them to hand out a few, and leasing slows as the queue grows.
// Disabled nodes cost so much on paper that the planner would compile any
// plan that kept one (JIT), which takes longer than hundreds of leases:
// JIT is off for the lease's own statements.
const leasePlanSQL = `SELECT ` + leasePlanSettings

// leasePlanSettings are leasePlanSQL's settings, for statements that set
// more.
const leasePlanSettings = `set_config('enable_sort', 'off', true), set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)`

// leaseBatch reads the next batch of due tasks after the cursor c.
func leaseBatch(ctx context.Context, tx pgx.Tx, clusters []string, now int64, c candidate, batch int, projMax int64) ([]candidate, error) {
	rows, err := tx.Query(ctx, leaseSQL(clusters).batch, clusters, now, c.prio, c.due, c.id, batch, projMax)
	if err != nil {
		return nil, fmt.Errorf("read queue: %w", err)
	}
	defer rows.Close()
	var out []candidate
	for rows.Next() {
		var cand candidate
		if err := rows.Scan(&cand.id, &cand.codeID, &cand.prio, &cand.due, &cand.maxConc, &cand.project, &cand.projMax); err != nil {
			return nil, fmt.Errorf("read queue: %w", err)
		}
		out = append(out, cand)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read queue: %w", err)
	}
	return out, nil
}

// activeCountSQL counts a code's tasks holding a slot of its
// max_concurrency ($1 its project, $2 the code): a range of tasks_active.
const activeCountSQL = `SELECT COUNT(*) FROM tasks WHERE project_id = $1 AND code_id = $2 AND status IN ('preparing', 'running')`

// codeSlots locks code's row and counts its tasks in preparing or running;
// ok is false when another transaction holds the row.
func codeSlots(ctx context.Context, tx pgx.Tx, projectID, codeID string) (active int, ok bool, err error) {
	var one int
	err = tx.QueryRow(ctx, `SELECT 1 FROM codes WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED`, codeID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		// Locked by another leaser (or deleted meanwhile): leave it be.
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("lock code %s: %w", codeID, err)
	}
	if err := tx.QueryRow(ctx, activeCountSQL, projectID, codeID).Scan(&active); err != nil {
		return 0, false, fmt.Errorf("count active tasks of code %s: %w", codeID, err)
	}
	return active, true, nil
}

// projectActiveSQL counts a project's tasks in preparing or running (its
// quota): a range of tasks_active.
const projectActiveSQL = `SELECT COUNT(*) FROM tasks WHERE project_id = $1 AND status IN ('preparing', 'running')`

// projectSlots locks a project's row and counts its tasks in preparing
// or running, as codeSlots does for a code; ok is false when another
// transaction holds the row.
func projectSlots(ctx context.Context, tx pgx.Tx, projectID string) (active int64, ok bool, err error) {
	var one int
	err = tx.QueryRow(ctx, `SELECT 1 FROM projects WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED`, projectID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("lock project %s: %w", projectID, err)
	}
	if err := tx.QueryRow(ctx, projectActiveSQL, projectID).Scan(&active); err != nil {
		return 0, false, fmt.Errorf("count running tasks of project %s: %w", projectID, err)
	}
	return active, true, nil
}

func (s *Store) LeaseTasks(ctx context.Context, p store.LeaseParams) ([]store.Task, error) {
	if p.Max <= 0 {
		return nil, nil
	}
	clusters := p.Clusters
	if len(clusters) == 0 {
		clusters = []string{""}
	}
	asked := time.Now()
	s.healQueueProjects(ctx)
	// The first try shares a commit with the finishes and other leases
	// waiting at the same time (group.go). It leases nothing when several
	// projects have queued tasks (fair share) or a task it met has a limit
	// to count under a lock: the paths below take those.
	res := s.group.do(ctx, &writeRequest{kind: kindLease, lease: leaseRequest{p: p, clusters: clusters, asked: asked}})
	if res.err != nil {
		return nil, fail(res.err, "lease tasks for runner %s", p.RunnerID)
	}
	if len(res.tasks) > 0 {
		return sortLeased(res.tasks), nil
	}
	// The paths below count running tasks: the ends held for company
	// (group.go) go first, so that a slot they freed is seen free.
	if err := s.group.flush(ctx); err != nil {
		return nil, fail(err, "lease tasks for runner %s: write the reports waiting", p.RunnerID)
	}
	now, expires := micros(p.Now), micros(store.LeaseStart(p.Now, asked, p.LeaseDuration).Add(p.LeaseDuration))
	if leased, ok, err := s.leaseFair(ctx, p, clusters, now, expires); err != nil {
		return nil, fail(err, "lease tasks for runner %s", p.RunnerID)
	} else if ok {
		return leased, nil
	}
	var leased []store.Task
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, leasePlanSQL); err != nil {
			return fmt.Errorf("set lease plan: %w", err)
		}
		// active counts, per code with a limit, its tasks in preparing or
		// running across all runners plus those chosen so far; -1 marks a
		// code another leaser holds.
		active := map[string]int{}
		// projActive does the same per project with a running-tasks quota.
		projActive := map[string]int64{}
		var chosen []string
		cursor := candidate{prio: math.MaxInt64, due: math.MinInt64}
		// The first batch asks for just the tasks wanted: every row read is
		// locked until the lease commits, and a row locked but not taken
		// would push other leasers to tasks after it. Each further batch
		// (after stepping over codes at their limit) doubles, up to 1000.
	walk:
		for round := 0; len(chosen) < p.Max; round++ {
			batch := min((p.Max-len(chosen))<<min(round, 10), 1000)
			cands, err := leaseBatch(ctx, tx, clusters, now, cursor, batch, p.RunningTasks)
			if err != nil {
				return err
			}
			for _, c := range cands {
				if len(chosen) == p.Max {
					break walk
				}
				cursor = c
				if c.maxConc > 0 {
					n, seen := active[c.codeID]
					if !seen {
						var ok bool
						if n, ok, err = codeSlots(ctx, tx, c.project, c.codeID); err != nil {
							return err
						}
						if !ok {
							n = -1
						}
						active[c.codeID] = n
					}
					if n < 0 || n >= c.maxConc {
						continue
					}
					active[c.codeID] = n + 1
				}
				if c.projMax > 0 {
					n, seen := projActive[c.project]
					if !seen {
						var ok bool
						if n, ok, err = projectSlots(ctx, tx, c.project); err != nil {
							return err
						}
						if !ok {
							n = -1
						}
						projActive[c.project] = n
					}
					if n < 0 || n >= c.projMax {
						if c.maxConc > 0 {
							active[c.codeID]--
						}
						continue
					}
					projActive[c.project] = n + 1
				}
				chosen = append(chosen, c.id)
			}
			if len(cands) < batch {
				break
			}
		}
		if len(chosen) == 0 {
			return nil
		}
		var err error
		leased, err = markLeased(ctx, tx, p.RunnerID, expires, now, chosen)
		return err
	})
	if err != nil {
		return nil, fail(err, "lease tasks for runner %s", p.RunnerID)
	}
	return leased, nil
}

// markLeased marks the chosen tasks, locked by the caller's transaction,
// leased to runner, and returns them in the order chosen.
func markLeased(ctx context.Context, tx pgx.Tx, runner string, expires, now int64, chosen []string) ([]store.Task, error) {
	rows, err := tx.Query(ctx, `UPDATE tasks
		SET status = 'preparing', runner_id = $1, attempt = attempt + 1,
			lease_expires_at = $2, updated_at = $3
		WHERE id = ANY($4) AND status = 'queued'
		RETURNING `+taskCols,
		runner, expires, now, chosen)
	if err != nil {
		return nil, fmt.Errorf("mark tasks preparing: %w", err)
	}
	got, err := scanTasks(rows)
	if err != nil {
		return nil, fmt.Errorf("mark tasks preparing: %w", err)
	}
	if len(got) != len(chosen) {
		// Cannot happen while the rows are locked; refuse rather than
		// hand out a partial, misordered set.
		return nil, fmt.Errorf("mark tasks preparing: %d of %d tasks were still queued", len(got), len(chosen))
	}
	byID := make(map[string]store.Task, len(got))
	for _, t := range got {
		byID[t.ID] = t
	}
	leased := make([]store.Task, len(chosen))
	for i, id := range chosen {
		leased[i] = byID[id]
	}
	return leased, nil
}

// leaseFastSQL leases the first tasks in lease order in one statement when
// none of them has a max_concurrency: it reads them as leaseBatchSQL does
// (locked, SKIP LOCKED) and marks them preparing, unless one of them
// belongs to a code with a limit, in which case it changes nothing and
// the walk above, which counts slots under the code's lock, does the
// lease. The rows are put in lease order here, not by the server: with
// sorting disabled (leasePlanSQL) a sort node costs so much on paper that
// the planner compiles the statement (JIT), which takes longer than
// hundreds of leases. The rows are updated by their ids, an array, and
// the status is tested as (status || ”), which no partial index's
// predicate matches: a lookup in the primary key whatever the plan
// settings (a join to c was planned as a scan of every task, and the
// status alone as a scan of a queue index).
func leaseFastSQL(oneCluster bool) string {
	return `
	WITH c AS (
		SELECT t.id, ` + maxConcSQL + ` AS max_conc, ` + projMaxSQL("$10") + ` AS proj_max` + leaseQueueSQL(oneCluster) + `
	), u AS (
		UPDATE tasks SET status = 'preparing', runner_id = $7, attempt = attempt + 1,
			lease_expires_at = $8, updated_at = $9
		WHERE tasks.id = ANY(ARRAY(SELECT id FROM c)) AND (tasks.status || '') = 'queued'
			AND NOT EXISTS (SELECT 1 FROM c WHERE c.max_conc > 0 OR c.proj_max > 0)
			AND (SELECT count(*) FROM (SELECT 1 FROM queue_projects LIMIT 2) q) < 2
		RETURNING tasks.*
	)
	SELECT ` + taskCols + ` FROM u`
}

// leaseFast tries the lease as one pipeline (the plan settings and
// leaseFastSQL, in one implicit transaction committed at its end): one
// round trip and one commit. ok is false when it leased nothing, because
// the queue is empty or a task it met has a max_concurrency: the caller
// then walks the queue.
func (s *Store) leaseFast(ctx context.Context, p store.LeaseParams, clusters []string, now, expires int64) (leased []store.Task, ok bool, err error) {
	b := &pgx.Batch{}
	b.Queue(leasePlanSQL)
	b.Queue(leaseSQL(clusters).fast, clusters, now, int64(math.MaxInt64), int64(math.MinInt64), "", p.Max, p.RunnerID, expires, now, p.RunningTasks)
	br := s.pool.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, false, fmt.Errorf("set lease plan: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, false, fmt.Errorf("lease tasks in one statement: %w", err)
	}
	leased, err = scanTasks(rows)
	if err != nil {
		br.Close()
		return nil, false, fmt.Errorf("lease tasks in one statement: %w", err)
	}
	// The implicit transaction commits at the pipeline's end: the tasks
	// are handed out only once it has.
	if err := br.Close(); err != nil {
		return nil, false, fmt.Errorf("lease tasks in one statement: %w", err)
	}
	return sortLeased(leased), len(leased) > 0, nil
}

// sortLeased puts leased tasks in lease order.
func sortLeased(leased []store.Task) []store.Task {
	slices.SortFunc(leased, func(a, b store.Task) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), a.DueAt.Compare(b.DueAt), cmp.Compare(a.ID, b.ID))
	})
	return leased
}

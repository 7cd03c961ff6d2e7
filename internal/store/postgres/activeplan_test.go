package postgres

import (
	"context"
	"strings"
	"testing"
	"time"
)

// fillCode adds the code 'c' and its revision 'r' of fillProject, which
// fillTasks' tasks name.
func fillCode(t *testing.T, s *Store) {
	t.Helper()
	const project = fillProject
	for _, q := range []string{
		`INSERT INTO codes (id, project_id, name, latest_revision_id, created_at, updated_at)
			VALUES ('c', '` + project + `', 'c', 'r', 0, 0)`,
		`INSERT INTO code_revisions (id, code_id, project_id, name, rev, runtime, file_name, stack, image, command,
			config, env_vars, max_concurrency, retries, retries_delay, default_priority, package_key, package_sha256,
			package_size, created_at)
			VALUES ('r', 'c', '` + project + `', 'c', 1, 'sh', 'run.sh', 'default', '', '', '', '{}', 0, 0, 0, 0, '', '', 0, 0)`,
	} {
		if _, err := s.pool.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
}

// spreadOverCodes adds fillCode's code and leaves one in 50 of
// fillTasks' tasks to it (those whose number is a multiple of 50), the
// others to 49 other codes of the project; then vacuums the table, whose
// pages are all-visible after it, as a table long past its writes is:
// what lets a count be answered from an index alone.
func spreadOverCodes(t *testing.T, s *Store) {
	t.Helper()
	fillCode(t, s)
	for _, q := range []string{
		`UPDATE tasks SET code_id = 'c' || (id::bigint % 50), code_name = 'c' || (id::bigint % 50) WHERE id::bigint % 50 <> 0`,
		`VACUUM ANALYZE tasks`,
	} {
		if _, err := s.pool.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
}

// One index of the active tasks (tasks_active) took the place of three
// (tasks_project_active, tasks_revision_runner, tasks_lease_expiry), and a
// code's stats lost tasks_code_status, an index of every task: every
// reader of those must still read an index, not the table, with 20,000
// tasks of 50 codes, of which 20 are running. The counts read no table at
// all.
func TestActiveTaskQueriesReadTheirIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := planStore(t)
	fillTasks(t, s, "CASE WHEN i % 1000 = 0 THEN 'running' ELSE 'complete' END", "''",
		"CASE WHEN i % 1000 = 0 THEN NULL ELSE i END")
	if _, err := s.pool.Exec(ctx, `UPDATE tasks SET lease_expires_at = id::bigint WHERE status = 'running'`); err != nil {
		t.Fatal(err)
	}
	spreadOverCodes(t, s) // the running tasks among the code 'c''s
	const project = fillProject
	for _, c := range []struct {
		name, query string
		args        []any
		want        string
	}{
		{"a code's active count", activeCountSQL, []any{project, "c"}, "Index Only Scan using tasks_active"},
		{"a project's active count", projectActiveSQL, []any{project}, "Index Only Scan using tasks_active"},
		{"a runner's hold on a revision", runnerHoldsSQL, []any{"r", "runner"}, "Index Only Scan using tasks_active"},
		{"a code's stats", codeStatsSQL, []any{project, "c"}, "Index Only Scan using tasks_project_code_created"},
		{"rescue: killed", rescueKilledSQL, []any{int64(1), 3}, "tasks_active"},
		{"rescue: cancelled", rescueCancelledSQL, []any{int64(1)}, "tasks_active"},
		{"rescue: queued", rescueQueuedSQL, []any{int64(1)}, "tasks_active"},
	} {
		plan := explainText(t, s.pool, c.query, c.args...)
		if !strings.Contains(plan, c.want) {
			t.Errorf("%s does not read %s:\n%s", c.name, strings.TrimPrefix(c.want, "Index Only Scan using "), plan)
		}
		if strings.Contains(plan, "Seq Scan on tasks") {
			t.Errorf("%s scans the tasks table:\n%s", c.name, plan)
		}
	}

	// The queries give what they gave before.
	held, err := s.RunnerHoldsRevision(ctx, "runner", "r")
	if err != nil || !held {
		t.Errorf("RunnerHoldsRevision(runner, r) = %v, %v; want true", held, err)
	}
	if held, err := s.RunnerHoldsRevision(ctx, "other", "r"); err != nil || held {
		t.Errorf("RunnerHoldsRevision(other, r) = %v, %v; want false", held, err)
	}
	stats, err := s.CodeStats(ctx, project, "c")
	if err != nil || len(stats) != 2 || stats["running"] != 20 || stats["complete"] != 380 {
		t.Errorf("CodeStats = %v, %v; want 20 running, 380 complete", stats, err)
	}
}

// The attack: a task that runs for hours heartbeats every few seconds.
// While an index held the lease's expiry, every heartbeat was a non-HOT
// update that added an entry to each of the table's indexes (17 of them)
// for a change of one number. Now no index holds the expiry, so each
// heartbeat is a HOT update: a new row version on the same page, and no
// index entry at all.
func TestHeartbeatTouchesNoIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := planStore(t)
	fillTasks(t, s, "CASE WHEN i = 1 THEN 'running' ELSE 'complete' END", "''", "CASE WHEN i = 1 THEN NULL ELSE i END")
	// The running task alone on a page with room (as a row updated by its
	// lease and start is: fillTasks packs its rows tight).
	if _, err := s.pool.Exec(ctx, `DELETE FROM tasks WHERE id <> lpad('1', 24, '0')`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `VACUUM tasks`); err != nil {
		t.Fatal(err)
	}
	tx := planTx(t, s, groupPlanSQL)
	const beats = 10
	for i := range beats {
		tag, err := tx.Exec(ctx, groupHeartbeatSQL, []string{strings.Repeat("0", 23) + "1"}, []string{"runner"},
			[]int32{1}, []int64{int64(1000 + i)})
		if err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("heartbeat %d: %v rows, %v", i, tag.RowsAffected(), err)
		}
	}
	var hot int64
	if err := tx.QueryRow(ctx, `SELECT pg_stat_get_xact_tuples_hot_updated('tasks'::regclass)`).Scan(&hot); err != nil {
		t.Fatal(err)
	}
	if hot != beats {
		t.Errorf("%d of %d heartbeats were HOT updates: the others added an entry to every index of tasks", hot, beats)
	}
}

// A code's cancel_all, with tasks_code_status gone: among 1,000 queued
// tasks of 50 codes and 19,000 ended ones, it reads the queued tasks
// through an index of the queue, not the table, and cancels all of the
// code's, and only them.
func TestCancelCodeTasksReadsTheQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := planStore(t)
	fillTasks(t, s, "CASE WHEN i % 20 = 0 THEN 'queued' ELSE 'complete' END", "''", "CASE WHEN i % 20 = 0 THEN NULL ELSE i END")
	spreadOverCodes(t, s)
	const project = fillProject
	for name, q := range map[string]string{"queued": cancelCodeQueuedSQL, "active": cancelCodeActiveSQL} {
		plan := explainText(t, s.pool, q, int64(1), project, "c")
		if !strings.Contains(plan, "Index") || strings.Contains(plan, "Seq Scan on tasks") {
			t.Errorf("cancelling a code's %s tasks reads no index of tasks:\n%s", name, plan)
		}
	}
	n, err := s.CancelCodeTasks(ctx, project, "c", time.Now())
	if err != nil || n != 200 {
		t.Fatalf("CancelCodeTasks = %d, %v; want 200", n, err)
	}
	var left int
	if err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM tasks WHERE status = 'queued'`).Scan(&left); err != nil || left != 800 {
		t.Errorf("%d tasks still queued (%v), want 800", left, err)
	}
}

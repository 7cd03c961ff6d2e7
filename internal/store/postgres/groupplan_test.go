package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/store/storetest"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

// planStore opens a store on a database of its own, for the tests that
// read the server's plans.
func planStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// planTx is a transaction rolled back at the test's end, with setup (the
// plan settings of the statements under test) run first.
func planTx(t *testing.T, s *Store, setup string) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, setup); err != nil {
		t.Fatal(err)
	}
	return tx
}

// fillProject is the project of fillTasks' tasks.
const fillProject = "0123456789abcdef01234567"

// fillTasks puts 20,000 tasks (i = 1..20000) of fillProject in s, their
// status, schedule id and end time the SQL expressions given, and
// analyzes the table.
func fillTasks(t *testing.T, s *Store, status, scheduleID, endTime string) {
	t.Helper()
	const project = fillProject
	for _, q := range []string{
		`INSERT INTO projects (id, name, created_at) VALUES ('` + project + `', 'p', 0)`,
		`INSERT INTO tasks (id, project_id, code_id, code_name, code_revision_id, code_rev, status, priority, payload,
			timeout, delay, cluster, label, msg, percent, attempt, runner_id, cancel_request, retry_of, retry_at,
			retry_count, schedule_id, log_size, created_at, updated_at, due_at, end_time)
		SELECT lpad(i::text, 24, '0'), '` + project + `', 'c', 'c', 'r', 1, ` + status + `, 0, '', 60, 0, '', '', '', 0, 1,
			'runner', false, '', '', 0, ` + scheduleID + `, 0, i, i, i, ` + endTime + `
		FROM generate_series(1, 20000) i`,
		`ANALYZE tasks`,
	} {
		if _, err := s.pool.Exec(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
}

// newCode makes a project with one code, "c", in s.
func newCode(t *testing.T, s *Store, now time.Time) store.Code {
	t.Helper()
	ctx := context.Background()
	p := store.Project{ID: storetest.NewID(), Name: "p", CreatedAt: now}
	if err := s.CreateProject(ctx, p); err != nil {
		t.Fatal(err)
	}
	code, err := s.PutCodeRevision(ctx, store.CodeRevision{ID: storetest.NewID(), CodeID: storetest.NewID(),
		ProjectID: p.ID, Name: "c", Runtime: "sh", FileName: "run.sh", Stack: "default", CreatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// queueTasks queues n tasks of code, due at now, of priorities 0, 1 and 2
// in turn, a thousand to an insert.
func queueTasks(t *testing.T, s *Store, code store.Code, n int, now time.Time) {
	t.Helper()
	for i := 0; i < n; i += 1000 {
		batch := make([]store.Task, min(1000, n-i))
		for j := range batch {
			batch[j] = store.Task{ID: storetest.NewID(), ProjectID: code.ProjectID, CodeID: code.CodeID, CodeName: code.Name,
				CodeRevisionID: code.CodeRevision.ID, CodeRev: code.Rev, Status: store.StatusQueued, Timeout: 60,
				CreatedAt: now, UpdatedAt: now, DueAt: now, Priority: j % 3}
		}
		if err := s.InsertTasks(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
}

// explainText is the server's plan of query, as text.
func explainText(t *testing.T, q querier, query string, args ...any) string {
	t.Helper()
	rows, err := q.Query(context.Background(), `EXPLAIN `+query, args...)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

// The fault a benchmark found: the server planned the grouped finishes
// anew on most calls (a custom plan per array length), the planning
// costing more than the update, and its plans read an index of the
// active tasks to join them, a read that grows with the tasks running.
// Under groupPlanSQL each grouped update has one plan, made once, that
// finds its rows by id in the primary key.
func TestGroupedUpdatesFindRowsByPrimaryKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := planStore(t)
	// A few active tasks among many ended ones, with fresh statistics:
	// the shape in which the active index looked cheapest.
	fillTasks(t, s, "CASE WHEN i % 1000 = 0 THEN 'running' ELSE 'complete' END", "''",
		"CASE WHEN i % 1000 = 0 THEN NULL ELSE i END")
	tx := planTx(t, s, groupPlanSQL)
	var mode string
	if err := tx.QueryRow(ctx, `SHOW plan_cache_mode`).Scan(&mode); err != nil || mode != "force_generic_plan" {
		t.Fatalf("plan_cache_mode under groupPlanSQL = %q (%v): each group's updates would be planned anew", mode, err)
	}
	for name, stmt := range map[string]struct {
		sql  string
		args string
	}{
		"start":     {groupStartSQL, `'{a}', '{r}', '{1}', '{1}'`},
		"finish":    {groupFinishSQL, `'{a}', '{r}', '{1}', '{complete}', '{""}', '{0}', '{1}', '{""}', '{1}'`},
		"heartbeat": {groupHeartbeatSQL, `'{a}', '{r}', '{1}', '{1}'`},
	} {
		if _, err := tx.Exec(ctx, `PREPARE g_`+name+` AS `+stmt.sql); err != nil {
			t.Fatalf("prepare %s: %v", name, err)
		}
		text := explainText(t, tx, `EXECUTE g_`+name+`(`+stmt.args+`)`)
		if !strings.Contains(text, "tasks_pkey") {
			t.Errorf("the grouped %s does not find its rows by primary key:\n%s", name, text)
		}
		for _, bad := range []string{"Seq Scan", "Hash Join", "tasks_active", "Bitmap"} {
			if strings.Contains(text, bad) {
				t.Errorf("the grouped %s's plan has %s:\n%s", name, bad, text)
			}
		}
	}
}

// Only tasks made by a schedule are in tasks_schedule_active, so that the
// others pay for it neither when queued nor when leased; a schedule's
// max_active count must still read it, not the table.
func TestScheduleActiveCountReadsItsIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := planStore(t)
	fillTasks(t, s, "'queued'", "CASE WHEN i % 100 = 0 THEN 's' || (i % 7) ELSE '' END", "NULL")
	var indexed int64
	if err := s.pool.QueryRow(ctx, `SELECT pg_relation_size('tasks_schedule_active') / 8192`).Scan(&indexed); err != nil {
		t.Fatal(err)
	}
	text := explainText(t, s.pool, scheduleActiveSQL, "s1")
	if !strings.Contains(text, "tasks_schedule_active") || strings.Contains(text, "Seq Scan") {
		t.Errorf("counting a schedule's unfinished tasks does not read tasks_schedule_active:\n%s", text)
	}
	// 200 scheduled tasks of 20,000: a handful of pages, where an index
	// of every unfinished task takes some 20 times more.
	if indexed > 4 {
		t.Errorf("tasks_schedule_active takes %d pages for 200 scheduled tasks: it holds unscheduled tasks too", indexed)
	}
}

package sqlite

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// fillTasks puts n tasks into one project straight through SQL, in one
// transaction: spread over the last two days, over ten codes, mostly
// ended, a few queued and running, one in a hundred labelled.
func fillTasks(t *testing.T, s *Store, projectID string, n int, now time.Time) {
	t.Helper()
	ctx := t.Context()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	// A big page cache keeps the fill's index updates in memory: the
	// test is about plans, not about the disk.
	if _, err := tx.ExecContext(ctx, `PRAGMA cache_size = -262144`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO projects (id, name, created_at) VALUES (?, 'big', 0)`, projectID); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO codes (id, project_id, name, latest_revision_id, created_at, updated_at)
			VALUES (?, ?, ?, '', 0, 0)`, fmt.Sprintf("c%023d", i), projectID, fmt.Sprintf("code-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The table's indexes are dropped for the fill and made again from
	// their own definitions after it: building an index from sorted rows
	// is many times faster than growing it row by row, and the schema the
	// plans are made on is the same.
	rows, err := tx.QueryContext(ctx, `SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks' AND sql IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	indexes := map[string]string{}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			t.Fatal(err)
		}
		indexes[name] = def
	}
	rows.Close()
	for name := range indexes {
		if _, err := tx.ExecContext(ctx, `DROP INDEX `+name); err != nil {
			t.Fatal(err)
		}
	}
	span := int64(48 * time.Hour / time.Microsecond)
	// x runs 1..n; task x was created x*span/n µs before now. Every
	// 1000th is queued, every 1000th+1 running, every 50th an error.
	_, err = tx.ExecContext(ctx, `WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?1)
		INSERT INTO tasks (id, project_id, code_id, code_name, code_revision_id, code_rev, status, priority, payload,
			timeout, delay, cluster, label, msg, percent, attempt, runner_id, cancel_request, retry_of, retry_at,
			retry_count, schedule_id, log_size, created_at, updated_at, due_at, start_time, end_time)
		SELECT printf('%024x', x), ?2, printf('c%023d', x % 10), 'code-' || (x % 10), '', 1,
			CASE WHEN x % 1000 = 0 THEN 'queued' WHEN x % 1000 = 1 THEN 'running' WHEN x % 50 = 0 THEN 'error' ELSE 'complete' END,
			0, '{}', 60, 0, '', CASE WHEN x % 100 = 7 THEN 'lbl-' || (x % 7) ELSE '' END, '', 0, 1, '', 0, '', '', 0, '', 0,
			c, c, c,
			CASE WHEN x % 1000 = 0 THEN NULL ELSE c + 1000 END,
			CASE WHEN x % 1000 IN (0, 1) THEN NULL ELSE c + 5000 END
		FROM (SELECT x, ?3 - x * ?4 / ?1 AS c FROM seq)`,
		n, projectID, now.UnixMicro(), span)
	if err != nil {
		t.Fatalf("fill tasks: %v", err)
	}
	for _, def := range indexes {
		if _, err := tx.ExecContext(ctx, def); err != nil {
			t.Fatalf("index again: %v", err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// With a million tasks in one project, every query the dashboard makes
// (the overview's counts and each shape of task list it pages through) is
// a search of an index, never a scan of the tasks table, and the list
// never sorts in a temporary b-tree. The plans are checked, not timings;
// and once more after ANALYZE, since statistics may change the planner's
// mind.
//
// It checks plans, not goroutines, and the race detector would make the
// fill take many minutes: under -race it skips, and `make test` runs it
// once more without.
func TestDashboardQueriesUseIndexes(t *testing.T) {
	if raceEnabled {
		t.Skip("SKIPPING under -race (the fill would take minutes): make test runs it without -race")
	}
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "big.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const project = "0123456789abcdef01234567"
	now := time.Now()
	began := time.Now()
	fillTasks(t, s, project, n, now)
	t.Logf("filled %d tasks in %v", n, time.Since(began).Round(time.Millisecond))

	queries := map[string][]any{}
	for q, args := range OverviewQueries(store.OverviewParams{ProjectID: project, Since: now.Add(-time.Hour), Bucket: time.Minute}) {
		queries[q] = args
	}
	for q, args := range OverviewQueries(store.OverviewParams{ProjectID: project, Since: now.Add(-24 * time.Hour), Bucket: 15 * time.Minute}) {
		queries[q+" -- day"] = args
	}
	from, to := now.Add(-3*time.Hour), now.Add(-time.Hour)
	pg := store.Page{Page: 3, PerPage: 100}
	for _, f := range []store.TaskFilter{
		{ProjectID: project, Page: pg},
		{ProjectID: project, CodeName: "code-3", Page: pg},
		{ProjectID: project, Label: "lbl-2", Page: pg},
		{ProjectID: project, Statuses: []store.Status{store.StatusError}, Page: pg},
		{ProjectID: project, Statuses: []store.Status{store.StatusQueued}, Page: pg},
		{ProjectID: project, FromTime: &from, ToTime: &to, Page: pg},
		{ProjectID: project, CodeName: "code-3", Statuses: []store.Status{store.StatusRunning, store.StatusPreparing}, FromTime: &from, Page: pg},
		{ProjectID: project, CodeName: "code-3", Label: "lbl-2", ToTime: &to, Page: pg},
	} {
		q, args := listTasksQuery(f)
		queries[q+fmt.Sprintf(" -- %+v", f)] = args
	}

	check := func(when string) {
		for q, args := range queries {
			rows, err := s.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q, args...)
			if err != nil {
				t.Fatalf("explain %s: %v", q, err)
			}
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			rows.Close()
			text := strings.Join(plan, "; ")
			if testing.Verbose() && when == "fresh" {
				t.Logf("%s\n  -> %s", q[max(0, len(q)-160):], text)
			}
			for _, step := range plan {
				onTasks := strings.Contains(step, " tasks") || strings.Contains(step, " t ")
				if onTasks && !strings.HasPrefix(step, "SEARCH") {
					t.Errorf("%s: a step that is no index search: %q\n  query: %s\n  plan: %s", when, step, q, text)
				}
				if strings.Contains(step, "TEMP B-TREE FOR ORDER BY") {
					t.Errorf("%s: the list sorts its rows: %s\n  query: %s", when, text, q)
				}
			}
			if strings.Contains(q, "tasks WHERE project_id = ? AND end_time") && !strings.Contains(text, "COVERING INDEX tasks_project_ended") {
				t.Errorf("%s: the ended counts do not read tasks_project_ended alone: %s", when, text)
			}
		}
	}
	check("fresh")
	if _, err := s.w.ExecContext(t.Context(), "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	check("after ANALYZE")

	// The queries answer, and the overview counts what was filled.
	o, err := s.Overview(t.Context(), store.OverviewParams{ProjectID: project, Since: now.Add(-time.Hour), Bucket: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var ended int64
	for _, c := range o.Ended {
		ended += c.N
	}
	if perHour := int64(n / 48); ended < perHour*9/10 || ended > perHour*11/10 {
		t.Errorf("ended in the last hour: %d, want about %d", ended, perHour)
	}
	tasks, err := s.ListTasks(t.Context(), store.TaskFilter{ProjectID: project, Label: "lbl-2", Page: pg})
	if err != nil || len(tasks) != 100 {
		t.Fatalf("list by label: %d tasks, %v", len(tasks), err)
	}
}

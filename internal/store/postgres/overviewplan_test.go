package postgres

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The dashboard's overview on PostgreSQL, with 200,000 tasks of one
// project spread over the 30 days tasks are kept by default, and fresh
// statistics: the count of the last hour's or day's ended tasks is an
// index-only scan of tasks_project_ended, the unfinished counts read an
// index over unfinished tasks, and neither scans the tasks table.
func TestOverviewUsesIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := planStore(t)
	const project, n = fillProject, 200_000
	now := time.Now()
	span := int64(30 * 24 * time.Hour / time.Microsecond)
	for _, q := range []string{
		`INSERT INTO projects (id, name, created_at) VALUES ('` + project + `', 'big', 0)`,
		`INSERT INTO codes (id, project_id, name, latest_revision_id, created_at, updated_at)
			SELECT 'c' || lpad(i::text, 23, '0'), '` + project + `', 'code-' || i, '', 0, 0 FROM generate_series(0, 9) i`,
	} {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// Every 1000th task queued, every 1000th+1 running, every 50th an error.
	_, err := s.pool.Exec(ctx, `INSERT INTO tasks (id, project_id, code_id, code_name, code_revision_id, code_rev, status, priority, payload,
			timeout, delay, cluster, label, msg, percent, attempt, runner_id, cancel_request, retry_of, retry_at,
			retry_count, schedule_id, log_size, created_at, updated_at, due_at, start_time, end_time)
		SELECT lpad(to_hex(x), 24, '0'), $1, 'c' || lpad((x % 10)::text, 23, '0'), 'code-' || (x % 10), '', 1,
			CASE WHEN x % 1000 = 0 THEN 'queued' WHEN x % 1000 = 1 THEN 'running' WHEN x % 50 = 0 THEN 'error' ELSE 'complete' END,
			0, '{}', 60, 0, '', '', '', 0, 1, '', false, '', '', 0, '', 0, c, c, c,
			CASE WHEN x % 1000 = 0 THEN NULL ELSE c + 1000 END,
			CASE WHEN x % 1000 IN (0, 1) THEN NULL ELSE c + 5000 END
		FROM (SELECT x, $2::bigint - x * $3::bigint / $4::bigint AS c FROM generate_series(1, $4::bigint) x) g`,
		project, now.UnixMicro(), span, n)
	if err != nil {
		t.Fatalf("fill: %v", err)
	}
	if _, err := s.pool.Exec(ctx, `VACUUM ANALYZE tasks`); err != nil {
		t.Fatal(err)
	}
	explain := func(q string, args ...any) string {
		t.Helper()
		return explainText(t, s.pool, q, args...)
	}
	for _, window := range []time.Duration{time.Hour, 24 * time.Hour} {
		since := now.Add(-window).UnixMicro()
		plan := explain(overviewEnded, since, int64(60_000_000), project)
		if !strings.Contains(plan, "Index Only Scan using tasks_project_ended") || strings.Contains(plan, "Seq Scan on tasks") {
			t.Errorf("ended counts over %v:\n%s", window, plan)
		}
	}
	// The unfinished counts read the project's queued tasks and its active
	// ones from the indexes of each, never an ended task nor the table.
	plan := explain(overviewActive, project)
	for _, want := range []string{"Index Only Scan using tasks_project_queue", "Index Only Scan using tasks_active"} {
		if !strings.Contains(plan, want) {
			t.Errorf("active counts do not use %s:\n%s", strings.TrimPrefix(want, "Index Only Scan using "), plan)
		}
	}
	if strings.Contains(plan, "Seq Scan on tasks") || strings.Contains(plan, "Bitmap Heap Scan on tasks") {
		t.Errorf("active counts read the table:\n%s", plan)
	}
}

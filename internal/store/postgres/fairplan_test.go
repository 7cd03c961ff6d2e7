package postgres

import (
	"context"
	"math"
	"strings"
	"testing"
)

// The fair-share read takes each visited project's head through an index
// and stops as soon as it has enough: no sort of the heads (which would
// read, and lock, the head of every project visited before keeping a few),
// no scan of the queue.
func TestFairHeadsReadsIndexAndStopsEarly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := planStore(t)
	tx := planTx(t, s, leasePlanSQL)
	for _, c := range []struct {
		clusters []string
		index    string
	}{
		{[]string{""}, "tasks_project_cluster_queue"},
		{[]string{"", "gpu"}, "tasks_project_queue"},
	} {
		var plan []byte
		err := tx.QueryRow(ctx, `EXPLAIN (FORMAT JSON) `+leaseSQL(c.clusters).fairHeads,
			c.clusters, int64(math.MaxInt64/2), []string{}, 1, []string{"a", "b", "c"}, int64(0)).Scan(&plan)
		if err != nil {
			t.Fatal(err)
		}
		text := string(plan)
		for _, bad := range []string{`"Sort"`, `"Seq Scan"`} {
			if strings.Contains(text, bad) {
				t.Fatalf("fair-share plan for clusters %q has a %s node: %s", c.clusters, bad, text)
			}
		}
		if !strings.Contains(text, `"`+c.index+`"`) {
			t.Fatalf("fair-share plan for clusters %q does not read %s: %s", c.clusters, c.index, text)
		}
	}
}

// A runner of one cluster, with several projects queued (fair share): the
// head of a project with 20,000 tasks of the default cluster and none of
// the runner's is found missing without stepping over those, nor over
// another project's 20,000 tasks of the runner's cluster.
func TestFairHeadsOfOneClusterStepOverNoOtherCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := planStore(t)
	fillTasks(t, s, "'queued'", "''", "NULL")
	// A second project with 20,000 tasks of the runner's cluster.
	for _, q := range []string{
		`INSERT INTO projects (id, name, created_at) VALUES ('0123456789abcdef0123456f', 'q', 0)`,
		`INSERT INTO tasks (id, project_id, code_id, code_name, code_revision_id, code_rev, status, priority, payload,
			timeout, delay, cluster, label, msg, percent, attempt, runner_id, cancel_request, retry_of, retry_at,
			retry_count, schedule_id, log_size, created_at, updated_at, due_at)
		SELECT 'g' || lpad(i::text, 23, '0'), '0123456789abcdef0123456f', 'c', 'c', 'r', 1, 'queued', 0, '', 60, 0,
			'gpu', '', '', 0, 0, '', false, '', '', 0, '', 0, i, i, i
		FROM generate_series(1, 20000) i`,
		`ANALYZE tasks`,
	} {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	tx := planTx(t, s, leasePlanSQL)
	var plan []byte
	clusters := []string{"gpu"}
	err := tx.QueryRow(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) `+leaseSQL(clusters).fairHeads,
		clusters, int64(math.MaxInt64/2), []string{}, 1, []string{fillProject}, int64(0)).Scan(&plan)
	if err != nil {
		t.Fatal(err)
	}
	checkLeasePlan(t, plan, "tasks_project_cluster_queue")
}

package postgres

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// The fault a benchmark found: statistics taken while the queue was empty
// (a new installation, or a queue drained overnight) made the planner read
// and sort every queued task on each lease, so leasing slowed as the queue
// grew (813 tasks/s at 500 queued, 199/s at 5000). The lease query must be
// served by the queue index in lease order, reading only what it hands
// out, whatever the statistics say.
func TestLeaseReadsTheQueueInIndexOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := planStore(t)
	// Statistics of an empty queue.
	if _, err := s.pool.Exec(ctx, `ANALYZE tasks`); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	code := newCode(t, s, now)
	const queued = 20000
	queueTasks(t, s, code, queued, now)

	tx := planTx(t, s, leasePlanSQL)
	var plan []byte
	var err error
	// A lease for one cluster reads that cluster's queue alone; one for
	// several reads the whole queue in order. A lease for a cluster with
	// nothing queued, behind 20,000 tasks of another, must not read them.
	for _, c := range []struct {
		clusters []string
		index    string
	}{
		{[]string{""}, "tasks_queue_cluster"},
		{[]string{"", "gpu"}, "tasks_queue_order"},
		{[]string{"gpu"}, "tasks_queue_cluster"},
	} {
		stmts := leaseSQL(c.clusters)
		err = tx.QueryRow(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) `+stmts.batch,
			c.clusters, micros(now.Add(time.Second)), int64(math.MaxInt64), int64(math.MinInt64), "", 4, int64(0)).Scan(&plan)
		if err != nil {
			t.Fatal(err)
		}
		checkLeasePlan(t, plan, c.index)
		// The one-statement lease (rolled back with the transaction) reads
		// the queue the same way, and is not compiled: JIT for a plan made
		// costly on paper by the disabled sort took longer than hundreds
		// of leases.
		err = tx.QueryRow(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) `+stmts.fast,
			c.clusters, micros(now.Add(time.Second)), int64(math.MaxInt64), int64(math.MinInt64), "", 4,
			"r1", micros(now.Add(time.Minute)), micros(now), int64(0)).Scan(&plan)
		if err != nil {
			t.Fatal(err)
		}
		checkLeasePlan(t, plan, c.index)
	}

	// Counting a code's active tasks (max_concurrency) reads the index of
	// active tasks, not the table.
	if _, err := tx.Exec(ctx, `ANALYZE tasks`); err != nil {
		t.Fatal(err)
	}
	var count []byte
	err = tx.QueryRow(ctx, `EXPLAIN (FORMAT JSON) `+activeCountSQL, code.ProjectID, code.CodeID).Scan(&count)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(count), `"Index Name": "tasks_active"`) || strings.Contains(string(count), "Seq Scan") {
		t.Errorf("counting a code's active tasks reads no index of tasks:\n%s", count)
	}
}

func checkLeasePlan(t *testing.T, plan []byte, index string) {
	t.Helper()
	var nodes []map[string]any
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		nodes = append(nodes, n)
		kids, _ := n["Plans"].([]any)
		for _, k := range kids {
			walk(k.(map[string]any))
		}
	}
	var top []struct {
		Plan map[string]any `json:"Plan"`
		JIT  any            `json:"JIT"`
	}
	if err := json.Unmarshal(plan, &top); err != nil || len(top) == 0 {
		t.Fatalf("read plan %s: %v", plan, err)
	}
	walk(top[0].Plan)
	if top[0].JIT != nil {
		t.Errorf("the lease statement was compiled (JIT):\n%s", plan)
	}
	usesIndex := false
	for _, n := range nodes {
		kind, _ := n["Node Type"].(string)
		rel, _ := n["Relation Name"].(string)
		if rel == "tasks" && strings.Contains(kind, "Index") {
			usesIndex = usesIndex || n["Index Name"] == index
			// Rows read, or stepped over (another cluster's).
			rows, _ := n["Actual Rows"].(float64)
			removed, _ := n["Rows Removed by Filter"].(float64)
			if rows+removed > 100 {
				t.Errorf("the lease read %v queued tasks through %v to hand out 4", rows+removed, n["Index Name"])
			}
		}
		if rel == "tasks" && kind == "Seq Scan" || kind == "Sort" {
			t.Errorf("the lease plan has a %s over the queue:\n%s", kind, plan)
		}
	}
	if !usesIndex {
		t.Errorf("the lease plan does not walk %s:\n%s", index, plan)
	}
}

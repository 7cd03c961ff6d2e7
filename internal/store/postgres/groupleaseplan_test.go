package postgres

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// The fault: a server's leases while nothing is queued (an idle runner
// asks every 250 ms) leave each connection a generic plan of the lease,
// made for empty tables, which the server keeps until the next ANALYZE of
// tasks. That plan joined the leased rows back to the table by reading
// every queued task through the primary key, and looked up each task's
// code revision, code and project by reading all of them: once a burst
// was queued, each lease read the whole queue to hand out a few tasks
// (5,000 rows read for 4 here, under the group's settings before this
// change as under those now). The plan must walk the queue's index in
// order and find everything else by primary key, reading only what it
// hands out, whatever the statistics.
func TestGroupedLeaseReadsOnlyWhatItHandsOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := planStore(t)
	if _, err := s.pool.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	code := newCode(t, s, now)
	tx := planTx(t, s, groupPlanSQL)
	cases := []struct {
		clusters []string
		index    string
	}{
		{[]string{""}, "tasks_queue_cluster"},
		{[]string{"", "gpu"}, "tasks_queue_order"},
	}
	// EXECUTE takes no parameters of its own: the values are written in.
	args := func(clusters []string) string {
		return fmt.Sprintf(`(ARRAY['%s']::text[], %d, %d, %d, '', 4, 'r1', %d, %d, 0)`,
			strings.Join(clusters, "', '"), micros(now.Add(time.Second)), int64(math.MaxInt64), int64(math.MinInt64),
			micros(now.Add(time.Minute)), micros(now))
	}
	// The plans are made, and kept for the connection, while nothing is
	// queued.
	for i, c := range cases {
		name := "grouped_lease_" + string(rune('a'+i))
		if _, err := tx.Exec(ctx, `PREPARE `+name+` AS `+leaseSQL(c.clusters).fast); err != nil {
			t.Fatal(err)
		}
		// More than five times: under plan_cache_mode auto the server then
		// keeps a generic plan too.
		for range 8 {
			if _, err := tx.Exec(ctx, `EXECUTE `+name+args(c.clusters)); err != nil {
				t.Fatal(err)
			}
		}
	}
	queueTasks(t, s, code, 5000, now)
	for i, c := range cases {
		name := "grouped_lease_" + string(rune('a'+i))
		var plan []byte
		if err := tx.QueryRow(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE `+name+args(c.clusters)).Scan(&plan); err != nil {
			t.Fatal(err)
		}
		checkLeasePlan(t, plan, c.index)
		if strings.Contains(string(plan), `"Join Filter"`) {
			t.Errorf("the grouped lease joins by scanning (a join filter) for clusters %q:\n%s", c.clusters, plan)
		}
		if !strings.Contains(string(plan), `"Actual Rows": 4,`) {
			t.Errorf("the grouped lease for clusters %q did not hand out 4 tasks:\n%s", c.clusters, plan)
		}
	}
}

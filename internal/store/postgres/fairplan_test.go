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
	var plan []byte
	err := tx.QueryRow(ctx, `EXPLAIN (FORMAT JSON) `+fairHeadsSQL,
		[]string{""}, int64(math.MaxInt64/2), []string{}, 1, []string{"a", "b", "c"}, int64(0)).Scan(&plan)
	if err != nil {
		t.Fatal(err)
	}
	text := string(plan)
	for _, bad := range []string{`"Sort"`, `"Seq Scan"`} {
		if strings.Contains(text, bad) {
			t.Fatalf("fair-share plan has a %s node: %s", bad, text)
		}
	}
	if !strings.Contains(text, "tasks_project_queue") {
		t.Fatalf("fair-share plan does not read tasks_project_queue: %s", text)
	}
}

package storetest

import (
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// QueueStats counts every project's queued tasks, delayed ones too, and
// gives the earliest due time among those due; leased and ended tasks are
// not in the queue.
func testQueueStats(t *testing.T, b *bundle) {
	if n, oldest, err := b.s.QueueStats(b.ctx, b.now); err != nil || n != 0 || !oldest.IsZero() {
		t.Fatalf("empty queue: %d, %v, %v", n, oldest, err)
	}
	code := b.putCode(t, "c")
	other := b.putCodeIn(t, b.newProject(t, "other").ID, "d")
	b.insertN(t, 3, code, func(tk *store.Task) { tk.DueAt = b.now.Add(-time.Minute) })
	b.insertN(t, 2, other, func(tk *store.Task) { tk.DueAt = b.now.Add(-time.Hour) })
	b.insertN(t, 4, code, func(tk *store.Task) { tk.DueAt = b.now.Add(time.Hour) }) // delayed
	leased, err := b.s.LeaseTasks(b.ctx, store.LeaseParams{RunnerID: "r1", Max: 2, Clusters: []string{""},
		LeaseDuration: time.Minute, Now: b.now})
	if err != nil || len(leased) != 2 {
		t.Fatalf("lease: %d, %v", len(leased), err)
	}
	n, oldest, err := b.s.QueueStats(b.ctx, b.now)
	if err != nil {
		t.Fatal(err)
	}
	// The two an hour overdue were leased first.
	if n != 7 || !oldest.Equal(b.now.Add(-time.Minute)) {
		t.Fatalf("QueueStats = %d, %v; want 7, %v", n, oldest, b.now.Add(-time.Minute))
	}
}

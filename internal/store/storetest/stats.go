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
	// Fair share leased one of each project: one of the two an hour
	// overdue is still queued.
	if n != 7 || !oldest.Equal(b.now.Add(-time.Hour)) {
		t.Fatalf("QueueStats = %d, %v; want 7, %v", n, oldest, b.now.Add(-time.Hour))
	}
}

// A task whose running mark never got through (the database was away when
// the runner sent it) still gets a start time when it ends: the one the
// finish names, never after its end; a task marked running keeps its own.
func testFinishWithoutRunningMark(t *testing.T, b *bundle) {
	code := b.putCode(t, "c")
	b.insertN(t, 2, code)
	leased, err := b.s.LeaseTasks(b.ctx, store.LeaseParams{RunnerID: "r1", Max: 2, Clusters: []string{""},
		LeaseDuration: time.Minute, Now: b.now})
	if err != nil || len(leased) != 2 {
		t.Fatalf("lease: %d, %v", len(leased), err)
	}
	marked, unmarked := leased[0], leased[1]
	if err := b.s.MarkRunning(b.ctx, store.StartParams{TaskID: marked.ID, RunnerID: "r1", Attempt: 1, Now: b.now.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	end := b.now.Add(10 * time.Second)
	for _, tk := range leased {
		if err := b.s.FinishTask(b.ctx, store.FinishParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, Status: store.StatusComplete,
			Now: end, StartedAt: b.now.Add(4 * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	got := func(id string) store.Task {
		tk, err := b.s.GetTask(b.ctx, b.project.ID, id)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	if tk := got(unmarked.ID); tk.StartTime == nil || !tk.StartTime.Equal(b.now.Add(4*time.Second)) {
		t.Fatalf("unmarked task's start %v, want %v", tk.StartTime, b.now.Add(4*time.Second))
	}
	if tk := got(marked.ID); tk.StartTime == nil || !tk.StartTime.Equal(b.now.Add(time.Second)) {
		t.Fatalf("marked task's start %v, want its own mark %v", tk.StartTime, b.now.Add(time.Second))
	}
}

package storetest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// runTo takes one queued task through a lease and a running mark at start
// to status at end (it must be the only due task).
func (b *bundle) runTo(t *testing.T, tk store.Task, status store.Status, start, end time.Time) {
	t.Helper()
	b.insert(t, tk)
	leased := b.lease(t, "r-overview", 1, tk.DueAt)
	if len(leased) != 1 || leased[0].ID != tk.ID {
		t.Fatalf("lease of %s returned %v", tk.ID, ids(leased))
	}
	if err := b.s.MarkRunning(b.ctx, store.StartParams{TaskID: tk.ID, RunnerID: "r-overview", Attempt: leased[0].Attempt, Now: start}); err != nil {
		t.Fatal(err)
	}
	if err := b.s.FinishTask(b.ctx, store.FinishParams{TaskID: tk.ID, RunnerID: "r-overview", Attempt: leased[0].Attempt,
		Status: status, Now: end}); err != nil {
		t.Fatalf("finish task %s: %v", tk.ID, err)
	}
}

// Overview counts a project's unfinished tasks per code as they are now,
// and its tasks that ended in the window per code and status and per
// bucket, with their queue waits; nothing of another project, nothing that
// ended before the window.
func testOverview(t *testing.T, b *bundle) {
	a, c := b.putCode(t, "a"), b.putCode(t, "c")
	other := b.putCodeIn(t, b.newProject(t, "other").ID, "a")
	since := b.now.Add(-time.Hour)
	at := func(d time.Duration) func(*store.Task) {
		return func(tk *store.Task) { tk.CreatedAt, tk.DueAt = b.now.Add(d), b.now.Add(d) }
	}
	due := b.now.Add(-12 * time.Minute)
	b.runTo(t, b.task(a, at(-12*time.Minute)), store.StatusComplete, due.Add(2*time.Second), b.now.Add(-10*time.Minute))
	due = b.now.Add(-31 * time.Minute)
	b.runTo(t, b.task(a, at(-31*time.Minute)), store.StatusError, due.Add(4*time.Second), b.now.Add(-30*time.Minute))
	due = b.now.Add(-15 * time.Minute)
	b.runTo(t, b.task(c, at(-15*time.Minute)), store.StatusComplete, due.Add(6*time.Second), b.now.Add(-9*time.Minute))
	// Before the window, and in another project.
	due = b.now.Add(-3 * time.Hour)
	b.runTo(t, b.task(c, at(-3*time.Hour)), store.StatusComplete, due.Add(time.Second), b.now.Add(-2*time.Hour))
	due = b.now.Add(-6 * time.Minute)
	b.runTo(t, b.task(other, at(-6*time.Minute)), store.StatusComplete, due.Add(time.Second), b.now.Add(-5*time.Minute))

	b.insert(t, b.task(a), b.task(a), b.task(c))
	if got := b.lease(t, "r-active", 1, b.now); len(got) != 1 {
		t.Fatalf("lease one: %v", ids(got))
	}
	b.insert(t, b.task(other))

	o, err := b.s.Overview(b.ctx, store.OverviewParams{ProjectID: b.project.ID, Since: since, Bucket: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	sortCounts := func(v []store.CodeCount) []store.CodeCount {
		slices.SortFunc(v, func(x, y store.CodeCount) int {
			if x.CodeName != y.CodeName {
				return strings.Compare(x.CodeName, y.CodeName)
			}
			return strings.Compare(string(x.Status), string(y.Status))
		})
		return v
	}
	var queued, busy int64
	for _, cc := range o.Active {
		switch cc.Status {
		case store.StatusQueued:
			queued += cc.N
		case store.StatusPreparing, store.StatusRunning:
			busy += cc.N
		default:
			t.Errorf("active count of status %s", cc.Status)
		}
	}
	if queued != 2 || busy != 1 {
		t.Errorf("active: %+v; want 2 queued and 1 leased in all", o.Active)
	}
	wantEnded := []store.CodeCount{{CodeName: "a", Status: store.StatusComplete, N: 1},
		{CodeName: "a", Status: store.StatusError, N: 1}, {CodeName: "c", Status: store.StatusComplete, N: 1}}
	if got := sortCounts(o.Ended); !slices.Equal(got, wantEnded) {
		t.Errorf("ended: %+v; want %+v", got, wantEnded)
	}
	if len(o.Series) != 2 {
		t.Fatalf("series: %+v; want the buckets at -30 and -10 minutes", o.Series)
	}
	first, last := o.Series[0], o.Series[1]
	if !first.Start.Equal(since.Add(30*time.Minute)) || first.Ended[store.StatusError] != 1 || first.Waited != 1 ||
		first.WaitSum != 4*time.Second || first.WaitMax != 4*time.Second {
		t.Errorf("first bucket: %+v", first)
	}
	if !last.Start.Equal(since.Add(50*time.Minute)) || last.Ended[store.StatusComplete] != 2 || last.Waited != 2 ||
		last.WaitSum != 8*time.Second || last.WaitMax != 6*time.Second {
		t.Errorf("last bucket: %+v", last)
	}

	empty, err := b.s.Overview(b.ctx, store.OverviewParams{ProjectID: NewID(), Since: since, Bucket: time.Minute})
	if err != nil || len(empty.Active)+len(empty.Ended)+len(empty.Series) != 0 {
		t.Fatalf("overview of an unknown project: %+v, %v", empty, err)
	}
}

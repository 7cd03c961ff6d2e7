package storetest

import (
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// maintenanceTests are the upkeep part of the suite: retention, releasing
// leases, package references.
var maintenanceTests = []struct {
	name string
	fn   func(t *testing.T, b *bundle)
}{
	{"PruneTasks", testPruneTasks},
	{"PruneTasksBatches", testPruneTasksBatches},
	{"ReleaseTask", testReleaseTask},
	{"ReferencedPackageKeys", testReferencedPackageKeys},
}

// finishAt runs a queued task through a lease to status, ending at end,
// with a log, and returns it as stored.
func (b *bundle) finishAt(t *testing.T, tk store.Task, status store.Status, end time.Time, retry *store.Task) store.Task {
	t.Helper()
	leased := b.lease(t, "r-prune", 1, tk.DueAt)
	if len(leased) != 1 || leased[0].ID != tk.ID {
		t.Fatalf("lease of %s returned %v", tk.ID, ids(leased))
	}
	if err := b.s.AppendLog(b.ctx, store.AppendLogParams{TaskID: tk.ID, RunnerID: "r-prune", Attempt: leased[0].Attempt,
		Data: []byte("output of " + tk.ID + "\n")}); err != nil {
		t.Fatalf("append log: %v", err)
	}
	if err := b.s.FinishTask(b.ctx, store.FinishParams{TaskID: tk.ID, RunnerID: "r-prune", Attempt: leased[0].Attempt, Status: status,
		Now: end, Retry: retry}); err != nil {
		t.Fatalf("finish task %s: %v", tk.ID, err)
	}
	return b.getTask(t, tk.ID)
}

func testPruneTasks(t *testing.T, b *bundle) {
	code := b.putCode(t, "old")
	cutoff := b.now.Add(-30 * 24 * time.Hour)
	long := cutoff.Add(-10 * 24 * time.Hour)

	// An old failure whose retry ran recently: the failure goes, the
	// retry stays and must still read back whole.
	failed := b.task(code, func(tk *store.Task) { tk.CreatedAt, tk.DueAt = long, long })
	b.insert(t, failed)
	retry := b.retryOf(code, failed, b.now.Add(-time.Hour))
	b.finishAt(t, failed, store.StatusError, long.Add(time.Minute), &retry)
	retry = b.finishAt(t, retry, store.StatusComplete, b.now.Add(-time.Minute), nil)

	oldDone := b.task(code, func(tk *store.Task) { tk.CreatedAt, tk.DueAt = long, long })
	recentDone := b.task(code, func(tk *store.Task) { tk.CreatedAt, tk.DueAt = b.now.Add(-time.Hour), b.now.Add(-time.Hour) })
	b.insert(t, oldDone, recentDone)
	b.finishAt(t, oldDone, store.StatusComplete, long.Add(time.Hour), nil)
	b.finishAt(t, recentDone, store.StatusComplete, b.now.Add(-time.Hour), nil)

	// Unfinished tasks stay however old: a long-delayed queued task and
	// one that has been running since long ago.
	oldQueued := b.task(code, func(tk *store.Task) { tk.CreatedAt, tk.DueAt = long, b.now.Add(time.Hour) })
	oldRunning := b.task(code, func(tk *store.Task) { tk.CreatedAt, tk.DueAt = long, long })
	b.insert(t, oldQueued, oldRunning)
	if l := b.lease(t, "r-long", 1, long); len(l) != 1 || l[0].ID != oldRunning.ID {
		t.Fatalf("lease of the long-running task returned %v", ids(l))
	}

	n, err := b.s.PruneTasks(b.ctx, store.PruneParams{EndedBefore: cutoff})
	if err != nil || n != 2 {
		t.Fatalf("PruneTasks = %d, %v; want the 2 tasks that ended before the cutoff", n, err)
	}
	for _, gone := range []store.Task{failed, oldDone} {
		_, err := b.s.GetTask(b.ctx, b.project.ID, gone.ID)
		wantErr(t, err, store.ErrNotFound, "get a pruned task")
		_, err = b.s.GetLog(b.ctx, gone.ID)
		wantErr(t, err, store.ErrNotFound, "get the log of a pruned task")
	}
	for _, kept := range []store.Task{retry, recentDone, oldQueued, oldRunning} {
		b.getTask(t, kept.ID)
	}
	for _, kept := range []store.Task{retry, recentDone} {
		if _, err := b.s.GetLog(b.ctx, kept.ID); err != nil {
			t.Fatalf("log of kept task %s: %v", kept.ID, err)
		}
	}
	if got := b.getTask(t, retry.ID); got.RetryOf != "" || got.RetryCount != 1 {
		t.Fatalf("kept retry: retry_of %q retry_count %d; want the link to the pruned task cleared and the count kept",
			got.RetryOf, got.RetryCount)
	}
	list, err := b.s.ListTasks(b.ctx, store.TaskFilter{ProjectID: b.project.ID})
	if err != nil || len(list) != 4 {
		t.Fatalf("ListTasks after prune: %d tasks, %v; want 4", len(list), err)
	}
	if n, err := b.s.PruneTasks(b.ctx, store.PruneParams{EndedBefore: cutoff}); err != nil || n != 0 {
		t.Fatalf("second PruneTasks = %d, %v; want 0", n, err)
	}
}

func testPruneTasksBatches(t *testing.T, b *bundle) {
	code := b.putCode(t, "many")
	long := b.now.Add(-60 * 24 * time.Hour)
	for i := range 5 {
		tk := b.task(code, func(tk *store.Task) { tk.CreatedAt, tk.DueAt = long, long.Add(time.Duration(i)*time.Second) })
		b.insert(t, tk)
		b.finishAt(t, tk, store.StatusComplete, long.Add(time.Duration(i)*time.Minute), nil)
	}
	var got []int
	for {
		n, err := b.s.PruneTasks(b.ctx, store.PruneParams{EndedBefore: b.now, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
		if n == 0 || len(got) > 10 {
			break
		}
	}
	if len(got) != 4 || got[0] != 2 || got[1] != 2 || got[2] != 1 || got[3] != 0 {
		t.Fatalf("batches of 2 pruned %v, want [2 2 1 0]", got)
	}
}

func testReleaseTask(t *testing.T, b *bundle) {
	code := b.putCode(t, "release")
	tk := b.insertN(t, 1, code)[0]
	l := b.lease(t, "r1", 1, b.now)
	if len(l) != 1 || l[0].Attempt != 1 {
		t.Fatalf("lease: %+v", l)
	}
	wantErr(t, b.s.ReleaseTask(b.ctx, tk.ID, "someone-else", b.now), store.ErrLeaseLost, "release by another runner")
	if err := b.s.ReleaseTask(b.ctx, tk.ID, "r1", b.now); err != nil {
		t.Fatalf("release: %v", err)
	}
	got := b.getTask(t, tk.ID)
	if got.Status != store.StatusQueued || got.Attempt != 0 || got.RunnerID != "" || got.LeaseExpiresAt != nil {
		t.Fatalf("released task: status %s attempt %d runner %q lease %v; want queued, 0, none, none",
			got.Status, got.Attempt, got.RunnerID, got.LeaseExpiresAt)
	}
	wantErr(t, b.s.ReleaseTask(b.ctx, tk.ID, "r1", b.now), store.ErrLeaseLost, "second release")
	if l := b.lease(t, "r2", 1, b.now); len(l) != 1 || l[0].ID != tk.ID || l[0].Attempt != 1 {
		t.Fatalf("lease after release: %+v", l)
	}
	// A cancel asked while it was leased ends it instead.
	if _, err := b.s.CancelTask(b.ctx, b.project.ID, tk.ID, b.now); err != nil {
		t.Fatal(err)
	}
	if err := b.s.ReleaseTask(b.ctx, tk.ID, "r2", b.now); err != nil {
		t.Fatalf("release of a cancelled task: %v", err)
	}
	if got := b.getTask(t, tk.ID); got.Status != store.StatusCancelled {
		t.Fatalf("released task with a cancel asked is %s, want cancelled", got.Status)
	}
}

func testReferencedPackageKeys(t *testing.T, b *bundle) {
	b.putCode(t, "zipped", func(r *store.CodeRevision) { r.PackageKey = "codes/x/1.zip" })
	b.putCode(t, "zipped", func(r *store.CodeRevision) { r.PackageKey = "codes/x/2.zip" })
	b.putCode(t, "image") // no package
	got, err := b.s.ReferencedPackageKeys(b.ctx, []string{"codes/x/1.zip", "codes/x/2.zip", "codes/y/1.zip", ""})
	if err != nil {
		t.Fatal(err)
	}
	if !got["codes/x/1.zip"] || !got["codes/x/2.zip"] || got["codes/y/1.zip"] || got[""] || len(got) != 2 {
		t.Fatalf("ReferencedPackageKeys = %v, want the two revisions' keys only", got)
	}
	if got, err := b.s.ReferencedPackageKeys(b.ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("ReferencedPackageKeys(nil) = %v, %v", got, err)
	}
}

package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// retryOf returns (without storing) the retry of tk, due at due.
func (b *bundle) retryOf(code store.Code, tk store.Task, due time.Time) store.Task {
	return b.task(code, func(n *store.Task) {
		n.RetryOf, n.RetryCount, n.DueAt, n.Payload = tk.ID, tk.RetryCount+1, due, tk.Payload
	})
}

func testFinishWithRetry(t *testing.T, b *bundle) {
	code := b.putCode(t, "flaky", func(r *store.CodeRevision) { r.Retries, r.RetriesDelay, r.RetriesBackoff = 3, 10, "exponential" })
	if code.Retries != 3 || code.RetriesBackoff != "exponential" {
		t.Fatalf("retry settings read back as %d %q", code.Retries, code.RetriesBackoff)
	}
	orig := b.insertN(t, 1, code)[0]
	leased := b.lease(t, "r1", 1, b.now)[0]
	next := b.retryOf(code, leased, b.now.Add(10*time.Second))
	exit := 1
	if err := b.s.FinishTask(b.ctx, store.FinishParams{TaskID: orig.ID, RunnerID: "r1", Attempt: 1, Status: store.StatusError,
		Msg: "Exit code 1", ExitCode: &exit, Now: b.now, Retry: &next}); err != nil {
		t.Fatalf("finish with retry: %v", err)
	}
	old := b.getTask(t, orig.ID)
	if old.Status != store.StatusError || old.RetryAt != next.ID {
		t.Fatalf("finished task: status %s retry_at %q, want error and %s", old.Status, old.RetryAt, next.ID)
	}
	got := b.getTask(t, next.ID)
	if got.Status != store.StatusQueued || got.RetryOf != orig.ID || got.RetryCount != 1 {
		t.Fatalf("retry task: %+v", got)
	}
	// Not due before its delay.
	if l := b.lease(t, "r1", 1, b.now.Add(5*time.Second)); len(l) != 0 {
		t.Fatalf("retry leased before due: %v", ids(l))
	}
	if l := b.lease(t, "r1", 1, b.now.Add(10*time.Second)); len(l) != 1 || l[0].ID != next.ID {
		t.Fatalf("retry not leased when due: %v", ids(l))
	}

	// A finish that loses its lease inserts no retry.
	lost := b.insertN(t, 1, code)[0]
	b.lease(t, "r2", 1, b.now.Add(time.Minute))
	ghost := b.retryOf(code, lost, b.now)
	err := b.s.FinishTask(b.ctx, store.FinishParams{TaskID: lost.ID, RunnerID: "someone-else", Attempt: 1, Status: store.StatusError,
		Now: b.now, Retry: &ghost})
	wantErr(t, err, store.ErrLeaseLost, "finish by the wrong runner with a retry")
	if _, err := b.s.GetTask(b.ctx, b.project.ID, ghost.ID); err == nil {
		t.Fatal("a refused finish inserted its retry")
	}
}

func testRetryTask(t *testing.T, b *bundle) {
	code := b.putCode(t, "manual")
	tk := b.insertN(t, 1, code)[0]
	next := b.retryOf(code, tk, b.now.Add(time.Hour))
	wantErr(t, b.s.RetryTask(b.ctx, b.project.ID, tk.ID, next), store.ErrConflict, "retry of a queued task")
	b.lease(t, "r1", 1, b.now)
	b.finish(t, b.getTask(t, tk.ID), store.StatusComplete)
	wantErr(t, b.s.RetryTask(b.ctx, NewID(), tk.ID, next), store.ErrNotFound, "retry in another project")
	if err := b.s.RetryTask(b.ctx, b.project.ID, tk.ID, next); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := b.getTask(t, tk.ID); got.RetryAt != next.ID {
		t.Fatalf("retry_at = %q, want %s", got.RetryAt, next.ID)
	}
	again := b.retryOf(code, tk, b.now)
	wantErr(t, b.s.RetryTask(b.ctx, b.project.ID, tk.ID, again), store.ErrConflict, "second retry of the same task")

	// Two concurrent retries of one task: exactly one wins.
	other := b.insertN(t, 1, code)[0]
	l := b.lease(t, "r1", 1, b.now)
	b.finish(t, l[0], store.StatusError)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	var errs []error
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := b.s.RetryTask(b.ctx, b.project.ID, other.ID, b.retryOf(code, other, b.now))
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent retries succeeded, want exactly 1; errors: %v", wins, errs)
	}
}

func testProgress(t *testing.T, b *bundle) {
	code := b.putCode(t, "progress")
	tk := b.insertN(t, 1, code)[0]
	if err := b.s.SetProgress(b.ctx, store.ProgressParams{TaskID: tk.ID, Percent: 40, Msg: "step 2 of 5", Now: b.now}); err != nil {
		t.Fatalf("progress: %v", err)
	}
	if got := b.getTask(t, tk.ID); got.Percent != 40 || got.Msg != "step 2 of 5" {
		t.Fatalf("progress read back as %d %q", got.Percent, got.Msg)
	}
	if got, err := b.s.GetTaskByID(b.ctx, tk.ID); err != nil || got.ProjectID != b.project.ID {
		t.Fatalf("GetTaskByID: %+v %v", got, err)
	}
	wantErr(t, b.s.SetProgress(b.ctx, store.ProgressParams{TaskID: NewID(), Percent: 1, Now: b.now}), store.ErrNotFound, "progress of no task")
	b.lease(t, "r1", 1, b.now)
	b.finish(t, b.getTask(t, tk.ID), store.StatusComplete)
	wantErr(t, b.s.SetProgress(b.ctx, store.ProgressParams{TaskID: tk.ID, Percent: 50, Now: b.now}), store.ErrConflict, "progress after the end")
}

func testCancelCodeTasksAndStats(t *testing.T, b *bundle) {
	code := b.putCode(t, "bulk")
	other := b.putCode(t, "other")
	b.insertN(t, 4, code)
	keep := b.insertN(t, 2, other, func(tk *store.Task) { tk.DueAt = b.now.Add(time.Hour) })
	running := b.lease(t, "r1", 2, b.now) // two of code's four
	for _, r := range running {
		if r.CodeID != code.CodeID {
			t.Fatalf("leased a task of another code first: %s", r.CodeName)
		}
	}
	n, err := b.s.CancelCodeTasks(b.ctx, b.project.ID, code.CodeID, b.now)
	if err != nil || n != 4 {
		t.Fatalf("cancel_all = %d, %v; want 4", n, err)
	}
	stats, err := b.s.CodeStats(b.ctx, b.project.ID, code.CodeID)
	if err != nil {
		t.Fatal(err)
	}
	if stats[store.StatusCancelled] != 2 || stats[store.StatusPreparing] != 2 {
		t.Fatalf("stats after cancel_all: %v", stats)
	}
	for _, r := range running {
		if cancel, err := b.s.Heartbeat(b.ctx, store.HeartbeatParams{TaskID: r.ID, RunnerID: "r1", Attempt: 1, LeaseDuration: time.Minute, Now: b.now}); err != nil || !cancel {
			t.Fatalf("heartbeat of a running task after cancel_all: cancel=%v %v", cancel, err)
		}
	}
	for _, k := range keep {
		if got := b.getTask(t, k.ID); got.Status != store.StatusQueued {
			t.Fatalf("cancel_all touched another code's task: %s", got.Status)
		}
	}
	if stats, _ := b.s.CodeStats(b.ctx, NewID(), code.CodeID); len(stats) != 0 {
		t.Fatalf("stats across projects: %v", stats)
	}
}

func testFinishTimings(t *testing.T, b *bundle) {
	code := b.putCode(t, "timed")
	tk := b.insertN(t, 1, code)[0]
	b.lease(t, "r1", 1, b.now)
	timings := map[string]float64{"prepare": 1.5, "start": 240, "run": 12.25}
	if err := b.s.FinishTask(b.ctx, store.FinishParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, Status: store.StatusComplete,
		Now: b.now, Timings: timings}); err != nil {
		t.Fatal(err)
	}
	got := b.getTask(t, tk.ID)
	if len(got.Timings) != 3 || got.Timings["start"] != 240 || got.Timings["run"] != 12.25 {
		t.Fatalf("timings read back as %v", got.Timings)
	}
	if other := b.insertN(t, 1, code)[0]; b.getTask(t, other.ID).Timings != nil {
		t.Fatal("a task that never ran has timings")
	}
}

package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// testConcurrentLeaseWritesFenced fires running marks, heartbeats and
// finishes for many tasks at once, from two stores when the backend has
// them, a third of them under stale leases (a past attempt, another
// runner) and every current finish twice: a backend that groups writes
// waiting together must still answer each as if it ran alone. Each current
// write succeeds, each stale one gets ErrLeaseLost and changes nothing,
// of a finish sent twice exactly one wins, and a heartbeat reports a
// cancel only for the tasks it was asked for.
func testConcurrentLeaseWritesFenced(t *testing.T, b *bundle) {
	stores := []store.Store{b.s}
	if b.h.Twin != nil {
		stores = append(stores, b.h.Twin(t, b.s))
	}
	code := b.putCode(t, "grouped")
	const n = 60
	b.insertN(t, n, code)
	leased := b.lease(t, "r1", n, b.now)
	if len(leased) != n {
		t.Fatalf("leased %d of %d tasks", len(leased), n)
	}
	// Every fifth current task has a cancel asked for.
	cancelled := map[string]bool{}
	for i, tk := range leased {
		if i%3 == 0 && i%5 == 0 {
			if _, err := b.s.CancelTask(b.ctx, b.project.ID, tk.ID, b.now); err != nil {
				t.Fatalf("cancel task %s: %v", tk.ID, err)
			}
			cancelled[tk.ID] = true
		}
	}
	before := map[string]store.Task{}
	for _, tk := range leased {
		before[tk.ID] = b.getTask(t, tk.ID)
	}

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		wins = map[string]int{}
	)
	report := func(format string, args ...any) {
		mu.Lock()
		errs = append(errs, fmt.Errorf(format, args...))
		mu.Unlock()
	}
	later := b.now.Add(time.Second)
	for i, tk := range leased {
		s := stores[i%len(stores)]
		runner, attempt, stale := "r1", 1, true
		switch i % 3 {
		case 0:
			stale = false
		case 1:
			attempt = 2 // an attempt that does not exist (yet)
		case 2:
			runner = "r2" // a runner that never held it
		}
		wg.Go(func() {
			lost := func(what string, err error) {
				if stale && !errors.Is(err, store.ErrLeaseLost) {
					report("%s of stale task %s: got %v, want ErrLeaseLost", what, tk.ID, err)
				}
				if !stale && err != nil {
					report("%s of task %s: %v", what, tk.ID, err)
				}
			}
			lost("running mark", s.MarkRunning(b.ctx, store.StartParams{TaskID: tk.ID, RunnerID: runner, Attempt: attempt, Now: later}))
			cancel, err := s.Heartbeat(b.ctx, store.HeartbeatParams{TaskID: tk.ID, RunnerID: runner, Attempt: attempt,
				LeaseDuration: time.Hour, Now: later})
			lost("heartbeat", err)
			if err == nil && cancel != cancelled[tk.ID] {
				report("heartbeat of task %s says cancel %v, want %v", tk.ID, cancel, cancelled[tk.ID])
			}
			var twice sync.WaitGroup
			for k := range 2 {
				twice.Go(func() {
					code := k
					err := s.FinishTask(b.ctx, store.FinishParams{TaskID: tk.ID, RunnerID: runner, Attempt: attempt,
						Status: store.StatusComplete, Msg: fmt.Sprintf("finish %d", k), ExitCode: &code, Now: later})
					switch {
					case err == nil && stale:
						report("finish of stale task %s applied", tk.ID)
					case err == nil:
						mu.Lock()
						wins[tk.ID]++
						mu.Unlock()
					case !errors.Is(err, store.ErrLeaseLost):
						report("finish %d of task %s: %v", k, tk.ID, err)
					}
				})
			}
			twice.Wait()
		})
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	for i, tk := range leased {
		got := b.getTask(t, tk.ID)
		if i%3 != 0 {
			if got.Status != store.StatusPreparing || got.Msg != "" || got.StartTime != nil ||
				!got.LeaseExpiresAt.Equal(*before[tk.ID].LeaseExpiresAt) || !got.UpdatedAt.Equal(before[tk.ID].UpdatedAt) {
				t.Errorf("stale writes changed task %s: %+v", tk.ID, got)
			}
			continue
		}
		if wins[tk.ID] != 1 {
			t.Errorf("task %s: %d of its two finishes applied, want 1", tk.ID, wins[tk.ID])
		}
		want := fmt.Sprintf("finish %d", *got.ExitCode)
		if got.Status != store.StatusComplete || got.Msg != want || got.StartTime == nil || !got.StartTime.Equal(later) ||
			got.EndTime == nil || got.LeaseExpiresAt != nil {
			t.Errorf("task %s after its writes: %+v", tk.ID, got)
		}
	}
}

package postgres

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/store/storetest"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

// Running marks and finishes are written in groups, answered once the
// group's commit has returned. PostgreSQL is killed (SIGKILL, every
// backend, as a crash would) while writers are mid-flight: after its
// recovery every write that was answered nil is there.
func TestGroupedWritesAcknowledgedSurviveKill(t *testing.T) {
	t.Parallel()
	pg := testenv.OwnPostgres(t)
	ctx := context.Background()
	s, err := Open(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	code := newCode(t, s, now)
	const n = 2000
	queueTasks(t, s, code, n, now)
	var leased []store.Task
	for len(leased) < n {
		got, err := s.LeaseTasks(ctx, store.LeaseParams{RunnerID: "r1", Max: 500, LeaseDuration: time.Hour, Now: now})
		if err != nil || len(got) == 0 {
			t.Fatalf("lease: %d tasks, %v", len(got), err)
		}
		leased = append(leased, got...)
	}

	var (
		mu       sync.Mutex
		started  = map[string]bool{}
		finished = map[string]bool{}
		acks     atomic.Int64
		killed   = make(chan struct{})
		work     = make(chan store.Task)
		wg       sync.WaitGroup
	)
	for range 16 {
		wg.Go(func() {
			for tk := range work {
				err := s.MarkRunning(ctx, store.StartParams{TaskID: tk.ID, RunnerID: "r1", Attempt: tk.Attempt, Now: now})
				if err != nil {
					continue
				}
				mu.Lock()
				started[tk.ID] = true
				mu.Unlock()
				acks.Add(1)
				err = s.FinishTask(ctx, store.FinishParams{TaskID: tk.ID, RunnerID: "r1", Attempt: tk.Attempt,
					Status: store.StatusComplete, Now: now})
				if err != nil {
					continue
				}
				mu.Lock()
				finished[tk.ID] = true
				mu.Unlock()
				acks.Add(1)
			}
		})
	}
	go func() {
		for acks.Load() < n/2 {
			time.Sleep(time.Millisecond)
		}
		pg.Kill()
		close(killed)
	}()
feed:
	for _, tk := range leased {
		select {
		case work <- tk:
		case <-killed:
			break feed
		}
	}
	close(work)
	wg.Wait()
	<-killed
	s.Close()
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lost := 0
	for _, tk := range leased {
		got, err := s.GetTask(ctx, code.ProjectID, tk.ID)
		if err != nil {
			t.Fatalf("get task %s: %v", tk.ID, err)
		}
		switch {
		case finished[tk.ID] && got.Status != store.StatusComplete,
			started[tk.ID] && got.StartTime == nil:
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d acknowledged writes lost after PostgreSQL was killed (%d marks, %d finishes acknowledged)",
			lost, len(started), len(finished))
	}
	if len(finished) == n {
		t.Fatalf("every write was done before the kill: the test killed nothing in flight")
	}
	t.Logf("all %d marks and %d finishes acknowledged before the kill are there", len(started), len(finished))
}

// Writes that meet a closed store are refused, not left waiting.
func TestGroupedWriteAfterClose(t *testing.T) {
	t.Parallel()
	s, err := Open(context.Background(), testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	err = s.MarkRunning(context.Background(), store.StartParams{TaskID: "x", RunnerID: "r", Attempt: 1, Now: time.Now()})
	if !errors.Is(err, errStoreClosed) {
		t.Fatalf("mark after close: %v, want %v", err, errStoreClosed)
	}
}

// holdingStore opens a store on the tests' PostgreSQL that holds
// reports for d instead of reportHold, closed when the test ends.
func holdingStore(t *testing.T, d time.Duration) *Store {
	t.Helper()
	s, err := Open(context.Background(), testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.group.close()
	s.group = newGroupWriter(s, d)
	return s
}

// Ends that arrive a little apart wait for each other and share one
// statement and one commit, each answered only once it is committed.
// Without the hold each went alone: the writers were idle when it came.
func TestEndsHeldForCompany(t *testing.T) {
	t.Parallel()
	s := holdingStore(t, 2*time.Second)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	code := newCode(t, s, now)
	const n = 10
	queueTasks(t, s, code, n, now)
	leased, err := s.LeaseTasks(ctx, store.LeaseParams{RunnerID: "r1", Max: n, LeaseDuration: time.Hour, Now: now})
	if err != nil || len(leased) != n {
		t.Fatalf("lease: %d tasks, %v", len(leased), err)
	}
	before := s.group.written.Load()
	t0 := time.Now()
	var wg sync.WaitGroup
	for _, tk := range leased {
		wg.Go(func() {
			err := s.FinishTask(ctx, store.FinishParams{TaskID: tk.ID, RunnerID: "r1", Attempt: tk.Attempt,
				Status: store.StatusComplete, Now: now})
			if err != nil {
				t.Errorf("finish %s: %v", tk.ID, err)
			}
		})
		time.Sleep(3 * time.Millisecond)
	}
	wg.Wait()
	if groups := s.group.written.Load() - before; groups != 1 {
		t.Fatalf("%d ends arriving 3 ms apart written in %d groups, want 1", n, groups)
	}
	if waited := time.Since(t0); waited < 2*time.Second {
		t.Fatalf("ends answered after %v, before the hold of 2s ran out", waited)
	}
	for _, tk := range leased {
		if got, err := s.GetTask(ctx, code.ProjectID, tk.ID); err != nil || got.Status != store.StatusComplete {
			t.Fatalf("task %s after its end was answered: %v %v", tk.ID, got.Status, err)
		}
	}
}

// A lease that counts running tasks (here for a code's max_concurrency)
// first has the held ends written: the slot an end freed is free.
// Without it the lease saw the ended task running and handed out nothing
// while the end waited for company.
func TestLeaseCountingRunningTasksWritesHeldEnds(t *testing.T) {
	t.Parallel()
	s := holdingStore(t, time.Hour)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	code := newCode(t, s, now)
	code, err := s.PutCodeRevision(ctx, store.CodeRevision{ID: storetest.NewID(), CodeID: code.CodeID,
		ProjectID: code.ProjectID, Name: code.Name, Runtime: "sh", FileName: "run.sh", Stack: "default", CreatedAt: now, MaxConcurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	queueTasks(t, s, code, 2, now)
	lease := func() []store.Task {
		got, err := s.LeaseTasks(ctx, store.LeaseParams{RunnerID: "r1", Max: 2, LeaseDuration: time.Hour, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	first := lease()
	if len(first) != 1 {
		t.Fatalf("max_concurrency 1: leased %d", len(first))
	}
	ended := make(chan error, 1)
	go func() {
		ended <- s.FinishTask(ctx, store.FinishParams{TaskID: first[0].ID, RunnerID: "r1", Attempt: first[0].Attempt,
			Status: store.StatusComplete, Now: now})
	}()
	for deadline := time.Now().Add(10 * time.Second); s.group.q.Waiting() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the end was never held")
		}
	}
	second := lease()
	if len(second) != 1 || second[0].ID == first[0].ID {
		t.Fatalf("after the first task's end, leased %v: the held end was not written first", second)
	}
	select {
	case err := <-ended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the end the lease wrote was never answered")
	}
}

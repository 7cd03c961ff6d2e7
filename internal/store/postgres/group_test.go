package postgres

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
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

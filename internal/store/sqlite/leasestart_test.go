package sqlite

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/store/storetest"
)

// A lease asked for while a long write holds the writer (a big insert, as
// a burst of tasks makes) starts when it is written, not when it was asked
// for. Counted from the asking, a lease shorter than the wait was over
// before its runner heard of it, and the rescue handed the task on while
// it ran: the task ran twice. Heartbeats likewise.
func TestLeaseStartsWhenWritten(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "l.db"))
	ctx := context.Background()
	now := time.Now().UTC()
	p := store.Project{ID: storetest.NewID(), Name: "p", CreatedAt: now}
	if err := s.CreateProject(ctx, p); err != nil {
		t.Fatal(err)
	}
	code, err := s.PutCodeRevision(ctx, store.CodeRevision{ID: storetest.NewID(), CodeID: storetest.NewID(), ProjectID: p.ID,
		Name: "c", Runtime: "sh", FileName: "run.sh", Stack: "default", CreatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	tk := store.Task{ID: storetest.NewID(), ProjectID: p.ID, CodeID: code.CodeID, CodeName: code.Name,
		CodeRevisionID: code.CodeRevision.ID, CodeRev: code.Rev, Status: store.StatusQueued, Payload: "{}",
		Timeout: 60, CreatedAt: now, UpdatedAt: now, DueAt: now}
	if err := s.InsertTasks(ctx, []store.Task{tk}); err != nil {
		t.Fatal(err)
	}

	const hold, lease = 1500 * time.Millisecond, time.Second
	holdWriter := func() *sync.WaitGroup {
		held := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			s.withTx(ctx, func(*querier) error { close(held); time.Sleep(hold); return nil })
		})
		<-held
		return &wg
	}

	wg := holdWriter()
	got, err := s.LeaseTasks(ctx, store.LeaseParams{RunnerID: "r", Max: 1, LeaseDuration: lease, Now: time.Now()})
	wg.Wait()
	if err != nil || len(got) != 1 {
		t.Fatalf("lease: %v, %d tasks", err, len(got))
	}
	if left := time.Until(*got[0].LeaseExpiresAt); left < lease/2 {
		t.Fatalf("the lease handed out has %s left of %s: it was counted from before the wait for the writer", left, lease)
	}

	wg = holdWriter()
	_, err = s.Heartbeat(ctx, store.HeartbeatParams{TaskID: tk.ID, RunnerID: "r", Attempt: 1, LeaseDuration: lease, Now: time.Now()})
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	after, err := s.GetTaskByID(ctx, tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(*after.LeaseExpiresAt); left < lease/2 {
		t.Fatalf("the renewed lease has %s left of %s", left, lease)
	}
}

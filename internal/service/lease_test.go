package service

import (
	"fmt"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// A runner waiting in Lease for a code held back by its max_concurrency gets
// the code's next task when a running one finishes, not at its next poll.
func TestFinishWakesRunnersWaitingOnMaxConcurrency(t *testing.T) {
	t.Parallel()
	b := setupClock(t)
	b.svc.now = func() time.Time { return time.Now().UTC() }
	// No poll within the test: only a wake-up can hand out the task.
	b.svc.leasePoll = time.Hour
	one := 1
	if _, err := b.svc.UploadCode(b.ctx, b.project, wire.CodeUpload{Name: "capped", Image: "busybox", MaxConcurrency: &one}, nil); err != nil {
		t.Fatal(err)
	}
	ids, err := b.svc.QueueTasks(b.ctx, b.project, []wire.NewTask{{CodeName: "capped"}, {CodeName: "capped"}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := b.svc.Lease(b.ctx, wire.LeaseRequest{RunnerID: "r1", Max: 2, WaitMs: 10})
	if err != nil || len(first) != 1 || first[0].TaskID != ids[0] {
		t.Fatalf("first lease: %v %v", first, err)
	}
	got := make(chan []wire.Job, 1)
	go func() {
		jobs, err := b.svc.Lease(b.ctx, wire.LeaseRequest{RunnerID: "r2", Max: 1, WaitMs: 60_000})
		if err != nil {
			t.Error(err)
		}
		got <- jobs
	}()
	time.Sleep(100 * time.Millisecond) // let it wait
	if err := b.svc.Finish(b.ctx, first[0].Lease("r1"), wire.FinishRequest{RunnerID: "r1", Status: "complete"}); err != nil {
		t.Fatal(err)
	}
	select {
	case jobs := <-got:
		if len(jobs) != 1 || jobs[0].TaskID != ids[1] {
			t.Fatalf("waiting lease got %v, want task %s", jobs, ids[1])
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting runner was not woken by the finish that freed the code's slot")
	}
}

// A server that sees many runners come and go keeps memos only of the
// live ones: runner ids are not a leak.
func TestRunnerMemosForgetQuietRunners(t *testing.T) {
	t.Parallel()
	b := setupClock(t)
	for i := range 5000 {
		b.svc.noteRunner(b.ctx, wire.LeaseRequest{RunnerID: fmt.Sprintf("gone-%d", i)}, []string{""})
	}
	b.now = b.now.Add(RunnerLive + time.Minute)
	b.svc.noteRunner(b.ctx, wire.LeaseRequest{RunnerID: "live"}, []string{""})
	b.svc.touchRunner(b.ctx, "live")
	if n := len(b.svc.runners.recorded); n != 1 {
		t.Fatalf("%d runner memos kept after %d runners went quiet, want the one live runner", n, 5000)
	}
}

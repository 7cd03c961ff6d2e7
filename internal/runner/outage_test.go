package runner_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver/fake"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// outageQueue is a server that goes away for a while once the task has
// started, as one does while it restarts: every report fails with a
// passing error until it is back.
type outageQueue struct {
	runner.Queue
	length  time.Duration
	leaseMs int64 // the lease the runner is told of

	mu    sync.Mutex
	until time.Time
	fails int
}

func (q *outageQueue) down() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if time.Now().Before(q.until) {
		q.fails++
		return true
	}
	return false
}

func (q *outageQueue) Lease(ctx context.Context, req wire.LeaseRequest) ([]wire.Job, error) {
	jobs, err := q.Queue.Lease(ctx, req)
	for i := range jobs {
		jobs[i].LeaseMs = q.leaseMs
	}
	return jobs, err
}

func (q *outageQueue) Started(ctx context.Context, lease wire.LeaseRef) error {
	err := q.Queue.Started(ctx, lease)
	q.mu.Lock()
	q.until = time.Now().Add(q.length)
	q.mu.Unlock()
	return err
}

func (q *outageQueue) Heartbeat(ctx context.Context, lease wire.LeaseRef) (bool, error) {
	if q.down() {
		return false, errNetwork
	}
	return q.Queue.Heartbeat(ctx, lease)
}

func (q *outageQueue) AppendLog(ctx context.Context, lease wire.LeaseRef, data []byte) error {
	if q.down() {
		return errNetwork
	}
	return q.Queue.AppendLog(ctx, lease, data)
}

func (q *outageQueue) Finish(ctx context.Context, lease wire.LeaseRef, req wire.FinishRequest) error {
	if q.down() {
		return errNetwork
	}
	return q.Queue.Finish(ctx, lease, req)
}

// A server away for several leases' worth of time (a restart) while a task
// runs and ends: the runner keeps the task's output and its end, and
// reports both once the server is back, so the task is complete after one
// attempt with its whole log. The server itself holds the lease meanwhile
// (it cannot rescue anything while it is down); the runner is told of a
// lease of 300 ms, so retries that stop after about a lease give up long
// before the server is back.
func TestFakeServerAwayReportsKept(t *testing.T) {
	t.Parallel()
	b, _ := setupFake(t, service.Config{LeaseDuration: time.Minute}, 1)
	q := &outageQueue{Queue: b.svc, length: 4 * time.Second, leaseMs: 300}
	b.addRunnerVia(q, 1, "restarting")
	task := fakeTask(fake.Behavior{Out: "before the outage\n", RunMs: 300})
	task.Cluster = "restarting"
	id := b.queue(task)[0]
	tk := b.waitFor(id, 30*time.Second, func(t store.Task) bool { return store.Terminal(t.Status) })
	if tk.Status != store.StatusComplete || tk.Attempt != 1 {
		t.Fatalf("after the outage: %s attempt %d %q", tk.Status, tk.Attempt, tk.Msg)
	}
	if l := b.log(id); l != "before the outage\n" {
		t.Fatalf("log %q", l)
	}
	q.mu.Lock()
	fails := q.fails
	q.mu.Unlock()
	if fails < 2 {
		t.Fatalf("only %d reports met the outage; the test did not test it", fails)
	}
}

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

// markCounter counts the running marks each task's runner sent.
type markCounter struct {
	runner.Queue
	mu    sync.Mutex
	marks map[string]int
}

func (q *markCounter) Started(ctx context.Context, lease wire.LeaseRef) error {
	q.mu.Lock()
	q.marks[lease.TaskID]++
	q.mu.Unlock()
	return q.Queue.Started(ctx, lease)
}

func (q *markCounter) count(taskID string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.marks[taskID]
}

// A task that ends within the running-mark delay costs no write of its own
// for the mark: it goes from leased to its end, its start time taken from
// the runner's spans. A longer one is marked running while it runs.
func TestFakeShortTaskRecordedAtItsEndOnly(t *testing.T) {
	t.Parallel()
	b, _ := setupFake(t, service.Config{LeaseDuration: time.Minute}, 1)
	q := &markCounter{Queue: b.svc, marks: map[string]int{}}
	b.addRunnerVia(q, 4, "marks")
	short := fakeTask(fake.Behavior{Out: "quick\n"})
	short.Cluster = "marks"
	long := fakeTask(fake.Behavior{Out: "slow\n", RunMs: 1500})
	long.Cluster = "marks"
	ids := b.queue(short, short, short, long)

	// The long task is seen running before it ends.
	b.waitFor(ids[3], 30*time.Second, func(t store.Task) bool {
		if store.Terminal(t.Status) {
			b.t.Fatalf("long task ended (%s) before it was seen running", t.Status)
		}
		return t.Status == store.StatusRunning
	})
	for i, id := range ids {
		tk := b.waitEnd(id)
		if tk.Status != store.StatusComplete || tk.StartTime == nil || tk.EndTime == nil || tk.EndTime.Before(*tk.StartTime) {
			t.Fatalf("task %d: %s start %v end %v", i, tk.Status, tk.StartTime, tk.EndTime)
		}
		want := 0
		if i == 3 {
			want = 1
		}
		if got := q.count(id); got != want {
			t.Fatalf("task %d (%d ms): %d running marks sent, want %d", i, []int{0, 0, 0, 1500}[i], got, want)
		}
	}
}

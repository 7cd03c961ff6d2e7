package runner_test

// The runner's logic on the scriptable fake driver: no engine, so these run
// on every `go test`, and the same properties are checked against the real
// engine by the tests beside them.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver/fake"
	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

func setupFake(t testing.TB, cfg service.Config, capacity int) (*bundle, *fake.Driver) {
	t.Helper()
	drv := fake.New()
	b := newBundleOn(t, drv, cfg, capacity, 64<<20, func(string) string { return "fake/stack" })
	b.push("fake", wire.CodeUpload{Runtime: "sh", FileName: "run.sh"}, map[string]string{"run.sh": "exit 0"})
	return b, drv
}

func fakeTask(bh fake.Behavior) wire.NewTask {
	return wire.NewTask{CodeName: "fake", Payload: fake.Payload(bh)}
}

func TestFakeExitCodesOutputAndStderrTail(t *testing.T) {
	t.Parallel()
	b, _ := setupFake(t, service.Config{}, 4)
	ids := b.queue(
		fakeTask(fake.Behavior{Out: "fine\n"}),
		fakeTask(fake.Behavior{Out: "working\n", Err: "boom: bad input\n", Exit: 3}),
		fakeTask(fake.Behavior{StartErr: "no such runtime"}),
		fakeTask(fake.Behavior{OOM: true, RunMs: 10}),
	)
	if tk := b.waitEnd(ids[0]); tk.Status != store.StatusComplete || *tk.ExitCode != 0 || b.log(ids[0]) != "fine\n" {
		t.Fatalf("complete: %s %q log %q", tk.Status, tk.Msg, b.log(ids[0]))
	}
	tk := b.waitEnd(ids[1])
	if tk.Status != store.StatusError || *tk.ExitCode != 3 || !strings.Contains(tk.Msg, "Exit code 3: boom: bad input") {
		t.Fatalf("error: %s exit %v %q", tk.Status, tk.ExitCode, tk.Msg)
	}
	if l := b.log(ids[1]); l != "working\nboom: bad input\n" {
		t.Fatalf("error log %q", l)
	}
	if tk := b.waitEnd(ids[2]); tk.Status != store.StatusError || !strings.Contains(tk.Msg, "Could not start the container") ||
		!strings.Contains(tk.Msg, "no such runtime") {
		t.Fatalf("start error: %s %q", tk.Status, tk.Msg)
	}
	if tk := b.waitEnd(ids[3]); tk.Status != store.StatusKilled || !strings.Contains(tk.Msg, "Out of memory") {
		t.Fatalf("oom: %s %q", tk.Status, tk.Msg)
	}
}

func TestFakeTimeoutStopsTheContainer(t *testing.T) {
	t.Parallel()
	b, drv := setupFake(t, service.Config{}, 1)
	one := 1
	task := fakeTask(fake.Behavior{Out: "start\n", Hang: true, NoTerm: true})
	task.Timeout = &one
	id := b.queue(task)[0]
	tk := b.waitEnd(id)
	if tk.Status != store.StatusTimeout || !strings.Contains(tk.Msg, "Timed out after 1 s") {
		t.Fatalf("status %s msg %q", tk.Status, tk.Msg)
	}
	if l := b.log(id); l != "start\n" {
		t.Fatalf("log %q", l)
	}
	waitNoContainers(t, drv)
}

func TestFakeCancelGivesGraceThenKills(t *testing.T) {
	t.Parallel()
	b, drv := setupFake(t, service.Config{LeaseDuration: 2 * time.Second}, 2)
	term := b.queue(fakeTask(fake.Behavior{Out: "running\n", Hang: true}))[0]
	stubborn := b.queue(fakeTask(fake.Behavior{Out: "running\n", Hang: true, NoTerm: true}))[0]
	for _, id := range []string{term, stubborn} {
		b.waitFor(id, 10*time.Second, func(t store.Task) bool { return t.Status == store.StatusRunning && t.LogSize > 0 })
		if _, err := b.svc.CancelTask(context.Background(), b.project, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{term, stubborn} {
		if tk := b.waitEnd(id); tk.Status != store.StatusCancelled {
			t.Fatalf("%s: %s %q", id, tk.Status, tk.Msg)
		}
	}
	// The one that ignored SIGTERM was killed after the grace (2 s in
	// addRunner), not at once.
	a, _ := b.svc.GetTask(context.Background(), b.project, term)
	s, _ := b.svc.GetTask(context.Background(), b.project, stubborn)
	if got := s.EndTime.Sub(*s.StartTime) - a.EndTime.Sub(*a.StartTime); got < time.Second {
		t.Fatalf("a task that ignores SIGTERM ended %s after one that obeys: no grace given", got)
	}
	waitNoContainers(t, drv)
}

func TestFakeRetriesMakeNewTasks(t *testing.T) {
	t.Parallel()
	b, _ := setupFake(t, service.Config{}, 2)
	two, zero := 2, 0
	b.push("flaky", wire.CodeUpload{Runtime: "sh", FileName: "run.sh", Retries: &two, RetriesDelay: &zero},
		map[string]string{"run.sh": "exit 1"})
	first := b.queue(wire.NewTask{CodeName: "flaky", Payload: fake.Payload(fake.Behavior{Exit: 1})})[0]
	chain := []string{first}
	for len(chain) < 3 {
		tk := b.waitFor(chain[len(chain)-1], 20*time.Second, func(t store.Task) bool { return t.RetryAt != "" })
		if tk.Status != store.StatusError {
			t.Fatalf("retried task %s is %s", tk.ID, tk.Status)
		}
		chain = append(chain, tk.RetryAt)
	}
	last := b.waitEnd(chain[2])
	if last.Status != store.StatusError || last.RetryCount != 2 || last.RetryOf != chain[1] || last.RetryAt != "" {
		t.Fatalf("last of the chain: %+v", last)
	}
}

func TestFakeLogCutAtTheLimit(t *testing.T) {
	t.Parallel()
	b, _ := setupFake(t, service.Config{MaxLogBytes: 1000}, 1)
	id := b.queue(fakeTask(fake.Behavior{LogBytes: 1 << 20}))[0]
	if tk := b.waitEnd(id); tk.Status != store.StatusComplete {
		t.Fatalf("a cut log must not harm the task: %s %q", tk.Status, tk.Msg)
	}
	if l := b.log(id); !strings.Contains(l, "log truncated at 1000 bytes") || len(l) > 1200 {
		t.Fatalf("log of %d bytes not cut:\n%s", len(l), l)
	}
}

// flakyQueue fails some calls of one runner with a passing error.
type flakyQueue struct {
	runner.Queue
	finishFails  atomic.Int32 // Finish calls still to fail
	finishCalls  atomic.Int32
	heartbeatsOK atomic.Bool
}

var errNetwork = errors.New("connection refused")

func (q *flakyQueue) Finish(ctx context.Context, lease wire.LeaseRef, req wire.FinishRequest) error {
	q.finishCalls.Add(1)
	if q.finishFails.Add(-1) >= 0 {
		return errNetwork
	}
	return q.Queue.Finish(ctx, lease, req)
}

func (q *flakyQueue) Heartbeat(ctx context.Context, lease wire.LeaseRef) (bool, error) {
	if !q.heartbeatsOK.Load() {
		return false, errNetwork
	}
	return q.Queue.Heartbeat(ctx, lease)
}

func TestFakeFinishRetriedThroughPassingErrors(t *testing.T) {
	t.Parallel()
	b, _ := setupFake(t, service.Config{}, 1)
	q := &flakyQueue{Queue: b.svc}
	q.heartbeatsOK.Store(true)
	q.finishFails.Store(3)
	// The bundle's own runner serves the default cluster; this one serves
	// its own, so it alone takes the task.
	b.addRunnerVia(q, 1, "flaky-net")
	task := fakeTask(fake.Behavior{Out: "done\n"})
	task.Cluster = "flaky-net"
	id := b.queue(task)[0]
	if tk := b.waitEnd(id); tk.Status != store.StatusComplete || tk.Attempt != 1 {
		t.Fatalf("status %s attempt %d %q", tk.Status, tk.Attempt, tk.Msg)
	}
	if n := q.finishCalls.Load(); n != 4 {
		t.Fatalf("%d finish calls, want 3 failed and 1 that went through", n)
	}
}

// A runner cut off from the server loses its lease; the task runs again
// elsewhere, and when the first runner hears back it stops its container
// and reports nothing.
func TestFakeLeaseLostTaskRunsElsewhereOnce(t *testing.T) {
	t.Parallel()
	b, drv := setupFake(t, service.Config{LeaseDuration: time.Second, MaxAttempts: 3}, 1)
	q := &flakyQueue{Queue: b.svc}
	cut := b.addRunnerVia(q, 1, "island")
	task := fakeTask(fake.Behavior{Out: "run\n", RunMs: 4000})
	task.Cluster = "island"
	id := b.queue(task)[0]
	// Leased by the cut-off runner (preparing or running: its running
	// mark comes only once the container has run a while).
	b.waitFor(id, 10*time.Second, func(t store.Task) bool {
		return t.RunnerID == cut && (t.Status == store.StatusPreparing || t.Status == store.StatusRunning)
	})
	// The lease runs out: the task is queued again for its second attempt.
	b.waitFor(id, 10*time.Second, func(t store.Task) bool { return t.Status == store.StatusQueued && t.Attempt == 1 })
	other := b.addRunner(1, "island")
	q.heartbeatsOK.Store(true)
	tk := b.waitEnd(id)
	if tk.Status != store.StatusComplete || tk.Attempt != 2 || tk.RunnerID != other {
		t.Fatalf("status %s attempt %d runner %s (cut off: %s, other: %s)", tk.Status, tk.Attempt, tk.RunnerID, cut, other)
	}
	// One log per task: it keeps what the first attempt wrote while it
	// held its lease, then the second attempt's output.
	if l := b.log(id); strings.Count(l, "run\n") != 2 {
		t.Fatalf("log %q, want each attempt's output once", l)
	}
	if st := drv.Stats(); st.Starts != 2 {
		t.Fatalf("%d containers for two attempts", st.Starts)
	}
	waitNoContainers(t, drv)
}

func TestFakeDrainLetsRunningTasksFinish(t *testing.T) {
	t.Parallel()
	b, drv := setupFake(t, service.Config{}, 1)
	runDir := filepath.Join(t.TempDir(), "run")
	r, err := runner.New(runner.Config{ID: "6b0c0f3678b97ac0ae3d1aff", Capacity: 3, Clusters: []string{"drain"},
		CacheDir: t.TempDir(), RunDir: runDir, StackImage: func(string) string { return "fake/stack" }, LeaseWait: time.Second,
		IsLeaseLost: func(err error) bool { return errors.Is(err, service.ErrLeaseLost) }, Log: b.quiet}, b.svc, drv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	var ids []string
	for range 3 {
		task := fakeTask(fake.Behavior{Out: "x\n", RunMs: 700})
		task.Cluster = "drain"
		ids = append(ids, b.queue(task)...)
	}
	for _, id := range ids {
		b.waitFor(id, 10*time.Second, func(t store.Task) bool { return t.Status == store.StatusRunning })
	}
	// Stop taking tasks, then drain: the running ones end complete.
	late := fakeTask(fake.Behavior{})
	late.Cluster = "drain"
	stop()
	<-done
	lateID := b.queue(late)[0]
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Drain(dctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if tk := b.waitEnd(id); tk.Status != store.StatusComplete {
			t.Fatalf("drained task %s: %s %q", id, tk.Status, tk.Msg)
		}
	}
	if tk, _ := b.svc.GetTask(context.Background(), b.project, lateID); tk.Status != store.StatusQueued {
		t.Fatalf("a stopped runner took a task: %s", tk.Status)
	}
	// Its run directory (in memory, one per runner id) went with it.
	if _, err := os.Stat(runDir); !os.IsNotExist(err) {
		t.Fatalf("the drained runner left its run directory: %v", err)
	}
}

// Volume on the fake: many tasks, a code's max_concurrency, every task
// once.
func TestFakeBurstMaxConcurrencyEveryTaskOnce(t *testing.T) {
	t.Parallel()
	b, drv := setupFake(t, service.Config{}, 8)
	three := 3
	b.push("capped", wire.CodeUpload{Runtime: "sh", FileName: "run.sh", MaxConcurrency: &three}, map[string]string{"run.sh": "exit 0"})
	const n = 300
	reqs := make([]wire.NewTask, n)
	for i := range reqs {
		reqs[i] = wire.NewTask{CodeName: "capped", Payload: fake.Payload(fake.Behavior{Out: fmt.Sprintf("task %d\n", i), RunMs: 5})}
	}
	ids := b.queue(reqs...)
	for i, id := range ids {
		tk := b.waitFor(id, 60*time.Second, func(t store.Task) bool { return store.Terminal(t.Status) })
		if tk.Status != store.StatusComplete || tk.Attempt != 1 || b.log(id) != fmt.Sprintf("task %d\n", i) {
			t.Fatalf("task %d: %s attempt %d log %q", i, tk.Status, tk.Attempt, b.log(id))
		}
	}
	if st := drv.Stats(); st.Starts != n {
		t.Fatalf("%d containers started for %d tasks", st.Starts, n)
	}
	if st := drv.Stats(); st.MaxRunning > 3 || st.MaxRunning < 2 {
		t.Fatalf("%d tasks of a code with max_concurrency 3 ran at once on 8 slots", st.MaxRunning)
	}
	waitNoContainers(t, drv)
}

func waitNoContainers(t *testing.T, drv *fake.Driver) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); drv.Stats().Live > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("containers left: %+v", drv.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A burst on the fake driver: thousands of tasks through the real queue
// and runner, every one run exactly once with its own output. The same
// property is checked against the real engine by cmd/mayfly's TestBurst,
// at a size that keeps `make test` short.
func TestFakeBurstEveryTaskOnce(t *testing.T) {
	t.Parallel()
	// The server's default lease, not the bundle's short one: queueing
	// 1,000 tasks in one transaction holds the writer, and on a loaded
	// test machine that can outlast a 4 s lease, so a task would run again
	// (fenced, as designed) and this test is about every task running once.
	b, drv := setupFake(t, service.Config{LeaseDuration: 30 * time.Second}, 8)
	const n = 5000
	var ids []string
	for start := 0; start < n; start += 1000 {
		reqs := make([]wire.NewTask, 1000)
		for i := range reqs {
			reqs[i] = fakeTask(fake.Behavior{Out: fmt.Sprintf("task %d\n", start+i), RunMs: i % 3})
		}
		ids = append(ids, b.queue(reqs...)...)
	}
	started := time.Now()
	for i, id := range ids {
		tk := b.waitFor(id, 5*time.Minute, func(t store.Task) bool { return store.Terminal(t.Status) })
		if tk.Status != store.StatusComplete || tk.Attempt != 1 {
			t.Fatalf("task %d: %s attempt %d %q", i, tk.Status, tk.Attempt, tk.Msg)
		}
		if l := b.log(id); l != fmt.Sprintf("task %d\n", i) {
			t.Fatalf("task %d log %q", i, l)
		}
	}
	if st := drv.Stats(); st.Starts != n {
		t.Fatalf("%d containers started for %d tasks: a task ran twice or not at all", st.Starts, n)
	}
	t.Logf("%d tasks on the fake driver in %s", n, time.Since(started).Round(time.Millisecond))
	waitNoContainers(t, drv)
}

// heldQueue answers no end report until let go, and counts what its
// leases hand out.
type heldQueue struct {
	runner.Queue
	letGo chan struct{}
	mu    sync.Mutex
	maxes []int // of the leases that handed out tasks
}

func (q *heldQueue) asked() []int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.maxes)
}

func (q *heldQueue) Finish(ctx context.Context, lease wire.LeaseRef, req wire.FinishRequest) error {
	select {
	case <-q.letGo:
	case <-ctx.Done():
		return ctx.Err()
	}
	return q.Queue.Finish(ctx, lease, req)
}

func (q *heldQueue) Lease(ctx context.Context, req wire.LeaseRequest) ([]wire.Job, error) {
	jobs, err := q.Queue.Lease(ctx, req)
	if len(jobs) > 0 {
		q.mu.Lock()
		q.maxes = append(q.maxes, req.Max)
		q.mu.Unlock()
	}
	return jobs, err
}

// A store may hold an end report a few milliseconds for company: ends
// waiting for their answers hold no slot, so a runner of two slots runs a
// dozen tasks while none of their reports has been answered yet.
func TestFakeUnansweredReportsHoldNoSlots(t *testing.T) {
	t.Parallel()
	b, drv := setupFake(t, service.Config{LeaseDuration: 30 * time.Second}, 1)
	q := &heldQueue{Queue: b.svc, letGo: make(chan struct{})}
	b.addRunnerVia(q, 2, "held-reports")
	var once sync.Once
	letGo := func() { once.Do(func() { close(q.letGo) }) }
	t.Cleanup(letGo) // before the runner's drain, should the test fail
	const n = 12
	reqs := make([]wire.NewTask, n)
	for i := range reqs {
		reqs[i] = fakeTask(fake.Behavior{Out: "x\n"})
		reqs[i].Cluster = "held-reports"
	}
	ids := b.queue(reqs...)
	for deadline := time.Now().Add(20 * time.Second); drv.Stats().Starts < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d tasks started while no end was answered: unanswered reports hold the slots", drv.Stats().Starts, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	letGo()
	for _, id := range ids {
		if tk := b.waitEnd(id); tk.Status != store.StatusComplete || tk.Attempt != 1 {
			t.Fatalf("task %s: %s attempt %d %q", id, tk.Status, tk.Attempt, tk.Msg)
		}
	}
	waitNoContainers(t, drv)
}

// Short tasks end a little apart, and a lease that went at the first
// freed slot would carry one task. Once a slot is free, the runner waits
// (here without bound) for the other tasks of its last lease to free
// theirs, and asks for all the free slots at once.
func TestFakeLeaseWaitsForItsTasksToFreeTheirSlots(t *testing.T) {
	t.Parallel()
	b, drv := setupFake(t, service.Config{LeaseDuration: 30 * time.Second}, 1)
	q := &heldQueue{Queue: b.svc, letGo: make(chan struct{})}
	close(q.letGo)
	rid := id.New()
	r, err := runner.New(runner.Config{
		ID: rid, Capacity: 4, Clusters: []string{"settle"}, CacheDir: filepath.Join(b.dir, "cache-"+rid),
		StackImage: b.stackImage, IsLeaseLost: func(err error) bool { return errors.Is(err, service.ErrLeaseLost) },
		LeaseWait: time.Second, Log: b.quiet, LeaseSettle: time.Hour,
	}, q, drv)
	if err != nil {
		t.Fatal(err)
	}
	// The first lease takes the four of priority 2: one ends at once, the
	// others after 300 ms. The next must ask for four slots, not one.
	reqs := make([]wire.NewTask, 8)
	for i := range reqs {
		bh := fake.Behavior{}
		if i%4 != 0 && i < 4 {
			bh.RunMs = 300
		}
		reqs[i] = fakeTask(bh)
		reqs[i].Cluster = "settle"
		if i < 4 {
			two := 2
			reqs[i].Priority = &two
		}
	}
	ids := b.queue(reqs...)
	b.run(r, rid)
	for _, id := range ids {
		if tk := b.waitEnd(id); tk.Status != store.StatusComplete {
			t.Fatalf("task %s: %s %q", id, tk.Status, tk.Msg)
		}
	}
	if asked := q.asked(); len(asked) != 2 || asked[0] != 4 || asked[1] != 4 {
		t.Fatalf("leases that handed out tasks asked for %v slots, want [4 4]", asked)
	}
}

// slowProgressQueue writes progress as a slow server would.
type slowProgressQueue struct {
	runner.Queue
	delay time.Duration
}

func (q *slowProgressQueue) ReportProgress(ctx context.Context, token, taskID string, p wire.Progress) error {
	time.Sleep(q.delay)
	return q.Queue.ReportProgress(ctx, token, taskID, p)
}

// The fault: a task reports "done" right after another report, so the
// runner holds it for the second it may not write more often than, and the
// task exits. The held report must be written before the end is: a
// progress write after the end is refused, and the task would keep its
// earlier message. Writing it only with the container's removal, beside
// the end's report, lost it to a server slower to write progress than
// ends.
func TestFakeLastProgressWrittenBeforeTheEnd(t *testing.T) {
	t.Parallel()
	b, _ := setupFake(t, service.Config{}, 1)
	b.addRunnerVia(&slowProgressQueue{Queue: b.svc, delay: 300 * time.Millisecond}, 1, "slow-progress")
	var ids []string
	for range 3 {
		task := fakeTask(fake.Behavior{Progress: []fake.Progress{{Percent: 50, Msg: "half"}, {Percent: 100, Msg: "done"}}})
		task.Cluster = "slow-progress"
		ids = append(ids, b.queue(task)...)
	}
	for _, id := range ids {
		tk := b.waitEnd(id)
		if l := b.log(id); l != "progress 200\nprogress 200\n" {
			t.Fatalf("task %s: answers %q", id, l)
		}
		if tk.Status != store.StatusComplete || tk.Percent != 100 || tk.Msg != "done" {
			t.Fatalf("task %s ended %s at %d%% %q: its last report was lost", id, tk.Status, tk.Percent, tk.Msg)
		}
	}
}

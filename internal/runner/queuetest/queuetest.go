// Package queuetest is the contract every runner.Queue keeps: the service
// itself (the embedded runner's queue) and the HTTP client of the runner
// protocol (remote runners) pass the same suite, so a runner cannot tell
// which one it talks to. A change of semantics goes into the suite first.
//
// Each implementation's test calls Run with a function that builds a fresh
// queue over a fresh service (NewService); the suite sets tasks up and
// checks their state through that service.
package queuetest

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/assembly/assemblytest"
	"github.com/mayfly-run/mayfly/internal/mayfly"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// LeaseDuration is the lease of the suite's services: short, so the
// lost-lease cases take a second, yet far longer than any report takes.
const LeaseDuration = time.Second

// Server is a fresh service as NewService makes it.
type Server struct {
	Svc       *service.Service
	ProjectID string
	// AdminToken is the bootstrap admin token, which may act as a runner.
	AdminToken string
}

// NewService returns a service on a fresh SQLite store and blob directory,
// with the suite's short lease and its lease rescue running until the test
// ends.
func NewService(t testing.TB) Server {
	t.Helper()
	const token = "queuetest-admin-token-0123456789"
	// The server's parts as `mayfly server` assembles them, no listener.
	a := assemblytest.Start(t, assembly.Config{
		Service:             service.Config{LeaseDuration: LeaseDuration, KnownStacks: []string{"busybox"}},
		BootstrapToken:      token,
		MaintenanceInterval: 50 * time.Millisecond,
	})
	return Server{Svc: a.Service, ProjectID: a.Bootstrap.ProjectID, AdminToken: token}
}

// Fixture is what the suite needs besides the queue.
type Fixture struct {
	Server
	// IsLeaseLost is the runner's Config.IsLeaseLost for this queue: it
	// must recognise every lost-lease refusal and nothing else.
	IsLeaseLost func(error) bool
	// BadCredentials, when not nil, returns a queue to the same server
	// that presents a wrong runner token (transports without credentials
	// leave it nil).
	BadCredentials func() runner.Queue
}

// Run runs the contract against the queues newQueue builds, one per case.
func Run(t *testing.T, newQueue func(t *testing.T) (runner.Queue, Fixture)) {
	cases := []struct {
		name string
		fn   func(*testing.T, *bundle)
	}{
		{"LeaseNothingWaits", testLeaseNothingWaits},
		{"LeaseWakesOnEnqueue", testLeaseWakesOnEnqueue},
		{"LeaseMax", testLeaseMax},
		{"LeaseClusters", testLeaseClusters},
		{"JobContents", testJobContents},
		{"StartedAndHeartbeat", testStartedAndHeartbeat},
		{"HeartbeatCarriesCancel", testHeartbeatCarriesCancel},
		{"AppendLog", testAppendLog},
		{"Finish", testFinish},
		{"Package", testPackage},
		{"Progress", testProgress},
		{"UnknownTask", testUnknownTask},
		{"LostLease", testLostLease},
		{"BadToken", testBadToken},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			q, fx := newQueue(t)
			c.fn(t, &bundle{q: q, fx: fx, ctx: context.Background()})
		})
	}
}

type bundle struct {
	q   runner.Queue
	fx  Fixture
	ctx context.Context
}

// zipOf returns a zip with one file.
func zipOf(t *testing.T, name, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// push uploads a code of the busybox stack.
func (b *bundle) push(t *testing.T, name string, up wire.CodeUpload) []byte {
	t.Helper()
	up.Name = name
	if up.Stack == "" && up.Image == "" {
		up.Stack = "busybox"
	}
	if up.Command == "" {
		up.Command = "true"
	}
	z := zipOf(t, "run.sh", "echo "+name+"\n")
	if _, err := b.fx.Svc.UploadCode(b.ctx, b.fx.ProjectID, up, bytes.NewReader(z)); err != nil {
		t.Fatalf("upload code %s: %v", name, err)
	}
	return z
}

func (b *bundle) queue(t *testing.T, tasks ...wire.NewTask) []string {
	t.Helper()
	ids, err := b.fx.Svc.QueueTasks(b.ctx, b.fx.ProjectID, tasks)
	if err != nil {
		t.Fatalf("queue tasks: %v", err)
	}
	return ids
}

func (b *bundle) task(t *testing.T, id string) mayfly.Task {
	t.Helper()
	tk, err := b.fx.Svc.GetTask(b.ctx, b.fx.ProjectID, id)
	if err != nil {
		t.Fatalf("get task %s: %v", id, err)
	}
	return tk
}

func (b *bundle) lease(t *testing.T, runnerID string, max int, clusters ...string) []wire.Job {
	t.Helper()
	jobs, err := b.q.Lease(b.ctx, wire.LeaseRequest{RunnerID: runnerID, Max: max, Clusters: clusters, WaitMs: 50})
	if err != nil {
		t.Fatalf("lease for %s: %v", runnerID, err)
	}
	return jobs
}

// leaseOne queues a task of a fresh code and leases it.
func (b *bundle) leaseOne(t *testing.T, runnerID string) wire.Job {
	t.Helper()
	b.push(t, "one", wire.CodeUpload{})
	id := b.queue(t, wire.NewTask{CodeName: "one", Payload: "p"})[0]
	jobs := b.lease(t, runnerID, 1)
	if len(jobs) != 1 || jobs[0].TaskID != id {
		t.Fatalf("lease: got %d jobs %+v, want task %s", len(jobs), jobs, id)
	}
	return jobs[0]
}

func (b *bundle) wantLost(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil || !b.fx.IsLeaseLost(err) {
		t.Fatalf("%s: got %v, want a lost lease", what, err)
	}
}

func (b *bundle) wantPassingOrRefused(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if b.fx.IsLeaseLost(err) {
		t.Fatalf("%s: %v taken for a lost lease", what, err)
	}
}

func ids(jobs []wire.Job) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.TaskID)
	}
	sort.Strings(out)
	return out
}

func testLeaseNothingWaits(t *testing.T, b *bundle) {
	start := time.Now()
	jobs, err := b.q.Lease(b.ctx, wire.LeaseRequest{RunnerID: "r1", Max: 2, WaitMs: 300})
	if err != nil || len(jobs) != 0 {
		t.Fatalf("lease on an empty queue: %v %v", jobs, err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("lease on an empty queue answered after %v, before its wait_ms of 300ms", waited)
	}
	if jobs, err := b.q.Lease(b.ctx, wire.LeaseRequest{RunnerID: "r1", Max: 0}); err != nil || len(jobs) != 0 {
		t.Fatalf("lease of max 0: %v %v", jobs, err)
	}
	if _, err := b.q.Lease(b.ctx, wire.LeaseRequest{Max: 1}); err == nil {
		t.Fatal("lease without a runner id: no error")
	}
	// A caller that gives up is not kept waiting.
	ctx, cancel := context.WithTimeout(b.ctx, 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	b.q.Lease(ctx, wire.LeaseRequest{RunnerID: "r1", Max: 1, WaitMs: 30_000})
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("a cancelled lease returned after %v", waited)
	}
}

func testLeaseWakesOnEnqueue(t *testing.T, b *bundle) {
	b.push(t, "wake", wire.CodeUpload{})
	got := make(chan []wire.Job, 1)
	errs := make(chan error, 1)
	start := time.Now()
	go func() {
		jobs, err := b.q.Lease(b.ctx, wire.LeaseRequest{RunnerID: "r1", Max: 1, WaitMs: 30_000})
		errs <- err
		got <- jobs
	}()
	time.Sleep(200 * time.Millisecond) // let it wait
	id := b.queue(t, wire.NewTask{CodeName: "wake"})[0]
	select {
	case err := <-errs:
		jobs := <-got
		if err != nil || len(jobs) != 1 || jobs[0].TaskID != id {
			t.Fatalf("waiting lease: %+v %v, want task %s", jobs, err, id)
		}
		// Far below the 30 s wait: the enqueue woke it.
		if waited := time.Since(start); waited > 15*time.Second {
			t.Fatalf("waiting lease answered after %v", waited)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("a runner waiting in Lease was not woken by an enqueue")
	}
}

func testLeaseMax(t *testing.T, b *bundle) {
	b.push(t, "many", wire.CodeUpload{})
	queued := b.queue(t, wire.NewTask{CodeName: "many"}, wire.NewTask{CodeName: "many"}, wire.NewTask{CodeName: "many"})
	first := b.lease(t, "r1", 2)
	if len(first) != 2 {
		t.Fatalf("lease max 2 of 3 tasks: got %d", len(first))
	}
	second := b.lease(t, "r2", 5)
	if len(second) != 1 {
		t.Fatalf("lease of the rest: got %d, want 1", len(second))
	}
	all := ids(append(first, second...))
	sort.Strings(queued)
	if strings.Join(all, ",") != strings.Join(queued, ",") {
		t.Fatalf("leased %v, queued %v", all, queued)
	}
	if more := b.lease(t, "r3", 5); len(more) != 0 {
		t.Fatalf("a task was handed out twice: %v", ids(more))
	}
	// max_concurrency holds across runners.
	one := 1
	b.push(t, "capped", wire.CodeUpload{MaxConcurrency: &one})
	b.queue(t, wire.NewTask{CodeName: "capped"}, wire.NewTask{CodeName: "capped"})
	if got := b.lease(t, "r1", 5); len(got) != 1 {
		t.Fatalf("max_concurrency 1: first lease got %d", len(got))
	}
	if got := b.lease(t, "r2", 5); len(got) != 0 {
		t.Fatalf("max_concurrency 1: a second runner got %d more", len(got))
	}
}

func testLeaseClusters(t *testing.T, b *bundle) {
	b.push(t, "c", wire.CodeUpload{})
	q := b.queue(t, wire.NewTask{CodeName: "c", Cluster: "gpu"}, wire.NewTask{CodeName: "c"})
	if got := b.lease(t, "r1", 5, "arm"); len(got) != 0 {
		t.Fatalf("runner of another cluster got %v", ids(got))
	}
	if got := b.lease(t, "r1", 5, "default"); len(got) != 1 || got[0].TaskID != q[1] {
		t.Fatalf("runner of the default cluster got %v, want %s", ids(got), q[1])
	}
	if got := b.lease(t, "r2", 5, "arm", "gpu"); len(got) != 1 || got[0].TaskID != q[0] {
		t.Fatalf("runner of gpu got %v, want %s", ids(got), q[0])
	}
}

func testJobContents(t *testing.T, b *bundle) {
	z := b.push(t, "full", wire.CodeUpload{Command: "sh run.sh", Config: `{"k":1}`, EnvVars: map[string]string{"A": "b"}})
	timeout := 77
	id := b.queue(t, wire.NewTask{CodeName: "full", Payload: `{"x":1}`, Timeout: &timeout})[0]
	jobs := b.lease(t, "r1", 1)
	if len(jobs) != 1 {
		t.Fatalf("lease: %d jobs", len(jobs))
	}
	j := jobs[0]
	sum := sha256.Sum256(z)
	switch {
	case j.TaskID != id, j.ProjectID != b.fx.ProjectID, j.CodeName != "full", j.Payload != `{"x":1}`:
		t.Fatalf("job identity: %+v", j)
	case j.Timeout != 77, j.Attempt != 1, j.LeaseMs != LeaseDuration.Milliseconds(), j.MaxLogBytes <= 0:
		t.Fatalf("job limits: timeout %d attempt %d lease_ms %d max_log %d", j.Timeout, j.Attempt, j.LeaseMs, j.MaxLogBytes)
	case j.TaskToken == "", j.DueAt.IsZero():
		t.Fatalf("job token %q due %v", j.TaskToken, j.DueAt)
	case j.Code.Command != "sh run.sh", j.Code.Config != `{"k":1}`, j.Code.EnvVars["A"] != "b", j.Code.Stack != "busybox":
		t.Fatalf("job code: %+v", j.Code)
	case j.Code.PackageSHA256 != hex.EncodeToString(sum[:]), j.Code.PackageSize != int64(len(z)), j.Code.RevisionID == "":
		t.Fatalf("job package: %+v", j.Code)
	}
	if tk := b.task(t, id); tk.Status != mayfly.StatusPreparing || tk.RunnerID != "r1" {
		t.Fatalf("leased task: status %s runner %q", tk.Status, tk.RunnerID)
	}
}

func testStartedAndHeartbeat(t *testing.T, b *bundle) {
	j := b.leaseOne(t, "r1")
	if cancel, err := b.q.Heartbeat(b.ctx, j.Lease("r1")); err != nil || cancel {
		t.Fatalf("heartbeat while preparing: cancel %v err %v", cancel, err)
	}
	if err := b.q.Started(b.ctx, j.Lease("r1")); err != nil {
		t.Fatalf("started: %v", err)
	}
	if tk := b.task(t, j.TaskID); tk.Status != mayfly.StatusRunning {
		t.Fatalf("after started: %s", tk.Status)
	}
	// Heartbeats hold the lease past its length.
	for range 6 {
		time.Sleep(LeaseDuration / 4)
		if _, err := b.q.Heartbeat(b.ctx, j.Lease("r1")); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
	}
	if tk := b.task(t, j.TaskID); tk.Status != mayfly.StatusRunning || tk.Attempt != 1 {
		t.Fatalf("heartbeats did not hold the lease: %s attempt %d", tk.Status, tk.Attempt)
	}
	// Another runner's reports about it are refused.
	_, err := b.q.Heartbeat(b.ctx, j.Lease("r2"))
	b.wantLost(t, err, "heartbeat of another runner")
	b.wantLost(t, b.q.Started(b.ctx, j.Lease("r2")), "started of another runner")
}

func testHeartbeatCarriesCancel(t *testing.T, b *bundle) {
	j := b.leaseOne(t, "r1")
	if err := b.q.Started(b.ctx, j.Lease("r1")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.fx.Svc.CancelTask(b.ctx, b.fx.ProjectID, j.TaskID); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	cancel, err := b.q.Heartbeat(b.ctx, j.Lease("r1"))
	if err != nil || !cancel {
		t.Fatalf("heartbeat after cancel: cancel %v err %v", cancel, err)
	}
	if err := b.q.Finish(b.ctx, j.Lease("r1"), wire.FinishRequest{Status: string(mayfly.StatusCancelled), Msg: "Cancelled"}); err != nil {
		t.Fatalf("finish cancelled: %v", err)
	}
	if tk := b.task(t, j.TaskID); tk.Status != mayfly.StatusCancelled {
		t.Fatalf("after cancel: %s", tk.Status)
	}
}

func testAppendLog(t *testing.T, b *bundle) {
	j := b.leaseOne(t, "r1")
	chunks := []string{"first line\n", "", "second \x00 binary \xff\n", strings.Repeat("z", 100<<10)}
	for _, c := range chunks {
		if err := b.q.AppendLog(b.ctx, j.Lease("r1"), []byte(c)); err != nil {
			t.Fatalf("append log: %v", err)
		}
	}
	got, err := b.fx.Svc.TaskLog(b.ctx, b.fx.ProjectID, j.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Join(chunks, ""); string(got) != want {
		t.Fatalf("log read back: %d bytes, want %d (%q...)", len(got), len(want), got[:min(len(got), 40)])
	}
}

func testFinish(t *testing.T, b *bundle) {
	j := b.leaseOne(t, "r1")
	if err := b.q.Started(b.ctx, j.Lease("r1")); err != nil {
		t.Fatal(err)
	}
	err := b.q.Finish(b.ctx, j.Lease("r1"), wire.FinishRequest{Status: string(mayfly.StatusRunning)})
	b.wantPassingOrRefused(t, err, "finish with an unfinished status")
	code := 3
	err = b.q.Finish(b.ctx, j.Lease("r1"), wire.FinishRequest{Status: string(mayfly.StatusError), Msg: "Exit code 3",
		ExitCode: &code, Timings: map[string]float64{"run": 12}})
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	tk := b.task(t, j.TaskID)
	if tk.Status != mayfly.StatusError || tk.Msg != "Exit code 3" || tk.ExitCode == nil || *tk.ExitCode != 3 || tk.EndTime.IsZero() {
		t.Fatalf("finished task: %s %q exit %v end %v", tk.Status, tk.Msg, tk.ExitCode, tk.EndTime)
	}
	// The end is reported once; a second report changes nothing.
	err = b.q.Finish(b.ctx, j.Lease("r1"), wire.FinishRequest{Status: string(mayfly.StatusComplete)})
	b.wantLost(t, err, "second finish")
	_, err = b.q.Heartbeat(b.ctx, j.Lease("r1"))
	b.wantLost(t, err, "heartbeat after finish")
	if tk := b.task(t, j.TaskID); tk.Status != mayfly.StatusError {
		t.Fatalf("second finish changed the task to %s", tk.Status)
	}
}

func testPackage(t *testing.T, b *bundle) {
	j := b.leaseOne(t, "r1")
	rc, err := b.q.OpenPackage(b.ctx, j.Code.RevisionID)
	if err != nil {
		t.Fatalf("open package: %v", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	rc.Close()
	if err != nil {
		t.Fatalf("read package: %v", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != j.Code.PackageSHA256 || n != j.Code.PackageSize {
		t.Fatalf("package: sha256 %s size %d, want %s %d", got, n, j.Code.PackageSHA256, j.Code.PackageSize)
	}
	_, err = b.q.OpenPackage(b.ctx, "5f0000000000000000000bad")
	b.wantPassingOrRefused(t, err, "package of an unknown revision")
}

func testProgress(t *testing.T, b *bundle) {
	j := b.leaseOne(t, "r1")
	pct := 42
	if err := b.q.ReportProgress(b.ctx, j.TaskToken, j.TaskID, wire.Progress{Percent: &pct, Msg: "almost half"}); err != nil {
		t.Fatalf("progress with the task token: %v", err)
	}
	if tk := b.task(t, j.TaskID); tk.Percent != 42 || tk.Msg != "almost half" {
		t.Fatalf("progress read back: %d %q", tk.Percent, tk.Msg)
	}
	b.push(t, "other", wire.CodeUpload{})
	other := b.queue(t, wire.NewTask{CodeName: "other"})[0]
	bad := 99
	for name, tc := range map[string]struct{ token, task string }{
		"another task's token": {j.TaskToken, other},
		"a forged token":       {j.TaskToken[:len(j.TaskToken)-4] + "AAAA", j.TaskID},
		"no token":             {"", j.TaskID},
		"the admin token":      {b.fx.AdminToken, j.TaskID},
	} {
		err := b.q.ReportProgress(b.ctx, tc.token, tc.task, wire.Progress{Percent: &bad})
		b.wantPassingOrRefused(t, err, "progress with "+name)
	}
	if tk := b.task(t, j.TaskID); tk.Percent != 42 {
		t.Fatalf("refused progress changed the task: %d", tk.Percent)
	}
	if tk := b.task(t, other); tk.Percent == bad {
		t.Fatal("a task token set another task's progress")
	}
}

func testUnknownTask(t *testing.T, b *bundle) {
	unknown := wire.LeaseRef{TaskID: "5f00000000000000000f00d1", RunnerID: "r1", Attempt: 1}
	b.wantLost(t, b.q.Started(b.ctx, unknown), "started of an unknown task")
	_, err := b.q.Heartbeat(b.ctx, unknown)
	b.wantLost(t, err, "heartbeat of an unknown task")
	b.wantLost(t, b.q.AppendLog(b.ctx, unknown, []byte("x")), "log of an unknown task")
	b.wantLost(t, b.q.Finish(b.ctx, unknown, wire.FinishRequest{Status: string(mayfly.StatusComplete)}), "finish of an unknown task")
}

// A runner that went silent and leased the same task again holds a new
// lease; whatever it still sends under the old one is refused and changes
// nothing, so a runner presumed dead never writes into the next attempt.
func testLostLease(t *testing.T, b *bundle) {
	j := b.leaseOne(t, "r1")
	old := j.Lease("r1")
	if err := b.q.Started(b.ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := b.q.AppendLog(b.ctx, old, []byte("attempt 1\n")); err != nil {
		t.Fatal(err)
	}
	var again []wire.Job
	for deadline := time.Now().Add(20 * LeaseDuration); len(again) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the task was not handed on after its lease ran out")
		}
		again = b.lease(t, "r1", 1)
	}
	if again[0].TaskID != j.TaskID || again[0].Attempt != 2 {
		t.Fatalf("handed on: task %s attempt %d", again[0].TaskID, again[0].Attempt)
	}
	cur := again[0].Lease("r1")
	_, err := b.q.Heartbeat(b.ctx, old)
	b.wantLost(t, err, "heartbeat of the old lease")
	b.wantLost(t, b.q.Started(b.ctx, old), "started of the old lease")
	b.wantLost(t, b.q.AppendLog(b.ctx, old, []byte("late output of attempt 1\n")), "log of the old lease")
	b.wantLost(t, b.q.Finish(b.ctx, old, wire.FinishRequest{Status: string(mayfly.StatusError), Msg: "stale"}), "finish of the old lease")
	// Another runner naming the current attempt is no better.
	_, err = b.q.Heartbeat(b.ctx, again[0].Lease("r2"))
	b.wantLost(t, err, "heartbeat of another runner on the current attempt")
	if tk := b.task(t, j.TaskID); tk.Status != mayfly.StatusPreparing || tk.RunnerID != "r1" || tk.Attempt != 2 {
		t.Fatalf("after the old lease's reports: %s runner %s attempt %d", tk.Status, tk.RunnerID, tk.Attempt)
	}
	if _, err := b.q.Heartbeat(b.ctx, cur); err != nil {
		t.Fatalf("heartbeat of the new lease: %v", err)
	}
	if err := b.q.AppendLog(b.ctx, cur, []byte("attempt 2\n")); err != nil {
		t.Fatalf("log of the new lease: %v", err)
	}
	if err := b.q.Finish(b.ctx, cur, wire.FinishRequest{Status: string(mayfly.StatusComplete)}); err != nil {
		t.Fatalf("finish of the new lease: %v", err)
	}
	if tk := b.task(t, j.TaskID); tk.Status != mayfly.StatusComplete {
		t.Fatalf("after the new lease's finish: %s %q", tk.Status, tk.Msg)
	}
	log, err := b.fx.Svc.TaskLog(b.ctx, b.fx.ProjectID, j.TaskID)
	if err != nil || strings.Contains(string(log), "late output") {
		t.Fatalf("log after the old lease's report: %q %v", log, err)
	}
}

func testBadToken(t *testing.T, b *bundle) {
	if b.fx.BadCredentials == nil {
		t.Skip("this transport has no credentials")
	}
	j := b.leaseOne(t, "r1")
	bad := b.fx.BadCredentials()
	_, err := bad.Lease(b.ctx, wire.LeaseRequest{RunnerID: "r9", Max: 1})
	b.wantPassingOrRefused(t, err, "lease with a bad token")
	_, err = bad.Heartbeat(b.ctx, j.Lease("r1"))
	b.wantPassingOrRefused(t, err, "heartbeat with a bad token")
	b.wantPassingOrRefused(t, bad.Finish(b.ctx, j.Lease("r1"), wire.FinishRequest{Status: string(mayfly.StatusComplete)}),
		"finish with a bad token")
	_, err = bad.OpenPackage(b.ctx, j.Code.RevisionID)
	b.wantPassingOrRefused(t, err, "package with a bad token")
	if tk := b.task(t, j.TaskID); tk.Status != mayfly.StatusPreparing {
		t.Fatalf("a report with a bad token changed the task: %s", tk.Status)
	}
}

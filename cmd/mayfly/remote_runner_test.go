package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// These tests run `mayfly server --runner=false` with `mayfly runner`
// processes beside it, all real processes on the real engine, talking
// over loopback HTTP as they would across hosts.

// runnerProc is a running `mayfly runner`.
type runnerProc struct {
	cmd     *exec.Cmd
	dataDir string
	mu      sync.Mutex
	out     strings.Builder
	done    chan error
}

func (r *runnerProc) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// id is the runner's persisted id.
func (r *runnerProc) id(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dataDir, "runner-id"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// startRunner starts a remote runner of the server at addr on dataDir
// (a fresh one when empty) and waits until it takes tasks.
func startRunner(t *testing.T, addr, token, dataDir string, args ...string) *runnerProc {
	t.Helper()
	return startRunnerBin(t, mayflyBin(t), addr, token, dataDir, args...)
}

// startRunnerBin starts the runner of the binary bin.
func startRunnerBin(t *testing.T, bin, addr, token, dataDir string, args ...string) *runnerProc {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	r := &runnerProc{dataDir: dataDir, done: make(chan error, 1)}
	r.cmd = exec.Command(bin, append([]string{"runner", "--server", "http://" + addr, "--token", token,
		"--data-dir", dataDir, "--drain-grace", "5s"}, args...)...)
	r.cmd.Env = append(os.Environ(), "MAYFLY_RUNNER_TOKEN=", "MAYFLY_TOKEN=")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stdout, r.cmd.Stderr = pw, pw
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			r.mu.Lock()
			r.out.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			if strings.Contains(sc.Text(), "taking tasks from") {
				once.Do(func() { close(started) })
			}
		}
	}()
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("runner %s output:\n%s", dataDir, r.output())
		}
	})
	select {
	case <-started:
	case err := <-r.done:
		t.Fatalf("runner exited: %v\n%s", err, r.output())
	case <-time.After(30 * time.Second):
		t.Fatalf("runner did not start\n%s", r.output())
	}
	return r
}

// stop sends SIGTERM and waits for a clean exit.
func (r *runnerProc) stop(t *testing.T) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("runner exit after SIGTERM: %v\n%s", err, r.output())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("runner did not stop after SIGTERM\n%s", r.output())
	}
}

// noContainersOf checks that nothing of a runner is left in the engine.
func noContainersOf(t *testing.T, runnerID string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		left, err := testenv.Docker(t).ListManaged(context.Background(), runnerID)
		if err == nil && len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("containers of runner %s left: %v %v", runnerID, left, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func pushCode(t *testing.T, c *client.Client, up wire.CodeUpload) {
	t.Helper()
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("x")
	w.Write([]byte("x"))
	zw.Close()
	if up.Stack == "" {
		up.Stack = "busybox"
	}
	if _, err := c.UploadCode(context.Background(), up, &zbuf); err != nil {
		t.Fatal(err)
	}
}

// waitRunning waits until a task runs and returns it.
func waitRunning(t *testing.T, c *client.Client, id string) wire.Task {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; {
		tk, err := c.GetTask(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if tk.Status == "running" {
			return tk
		}
		if client.Terminal(tk.Status) || time.Now().After(deadline) {
			t.Fatalf("task %s never ran: %s %q", id, tk.Status, tk.Msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The command of the stamping code: the host's uptime (one clock for every
// container) when the task starts and when it ends.
const stampCommand = `read a _ </proc/uptime; echo "start $a $(cat $PAYLOAD_FILE)"; sleep 0.2; read b _ </proc/uptime; echo "end $b"`

// TestRemoteRunnersShareTheQueue: two remote runners on their own data
// directories run 200 tasks of a code with max_concurrency 3: every task
// runs exactly once, and never more than three run at once, as the tasks'
// own clock readings show.
func TestRemoteRunnersShareTheQueue(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	testenv.StackImage(t, "busybox")
	const project, token = "5f00000000000000000000e1", "remote-runners-secret-token"
	srv := startServer(t, "MAYFLY_BOOTSTRAP_PROJECT="+project, "MAYFLY_BOOTSTRAP_TOKEN="+token, "MAYFLY_RUNNER=false")
	c := client.New("http://"+srv.addr, token, project)
	ctx := context.Background()
	three := 3
	pushCode(t, c, wire.CodeUpload{Name: "stamp", Command: stampCommand, MaxConcurrency: &three})
	runners := []*runnerProc{
		startRunner(t, srv.addr, token, "", "--capacity", "2"),
		startRunner(t, srv.addr, token, "", "--capacity", "2"),
	}
	var reqs []wire.NewTask
	for i := range 200 {
		reqs = append(reqs, wire.NewTask{CodeName: "stamp", Payload: "p" + strconv.Itoa(i)})
	}
	ids, err := c.QueueTasks(ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	var spans []testenv.Span
	byRunner := map[string]int{}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for i, id := range ids {
		tk, err := c.WaitTask(wctx, id, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		log, err := c.TaskLog(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if tk.Status != "complete" || tk.Attempt != 1 {
			t.Fatalf("task %d: %s attempt %d %q; log %q", i, tk.Status, tk.Attempt, tk.Msg, log)
		}
		var s testenv.Span
		if n, err := fmt.Sscanf(string(log), "start %f p"+strconv.Itoa(i)+"\nend %f\n", &s.Start, &s.End); n != 2 || err != nil {
			t.Fatalf("task %d ran other than once: log %q (%v)", i, log, err)
		}
		spans = append(spans, s)
		byRunner[tk.RunnerID]++
	}
	most := testenv.MostAtOnce(spans)
	t.Logf("tasks per runner: %v; most running at once: %d", byRunner, most)
	if most > 3 {
		t.Fatalf("%d tasks of a code with max_concurrency 3 ran at once", most)
	}
	for _, r := range runners {
		if byRunner[r.id(t)] == 0 {
			t.Errorf("runner %s ran no task: %v", r.id(t), byRunner)
		}
	}
	for _, r := range runners {
		r.stop(t)
		noContainersOf(t, r.id(t))
	}
	srv.stop(t)
}

// TestRemoteRunnerKilled: a runner killed with SIGKILL mid-task stops
// answering; once its lease runs out the task runs again on the other
// runner and completes, and the killed runner, started again on its data
// directory, removes the container it left behind.
func TestRemoteRunnerKilled(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	testenv.StackImage(t, "busybox")
	const project, token = "5f00000000000000000000e2", "remote-killed-secret-token"
	srv := startServer(t, "MAYFLY_BOOTSTRAP_PROJECT="+project, "MAYFLY_BOOTSTRAP_TOKEN="+token, "MAYFLY_RUNNER=false",
		"MAYFLY_LEASE_DURATION=2s")
	c := client.New("http://"+srv.addr, token, project)
	ctx := context.Background()
	pushCode(t, c, wire.CodeUpload{Name: "slow", Command: `echo "begun on attempt"; sleep 4; echo finished`})
	doomed := startRunner(t, srv.addr, token, "", "--capacity", "1")
	doomedID := doomed.id(t)
	ids, err := c.QueueTasks(ctx, []wire.NewTask{{CodeName: "slow"}})
	if err != nil {
		t.Fatal(err)
	}
	if tk := waitRunning(t, c, ids[0]); tk.RunnerID != doomedID {
		t.Fatalf("task runs on %s, want %s", tk.RunnerID, doomedID)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if log, _ := c.TaskLog(ctx, ids[0]); len(log) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first attempt's output never reached the server")
		}
		time.Sleep(20 * time.Millisecond)
	}
	doomed.cmd.Process.Signal(syscall.SIGKILL)
	<-doomed.done
	other := startRunner(t, srv.addr, token, "", "--capacity", "1")
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tk, err := c.WaitTask(wctx, ids[0], 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := c.TaskLog(ctx, ids[0])
	if tk.Status != "complete" || tk.Attempt != 2 || tk.RunnerID != other.id(t) {
		t.Fatalf("after the kill: %s attempt %d on %s (killed %s, other %s) %q", tk.Status, tk.Attempt, tk.RunnerID,
			doomedID, other.id(t), tk.Msg)
	}
	// The first attempt's output up to the kill, then the second's whole.
	if string(log) != "begun on attempt\nbegun on attempt\nfinished\n" {
		t.Fatalf("log %q", log)
	}
	again := startRunner(t, srv.addr, token, doomed.dataDir, "--capacity", "1")
	if again.id(t) != doomedID {
		t.Fatalf("restarted runner has id %s, want %s", again.id(t), doomedID)
	}
	noContainersOf(t, doomedID)
	again.stop(t)
	other.stop(t)
	noContainersOf(t, other.id(t))
	srv.stop(t)
}

// TestServerRestartUnderRemoteRunner: the server stops (SIGTERM) while a
// remote runner's task runs, stays away longer than a lease, and starts
// again on the same data. The task keeps running, the runner reconnects
// and reports, and the task completes once, on its first attempt, with
// its whole log.
func TestServerRestartUnderRemoteRunner(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	testenv.StackImage(t, "busybox")
	const project, token = "5f00000000000000000000e3", "remote-restart-secret-token"
	env := []string{"MAYFLY_BOOTSTRAP_PROJECT=" + project, "MAYFLY_BOOTSTRAP_TOKEN=" + token, "MAYFLY_RUNNER=false",
		"MAYFLY_LEASE_DURATION=2s"}
	srv := startServer(t, env...)
	c := client.New("http://"+srv.addr, token, project)
	ctx := context.Background()
	pushCode(t, c, wire.CodeUpload{Name: "long", Command: `echo begun; sleep 9; echo finished`})
	run := startRunner(t, srv.addr, token, "", "--capacity", "1")
	ids, err := c.QueueTasks(ctx, []wire.NewTask{{CodeName: "long"}, {CodeName: "long"}})
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, c, ids[0])
	stopAt := time.Now()
	srv.stop(t)
	// Away for more than two leases.
	time.Sleep(5 * time.Second)
	again := restartServer(t, srv, env...)
	t.Logf("server away for %v", time.Since(stopAt).Round(100*time.Millisecond))
	c = client.New("http://"+again.addr, token, project)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i, id := range ids {
		tk, err := c.WaitTask(wctx, id, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		log, _ := c.TaskLog(ctx, id)
		if tk.Status != "complete" || tk.Attempt != 1 || string(log) != "begun\nfinished\n" {
			t.Fatalf("task %d after the restart: %s attempt %d %q log %q", i, tk.Status, tk.Attempt, tk.Msg, log)
		}
	}
	if out := run.output(); !strings.Contains(out, "heartbeat failed") {
		t.Errorf("the runner never noticed the server was away:\n%s", out)
	}
	run.stop(t)
	noContainersOf(t, run.id(t))
	again.stop(t)
}

// TestRemoteRunnerDrains: SIGTERM makes a runner take no new task and let
// the running one finish and report before it exits; the next task stays
// queued for another runner.
func TestRemoteRunnerDrains(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	testenv.StackImage(t, "busybox")
	const project, token = "5f00000000000000000000e4", "remote-drain-secret-token"
	srv := startServer(t, "MAYFLY_BOOTSTRAP_PROJECT="+project, "MAYFLY_BOOTSTRAP_TOKEN="+token, "MAYFLY_RUNNER=false")
	c := client.New("http://"+srv.addr, token, project)
	ctx := context.Background()
	pushCode(t, c, wire.CodeUpload{Name: "drain", Command: `echo begun; sleep 2; echo finished`})
	// A runner token of its own, not the admin token: leases, reports and
	// the package fetch all work with it.
	rt, err := c.CreateToken(ctx, wire.NewToken{Kind: "runner", Name: "drain-box", Clusters: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	run := startRunner(t, srv.addr, rt.Secret, "", "--capacity", "1")
	ids, err := c.QueueTasks(ctx, []wire.NewTask{{CodeName: "drain"}, {CodeName: "drain"}})
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, c, ids[0])
	run.stop(t)
	tk, err := c.GetTask(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	log, _ := c.TaskLog(ctx, ids[0])
	if tk.Status != "complete" || tk.Attempt != 1 || string(log) != "begun\nfinished\n" {
		t.Fatalf("after the drain: %s attempt %d log %q", tk.Status, tk.Attempt, log)
	}
	if next, err := c.GetTask(ctx, ids[1]); err != nil || next.Status != "queued" {
		t.Fatalf("the draining runner took the next task: %s %v", next.Status, err)
	}
	noContainersOf(t, run.id(t))
	srv.stop(t)
}

// TestRunnerRefusedToken: a runner whose token the server refuses stops at
// once with the server's reason instead of retrying forever, and its help
// never shows a token from the environment.
func TestRunnerRefusedToken(t *testing.T) {
	t.Parallel()
	const project, token = "5f00000000000000000000e5", "remote-refused-secret-token"
	srv := startServer(t, "MAYFLY_BOOTSTRAP_PROJECT="+project, "MAYFLY_BOOTSTRAP_TOKEN="+token, "MAYFLY_RUNNER=false")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := client.New("http://"+srv.addr, token, project)
	gpu, err := c.CreateToken(ctx, wire.NewToken{Kind: "runner", Name: "gpu-box", Clusters: []string{"gpu"}})
	if err != nil {
		t.Fatal(err)
	}
	proj, err := c.CreateToken(ctx, wire.NewToken{Kind: "project", ProjectID: project, Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token, cluster, want string
	}{
		{"a wrong token", "not-the-token", "default", "Invalid token"},
		{"a project token", proj.Secret, "default", "cannot act as a runner"},
		{"a runner token of another cluster", gpu.Secret, "default", "not good for the default cluster"},
	} {
		cmd := exec.CommandContext(ctx, mayflyBin(t), "runner", "--server", "http://"+srv.addr, "--token", tc.token,
			"--cluster", tc.cluster, "--data-dir", t.TempDir())
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "refuses this runner's token") || !strings.Contains(string(out), tc.want) {
			t.Errorf("runner with %s: %v\n%s", tc.name, err, out)
		}
	}
	help := exec.Command(mayflyBin(t), "runner", "--help")
	help.Env = append(os.Environ(), "MAYFLY_RUNNER_TOKEN=help-must-not-show-this", "MAYFLY_TOKEN=nor-this")
	out, err := help.CombinedOutput()
	if err != nil || strings.Contains(string(out), "show-this") || strings.Contains(string(out), "nor-this") {
		t.Fatalf("runner --help: %v\n%s", err, out)
	}
	srv.stop(t)
}

// TestServerStopEndsRunnerLongPolls: an idle remote runner waits in a
// lease long-poll of up to 20 s; the server's SIGTERM ends it at once
// rather than waiting for it (or for its own 10 s shutdown limit).
func TestServerStopEndsRunnerLongPolls(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	const project, token = "5f00000000000000000000e6", "remote-polls-secret-token"
	srv := startServer(t, "MAYFLY_BOOTSTRAP_PROJECT="+project, "MAYFLY_BOOTSTRAP_TOKEN="+token, "MAYFLY_RUNNER=false")
	startRunner(t, srv.addr, token, "", "--capacity", "1")
	time.Sleep(500 * time.Millisecond) // the runner is in its long-poll
	start := time.Now()
	srv.stop(t)
	took := time.Since(start)
	t.Logf("server stopped in %v with a runner in a long-poll", took.Round(time.Millisecond))
	if took > 5*time.Second || strings.Contains(srv.output(), "http shutdown") {
		t.Fatalf("server stop took %v:\n%s", took, srv.output())
	}
}

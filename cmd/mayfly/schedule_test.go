package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// waitUntil polls cond every 50ms until it holds, failing the test after
// timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scheduleTasks lists the tasks a schedule made, oldest first.
func scheduleTasks(t *testing.T, c *client.Client, scheduleID string) []wire.Task {
	t.Helper()
	all, err := c.ListTasks(t.Context(), client.TaskFilter{PerPage: 100})
	if err != nil {
		t.Fatal(err)
	}
	var out []wire.Task
	for _, tk := range all {
		if tk.ScheduleID == scheduleID {
			out = append(out, tk)
		}
	}
	slices.Reverse(out)
	return out
}

// TestScheduleSurvivesKill kills the server (SIGKILL) twice between runs of
// a schedule and starts it again on the same data: every run is made once,
// none is lost and none doubled. No runner runs, so it needs no Docker.
func TestScheduleSurvivesKill(t *testing.T) {
	t.Parallel()
	const project, token = "5f00000000000000000000d1", "schedule-kill-secret-token"
	env := []string{"MAYFLY_BOOTSTRAP_PROJECT=" + project, "MAYFLY_BOOTSTRAP_TOKEN=" + token,
		"MAYFLY_RUNNER=false", "MAYFLY_MIN_RUN_EVERY=1s", "MAYFLY_ALLOW_IMAGES=busybox"}
	srv := startServer(t, env...)
	ctx := t.Context()
	c := client.New("http://"+srv.addr, token, project)
	if _, err := c.UploadCode(ctx, wire.CodeUpload{Name: "tick", Image: "busybox"}, nil); err != nil {
		t.Fatal(err)
	}
	const runs, every = 5, 2
	start := time.Now().Add(2 * time.Second).UTC().Truncate(time.Second)
	ids, err := c.CreateSchedules(ctx, []wire.NewSchedule{{CodeName: "tick", StartAt: &start,
		RunEvery: ptrTo(every), RunTimes: ptrTo(runs)}})
	if err != nil {
		t.Fatal(err)
	}
	id := ids[0]
	runCount := func() int {
		sc, err := c.GetSchedule(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return sc.RunCount
	}
	for kill := 1; kill <= 2; kill++ {
		// Right after a run, the next is an interval away: kill now.
		waitUntil(t, 30*time.Second, "run "+string(rune('0'+kill)), func() bool { return runCount() >= kill })
		srv.cmd.Process.Signal(syscall.SIGKILL)
		<-srv.done
		srv = restartServer(t, srv, env...)
		c = client.New("http://"+srv.addr, token, project)
	}
	var sc wire.Schedule
	waitUntil(t, 60*time.Second, "the schedule to complete", func() bool {
		sc, err = c.GetSchedule(ctx, id)
		return err == nil && sc.Status == "complete"
	})
	tasks := scheduleTasks(t, c, id)
	if sc.RunCount != runs || len(tasks) != runs || sc.Msg != "Ran max times." {
		t.Fatalf("after two kills: run_count %d, %d tasks, msg %q; want %d runs", sc.RunCount, len(tasks), sc.Msg, runs)
	}
	// One task per due time: due times are an interval apart (or more,
	// when one was missed while the server was down), so two tasks close
	// together would be one due time made twice.
	for i := 1; i < len(tasks); i++ {
		t.Logf("task %d made %v after the one before", i, tasks[i].CreatedAt.Sub(tasks[i-1].CreatedAt))
		if gap := tasks[i].CreatedAt.Sub(tasks[i-1].CreatedAt); gap < time.Second {
			t.Fatalf("tasks %d and %d made %v apart: a run was doubled", i-1, i, gap)
		}
	}
	if tasks[0].CreatedAt.Before(start) {
		t.Fatalf("first task made at %v, before start_at %v", tasks[0].CreatedAt, start)
	}
	srv.stop(t)
}

func ptrTo[T any](v T) *T { return &v }

// cliResultOf runs the mayfly binary as a user would, against srv.
func runBin(t *testing.T, srv *serverProc, token, project string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mayflyBin(t), args...)
	cmd.Env = append(os.Environ(), "MAYFLY_URL=http://"+srv.addr, "MAYFLY_TOKEN="+token, "MAYFLY_PROJECT="+project,
		"HOME="+t.TempDir())
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run mayfly %v: %v", args, err)
	}
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// TestScheduleCLI drives schedules through the CLI against a real server
// that runs the tasks: they see SCHEDULE_ID.
func TestScheduleCLI(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	testenv.StackImage(t, "busybox")
	const project, token = "5f00000000000000000000d2", "schedule-cli-secret-token"
	srv := startServer(t, "MAYFLY_BOOTSTRAP_PROJECT="+project, "MAYFLY_BOOTSTRAP_TOKEN="+token, "MAYFLY_MIN_RUN_EVERY=1s")
	cli := func(args ...string) cliResult {
		t.Helper()
		return runBin(t, srv, token, project, args...)
	}
	dir := filepath.Join(t.TempDir(), "tick")
	writeTestFile(t, filepath.Join(dir, "tick.sh"), "echo \"SCHEDULE_ID=$SCHEDULE_ID payload=$(cat \"$PAYLOAD_FILE\")\"\n", 0o755)
	cli("code", "push", dir, "--runtime", "sh", "--file-name", "tick.sh").ok(t)

	res := cli("schedule", "create", "tick", "--run-every", "1s", "--run-times", "2", "--payload", `{"n":1}`, "--name", "ticker").ok(t)
	id := strings.TrimSpace(res.stdout)
	if len(id) != 24 {
		t.Fatalf("schedule create printed %q", res.stdout)
	}
	ls := cli("schedule", "ls").ok(t)
	if !strings.Contains(ls.stdout, id) || !strings.Contains(ls.stdout, "every 1s") || !strings.Contains(ls.stdout, "ticker") {
		t.Fatalf("schedule ls:\n%s", ls.stdout)
	}
	var sc wire.Schedule
	waitUntil(t, 60*time.Second, "the schedule to complete", func() bool {
		out := cli("schedule", "show", id, "-o", "json").ok(t)
		if err := json.Unmarshal([]byte(out.stdout), &sc); err != nil {
			t.Fatalf("schedule show -o json: %v\n%s", err, out.stdout)
		}
		return sc.Status == "complete"
	})
	show := cli("schedule", "show", id).ok(t)
	for _, want := range []string{"code_name:", "tick", "status:", "complete", "Ran max times.", "2/2"} {
		if !strings.Contains(show.stdout, want) {
			t.Fatalf("schedule show lacks %q:\n%s", want, show.stdout)
		}
	}
	c := client.New("http://"+srv.addr, token, project)
	tasks := scheduleTasks(t, c, id)
	if len(tasks) != 2 {
		t.Fatalf("%d tasks; want 2", len(tasks))
	}
	task, err := c.WaitTask(t.Context(), tasks[0].ID, 100*time.Millisecond)
	if err != nil || task.Status != "complete" {
		t.Fatalf("scheduled task: %+v, %v", task, err)
	}
	if log := cli("task", "log", task.ID).ok(t); !strings.Contains(log.stdout, "SCHEDULE_ID="+id+` payload={"n":1}`) {
		t.Fatalf("scheduled task log: %q", log.stdout)
	}

	// Errors say what the server said, and fail.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"schedule", "create", "ghost", "--run-every", "60"}, `no code named "ghost"`},
		{[]string{"schedule", "create", "tick", "--cron", "61 * * * *"}, "Invalid cron"},
		{[]string{"schedule", "show", "ffffffffffffffffffffffff"}, "Schedule not found"},
	} {
		res := cli(c.args...)
		if res.code == 0 || !strings.Contains(res.stderr, c.want) {
			t.Fatalf("mayfly %v: exit %d, stderr %q; want a failure saying %q", c.args, res.code, res.stderr, c.want)
		}
	}

	// Neither an interval nor a time: one run, now.
	once := strings.TrimSpace(cli("schedule", "create", "tick").ok(t).stdout)
	if sc, err := c.GetSchedule(t.Context(), once); err != nil || sc.RunEvery != 0 || sc.Cron != "" || sc.NextStart == nil && sc.RunCount == 0 {
		t.Fatalf("one-time schedule: %+v, %v", sc, err)
	}

	long := strings.TrimSpace(cli("schedule", "create", "tick", "--cron", "30 2 * * *", "--timezone", "Europe/Berlin").ok(t).stdout)
	cli("schedule", "update", long, "--payload", "changed", "--label", "nightly").ok(t)
	if sc, err := c.GetSchedule(t.Context(), long); err != nil || sc.Payload != "changed" || sc.Label != "nightly" || sc.Cron != "30 2 * * *" {
		t.Fatalf("updated schedule: %+v, %v", sc, err)
	}
	if res := cli("schedule", "cancel", long).ok(t); !strings.Contains(res.stdout, "Cancelled schedule "+long) {
		t.Fatalf("schedule cancel: %q", res.stdout)
	}
	if res := cli("schedule", "cancel", long); res.code == 0 || !strings.Contains(res.stderr, "already cancelled") {
		t.Fatalf("cancel twice: exit %d, %q", res.code, res.stderr)
	}
	srv.stop(t)
}

// TestTaskLogsFollow: `task logs -f` prints a running task's first line
// before the task ends, then the rest, and exits when it ends.
func TestTaskLogsFollow(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	testenv.StackImage(t, "busybox")
	const project, token = "5f00000000000000000000d3", "logs-follow-secret-token"
	srv := startServer(t, "MAYFLY_BOOTSTRAP_PROJECT="+project, "MAYFLY_BOOTSTRAP_TOKEN="+token)
	dir := filepath.Join(t.TempDir(), "slow")
	writeTestFile(t, filepath.Join(dir, "slow.sh"), "echo first line\nsleep 2\necho second line\n", 0o755)
	runBin(t, srv, token, project, "code", "push", dir, "--runtime", "sh", "--file-name", "slow.sh").ok(t)
	id := strings.TrimSpace(runBin(t, srv, token, project, "task", "queue", "slow").ok(t).stdout)
	c := client.New("http://"+srv.addr, token, project)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mayflyBin(t), "task", "logs", "-f", id, "--poll", "200ms")
	cmd.Env = append(os.Environ(), "MAYFLY_URL=http://"+srv.addr, "MAYFLY_TOKEN="+token, "MAYFLY_PROJECT="+project)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "first line" {
		t.Fatalf("first line followed: %q, %v; stderr %s", lines.Text(), lines.Err(), stderr.String())
	}
	if tk, err := c.GetTask(ctx, id); err != nil || client.Terminal(tk.Status) {
		t.Fatalf("the first line came only after the task ended (%s): %v", tk.Status, err)
	}
	if !lines.Scan() || lines.Text() != "second line" {
		t.Fatalf("second line followed: %q, %v", lines.Text(), lines.Err())
	}
	for lines.Scan() {
		t.Fatalf("more output than the log: %q", lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("task logs -f: %v; stderr %s", err, stderr.String())
	}
	if tk, err := c.GetTask(ctx, id); err != nil || tk.Status != "complete" {
		t.Fatalf("task after follow: %+v, %v", tk, err)
	}
	srv.stop(t)
}

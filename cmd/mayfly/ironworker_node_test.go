package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

// nodeCompatDir holds the official IronWorker Node.js client (package.json,
// package-lock.json) and the script that drives it.
const nodeCompatDir = "../../compat/node"

// nodeModulesCurrent tells whether node_modules was installed from the
// lockfile as it is now: npm writes node_modules/.package-lock.json at
// install time.
func nodeModulesCurrent(dir string) bool {
	hidden, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err != nil {
		return false
	}
	for _, f := range []string{"package.json", "package-lock.json"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.ModTime().After(hidden.ModTime()) {
			return false
		}
	}
	_, err = os.Stat(filepath.Join(dir, "node_modules", "iron_worker", "package.json"))
	return err == nil
}

// nodeClient makes sure node and the installed client are there, running
// `npm ci` when node_modules is missing or older than the lockfile.
func nodeClient(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	testenv.Integration(t, "node", err)
	dir, err := filepath.Abs(nodeCompatDir)
	if err != nil {
		t.Fatal(err)
	}
	if nodeModulesCurrent(dir) {
		return node
	}
	npm, err := exec.LookPath("npm")
	testenv.Integration(t, "npm", err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		testenv.Integration(t, "npm install of the IronWorker Node client", &npmError{err: err, out: string(out)})
	}
	return node
}

type npmError struct {
	err error
	out string
}

func (e *npmError) Error() string { return e.err.Error() + "\n" + e.out }

// TestIronWorkerNodeClient runs the official IronWorker Node.js client,
// unchanged, against the real server: codes, tasks, logs, retries,
// progress, schedules, and a worker on the node stack that reads its
// payload, config and task id with the package's own helpers.
func TestIronWorkerNodeClient(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	testenv.StackImage(t, "node-18")
	node := nodeClient(t)

	const project, token = "5f00000000000000000000c1", "node-compat-token-0123456789"
	srv := startServer(t, "MAYFLY_BOOTSTRAP_PROJECT="+project, "MAYFLY_BOOTSTRAP_TOKEN="+token)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir, _ := filepath.Abs(nodeCompatDir)
	cmd := exec.CommandContext(ctx, node, "client_test.js")
	cmd.Dir = dir
	// Only what the script needs: no IRON_* settings or iron.json from the
	// environment may reach the client.
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"TMPDIR=" + t.TempDir(),
		"MAYFLY_URL=http://" + srv.addr,
		"MAYFLY_PROJECT=" + project,
		"MAYFLY_TOKEN=" + token,
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Logf("client output:\n%s", out)
	if err != nil {
		// What the server says of each task: a client that timed out
		// waiting says nothing of why.
		if tasks, lerr := client.New("http://"+srv.addr, token, project).ListTasks(ctx, client.TaskFilter{PerPage: 100}); lerr == nil {
			for _, tk := range tasks {
				t.Logf("task %s: %s %q", tk.ID, tk.Status, tk.Msg)
			}
		}
		t.Fatalf("node client_test.js: %v\nstderr:\n%s", err, stderr.String())
	}

	type line struct {
		Call  string `json:"call"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		if !l.OK {
			t.Fatalf("client call %s failed: %s", l.Call, l.Error)
		}
		seen[l.Call] = true
	}
	for _, want := range []string{
		"codesUpload", "codesList", "codesGet", "codesRevisions", "codesDownload",
		"tasksCreate", "tasksGet", "tasksWaitFor", "tasksWaitForLog", "tasksLog", "tasksList",
		"tasksCreate(delay)", "tasksSetProgress", "tasksCancel", "tasksRetry",
		"tasksCreateBulk", "tasksCancelAll", "tasksRun", "codesDelete",
		"schedulesCreate", "schedulesList", "schedulesGet", "schedulesCancel",
		"worker.params", "worker.config", "worker.taskId", "worker.taskDir",
		"done",
	} {
		if !seen[want] {
			t.Errorf("no successful %s in the client output", want)
		}
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", strings.TrimSpace(stderr.String()))
	}
}

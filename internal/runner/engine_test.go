package runner_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// TestEngineRestart crashes the Docker engine (SIGKILL) under a running
// task and starts it again. The task must not be lost nor end in error:
// the runner loses track of the container, waits for the engine, the task
// runs again, and no container is left.
//
// It stops the engine every other test uses, so it runs only when asked,
// alone (make test does, after the rest):
//
//	MAYFLY_ENGINE_RESTART=1 go test -run TestEngineRestart ./internal/runner/
func TestEngineRestart(t *testing.T) {
	if os.Getenv("MAYFLY_ENGINE_RESTART") != "1" {
		t.Skip("restarts the Docker engine; set MAYFLY_ENGINE_RESTART=1 to run it (make test does, on its own)")
	}
	b := setup(t, service.Config{LeaseDuration: 3 * time.Second}, 2)
	b.push("survivor", wire.CodeUpload{Command: `echo "attempt"; sleep 8; echo done`}, map[string]string{"x": ""})
	id := b.queue(wire.NewTask{CodeName: "survivor"})[0]
	b.waitFor(id, 60*time.Second, func(tk store.Task) bool { return tk.Status == store.StatusRunning })

	restartEngine(t)

	tk := b.waitFor(id, 3*time.Minute, func(tk store.Task) bool { return store.Terminal(tk.Status) })
	if tk.Status != store.StatusComplete || tk.Attempt < 2 {
		t.Fatalf("after the engine restart: %s attempt %d msg %q log %q", tk.Status, tk.Attempt, tk.Msg, b.log(id))
	}
	if log := b.log(id); !strings.HasSuffix(log, "done\n") {
		t.Fatalf("log %q", log)
	}
}

// restartEngine kills dockerd and starts it again the way make does (or
// systemd, which restarts a killed unit).
func restartEngine(t *testing.T) {
	t.Helper()
	out, err := exec.Command("pidof", "dockerd").Output()
	if err != nil {
		t.Fatalf("no dockerd to restart: %v", err)
	}
	for _, f := range strings.Fields(string(out)) {
		var pid int
		for _, c := range f {
			pid = pid*10 + int(c-'0')
		}
		syscall.Kill(pid, syscall.SIGKILL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for exec.CommandContext(ctx, "pidof", "dockerd").Run() == nil {
		if ctx.Err() != nil {
			t.Fatal("dockerd did not stop")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		if out, err := exec.Command("systemctl", "restart", "docker").CombinedOutput(); err != nil {
			t.Fatalf("systemctl restart docker: %v %s", err, out)
		}
		return
	}
	if out, err := exec.Command("bash", "../../scripts/setup.sh").CombinedOutput(); err != nil {
		t.Fatalf("start the engine again: %v %s", err, out)
	}
}

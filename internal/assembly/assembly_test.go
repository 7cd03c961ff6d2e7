package assembly_test

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/driver/fake"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// The whole server as `mayfly server` builds it, on the fake driver: a task
// queued over HTTP runs on the embedded runner, and Stop leaves no
// goroutine behind and the store closed.
func TestStartServesRunsAndStopsClean(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx := context.Background()
	var out bytes.Buffer
	drv := fake.New()
	srv, err := assembly.Start(ctx, assembly.Config{
		DataDir: t.TempDir(), Service: service.Config{KnownStacks: []string{"busybox"}},
		BootstrapProject: "5f0000000000000000000a01", BootstrapToken: "assembly-secret-token",
		Listen: "127.0.0.1:0", Limits: api.DefaultLimits(), Version: "test",
		MaintenanceInterval: 50 * time.Millisecond, Scheduler: true,
		Runner: &runner.Config{Capacity: 2, StackImage: func(string) string { return "fake/stack" }, LeaseWait: time.Second},
		Driver: drv, DrainGrace: 5 * time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Out: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "MAYFLY_PROJECT=5f0000000000000000000a01") || !strings.Contains(out.String(), "listening on http://"+srv.Addr) {
		t.Fatalf("operator output: %q", out.String())
	}
	c := client.New("http://"+srv.Addr, "assembly-secret-token", "5f0000000000000000000a01")
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("run.sh")
	io.WriteString(w, "exit 0\n")
	zw.Close()
	if _, err := c.UploadCode(ctx, wire.CodeUpload{Name: "hello", Runtime: "sh", FileName: "run.sh"}, &zbuf); err != nil {
		t.Fatal(err)
	}
	ids, err := c.QueueTasks(ctx, []wire.NewTask{{CodeName: "hello", Payload: fake.Payload(fake.Behavior{Out: "hi\n"})}})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := c.WaitTask(ctx, ids[0], 20*time.Millisecond)
	if err != nil || tk.Status != "complete" {
		t.Fatalf("task: %+v, %v", tk, err)
	}
	// A schedule fires: the scheduler runs.
	if _, err := c.CreateSchedules(ctx, []wire.NewSchedule{{CodeName: "hello", Payload: "{}"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		tasks, err := c.ListTasks(ctx, client.TaskFilter{})
		if err == nil && len(tasks) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the schedule did not fire: %v %v", tasks, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	srv.Stop()
	srv.Stop() // twice is fine
	if _, err := srv.Store.CountProjects(ctx); err == nil {
		t.Fatal("the store is still open after Stop")
	}
	if _, err := c.Version(ctx); err == nil {
		t.Fatal("the API still answers after Stop")
	}
	c = nil
	// Every goroutine Start made has ended (the HTTP client's idle
	// connections may take a moment to notice the server went).
	deadline = time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before Start, %d after Stop:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A start that fails half way stops what it had started: here the key
// file is damaged after the store opened.
func TestFailedStartStopsWhatStarted(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token-hash.key"), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := assembly.Start(context.Background(), assembly.Config{DataDir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "token-hash.key") {
		t.Fatalf("start with a damaged key: %v", err)
	}
	// The store was closed again: another start on the same data opens it.
	if err := os.Remove(filepath.Join(dir, "token-hash.key")); err != nil {
		t.Fatal(err)
	}
	srv, err := assembly.Start(context.Background(), assembly.Config{DataDir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
}

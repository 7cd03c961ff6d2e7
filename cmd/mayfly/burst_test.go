package main

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// TestBurst queues MAYFLY_BURST_TASKS tasks (5,000 unless set; make test
// runs 1,000, and 5,000 on the fake driver in internal/runner) in batch
// POSTs to the real server binary, each with a unique marker, and checks
// that every one ran to completion exactly once. It starts thousands of
// containers, so it runs only when asked, alone (make test does, after the
// rest):
//
//	MAYFLY_BURST=1 go test -run TestBurst -v ./cmd/mayfly/
func TestBurst(t *testing.T) {
	if os.Getenv("MAYFLY_BURST") != "1" {
		t.Skip("starts thousands of containers; set MAYFLY_BURST=1 to run it (make test does, on its own)")
	}
	testenv.Docker(t)
	testenv.StackImage(t, "busybox")
	n := envIntOr(t, "MAYFLY_BURST_TASKS", 5000)
	capacity := envIntOr(t, "MAYFLY_BURST_CAPACITY", 8)
	const project, token = "5f00000000000000000000b1", "burst-test-secret-token"
	srv := startServer(t, "MAYFLY_BOOTSTRAP_PROJECT="+project, "MAYFLY_BOOTSTRAP_TOKEN="+token,
		"MAYFLY_RUNNER_CAPACITY="+strconv.Itoa(capacity), "MAYFLY_LOG_LEVEL=warn")
	ctx := context.Background()
	c := client.New("http://"+srv.addr, token, project)

	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("marker.sh")
	w.Write([]byte(`echo "marker $(cat "$PAYLOAD_FILE")"` + "\n"))
	zw.Close()
	up, err := c.UploadCode(ctx, wire.CodeUpload{Name: "burst", Runtime: "sh", FileName: "marker.sh"}, &zbuf)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	var ids []string
	for len(ids) < n {
		batch := make([]wire.NewTask, 0, 1000)
		for i := len(ids); i < n && len(batch) < 1000; i++ {
			batch = append(batch, wire.NewTask{CodeName: "burst", Payload: fmt.Sprintf("m%05d", i)})
		}
		got, err := c.QueueTasks(ctx, batch)
		if err != nil {
			t.Fatalf("queue batch at %d: %v", len(ids), err)
		}
		ids = append(ids, got...)
	}
	queued := time.Since(start)

	// Wait for the counts, not the clock: a slow machine only takes longer.
	deadline := time.Now().Add(80 * time.Minute)
	for {
		st, err := c.CodeStats(ctx, up.ID)
		if err != nil {
			t.Fatal(err)
		}
		done := st.Complete + st.Error + st.Timeout + st.Killed + st.Cancelled
		if done >= n {
			if st.Complete != n {
				bad, _ := c.ListTasks(ctx, client.TaskFilter{Statuses: []string{"error", "timeout", "killed", "cancelled"}, PerPage: 20})
				for _, tk := range bad {
					t.Errorf("task %s ended %s: %s", tk.ID, tk.Status, tk.Msg)
				}
				t.Fatalf("of %d tasks: %+v", n, st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %+v", time.Since(start), st)
		}
		time.Sleep(2 * time.Second)
	}
	wall := time.Since(start)

	// Exactly once: every task ran on its first lease and its log holds its
	// own marker once.
	seen := map[string]int{}
	for i, id := range ids {
		tk, err := c.GetTask(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if tk.Status != "complete" || tk.Attempt != 1 {
			t.Errorf("task %d: %s attempt %d", i, tk.Status, tk.Attempt)
		}
		log, err := c.TaskLog(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("marker m%05d\n", i)
		if string(log) != want {
			t.Errorf("task %d log %q, want %q", i, log, want)
		}
		seen[strings.TrimSpace(string(log))]++
	}
	if len(seen) != n {
		t.Errorf("%d distinct markers for %d tasks", len(seen), n)
	}
	t.Logf("burst: %d tasks, capacity %d: queued in %s, all complete in %s (%.1f tasks/s)",
		n, capacity, queued.Round(time.Millisecond), wall.Round(time.Second), float64(n)/wall.Seconds())
	srv.stop(t)
}

func envIntOr(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q is not a positive number", name, v)
	}
	return n
}

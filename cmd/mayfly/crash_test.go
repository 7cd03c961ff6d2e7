package main

import (
	"archive/zip"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// TestCrashRecovery kills the server with SIGKILL while tasks run, starts
// it again on the same data, and checks that every task ends, none is lost,
// and the killed containers are removed.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	testenv.StackImage(t, "busybox")
	const project, token = "5f00000000000000000000c2", "crash-test-secret-token"
	env := []string{"MAYFLY_BOOTSTRAP_PROJECT=" + project, "MAYFLY_BOOTSTRAP_TOKEN=" + token,
		"MAYFLY_LEASE_DURATION=2s", "MAYFLY_RUNNER_CAPACITY=3"}
	srv := startServer(t, env...)
	ctx := context.Background()
	c := client.New("http://"+srv.addr, token, project)

	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("x")
	w.Write([]byte("x"))
	zw.Close()
	if _, err := c.UploadCode(ctx, wire.CodeUpload{Name: "slow", Command: `echo "start $(cat $PAYLOAD_FILE)"; sleep 3; echo "end $(cat $PAYLOAD_FILE)"`},
		&zbuf); err != nil {
		t.Fatal(err)
	}
	var reqs []wire.NewTask
	for i := range 8 {
		reqs = append(reqs, wire.NewTask{CodeName: "slow", Payload: "p" + string(rune('a'+i))})
	}
	ids, err := c.QueueTasks(ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	// Kill it while tasks run.
	deadline := time.Now().Add(60 * time.Second)
	for {
		tasks, err := c.ListTasks(ctx, client.TaskFilter{Statuses: []string{"running"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(tasks) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no tasks running:\n%s", srv.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.cmd.Process.Signal(syscall.SIGKILL)
	<-srv.done
	rid, err := os.ReadFile(filepath.Join(srv.dataDir, "runner-id"))
	if err != nil {
		t.Fatal(err)
	}
	runnerID := strings.TrimSpace(string(rid))
	orphans, err := testenv.Docker(t).ListManaged(ctx, runnerID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("containers orphaned by the kill: %d", len(orphans))

	// Same data directory, same address.
	again := restartServer(t, srv, env...)
	c = client.New("http://"+again.addr, token, project)
	lost := 0
	for _, id := range ids {
		tk, err := c.WaitTask(ctx, id, 100*time.Millisecond)
		if err != nil {
			t.Fatalf("task %s: %v", id, err)
		}
		if tk.Status != "complete" {
			lost++
			t.Errorf("task %s ended %s: %s", id, tk.Status, tk.Msg)
			continue
		}
		log, err := c.TaskLog(ctx, id)
		if err != nil || !strings.Contains(string(log), "end "+tk.Payload) {
			t.Errorf("task %s log %q, %v", id, log, err)
		}
	}
	t.Logf("tasks lost in the crash: %d of %d", lost, len(ids))
	again.stop(t)
	left, err := testenv.Docker(t).ListManaged(ctx, runnerID)
	if err != nil || len(left) > 0 {
		t.Fatalf("containers left after recovery: %v %v", left, err)
	}
}

// TestDrainOnSIGTERM: SIGTERM lets a running task finish before the server
// exits, and the task is complete when the server comes back.
func TestDrainOnSIGTERM(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	testenv.StackImage(t, "busybox")
	const project, token = "5f00000000000000000000d4", "drain-test-secret-token"
	env := []string{"MAYFLY_BOOTSTRAP_PROJECT=" + project, "MAYFLY_BOOTSTRAP_TOKEN=" + token}
	srv := startServer(t, env...)
	ctx := context.Background()
	c := client.New("http://"+srv.addr, token, project)
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("x")
	w.Write([]byte("x"))
	zw.Close()
	if _, err := c.UploadCode(ctx, wire.CodeUpload{Name: "drain", Command: `echo begun; sleep 2; echo finished`}, &zbuf); err != nil {
		t.Fatal(err)
	}
	ids, err := c.QueueTasks(ctx, []wire.NewTask{{CodeName: "drain"}})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		tk, err := c.GetTask(ctx, ids[0])
		if err != nil {
			t.Fatal(err)
		}
		if tk.Status == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task never ran: %s", tk.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.stop(t) // SIGTERM; waits for a clean exit
	again := restartServer(t, srv, env...)
	c = client.New("http://"+again.addr, token, project)
	tk, err := c.GetTask(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	log, _ := c.TaskLog(ctx, ids[0])
	if tk.Status != "complete" || tk.Attempt != 1 || string(log) != "begun\nfinished\n" {
		t.Fatalf("after drain: %s attempt %d log %q", tk.Status, tk.Attempt, log)
	}
	again.stop(t)
}

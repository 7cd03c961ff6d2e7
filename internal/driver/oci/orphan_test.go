package oci_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/driver/oci"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

// orphanEnv makes the test binary the runner that dies: it starts a
// container and waits to be killed.
const orphanEnv = "MAYFLY_OCI_ORPHAN_RUNNER"

func TestMain(m *testing.M) {
	if runnerID := os.Getenv(orphanEnv); runnerID != "" {
		os.Exit(orphanRunner(runnerID))
	}
	if dir := os.Getenv(halfBakeEnv); dir != "" {
		os.Exit(halfBaker(dir))
	}
	os.Exit(m.Run())
}

func orphanRunner(runnerID string) int {
	ctx := context.Background()
	d, err := oci.New(ctx, oci.Options{Dir: os.Getenv("MAYFLY_OCI_ORPHAN_DIR")})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	h, err := d.Start(ctx, driver.Spec{TaskID: "orphan", RunnerID: runnerID, Image: os.Getenv("MAYFLY_OCI_ORPHAN_IMAGE"),
		Cmd: []string{"sh", "-c", "echo $$ >/dev/null; sleep 600"}, User: "65534:65534", MemoryBytes: 64 << 20, PidsLimit: 16})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("started", h.ID())
	select {}
}

// TestOrphansAfterKill9 is the crash: a runner is killed with SIGKILL with
// a container running. The next driver on the same directory finds it, and
// RemoveOrphans leaves no bundle, mount, cgroup, runtime state or process.
func TestOrphansAfterKill9(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	d := testenv.OCI(t)
	runnerID := "oci-orphan-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), orphanEnv+"="+runnerID, "MAYFLY_OCI_ORPHAN_DIR="+testenv.OCIDir(t), "MAYFLY_OCI_ORPHAN_IMAGE="+image)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	id, ok := strings.CutPrefix(strings.TrimSpace(line), "started ")
	if !ok {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the runner to kill did not start its container: %q", line)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bundle := filepath.Join(testenv.OCIDir(t), "bundles", id)
	pidData, err := os.ReadFile(filepath.Join(bundle, "init.pid"))
	if err != nil {
		t.Fatalf("the dead runner's bundle: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidData)))
	if !alive(pid) {
		t.Fatalf("the container's init %d died with its runner; nothing to clean", pid)
	}
	ids, err := d.ListManaged(ctx, runnerID)
	if err != nil || len(ids) != 1 || ids[0] != id {
		t.Fatalf("ListManaged after the crash = %v, %v; want [%s]", ids, err, id)
	}
	n, err := d.RemoveOrphans(ctx, runnerID, nil)
	if err != nil || n != 1 {
		t.Fatalf("RemoveOrphans = %d, %v; want 1", n, err)
	}
	if ids, _ := d.ListManaged(ctx, runnerID); len(ids) != 0 {
		t.Errorf("still listed: %v", ids)
	}
	if _, err := os.Stat(bundle); !os.IsNotExist(err) {
		t.Errorf("bundle %s still there (%v)", bundle, err)
	}
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), id) {
		t.Errorf("a mount of %s is left", id)
	}
	for _, cg := range []string{"/sys/fs/cgroup/memory/mayfly/" + id, "/sys/fs/cgroup/pids/mayfly/" + id, "/sys/fs/cgroup/mayfly/" + id} {
		if _, err := os.Stat(cg); err == nil {
			t.Errorf("cgroup %s is left", cg)
		}
	}
	if _, err := os.Stat(filepath.Join(testenv.OCIDir(t), "state", id)); err == nil {
		t.Errorf("runtime state of %s is left", id)
	}
	for deadline := time.Now().Add(10 * time.Second); alive(pid) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("the container's init %d still runs", pid)
	}
}

// alive tells whether pid runs; a zombie (this test process is the
// subreaper it was handed to) has ended.
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	if s[i+2] == 'Z' {
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		return false
	}
	return true
}

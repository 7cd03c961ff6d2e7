package docker_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dockerclient "github.com/docker/docker/client"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/driver/docker"
	"github.com/mayfly-run/mayfly/internal/driver/drivertest"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

// prewarmed fills the pool before every Start, so that the contract suite
// runs each of its tasks in a warm container, and fails a test whose task
// could have run warm but did not.
type prewarmed struct {
	*docker.Driver
	t *testing.T
}

func (p prewarmed) Start(ctx context.Context, spec driver.Spec) (driver.Handle, error) {
	if err := p.Prewarm(ctx, spec); err != nil {
		// A missing image, say: the cold path says so.
		return p.Driver.Start(ctx, spec)
	}
	before := p.WarmStats().Hits
	h, err := p.Driver.Start(ctx, spec)
	if err == nil && p.WarmStats().Hits == before {
		p.t.Errorf("task %s did not run in a warm container", spec.TaskID)
	}
	return h, err
}

// TestDriverWarm is the contract every driver passes, with every task in a
// warm container.
func TestDriverWarm(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	drivertest.Run(t, func(t *testing.T) driver.Driver { return prewarmed{testenv.DockerWarm(t, 1), t} }, image)
}

type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// taskSpec is a runner-like task: its files in a host directory mounted
// read-only at /mnt/mayfly, in the runner's sandbox.
func taskSpec(t *testing.T, runnerID, image, payload string, cmd ...string) driver.Spec {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "payload.json"), []byte(payload), 0o644); err != nil {
		t.Fatal(err)
	}
	return driver.Spec{
		TaskID: "task-" + strings.ReplaceAll(t.Name(), "/", "-") + fmt.Sprint(time.Now().UnixNano()), RunnerID: runnerID, Image: image,
		Entrypoint: []string{}, Cmd: cmd, WorkDir: "/mnt/task", User: "65534:65534",
		Mounts:      []driver.Mount{{Source: dir, Target: "/mnt/mayfly", ReadOnly: true}},
		MemoryBytes: 64 << 20, PidsLimit: 64, NoFile: 1024, ReadOnlyRoot: true,
		Tmpfs: []driver.Tmpfs{{Path: "/tmp", SizeBytes: 8 << 20}, {Path: "/mnt/task", SizeBytes: 8 << 20, Owned: true}},
	}
}

func run(t *testing.T, d driver.Driver, spec driver.Spec) (driver.Result, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out buffer
	spec.Output = &out
	h, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer func() {
		if err := h.Destroy(context.Background()); err != nil {
			t.Errorf("destroy: %v", err)
		}
	}()
	res, err := h.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return res, out.String()
}

// TestWarmRunsTheTasksOwnCommand: a container warmed for one task runs
// another task's command, environment and files, not those it was made
// for, with the environment merged over the image's as the engine would.
func TestWarmRunsTheTasksOwnCommand(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	d := testenv.DockerWarm(t, 1)
	rid := "warmtest-" + fmt.Sprint(time.Now().UnixNano())
	ctx := context.Background()
	first := taskSpec(t, rid, image, `{"who":"first"}`, "sh", "-c", "echo first")
	first.Env = []string{"WHO=first"}
	if err := d.Prewarm(ctx, first); err != nil {
		t.Fatalf("prewarm: %v", err)
	}
	second := taskSpec(t, rid, image, `{"who":"second"}`, "sh", "-c",
		`echo "$WHO $PATH $HOME"; cat /mnt/mayfly/payload.json; echo; pwd; id -u`)
	second.Env = []string{"WHO=second", "HOME=/mnt/task", "PATH=/usr/local/bin:/bin"}
	res, out := run(t, d, second)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s", res.ExitCode, out)
	}
	want := "second /usr/local/bin:/bin /mnt/task\n" + `{"who":"second"}` + "\n/mnt/task\n65534\n"
	if out != want {
		t.Errorf("output %q, want %q", out, want)
	}
	if s := d.WarmStats(); s.Hits != 1 {
		t.Errorf("warm stats %+v, want one hit", s)
	}

	// Entrypoint nil and no command: the image's own (/bin/sh), which
	// exits at once on an empty stdin; the image's PATH stays where the
	// task sets none.
	if err := d.Prewarm(ctx, second); err != nil {
		t.Fatal(err)
	}
	third := taskSpec(t, rid, image, `{}`)
	third.Entrypoint, third.Cmd = []string{"sh", "-c"}, []string{`echo "$PATH"`}
	third.Mounts = second.Mounts
	if res, out := run(t, d, third); res.ExitCode != 0 || out != "/bin\n" {
		t.Errorf("exit %d, output %q; want 0, %q", res.ExitCode, out, "/bin\n")
	}
	if s := d.WarmStats(); s.Hits != 2 {
		t.Errorf("warm stats %+v, want two hits", s)
	}
}

// TestWarmTasksSeeOnlyTheirFiles: two tasks of one shape, at once, each in a
// warm container, each sees its own files.
func TestWarmTasksSeeOnlyTheirFiles(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	d := testenv.DockerWarm(t, 2)
	rid := "warmtest-" + fmt.Sprint(time.Now().UnixNano())
	specs := []driver.Spec{
		taskSpec(t, rid, image, "payload-A", "sh", "-c", "sleep 1; cat /mnt/mayfly/payload.json"),
		taskSpec(t, rid, image, "payload-B", "sh", "-c", "sleep 1; cat /mnt/mayfly/payload.json"),
	}
	if err := d.Prewarm(context.Background(), specs[0]); err != nil {
		t.Fatal(err)
	}
	outs := make([]string, 2)
	var wg sync.WaitGroup
	for i := range specs {
		wg.Go(func() { _, outs[i] = run(t, d, specs[i]) })
	}
	wg.Wait()
	if outs[0] != "payload-A" || outs[1] != "payload-B" {
		t.Errorf("outputs %q, want payload-A and payload-B", outs)
	}
	if s := d.WarmStats(); s.Hits != 2 {
		t.Errorf("warm stats %+v, want two hits", s)
	}
}

// TestWarmScratchImage: an image with nothing but the task's static
// program (no shell, no libc) runs warm.
func TestWarmScratchImage(t *testing.T) {
	d := testenv.DockerWarm(t, 1)
	image := scratchImage(t)
	rid := "warmtest-" + fmt.Sprint(time.Now().UnixNano())
	spec := taskSpec(t, rid, image, "{}", "/hello", "from", "scratch")
	spec.Env = []string{"GREETING=hi"}
	spec.Entrypoint = nil
	spec.Cmd = []string{"from", "scratch"} // after the image's entrypoint
	if err := d.Prewarm(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	res, out := run(t, d, spec)
	if res.ExitCode != 0 || out != "hi from scratch\n" {
		t.Errorf("exit %d, output %q; want 0, %q", res.ExitCode, out, "hi from scratch\n")
	}
	if s := d.WarmStats(); s.Hits != 1 {
		t.Errorf("warm stats %+v, want one hit", s)
	}
}

// scratchImage builds an image FROM scratch holding only /hello, a static
// program printing $GREETING and its arguments, as its entrypoint.
func scratchImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := `package main

import (
	"fmt"
	"os"
	"strings"
)

func main() { fmt.Println(os.Getenv("GREETING"), strings.Join(os.Args[1:], " ")) }
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", "hello", ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the scratch program: %v\n%s", err, out)
	}
	df := "FROM scratch\nCOPY hello /hello\nENTRYPOINT [\"/hello\"]\nCMD [\"default\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	image := "mayfly-warmtest/scratch:" + fmt.Sprint(time.Now().UnixNano())
	if out, err := exec.Command("docker", "build", "-q", "-t", image, dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", image).Run() })
	return image
}

func listRunner(t *testing.T, runnerID string) []string {
	t.Helper()
	cli, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", driver.LabelRunner+"="+runnerID))})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	return ids
}

// TestWarmCloseRemovesAll: Close leaves no warm container behind, nor
// their host directories.
func TestWarmCloseRemovesAll(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	warmDir := t.TempDir()
	ctx := context.Background()
	d, err := docker.NewWithOptions(ctx, docker.Options{WarmContainers: 3, Launcher: testenv.Launcher(t), WarmDir: warmDir})
	testenv.Integration(t, "docker engine", err)
	rid := "warmtest-" + fmt.Sprint(time.Now().UnixNano())
	spec := taskSpec(t, rid, image, "{}", "true")
	if err := d.Prewarm(ctx, spec); err != nil {
		d.Close()
		t.Fatal(err)
	}
	// One task taken: its replacement is created in the background, and
	// may still be under way at Close.
	if res, _ := run(t, d, spec); res.ExitCode != 0 {
		t.Errorf("exit %d", res.ExitCode)
	}
	if n := len(listRunner(t, rid)); n < 2 {
		t.Fatalf("%d warm containers before Close, want at least 2", n)
	}
	if err := d.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if ids := listRunner(t, rid); len(ids) != 0 {
		t.Errorf("containers left after Close: %v", ids)
	}
	if left, _ := filepath.Glob(filepath.Join(warmDir, "*")); len(left) != 0 {
		t.Errorf("warm directories left after Close: %v", left)
	}
}

// TestWarmOrphans: the warm containers of a runner that was killed are
// orphans to the next life of that runner; a live driver's own, waiting or
// running a task, are not swept while the runner keeps their task.
func TestWarmOrphans(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	ctx := context.Background()
	rid := "warmtest-" + fmt.Sprint(time.Now().UnixNano())
	spec := taskSpec(t, rid, image, "{}", "sleep", "600")

	// The killed runner's driver: never closed, as a kill leaves it.
	killed, err := docker.NewWithOptions(ctx, docker.Options{WarmContainers: 2, Launcher: testenv.Launcher(t)})
	testenv.Integration(t, "docker engine", err)
	if err := killed.Prewarm(ctx, spec); err != nil {
		t.Fatal(err)
	}
	stale := listRunner(t, rid)
	if len(stale) != 2 {
		t.Fatalf("%d warm containers of the killed runner, want 2", len(stale))
	}

	d := testenv.DockerWarm(t, 1)
	if err := d.Prewarm(ctx, spec); err != nil {
		t.Fatal(err)
	}
	// The runner's start: every container of its earlier life goes.
	n, err := d.RemoveOrphans(ctx, rid, nil)
	if err != nil || n != 2 {
		t.Errorf("RemoveOrphans = %d, %v; want the killed runner's 2", n, err)
	}
	left := listRunner(t, rid)
	for _, id := range stale {
		for _, l := range left {
			if l == id {
				t.Errorf("stale warm container %s left", id[:12])
			}
		}
	}
	if len(left) != 1 {
		t.Fatalf("%d containers left, want this driver's one warm container", len(left))
	}

	// A warm container taken for a task is kept by the runner's sweep
	// while the task is known, by its task id (it has no task label).
	h, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Destroy(ctx)
	if s := d.WarmStats(); s.Hits != 1 {
		t.Fatalf("warm stats %+v, want one hit", s)
	}
	var asked []string
	keep := func(id, taskID string) bool {
		asked = append(asked, taskID)
		return taskID == spec.TaskID
	}
	if n, err := d.RemoveOrphans(ctx, rid, keep); err != nil || n != 0 {
		t.Errorf("sweep removed %d (%v), want none: asked %q", n, err, asked)
	}
	if ids := listRunner(t, rid); len(ids) < 1 || !contains(ids, h.ID()) {
		t.Errorf("the running warm container %s was swept: left %v", h.ID()[:12], ids)
	}
	killed.Close()
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// TestWarmDeadContainerNotTaken: a warm container that ended while it
// waited (killed, or its engine restarted) runs no task: the task gets a
// container of its own and runs as if there had been none.
func TestWarmDeadContainerNotTaken(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	d := testenv.DockerWarm(t, 1)
	rid := "warmtest-" + fmt.Sprint(time.Now().UnixNano())
	ctx := context.Background()
	spec := taskSpec(t, rid, image, "mine", "cat", "/mnt/mayfly/payload.json")
	if err := d.Prewarm(ctx, spec); err != nil {
		t.Fatal(err)
	}
	ids := listRunner(t, rid)
	if len(ids) != 1 {
		t.Fatalf("%d warm containers, want 1", len(ids))
	}
	cli, err := dockerclient.NewClientWithOpts(dockerclient.FromEnv, dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if err := cli.ContainerKill(ctx, ids[0], "KILL"); err != nil {
		t.Fatal(err)
	}
	waitC, errC := cli.ContainerWait(ctx, ids[0], container.WaitConditionNotRunning)
	select {
	case <-waitC:
	case err := <-errC:
		t.Fatal(err)
	}
	// The wait the driver registered has heard of the exit by now.
	time.Sleep(200 * time.Millisecond)
	res, out := run(t, d, spec)
	if res.ExitCode != 0 || out != "mine" {
		t.Errorf("exit %d, output %q; want 0, %q", res.ExitCode, out, "mine")
	}
	if s := d.WarmStats(); s.Hits != 0 {
		t.Errorf("warm stats %+v: the dead container was taken", s)
	}
}

// TestWarmShapeSeenTwice: a shape is kept warm from its second task on, so
// a code run once costs no container made for nothing.
func TestWarmShapeSeenTwice(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	d := testenv.DockerWarm(t, 1)
	rid := "warmtest-" + fmt.Sprint(time.Now().UnixNano())
	spec := taskSpec(t, rid, image, "{}", "true")
	settle := func() docker.WarmStats {
		for d.WarmStats().Pending > 0 {
			time.Sleep(5 * time.Millisecond)
		}
		return d.WarmStats()
	}
	run(t, d, spec)
	if s := settle(); s.Idle != 0 || s.Hits != 0 {
		t.Errorf("after the first task: %+v, want nothing warm", s)
	}
	run(t, d, spec)
	if s := settle(); s.Idle != 1 || s.Hits != 0 {
		t.Errorf("after the second task: %+v, want one warm container", s)
	}
	run(t, d, spec)
	if s := settle(); s.Idle != 1 || s.Hits != 1 {
		t.Errorf("after the third task: %+v, want it warm and replaced", s)
	}
}

// TestWarmTaskReachesItsSocket: the task's API socket, a unix socket the
// runner listens on in the task's directory, answers inside a warm
// container, whose mount holds a link to it.
func TestWarmTaskReachesItsSocket(t *testing.T) {
	image := testenv.StackImage(t, "python-3.11")
	d := testenv.DockerWarm(t, 1)
	rid := "warmtest-" + fmt.Sprint(time.Now().UnixNano())
	spec := taskSpec(t, rid, image, "{}", "python3", "-c",
		`import socket; s = socket.socket(socket.AF_UNIX); s.connect("/mnt/mayfly/api.sock"); print(s.recv(64).decode())`)
	sock := filepath.Join(spec.Mounts[0].Source, "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello from the runner"))
			c.Close()
		}
	}()
	if err := d.Prewarm(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	res, out := run(t, d, spec)
	if res.ExitCode != 0 || out != "hello from the runner\n" {
		t.Errorf("exit %d, output %q", res.ExitCode, out)
	}
	if s := d.WarmStats(); s.Hits != 1 {
		t.Errorf("warm stats %+v, want one hit", s)
	}
}

package runner_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/assembly/assemblytest"
	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/metrics"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// bundle is a real service on SQLite with a real runner on the real Docker
// engine, or on the scriptable fake driver (newFakeBundle).
type bundle struct {
	t          testing.TB
	svc        *service.Service
	drv        driver.Driver
	project    string
	token      string // the bootstrap admin token, for tests that go through the API
	runner     string
	stackImage func(string) string
	memory     int64
	dir        string
	quiet      *slog.Logger
	metrics    *metrics.Metrics // the server's, which its runners share
}

func setup(t testing.TB, cfg service.Config, capacity int) *bundle {
	t.Helper()
	image := testenv.StackImage(t, "busybox")
	return newBundle(t, cfg, capacity, 64<<20, func(string) string { return image })
}

// newBundle is a fresh service on SQLite with one runner whose stacks map
// to images by stackImage.
func newBundle(t testing.TB, cfg service.Config, capacity int, memory int64, stackImage func(string) string) *bundle {
	t.Helper()
	return newBundleOn(t, testenv.Docker(t), cfg, capacity, memory, stackImage)
}

func newBundleOn(t testing.TB, drv driver.Driver, cfg service.Config, capacity int, memory int64, stackImage func(string) string) *bundle {
	t.Helper()
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = 4 * time.Second
	}
	if cfg.AllowImages == nil {
		cfg.AllowImages = testAllowImages
	}
	quiet := testenv.Logger(t)
	// The server's parts as `mayfly server` assembles them, with a quick
	// maintenance loop; the runners are added below, each on its own.
	a := assemblytest.Start(t, assembly.Config{Service: cfg, MaintenanceInterval: 100 * time.Millisecond, Log: quiet})
	// Registered after the server's stop, so it runs before it: cleanups
	// run last first, and the runners (added later) stop before both.
	if baker, ok := drv.(driver.Baker); ok {
		t.Cleanup(func() {
			baker.RemoveImages(context.Background(), map[string]string{runner.LabelProject: a.Bootstrap.ProjectID}, "")
		})
	}
	b := &bundle{t: t, svc: a.Service, drv: drv, project: a.Bootstrap.ProjectID, token: a.Bootstrap.Token, metrics: a.Metrics,
		stackImage: stackImage, memory: memory, quiet: quiet, dir: a.DataDir}
	b.runner = b.addRunner(capacity)
	return b
}

// testAllowImages are the images besides stacks that the tests' image
// codes name, allowed on the service (unless a test says otherwise) and on
// every runner.
var testAllowImages = []string{"mayfly-test/*", "mayfly/does-not-exist"}

// Caps of the test runners' writable places, small enough to fill fast.
const (
	testTmpBytes     = 8 << 20
	testTaskDirBytes = 16 << 20
)

// run starts a runner for the rest of the test, and checks at the end that
// nothing it started outlives the test.
func (b *bundle) run(r *runner.Runner, rid string) {
	t := b.t
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		<-done
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r.Drain(dctx)
		left, err := b.drv.ListManaged(context.Background(), rid)
		if err != nil {
			t.Errorf("list containers: %v", err)
		}
		if len(left) > 0 {
			t.Errorf("containers left behind by runner %s: %v", rid, left)
			b.drv.RemoveOrphans(context.Background(), rid, nil)
		}
	})
}

// addRunner starts one more runner on the same service, serving clusters.
func (b *bundle) addRunner(capacity int, clusters ...string) string {
	b.t.Helper()
	return b.addRunnerVia(b.svc, capacity, clusters...)
}

// addRunnerVia starts one more runner that reaches the queue through q.
func (b *bundle) addRunnerVia(q runner.Queue, capacity int, clusters ...string) string {
	b.t.Helper()
	rid := id.New()
	r, err := runner.New(runner.Config{
		ID: rid, Capacity: capacity, Clusters: clusters, CacheDir: filepath.Join(b.dir, "cache-"+rid),
		StackImage:  b.stackImage,
		IsLeaseLost: func(err error) bool { return errors.Is(err, service.ErrLeaseLost) },
		StopGrace:   2 * time.Second, LeaseWait: time.Second, MemoryBytes: b.memory, Log: b.quiet,
		AllowImages: testAllowImages, TmpBytes: testTmpBytes, TaskDirBytes: testTaskDirBytes,
		// Sweep often, so a sweep that takes a container being started
		// for an orphan shows in every test.
		SweepInterval: 20 * time.Millisecond,
		Metrics:       b.metrics,
	}, q, b.drv)
	if err != nil {
		b.t.Fatal(err)
	}
	b.run(r, rid)
	return rid
}

func makeZip(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range files {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.SetMode(0o755)
		w, _ := zw.CreateHeader(h)
		io.WriteString(w, data)
	}
	zw.Close()
	return buf.Bytes()
}

func (b *bundle) push(name string, up wire.CodeUpload, files map[string]string) {
	b.t.Helper()
	up.Name = name
	if _, err := b.svc.UploadCode(context.Background(), b.project, up, bytes.NewReader(makeZip(b.t, files))); err != nil {
		b.t.Fatalf("upload %s: %v", name, err)
	}
}

func (b *bundle) queue(tasks ...wire.NewTask) []string {
	b.t.Helper()
	ids, err := b.svc.QueueTasks(context.Background(), b.project, tasks)
	if err != nil {
		b.t.Fatalf("queue: %v", err)
	}
	return ids
}

// waitFor polls a task until cond holds or the deadline passes.
func (b *bundle) waitFor(taskID string, within time.Duration, cond func(store.Task) bool) store.Task {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		tk, err := b.svc.GetTask(context.Background(), b.project, taskID)
		if err != nil {
			b.t.Fatal(err)
		}
		if cond(tk) {
			return tk
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("task %s still %s (%s) after %s", taskID, tk.Status, tk.Msg, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *bundle) waitEnd(taskID string) store.Task {
	return b.waitFor(taskID, 90*time.Second, func(t store.Task) bool { return store.Terminal(t.Status) })
}

func (b *bundle) log(taskID string) string {
	l, err := b.svc.TaskLog(context.Background(), b.project, taskID)
	if err != nil {
		b.t.Fatalf("log of %s: %v", taskID, err)
	}
	return string(l)
}

const contractScript = `echo "args: $*"
echo "payload: $(cat "$PAYLOAD_FILE")"
echo "config: $(cat "$CONFIG_FILE")"
echo "env: TASK_ID=$TASK_ID TASK_DIR=$TASK_DIR CODE_NAME=$CODE_NAME PROJECT_ID=$PROJECT_ID GREETING=$GREETING"
echo "pwd: $(pwd)"
echo "uid: $(id -u)"
echo "data: $(cat data.txt)"
echo written > "$TASK_DIR/out.txt" && echo "writable: $(cat out.txt)"
echo "net: $(ls /sys/class/net | tr '\n' ' ')"
echo "to stderr" >&2
`

func TestTaskContract(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 2)
	b.push("contract", wire.CodeUpload{Runtime: "sh", FileName: "run.sh", Config: `{"db":"x"}`,
		EnvVars: map[string]string{"GREETING": "hi", "TASK_ID": "not-this"}},
		map[string]string{"run.sh": contractScript, "data.txt": "from the package"})
	taskID := b.queue(wire.NewTask{CodeName: "contract", Payload: `{"order":42}`})[0]
	tk := b.waitEnd(taskID)
	if tk.Status != store.StatusComplete || tk.ExitCode == nil || *tk.ExitCode != 0 {
		t.Fatalf("status %s msg %q; log:\n%s", tk.Status, tk.Msg, b.log(taskID))
	}
	if tk.StartTime == nil || tk.EndTime == nil || tk.EndTime.Before(*tk.StartTime) {
		t.Fatalf("times: start %v end %v", tk.StartTime, tk.EndTime)
	}
	for _, phase := range []string{"queue", "prepare", "start", "run", "logs"} {
		if v, ok := tk.Timings[phase]; !ok || v < 0 {
			t.Errorf("timings lack phase %s: %v", phase, tk.Timings)
		}
	}
	log := b.log(taskID)
	for _, want := range []string{
		"args: -d /mnt/task -payload /mnt/mayfly/payload.json -config /mnt/mayfly/config.json -id " + taskID,
		`payload: {"order":42}`,
		`config: {"db":"x"}`,
		"env: TASK_ID=" + taskID + " TASK_DIR=/mnt/task CODE_NAME=contract PROJECT_ID=" + b.project + " GREETING=hi",
		"pwd: /mnt/task",
		"uid: 65534",
		"data: from the package",
		"writable: written",
		"net: lo \n",
		"to stderr",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

func TestCommandAndExitCodes(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 2)
	b.push("fails", wire.CodeUpload{Command: `echo working; echo "boom: bad input $1" >&2; exit 3`}, map[string]string{"x": ""})
	b.push("ok", wire.CodeUpload{Command: `echo fine`}, map[string]string{"x": ""})
	ids := b.queue(wire.NewTask{CodeName: "fails"}, wire.NewTask{CodeName: "ok"})
	tk := b.waitEnd(ids[0])
	if tk.Status != store.StatusError || tk.ExitCode == nil || *tk.ExitCode != 3 {
		t.Fatalf("fails: status %s exit %v msg %q", tk.Status, tk.ExitCode, tk.Msg)
	}
	if !strings.Contains(tk.Msg, "Exit code 3") || !strings.Contains(tk.Msg, "boom: bad input -d") {
		t.Fatalf("fails: msg %q lacks exit code and stderr tail", tk.Msg)
	}
	if log := b.log(ids[0]); !strings.Contains(log, "working") {
		t.Fatalf("fails: log %q", log)
	}
	if tk := b.waitEnd(ids[1]); tk.Status != store.StatusComplete || b.log(ids[1]) != "fine\n" {
		t.Fatalf("ok: status %s log %q", tk.Status, b.log(ids[1]))
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 1)
	b.push("sleepy", wire.CodeUpload{Command: `echo start; sleep 120`}, map[string]string{"x": ""})
	two := 2
	id := b.queue(wire.NewTask{CodeName: "sleepy", Timeout: &two})[0]
	tk := b.waitEnd(id)
	if tk.Status != store.StatusTimeout || !strings.Contains(tk.Msg, "Timed out after 2 s") {
		t.Fatalf("status %s msg %q", tk.Status, tk.Msg)
	}
	if log := b.log(id); log != "start\n" {
		t.Fatalf("log %q", log)
	}
}

func TestCancelRunning(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{LeaseDuration: 2 * time.Second}, 1)
	// The trap shows the task got SIGTERM before it was killed.
	b.push("long", wire.CodeUpload{Command: `trap 'echo got TERM; exit 143' TERM; echo running; while true; do sleep 0.1; done`},
		map[string]string{"x": ""})
	id := b.queue(wire.NewTask{CodeName: "long"})[0]
	b.waitFor(id, 60*time.Second, func(t store.Task) bool {
		return t.Status == store.StatusRunning && t.LogSize > 0
	})
	if _, err := b.svc.CancelTask(context.Background(), b.project, id); err != nil {
		t.Fatal(err)
	}
	tk := b.waitEnd(id)
	if tk.Status != store.StatusCancelled {
		t.Fatalf("status %s msg %q", tk.Status, tk.Msg)
	}
	if log := b.log(id); !strings.Contains(log, "got TERM") {
		t.Fatalf("the task did not get SIGTERM first; log %q", log)
	}
	// The container goes right after the end is reported.
	for deadline := time.Now().Add(30 * time.Second); ; {
		left, err := b.drv.ListManaged(context.Background(), b.runner)
		if err == nil && len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container still there after cancel: %v %v", left, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLogTruncated(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{MaxLogBytes: 1000}, 1)
	b.push("chatty", wire.CodeUpload{Command: `i=0; while [ $i -lt 500 ]; do echo "line $i"; i=$((i+1)); done`},
		map[string]string{"x": ""})
	id := b.queue(wire.NewTask{CodeName: "chatty"})[0]
	tk := b.waitEnd(id)
	if tk.Status != store.StatusComplete {
		t.Fatalf("a cut log must not harm the task: %s %q", tk.Status, tk.Msg)
	}
	log := b.log(id)
	if !strings.HasPrefix(log, "line 0\n") || !strings.Contains(log, "log truncated at 1000 bytes") || len(log) > 1200 {
		t.Fatalf("log (%d bytes) not cut as expected:\n%s", len(log), log)
	}
}

func TestMissingStackImage(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 1)
	up := wire.CodeUpload{Name: "ghost-image", Image: "mayfly/does-not-exist:never"}
	if _, err := b.svc.UploadCode(context.Background(), b.project, up, nil); err != nil {
		t.Fatal(err)
	}
	id := b.queue(wire.NewTask{CodeName: "ghost-image"})[0]
	tk := b.waitEnd(id)
	if tk.Status != store.StatusError || !strings.Contains(tk.Msg, "not present") {
		t.Fatalf("status %s msg %q", tk.Status, tk.Msg)
	}
}

func TestManyTasksAllRunOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 4)
	b.push("marker", wire.CodeUpload{Command: `echo "marker $(cat $PAYLOAD_FILE)"`}, map[string]string{"x": ""})
	var reqs []wire.NewTask
	for i := range 20 {
		reqs = append(reqs, wire.NewTask{CodeName: "marker", Payload: strings.Repeat("m", i+1)})
	}
	ids := b.queue(reqs...)
	for i, id := range ids {
		tk := b.waitEnd(id)
		if tk.Status != store.StatusComplete || tk.Attempt != 1 {
			t.Fatalf("task %d: %s attempt %d %q", i, tk.Status, tk.Attempt, tk.Msg)
		}
		if want := "marker " + strings.Repeat("m", i+1) + "\n"; b.log(id) != want {
			t.Fatalf("task %d log %q, want %q", i, b.log(id), want)
		}
	}
}

package runner_test

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

var (
	progressOnce sync.Once
	progressBin  []byte
	progressErr  error
)

// progressProgram is a static binary that reports progress through the
// task's API socket (busybox has no HTTP client that speaks unix sockets).
func progressProgram(t *testing.T) string {
	t.Helper()
	progressOnce.Do(func() {
		out := filepath.Join(t.TempDir(), "progress")
		cmd := exec.Command("go", "build", "-o", out, "./testdata/progress")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			progressErr = errors.New(string(b))
			return
		}
		progressBin, progressErr = os.ReadFile(out)
	})
	if progressErr != nil {
		t.Fatalf("build progress program: %v", progressErr)
	}
	return string(progressBin)
}

func TestProgressFromInsideTask(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 1)
	// The container has no network: the report goes through the socket.
	b.push("progress", wire.CodeUpload{Command: "./progress"}, map[string]string{"progress": progressProgram(t)})
	// Two tasks on one slot: the second gets the first's directory and
	// socket, and must speak for itself alone.
	for _, id := range b.queue(wire.NewTask{CodeName: "progress"}, wire.NewTask{CodeName: "progress"}) {
		tk := b.waitEnd(id)
		log := b.log(id)
		if tk.Status != store.StatusComplete {
			t.Fatalf("status %s %q; log:\n%s", tk.Status, tk.Msg, log)
		}
		// Its last report came within a second of the first: held, and
		// written before the end.
		if tk.Percent != 100 || tk.Msg != "done" {
			t.Fatalf("progress read back as %d %q; log:\n%s", tk.Percent, tk.Msg, log)
		}
		for _, want := range []string{`200 {"msg":"Progress set"}`, "403 ", "only that task's own progress", "401 ", "Invalid task token"} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 2)
	two, one := 2, 1
	b.push("flaky", wire.CodeUpload{Command: `echo "try $(cat $PAYLOAD_FILE)"; exit 1`, Retries: &two, RetriesDelay: &one},
		map[string]string{"x": ""})
	b.push("slow", wire.CodeUpload{Command: `sleep 30`, Retries: &one}, map[string]string{"x": ""})
	b.push("fine", wire.CodeUpload{Command: `true`, Retries: &two}, map[string]string{"x": ""})
	ids := b.queue(wire.NewTask{CodeName: "flaky", Payload: "p"}, wire.NewTask{CodeName: "slow", Timeout: &one},
		wire.NewTask{CodeName: "fine"})

	// flaky: the original and two retries, linked both ways, each due a
	// second after the one before ended; no third retry.
	chain := []store.Task{b.waitEnd(ids[0])}
	for len(chain) < 3 {
		last := chain[len(chain)-1]
		if last.RetryAt == "" {
			t.Fatalf("task %d of the chain (%s) has no retry", len(chain), last.Status)
		}
		next := b.waitEnd(last.RetryAt)
		if next.RetryOf != last.ID || next.RetryCount != len(chain) || next.Payload != "p" {
			t.Fatalf("retry %d: retry_of %s count %d payload %q", len(chain), next.RetryOf, next.RetryCount, next.Payload)
		}
		if next.DueAt.Before(last.EndTime.Add(time.Second)) {
			t.Fatalf("retry %d due %s, less than retries_delay after %s", len(chain), next.DueAt, last.EndTime)
		}
		chain = append(chain, next)
	}
	for i, tk := range chain {
		if tk.Status != store.StatusError {
			t.Fatalf("try %d: %s", i, tk.Status)
		}
	}
	if chain[2].RetryAt != "" {
		t.Fatalf("retried past retries: %s", chain[2].RetryAt)
	}

	// A timeout retries too.
	slow := b.waitEnd(ids[1])
	if slow.Status != store.StatusTimeout || slow.RetryAt == "" {
		t.Fatalf("timed-out task: %s retry_at %q", slow.Status, slow.RetryAt)
	}
	if again := b.waitEnd(slow.RetryAt); again.Status != store.StatusTimeout || again.RetryAt != "" {
		t.Fatalf("retry of timed-out task: %s retry_at %q", again.Status, again.RetryAt)
	}

	// Complete never retries by itself; by hand it does, once.
	fine := b.waitEnd(ids[2])
	if fine.Status != store.StatusComplete || fine.RetryAt != "" {
		t.Fatalf("complete task: %s retry_at %q", fine.Status, fine.RetryAt)
	}
	ctx := context.Background()
	nid, err := b.svc.RetryTask(ctx, b.project, fine.ID, 0)
	if err != nil {
		t.Fatalf("manual retry: %v", err)
	}
	if manual := b.waitEnd(nid); manual.Status != store.StatusComplete || manual.RetryOf != fine.ID {
		t.Fatalf("manual retry: %s retry_of %s", manual.Status, manual.RetryOf)
	}
	if _, err := b.svc.RetryTask(ctx, b.project, fine.ID, 0); !errors.Is(err, service.ErrConflict) {
		t.Fatalf("second manual retry: %v, want conflict", err)
	}
}

// TestMaxConcurrency records, inside each container, when it started and
// ended (the host's uptime, shared by all containers), and checks that no
// more than max_concurrency ran at once however many runner slots there
// are.
func TestMaxConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 6)
	two := 2
	b.push("limited", wire.CodeUpload{Command: `read s _ < /proc/uptime; sleep 1; read e _ < /proc/uptime; echo "$s $e"`,
		MaxConcurrency: &two}, map[string]string{"x": ""})
	var reqs []wire.NewTask
	for range 10 {
		reqs = append(reqs, wire.NewTask{CodeName: "limited"})
	}
	var spans []testenv.Span
	for _, id := range b.queue(reqs...) {
		if tk := b.waitEnd(id); tk.Status != store.StatusComplete {
			t.Fatalf("task %s: %s %q", id, tk.Status, tk.Msg)
		}
		f := strings.Fields(b.log(id))
		if len(f) != 2 {
			t.Fatalf("log %q", b.log(id))
		}
		s, _ := strconv.ParseFloat(f[0], 64)
		e, _ := strconv.ParseFloat(f[1], 64)
		spans = append(spans, testenv.Span{Start: s, End: e})
	}
	// Ends count before starts at the same instant (10 ms resolution).
	most := testenv.MostAtOnce(spans)
	t.Logf("most tasks of a max_concurrency-2 code running at once: %d", most)
	if most > 2 {
		t.Fatalf("%d tasks ran at once, max_concurrency is 2", most)
	}
	if most < 2 {
		t.Fatalf("never 2 at once with 6 slots: the limit is too strict (%d)", most)
	}
}

// TestLeaseExpiry: a runner that takes a task and goes silent loses it;
// the task runs elsewhere, and the silent runner's late reports are
// refused.
func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{LeaseDuration: time.Second, MaxAttempts: 3}, 1)
	ctx := context.Background()
	b.push("orphan", wire.CodeUpload{Command: `echo ran`}, map[string]string{"x": ""})
	// Cluster "c1" has no runner yet, so the ghost is the only taker.
	id := b.queue(wire.NewTask{CodeName: "orphan", Cluster: "c1"})[0]
	jobs, err := b.svc.Lease(ctx, wire.LeaseRequest{RunnerID: "ghost", Max: 1, Clusters: []string{"c1"}, WaitMs: 5000})
	if err != nil || len(jobs) != 1 || jobs[0].TaskID != id {
		t.Fatalf("ghost lease: %v %v", jobs, err)
	}
	b.waitFor(id, 30*time.Second, func(tk store.Task) bool { return tk.Status == store.StatusQueued && tk.Attempt == 1 })
	if _, err := b.svc.Heartbeat(ctx, jobs[0].Lease("ghost")); !errors.Is(err, service.ErrLeaseLost) {
		t.Fatalf("ghost heartbeat after expiry: %v", err)
	}
	b.addRunner(1, "c1")
	tk := b.waitEnd(id)
	if tk.Status != store.StatusComplete || tk.Attempt != 2 || b.log(id) != "ran\n" {
		t.Fatalf("rescued task: %s attempt %d log %q", tk.Status, tk.Attempt, b.log(id))
	}
	err = b.svc.Finish(ctx, jobs[0].Lease("ghost"), wire.FinishRequest{RunnerID: "ghost", Status: string(store.StatusError), Msg: "late"})
	if !errors.Is(err, service.ErrLeaseLost) {
		t.Fatalf("ghost finish after the task ran elsewhere: %v", err)
	}
	if got := b.waitEnd(id); got.Status != store.StatusComplete {
		t.Fatalf("late finish changed the task: %s", got.Status)
	}
}

func TestLeaseExpiryLastAttemptKills(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{LeaseDuration: 500 * time.Millisecond, MaxAttempts: 2}, 1)
	ctx := context.Background()
	b.push("doomed", wire.CodeUpload{Command: `true`}, map[string]string{"x": ""})
	id := b.queue(wire.NewTask{CodeName: "doomed", Cluster: "nowhere"})[0]
	for attempt := 1; attempt <= 2; attempt++ {
		jobs, err := b.svc.Lease(ctx, wire.LeaseRequest{RunnerID: "ghost", Max: 1, Clusters: []string{"nowhere"}, WaitMs: 10000})
		if err != nil || len(jobs) != 1 {
			t.Fatalf("lease %d: %v %v", attempt, jobs, err)
		}
		if jobs[0].Attempt != attempt {
			t.Fatalf("lease %d reports attempt %d", attempt, jobs[0].Attempt)
		}
	}
	tk := b.waitEnd(id)
	if tk.Status != store.StatusKilled || !strings.Contains(tk.Msg, "lease expired after 2 attempts") {
		t.Fatalf("status %s msg %q", tk.Status, tk.Msg)
	}
}

func TestPauseResumeCancelAll(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 2)
	ctx := context.Background()
	b.push("held", wire.CodeUpload{Command: `echo go`}, map[string]string{"x": ""})
	code, err := b.svc.ListCodes(ctx, b.project, store.Page{PerPage: 10})
	if err != nil || len(code) != 1 {
		t.Fatal(code, err)
	}
	codeID := code[0].CodeID
	if err := b.svc.PauseCode(ctx, b.project, codeID, true); err != nil {
		t.Fatal(err)
	}
	ids := b.queue(wire.NewTask{CodeName: "held"}, wire.NewTask{CodeName: "held"})
	// Paused: nothing is taken. Give the runner a fair chance to be wrong.
	time.Sleep(1500 * time.Millisecond)
	for _, id := range ids {
		tk, _ := b.svc.GetTask(ctx, b.project, id)
		if tk.Status != store.StatusQueued {
			t.Fatalf("task of a paused code is %s", tk.Status)
		}
	}
	if err := b.svc.PauseCode(ctx, b.project, codeID, false); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if tk := b.waitEnd(id); tk.Status != store.StatusComplete {
			t.Fatalf("after resume: %s", tk.Status)
		}
	}

	b.push("busy", wire.CodeUpload{Command: `echo up; sleep 60`}, map[string]string{"x": ""})
	busy := b.queue(wire.NewTask{CodeName: "busy"}, wire.NewTask{CodeName: "busy"}, wire.NewTask{CodeName: "busy"},
		wire.NewTask{CodeName: "busy"})
	b.waitFor(busy[0], 60*time.Second, func(tk store.Task) bool { return tk.Status == store.StatusRunning })
	busyCode, err := b.svc.ListCodes(ctx, b.project, store.Page{PerPage: 10})
	if err != nil {
		t.Fatal(err)
	}
	var busyID string
	for _, c := range busyCode {
		if c.Name == "busy" {
			busyID = c.CodeID
		}
	}
	if n, err := b.svc.CancelAll(ctx, b.project, busyID); err != nil || n != 4 {
		t.Fatalf("cancel_all: %d %v", n, err)
	}
	for _, id := range busy {
		if tk := b.waitEnd(id); tk.Status != store.StatusCancelled {
			t.Fatalf("after cancel_all: %s", tk.Status)
		}
	}
	st, err := b.svc.CodeStats(ctx, b.project, busyID)
	if err != nil || st.Cancelled != 4 || st.Running != 0 {
		t.Fatalf("stats: %+v %v", st, err)
	}
}

// TestLyingZipFailsTask: a zip whose headers understate what an entry
// inflates to passes the upload check (headers only) but not the unpacking,
// which reads the real bytes: the task fails with a clear msg and nothing
// is baked.
func TestLyingZipFailsTask(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{}, 1)
	data := bytes.Repeat([]byte{0}, 4<<20)
	var comp bytes.Buffer
	fw, _ := flate.NewWriter(&comp, flate.BestCompression)
	fw.Write(data)
	fw.Close()
	var z bytes.Buffer
	zw := zip.NewWriter(&z)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "bomb", Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(data),
		CompressedSize64: uint64(comp.Len()), UncompressedSize64: 100})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(comp.Bytes())
	zw.Close()
	if _, err := b.svc.UploadCode(context.Background(), b.project, wire.CodeUpload{Name: "bomb", Command: "true"}, &z); err != nil {
		t.Fatalf("upload: %v", err)
	}
	id := b.queue(wire.NewTask{CodeName: "bomb"})[0]
	tk := b.waitEnd(id)
	if tk.Status != store.StatusError || !strings.Contains(tk.Msg, "declared size") {
		t.Fatalf("status %s msg %q", tk.Status, tk.Msg)
	}
}

package service

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/blob"
	blobfs "github.com/mayfly-run/mayfly/internal/blob/fs"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/store/sqlite"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// flakyStore fails GetCodeRevision with a passing error (a busy database,
// a dropped connection) as many times as failures says.
type flakyStore struct {
	store.Store
	failures atomic.Int32
	// releaseFailures fails ReleaseTask as many times: the database went
	// away between the lease and the give-back.
	releaseFailures atomic.Int32
}

func (f *flakyStore) ReleaseTask(ctx context.Context, taskID, runnerID string, at time.Time) error {
	if f.releaseFailures.Add(-1) >= 0 {
		return errors.New("connection refused")
	}
	return f.Store.ReleaseTask(ctx, taskID, runnerID, at)
}

func (f *flakyStore) GetCodeRevision(ctx context.Context, id string) (store.CodeRevision, error) {
	if f.failures.Add(-1) >= 0 {
		return store.CodeRevision{}, errors.New("database is locked")
	}
	return f.Store.GetCodeRevision(ctx, id)
}

type upkeepBundle struct {
	t       *testing.T
	ctx     context.Context
	svc     *Service
	st      *flakyStore
	blobs   blob.Store
	blobDir string
	project string
	now     time.Time
}

func setupUpkeep(t *testing.T, cfg Config) *upkeepBundle {
	t.Helper()
	cfg.AllowImages = append(cfg.AllowImages, "busybox")
	ctx := t.Context()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "mayfly.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b := &upkeepBundle{t: t, ctx: ctx, st: &flakyStore{Store: st}, blobDir: filepath.Join(dir, "blobs"),
		now: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}
	if b.blobs, err = blobfs.New(b.blobDir); err != nil {
		t.Fatal(err)
	}
	b.svc = New(b.st, b.blobs, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.svc.now = func() time.Time { return b.now }
	boot, err := b.svc.EnsureBootstrap(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	b.project = boot.ProjectID
	if _, err := b.svc.UploadCode(ctx, b.project, wire.CodeUpload{Name: "hello", Image: "busybox"}, nil); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *upkeepBundle) queue() string {
	b.t.Helper()
	ids, err := b.svc.QueueTasks(b.ctx, b.project, []wire.NewTask{{CodeName: "hello", Payload: "{}"}})
	if err != nil {
		b.t.Fatal(err)
	}
	return ids[0]
}

func (b *upkeepBundle) task(id string) store.Task {
	b.t.Helper()
	tk, err := b.svc.GetTask(b.ctx, b.project, id)
	if err != nil {
		b.t.Fatalf("get task %s: %v", id, err)
	}
	return tk
}

// runTask leases one task and finishes it with status.
func (b *upkeepBundle) runTask(status store.Status) []wire.Job {
	b.t.Helper()
	jobs, err := b.svc.Lease(b.ctx, wire.LeaseRequest{RunnerID: "r1", Max: 1})
	if err != nil {
		b.t.Fatalf("lease: %v", err)
	}
	for _, j := range jobs {
		if err := b.svc.AppendLog(b.ctx, j.Lease("r1"), []byte("some output\n")); err != nil {
			b.t.Fatal(err)
		}
		if err := b.svc.Finish(b.ctx, j.Lease("r1"), wire.FinishRequest{RunnerID: "r1", Status: string(status)}); err != nil {
			b.t.Fatalf("finish: %v", err)
		}
	}
	return jobs
}

// A store that fails once, for a moment, while a task is leased must not
// end the task "Code revision no longer exists": the code is still there.
// The task goes back to the queue untouched and runs on the next lease.
func TestPassingStoreErrorDoesNotFailLeasedTask(t *testing.T) {
	t.Parallel()
	b := setupUpkeep(t, Config{})
	id := b.queue()
	b.st.failures.Store(1)
	jobs, err := b.svc.Lease(b.ctx, wire.LeaseRequest{RunnerID: "r1", Max: 1})
	if err == nil || len(jobs) != 0 {
		t.Fatalf("lease during a store fault = %d jobs, %v; want an error so the runner backs off", len(jobs), err)
	}
	if tk := b.task(id); tk.Status != store.StatusQueued || tk.Attempt != 0 {
		t.Fatalf("after a passing store error the task is %s (attempt %d, msg %q); want queued, attempt 0",
			tk.Status, tk.Attempt, tk.Msg)
	}
	if jobs := b.runTask(store.StatusComplete); len(jobs) != 1 || jobs[0].TaskID != id {
		t.Fatalf("lease after the fault returned %d jobs", len(jobs))
	}
	if tk := b.task(id); tk.Status != store.StatusComplete || tk.Attempt != 1 {
		t.Fatalf("task ended %s after %d attempts, want complete after 1", tk.Status, tk.Attempt)
	}
}

// The fault a chaos test found: PostgreSQL died between a lease's commit
// and the look-up of the task's code, so the give-back failed too, and the
// task waited for its lease to run out and ran in attempt 2 though it
// never ran in attempt 1. Now the give-back is tried again until the store
// answers: the task is queued again as it was, attempt 0, within moments.
func TestFailedGiveBackIsRetried(t *testing.T) {
	t.Parallel()
	b := setupUpkeep(t, Config{})
	b.svc.now = func() time.Time { return time.Now().UTC() }
	id := b.queue()
	b.st.failures.Store(1)
	b.st.releaseFailures.Store(3)
	if jobs, err := b.svc.Lease(b.ctx, wire.LeaseRequest{RunnerID: "r1", Max: 1}); err == nil || len(jobs) != 0 {
		t.Fatalf("lease during the fault = %d jobs, %v", len(jobs), err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		tk := b.task(id)
		if tk.Status == store.StatusQueued {
			if tk.Attempt != 0 {
				t.Fatalf("given back with attempt %d, want 0", tk.Attempt)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task still %s 10 s after the store came back; the give-back was not retried", tk.Status)
		}
	}
	if jobs := b.runTask(store.StatusComplete); len(jobs) != 1 || jobs[0].TaskID != id || jobs[0].Attempt != 1 {
		t.Fatalf("lease after the give-back: %+v", jobs)
	}
}

// A code really deleted after its task was queued still ends the task,
// even with its revision in the lease's cache from an earlier lease.
func TestDeletedCodeEndsLeasedTask(t *testing.T) {
	t.Parallel()
	b := setupUpkeep(t, Config{})
	first := b.queue()
	if jobs, err := b.svc.Lease(b.ctx, wire.LeaseRequest{RunnerID: "r0", Max: 1}); err != nil || len(jobs) != 1 || jobs[0].TaskID != first {
		t.Fatalf("first lease = %+v, %v", jobs, err)
	}
	id := b.queue()
	code, err := b.svc.store.GetCodeByName(b.ctx, b.project, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.svc.DeleteCode(b.ctx, b.project, code.CodeID); err != nil {
		t.Fatal(err)
	}
	if jobs, err := b.svc.Lease(b.ctx, wire.LeaseRequest{RunnerID: "r1", Max: 1}); err != nil || len(jobs) != 0 {
		t.Fatalf("lease of a deleted code's task = %d jobs, %v", len(jobs), err)
	}
	if tk := b.task(id); tk.Status != store.StatusError || !strings.Contains(tk.Msg, "no longer exists") {
		t.Fatalf("task of a deleted code is %s %q, want error saying the revision is gone", tk.Status, tk.Msg)
	}
}

func testZip(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create("run.sh")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "echo hi\n")
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A crash between an upload's blob write and its revision's commit leaves
// a blob no revision names, and a crash mid-write a temporary file. Once
// older than the grace period the sweep removes both; a package a revision
// names, and a young one (an upload in flight), stay.
func TestSweepRemovesCrashLeftovers(t *testing.T) {
	t.Parallel()
	b := setupUpkeep(t, Config{})
	code, err := b.svc.UploadCode(b.ctx, b.project, wire.CodeUpload{Name: "zipped", Runtime: "sh", FileName: "run.sh", Stack: "busybox"},
		bytes.NewReader(testZip(t)))
	if err != nil {
		t.Fatal(err)
	}
	// The crash: a package written, its revision never committed.
	for _, k := range []string{"packages/crashed.zip", "packages/uploading.zip"} {
		if _, err := b.blobs.Put(b.ctx, k, bytes.NewReader(testZip(t))); err != nil {
			t.Fatal(err)
		}
	}
	temp := filepath.Join(b.blobDir, "packages", ".tmp-crashed")
	if err := os.WriteFile(temp, []byte("half a zip"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Everything but the upload in flight is two grace periods old.
	old := time.Now().Add(-2 * defaultBlobGrace)
	for _, p := range []string{temp, filepath.Join(b.blobDir, "packages", "crashed.zip"), filepath.Join(b.blobDir, filepath.FromSlash(code.PackageKey))} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	b.now = time.Now()
	n, err := b.svc.SweepBlobs(b.ctx)
	if err != nil || n != 2 {
		t.Fatalf("SweepBlobs = %d, %v; want the orphan and the temporary file removed", n, err)
	}
	if _, err := os.Stat(temp); !os.IsNotExist(err) {
		t.Errorf("temporary file left by the crash is still there: %v", err)
	}
	if _, err := b.blobs.Get(b.ctx, "packages/crashed.zip"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("orphaned package still there: %v", err)
	}
	for _, k := range []string{code.PackageKey, "packages/uploading.zip"} {
		rc, err := b.blobs.Get(b.ctx, k)
		if err != nil {
			t.Errorf("package %s was removed: %v", k, err)
			continue
		}
		rc.Close()
	}
}

// Finished tasks older than the retention go with their logs, in batches,
// when maintenance starts; recent and unfinished ones stay. The loop stops
// with its context.
func TestMaintenancePrunesOldTasks(t *testing.T) {
	t.Parallel()
	b := setupUpkeep(t, Config{Retention: 24 * time.Hour, PruneBatch: 2})
	var old []string
	for range 5 {
		old = append(old, b.queue())
		b.runTask(store.StatusComplete)
	}
	b.now = b.now.Add(2 * 24 * time.Hour)
	recent := b.queue()
	b.runTask(store.StatusError)
	waiting := b.queue()

	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan struct{})
	go func() { defer close(done); b.svc.RunMaintenance(ctx, time.Hour) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := b.svc.GetTask(b.ctx, b.project, old[len(old)-1])
		if errors.Is(err, ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old tasks not pruned by maintenance: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("RunMaintenance did not return after its context ended")
	}
	for _, id := range old {
		if _, err := b.svc.GetTask(b.ctx, b.project, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("old task %s: %v, want not found", id, err)
		}
		if _, err := b.svc.TaskLog(b.ctx, b.project, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("log of old task %s: %v, want not found", id, err)
		}
	}
	if tk := b.task(recent); tk.Status != store.StatusError {
		t.Errorf("recent task is %s", tk.Status)
	}
	if _, err := b.svc.TaskLog(b.ctx, b.project, recent); err != nil {
		t.Errorf("log of recent task: %v", err)
	}
	if tk := b.task(waiting); tk.Status != store.StatusQueued {
		t.Errorf("queued task is %s", tk.Status)
	}
}

// Retention 0 keeps everything.
func TestZeroRetentionKeepsTasks(t *testing.T) {
	t.Parallel()
	b := setupUpkeep(t, Config{})
	id := b.queue()
	b.runTask(store.StatusComplete)
	b.now = b.now.Add(100 * 365 * 24 * time.Hour)
	if n, err := b.svc.PruneTasks(b.ctx); err != nil || n != 0 {
		t.Fatalf("PruneTasks with no retention = %d, %v", n, err)
	}
	b.task(id)
}

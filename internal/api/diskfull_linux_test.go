package api_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/api"
	blobfs "github.com/mayfly-run/mayfly/internal/blob/fs"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store/sqlite"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// mountTmpfs mounts a tmpfs of size at a new directory and unmounts it when
// the test ends (after everything registered later, such as the store, is
// closed).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		testenv.Integration(t, "root (to mount a small tmpfs)", errors.New("not running as root"))
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		testenv.Integration(t, "mounting a tmpfs", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// A client fills the server's disk by queueing tasks with big payloads. The
// server must say so (507 and a clear msg, not 500 "Internal error"), stop
// reporting ready, keep every task it acknowledged, and work again once
// space is freed.
func TestDiskFullAnswers507AndLosesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := mountTmpfs(t, "4m")
	db, err := sqlite.Open(ctx, filepath.Join(dir, "mayfly.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := blobfs.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	const hold = time.Second
	svc := service.New(db, blobs, service.Config{KnownStacks: []string{"busybox"},
		DataDir: dir, MinFreeBytes: 256 << 10, NoSpaceHold: hold}, quiet)
	boot, err := svc.EnsureBootstrap(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(svc, api.Options{Version: "test", Log: quiet}))
	t.Cleanup(srv.Close)
	b := &bundle{t: t, srv: srv, svc: svc, st: db, project: boot.ProjectID, token: boot.Token, dataDir: dir}
	b.pushHello()

	ready := func() (int, string) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if st, body := ready(); st != 200 {
		t.Fatalf("readyz on an empty disk: %d %s", st, body)
	}

	// Fill the disk with acknowledged tasks.
	payloads := map[string]string{}
	var st507 int
	var body507 []byte
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("100 payloads of 200 KiB fitted on a 4 MiB disk")
		}
		raw := make([]byte, 100<<10)
		rand.Read(raw)
		payload := hex.EncodeToString(raw)
		req, _ := json.Marshal(map[string]any{"tasks": []map[string]any{{"code_name": "hello", "payload": payload}}})
		st, body := b.queue(string(req))
		if st != 200 {
			st507, body507 = st, body
			break
		}
		payloads[decode[wire.QueueResponse](t, body).Tasks[0].ID] = payload
	}
	t.Logf("disk full after %d acknowledged tasks", len(payloads))
	if len(payloads) == 0 {
		t.Fatal("no task fitted at all")
	}
	wantErr(t, st507, body507, http.StatusInsufficientStorage, "disk is full")

	// A code package does not fit either, and says so the same way.
	big := make([]byte, 1<<20)
	rand.Read(big)
	st, body := b.upload(`{"name":"big","runtime":"sh","file_name":"run.sh"}`,
		makeZip(t, zentry{name: "run.sh", data: "true\n", mode: 0o755}, zentry{name: "blob.bin", data: string(big), mode: 0o644}))
	wantErr(t, st, body, http.StatusInsufficientStorage, "disk is full")

	if st, body := ready(); st != http.StatusServiceUnavailable || !strings.Contains(body, "disk full") {
		t.Fatalf("readyz right after a disk-full write: %d %s, want 503 saying the disk is full", st, body)
	}
	// Past the hold, the free space of the data directory still says no.
	time.Sleep(hold + 100*time.Millisecond)
	if st, body := ready(); st != http.StatusServiceUnavailable || !strings.Contains(body, "bytes free") {
		t.Fatalf("readyz on a full disk: %d %s, want 503 naming the free space", st, body)
	}

	// Free space: the disk grows under the running server.
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size=64m"); err != nil {
		t.Fatalf("grow the tmpfs: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, body := ready()
		if st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz after space was freed: %d %s", st, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for taskID, payload := range payloads {
		st, body := b.do("GET", b.url("/tasks/"+taskID), nil)
		if st != 200 {
			t.Fatalf("acknowledged task %s after the disk was full: %d %s", taskID, st, body)
		}
		if got := decode[wire.Task](t, body).Payload; got != payload {
			t.Fatalf("acknowledged task %s lost its payload (%d bytes, want %d)", taskID, len(got), len(payload))
		}
	}
	if st, body := b.queue(`{"tasks":[{"code_name":"hello","payload":"after"}]}`); st != 200 {
		t.Fatalf("queue after space was freed: %d %s", st, body)
	}
	// And on disk, not only in a cache: a fresh open of the store has them.
	st2, err := sqlite.Open(ctx, filepath.Join(dir, "mayfly.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	for taskID := range payloads {
		if _, err := st2.GetTask(ctx, boot.ProjectID, taskID); err != nil {
			t.Fatalf("task %s on reopen: %v", taskID, err)
		}
	}
}

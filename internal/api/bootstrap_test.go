package api_test

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/mayfly-run/mayfly/internal/api"
	blobfs "github.com/mayfly-run/mayfly/internal/blob/fs"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store/sqlite"
)

// An operator who rotates MAYFLY_BOOTSTRAP_TOKEN after a leak restarts the
// server: the leaked token must answer 401 from then on.
func TestRotatedBootstrapTokenIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, err := sqlite.Open(t.Context(), filepath.Join(dir, "mayfly.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	blobs, err := blobfs.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("0123456789abcdef0123456789abcdef")
	const project, leaked, fresh = "5f0000000000000000000001", "leaked-bootstrap-token", "fresh-bootstrap-token"
	start := func(token string) *bundle {
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		svc := service.New(db, blobs, service.Config{TokenHashKey: key}, quiet)
		if _, err := svc.EnsureBootstrap(t.Context(), project, token); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(api.New(svc, api.Options{Version: "test", Log: quiet}))
		t.Cleanup(srv.Close)
		return &bundle{t: t, srv: srv, svc: svc, st: db, project: project, token: token, dataDir: dir}
	}
	first := start(leaked)
	if st, body := first.do("GET", first.url(""), nil); st != 200 {
		t.Fatalf("bootstrap token on first start: %d %s", st, body)
	}
	first.srv.Close()

	second := start(fresh)
	if st, body := second.do("GET", second.url(""), nil); st != 200 {
		t.Fatalf("new bootstrap token after the restart: %d %s", st, body)
	}
	st, body := second.do("GET", second.url(""), nil, "Authorization", "OAuth "+leaked)
	wantErr(t, st, body, 401, "Invalid token")
}

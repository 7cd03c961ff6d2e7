package queuetest_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/runner/queuetest"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

var (
	_ runner.Queue = (*service.Service)(nil)
	_ runner.Queue = (*client.RunnerQueue)(nil)
)

// The embedded runner's queue: the service itself.
func TestService(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T) (runner.Queue, queuetest.Fixture) {
		srv := queuetest.NewService(t)
		return srv.Svc, queuetest.Fixture{Server: srv,
			IsLeaseLost: func(err error) bool { return errors.Is(err, service.ErrLeaseLost) }}
	})
}

// A remote runner's queue: the HTTP client against the real API handler
// over loopback.
func TestHTTP(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T) (runner.Queue, queuetest.Fixture) {
		srv := queuetest.NewService(t)
		hs := httptest.NewServer(api.New(srv.Svc, api.Options{Version: "test"}))
		t.Cleanup(hs.Close)
		return client.NewRunnerQueue(hs.URL, srv.AdminToken), queuetest.Fixture{Server: srv,
			IsLeaseLost: client.IsLeaseLost,
			BadCredentials: func() runner.Queue {
				return client.NewRunnerQueue(hs.URL, "not-a-runner-token-at-all")
			}}
	})
}

// A runner token over HTTP: good for its own clusters only, the server
// knows the runner by the token whatever id it claims, and it fetches
// only packages of tasks it holds. A refusal is never a lost lease, so a
// runner does not abandon a task over it.
func TestHTTPRunnerToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := queuetest.NewService(t)
	hs := httptest.NewServer(api.New(srv.Svc, api.Options{Version: "test"}))
	t.Cleanup(hs.Close)
	tok, secret, err := srv.Svc.CreateToken(ctx, service.NewToken{Kind: "runner", Name: "gpu-box", Clusters: []string{"gpu"}})
	if err != nil {
		t.Fatal(err)
	}
	q := client.NewRunnerQueue(hs.URL, secret)
	revs := map[string]string{}
	for _, name := range []string{"held", "other"} {
		code, err := srv.Svc.UploadCode(ctx, srv.ProjectID, wire.CodeUpload{Name: name, Stack: "busybox", Command: "true"},
			bytes.NewReader(zipped(t)))
		if err != nil {
			t.Fatal(err)
		}
		revs[name] = code.ID // the latest revision's
	}
	if _, err := srv.Svc.QueueTasks(ctx, srv.ProjectID, []wire.NewTask{{CodeName: "held", Cluster: "gpu"}, {CodeName: "other"}}); err != nil {
		t.Fatal(err)
	}
	_, err = q.Lease(ctx, wire.LeaseRequest{RunnerID: "claimed", Max: 1, Clusters: []string{"default"}})
	if err == nil || client.IsLeaseLost(err) || !strings.Contains(err.Error(), "403") {
		t.Fatalf("lease of a cluster the token is not for: %v", err)
	}
	jobs, err := q.Lease(ctx, wire.LeaseRequest{RunnerID: "claimed", Max: 5, Clusters: []string{"gpu"}})
	if err != nil || len(jobs) != 1 || jobs[0].CodeName != "held" {
		t.Fatalf("lease of gpu: %+v %v", jobs, err)
	}
	j := jobs[0]
	tk, err := srv.Svc.GetTask(ctx, srv.ProjectID, j.TaskID)
	if err != nil || tk.RunnerID != tok.ID {
		t.Fatalf("the server knows the runner as %q, want the token's id %s (%v)", tk.RunnerID, tok.ID, err)
	}
	// Whatever id the runner claims, its reports are its token's.
	if err := q.Started(ctx, j.Lease("claimed")); err != nil {
		t.Fatalf("started: %v", err)
	}
	rc, err := q.OpenPackage(ctx, j.Code.RevisionID)
	if err != nil {
		t.Fatalf("package of a held task: %v", err)
	}
	rc.Close()
	if _, err := q.OpenPackage(ctx, revs["other"]); err == nil || client.IsLeaseLost(err) {
		t.Fatalf("package of a task the runner does not hold: %v", err)
	}
	if err := q.Finish(ctx, j.Lease("claimed"), wire.FinishRequest{Status: string(store.StatusComplete)}); err != nil {
		t.Fatalf("finish: %v", err)
	}
}

func zipped(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("x")
	w.Write([]byte("x"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

package bench

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/mayfly-run/mayfly/internal/api"
	blobfs "github.com/mayfly-run/mayfly/internal/blob/fs"
	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/stack"
	"github.com/mayfly-run/mayfly/internal/store/sqlite"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// codeName is the trivial code every scenario queues. Its package is the
// same bytes in every run, so the image the runner bakes from it is found
// again rather than made anew each time.
const codeName = "bench-true"

// server is Mayfly as `mayfly server` assembles it (SQLite store, file blob
// store, service, HTTP API on a loopback listener, embedded runner), in
// this process, on its own data directory.
type server struct {
	st      *sqlite.Store
	svc     *service.Service
	client  *client.Client
	project string
	codeID  string
	queued  int // tasks put straight into the store by fill
	queue   *countingQueue
	stop    func()
}

// countingQueue is the runner's queue, the service itself, counting the
// tasks whose end was recorded, so a scenario learns that all its tasks
// are done without polling the API for each.
type countingQueue struct {
	*service.Service
	finished atomic.Int64
	kick     chan struct{}
}

func (q *countingQueue) Finish(ctx context.Context, lease wire.LeaseRef, req wire.FinishRequest) error {
	err := q.Service.Finish(ctx, lease, req)
	if err == nil {
		q.finished.Add(1)
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
	return err
}

// waitFinished blocks until n tasks have been finished since the server
// started.
func (q *countingQueue) waitFinished(ctx context.Context, n int64) error {
	for q.finished.Load() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d tasks to end (%d did): %w", n, q.finished.Load(), ctx.Err())
		case <-q.kick:
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

type serverOptions struct {
	dir      string
	driver   driver.Driver
	image    string
	capacity int
	http     bool // serve the API on a loopback listener and give a client
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startServer starts a server with the trivial code uploaded. Its runner
// uses the settings `mayfly server` defaults to, so what is measured is
// what a user gets; without a driver there is no runner.
func startServer(ctx context.Context, o serverOptions) (_ *server, err error) {
	if err := os.MkdirAll(o.dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(o.dir, "mayfly.db"))
	if err != nil {
		return nil, err
	}
	var cleanups []func()
	defer func() {
		if err != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
			st.Close()
		}
	}()
	blobs, err := blobfs.New(filepath.Join(o.dir, "blobs"))
	if err != nil {
		return nil, err
	}
	svc := service.New(st, blobs, service.Config{KnownStacks: stack.Names()}, quiet)
	boot, err := svc.EnsureBootstrap(ctx, "", "")
	if err != nil {
		return nil, err
	}
	s := &server{st: st, svc: svc, project: boot.ProjectID,
		queue: &countingQueue{Service: svc, kick: make(chan struct{}, 1)}}

	if o.http {
		// The server's own limits, so the figures are those of `mayfly
		// server` as shipped.
		lim := api.DefaultLimits()
		ln, err := api.Listen("127.0.0.1:0", lim, quiet)
		if err != nil {
			return nil, err
		}
		srv := api.NewHTTPServer(api.New(svc, api.Options{Version: "bench", Log: quiet}), lim, quiet)
		go func() { _ = srv.Serve(ln) }()
		cleanups = append(cleanups, func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		})
		// One keep-alive connection per runner slot and then some, as a
		// client queueing and polling in a loop would hold.
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: time.Minute}
		s.client = client.New("http://"+ln.Addr().String(), boot.Token, boot.ProjectID, client.WithHTTPClient(hc))
		cleanups = append(cleanups, hc.CloseIdleConnections)
	}

	if s.codeID, err = uploadTrivialCode(ctx, s); err != nil {
		return nil, err
	}
	s.stop = func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
		st.Close()
	}
	if o.driver == nil {
		return s, nil
	}

	image := o.image
	if image == "" {
		image = stack.Image("busybox")
	}
	rid := id.New()
	run, err := runner.New(runner.Config{
		ID: rid, Capacity: o.capacity, CacheDir: filepath.Join(o.dir, "cache", "packages"),
		RunDir:      filepath.Join(o.dir, "run"),
		StackImage:  func(string) string { return image },
		IsLeaseLost: func(err error) bool { return errors.Is(err, service.ErrLeaseLost) },
		Log:         quiet,
	}, s.queue, o.driver)
	if err != nil {
		return nil, fmt.Errorf("create runner: %w", err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = run.Run(runCtx) }()
	cleanups = append(cleanups, func() {
		stopRun()
		<-done
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = run.Drain(dctx)
	})
	return s, nil
}

// uploadTrivialCode uploads a code whose command is `true`, through the API
// when there is one, and returns the code's id.
func uploadTrivialCode(ctx context.Context, s *server) (string, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create("README")
	if err != nil {
		return "", fmt.Errorf("build code package: %w", err)
	}
	if _, err := io.WriteString(w, "a code that does nothing\n"); err != nil {
		return "", fmt.Errorf("build code package: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("build code package: %w", err)
	}
	up := wire.CodeUpload{Name: codeName, Stack: "busybox", Command: "true"}
	if s.client != nil {
		r, err := s.client.UploadCode(ctx, up, &buf)
		if err != nil {
			return "", fmt.Errorf("upload code %s: %w", codeName, err)
		}
		return r.ID, nil
	}
	c, err := s.svc.UploadCode(ctx, s.project, up, &buf)
	if err != nil {
		return "", fmt.Errorf("upload code %s: %w", codeName, err)
	}
	return c.CodeID, nil
}

package bench

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/stack"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// codeName is the trivial code every scenario queues. Its package is the
// same bytes in every run, so the image the runner bakes from it is found
// again rather than made anew each time.
const codeName = "bench-true"

// server is Mayfly as `mayfly server` assembles it, through the same
// assembly (SQLite store, file blob store, service, HTTP API on a loopback
// listener, embedded runner), in this process, on its own data directory.
type server struct {
	st      store.Store
	svc     *service.Service
	client  *client.Client
	project string
	codeID  string
	queued  int // tasks put straight into the store by fill
	queue   *countingQueue
	dataDir string
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
	return waitAllFinished(ctx, n, q.kick, q)
}

// waitAllFinished blocks until the servers of qs, which share kick, have
// finished n tasks between them.
func waitAllFinished(ctx context.Context, n int64, kick chan struct{}, qs ...*countingQueue) error {
	done := func() int64 {
		var d int64
		for _, q := range qs {
			d += q.finished.Load()
		}
		return d
	}
	for done() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d tasks to end (%d did): %w", n, done(), ctx.Err())
		case <-kick:
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
	// databaseURL and blobURL are the store and the code packages, as
	// --database-url and --blob-url take them; empty means SQLite and
	// files in dir.
	databaseURL, blobURL string
	// kick, when set, is signalled at every finish instead of a channel
	// of the server's own, so one waiter can count the finishes of
	// several servers.
	kick chan struct{}
	// noCode skips the upload of the trivial code: a second server on a
	// shared store finds the first one's.
	noCode bool
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startServer starts a server with the trivial code uploaded. Its runner
// uses the settings `mayfly server` defaults to, so what is measured is
// what a user gets; without a driver there is no runner.
func startServer(ctx context.Context, o serverOptions) (_ *server, err error) {
	cfg := assembly.Config{DataDir: o.dir, DatabaseURL: o.databaseURL, BlobURL: o.blobURL, Service: service.Config{KnownStacks: stack.Names()}, Version: "bench",
		DrainGrace: time.Minute, Log: quiet}
	if o.http {
		// The server's own limits, so the figures are those of `mayfly
		// server` as shipped.
		cfg.Listen, cfg.Limits = "127.0.0.1:0", api.DefaultLimits()
	}
	var queue *countingQueue
	kick := o.kick
	if kick == nil {
		kick = make(chan struct{}, 1)
	}
	if o.driver != nil {
		image := o.image
		if image == "" {
			image = stack.Image("busybox")
		}
		cfg.Driver = o.driver
		cfg.Runner = &runner.Config{ID: id.New(), Capacity: o.capacity, StackImage: func(string) string { return image }}
		cfg.RunnerQueue = func(svc *service.Service) runner.Queue {
			queue = &countingQueue{Service: svc, kick: kick}
			return queue
		}
	}
	a, err := assembly.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.Stop()
		}
	}()
	if queue == nil {
		queue = &countingQueue{Service: a.Service, kick: kick}
	}
	s := &server{st: a.Store, svc: a.Service, project: a.Bootstrap.ProjectID, dataDir: a.DataDir, queue: queue, stop: a.Stop}
	if o.http {
		// One keep-alive connection per runner slot and then some, as a
		// client queueing and polling in a loop would hold.
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: time.Minute}
		s.client = client.New("http://"+a.Addr, a.Bootstrap.Token, a.Bootstrap.ProjectID, client.WithHTTPClient(hc))
		s.stop = func() { hc.CloseIdleConnections(); a.Stop() }
	}
	if o.noCode {
		return s, nil
	}
	if s.codeID, err = uploadTrivialCode(ctx, s); err != nil {
		return nil, err
	}
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

// Package assembly puts Mayfly together from one Config: the store and the
// code package blobs, the keys, the service, the HTTP API, maintenance, the
// scheduler and an embedded runner. It starts them in that order and stops
// them in reverse, waiting for every goroutine it started, so nothing is
// still writing when the store closes. `mayfly server`, `mayfly runner` and
// the benchmark harness all build through it: there is one way the system
// is put together.
//
// Start order, and what Stop does in reverse:
//
//	store (SQLite or PostgreSQL), blobs (files or S3), keys  ->  close the store
//	service, bootstrap
//	HTTP API            ->  end long-polls, shut the listener down
//	wake-up relay       ->  cancel, wait (PostgreSQL: LISTEN/NOTIFY)
//	leader's work       ->  cancel, wait, give the leader lock up:
//	  maintenance           (a prune may be mid-batch)
//	  scheduler             (no run is half claimed)
//	embedded runner     ->  stop leasing, drain within DrainGrace
package assembly

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/blob"
	blobopen "github.com/mayfly-run/mayfly/internal/blob/open"
	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/leader"
	"github.com/mayfly-run/mayfly/internal/metrics"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/scheduler"
	"github.com/mayfly-run/mayfly/internal/secret"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	storeopen "github.com/mayfly-run/mayfly/internal/store/open"
)

// Config is everything a server is built from.
type Config struct {
	// DataDir holds the SQLite store, the blobs, the key files and the
	// embedded runner's cache and sockets. It is made absolute, because
	// task socket directories under it are bind-mounted by the container
	// engine, which knows no working directory of ours.
	DataDir string
	// DatabaseURL is the store: "" for SQLite in DataDir,
	// sqlite:///path, or postgres://... (several servers may share one).
	DatabaseURL string
	// BlobURL is where code packages are kept: "" for the blobs folder in
	// DataDir, file:///path, or s3://bucket/prefix (endpoint, region and
	// credentials from the AWS variables).
	BlobURL string
	// Service holds the limits; the keys and DataDir are filled in here.
	Service          service.Config
	BootstrapProject string
	BootstrapToken   string

	// Listen is the API's address; "" serves no HTTP (the embedded runner
	// and callers use the service directly).
	Listen  string
	Limits  api.Limits
	Version string

	// MaintenanceInterval is how often expired leases are rescued; 0 =
	// no maintenance. The first rescue waits RescueDelay, so that runners
	// whose leases ran out while no server was up renew them first.
	MaintenanceInterval time.Duration
	RescueDelay         time.Duration
	Scheduler           bool

	// Runner, when set, is an embedded runner on Driver. Its ID, CacheDir
	// and RunDir default to a persisted id, a folder in DataDir and RunDir's
	// choice.
	Runner     *runner.Config
	Driver     driver.Driver
	DrainGrace time.Duration
	// RunnerQueue, when set, is what the embedded runner reaches the
	// service through (the benchmark counts finishes this way).
	RunnerQueue func(*service.Service) runner.Queue

	Log *slog.Logger
	// Out gets what an operator must see once: the bootstrap credentials
	// and the address served.
	Out io.Writer
}

// Server is a started assembly.
type Server struct {
	Store   store.Store
	Blobs   blob.Store
	Service *service.Service
	// Metrics is what /metrics serves: the service's, the API's and the
	// embedded runner's.
	Metrics   *metrics.Metrics
	Runner    *runner.Runner
	Bootstrap service.Bootstrap
	// Addr is the address the API listens on, "" without one.
	Addr string
	// DataDir is Config.DataDir made absolute.
	DataDir string

	log      *slog.Logger
	leading  atomic.Bool
	serveErr chan error
	stops    []func() // in start order; Stop runs them in reverse
	stopOnce sync.Once
}

// Start builds and starts everything Config asks for. On error, what was
// started is stopped again.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	s := &Server{log: log, serveErr: make(chan error, 1)}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	s.DataDir = cfg.DataDir

	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = filepath.Join(cfg.DataDir, "mayfly.db")
	}
	st, err := storeopen.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("open the store: %w", err)
	}
	s.Store = st
	s.stops = append(s.stops, func() { st.Close() })
	if cfg.BlobURL == "" {
		cfg.BlobURL = filepath.Join(cfg.DataDir, "blobs")
	}
	// The S3 store checks its bucket and credentials as it opens: bounded,
	// so an endpoint that does not answer fails the start.
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	s.Blobs, err = blobopen.Open(octx, cfg.BlobURL)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("open the code package store: %w", err)
	}
	sc := cfg.Service
	if sc.TaskTokenKey, err = secret.LoadOrCreateKey(filepath.Join(cfg.DataDir, "task-token.key"), "task token key"); err != nil {
		return nil, err
	}
	if sc.TokenHashKey, err = secret.LoadOrCreateKey(filepath.Join(cfg.DataDir, "token-hash.key"), "token hash key"); err != nil {
		return nil, err
	}
	sc.DataDir = cfg.DataDir
	s.Metrics = metrics.New()
	s.Metrics.WatchQueue(func(ctx context.Context) (int64, time.Time, error) {
		return st.QueueStats(ctx, time.Now().UTC())
	})
	sc.Metrics = s.Metrics
	s.Service = service.New(st, s.Blobs, sc, log)
	if err := s.bootstrap(ctx, cfg, out); err != nil {
		return nil, err
	}
	if cfg.Listen != "" {
		if err := s.serve(cfg, out); err != nil {
			return nil, err
		}
	}
	s.relay()
	if cfg.MaintenanceInterval > 0 || cfg.Scheduler {
		s.lead(cfg)
	}
	if cfg.Runner != nil {
		if err := s.embedRunner(cfg); err != nil {
			return nil, err
		}
	}
	log.Info("server started", "listen", s.Addr, "data_dir", cfg.DataDir, "runner", cfg.Runner != nil)
	return s, nil
}

func (s *Server) bootstrap(ctx context.Context, cfg Config, out io.Writer) error {
	boot, err := s.Service.EnsureBootstrap(ctx, cfg.BootstrapProject, cfg.BootstrapToken)
	if err != nil {
		return err
	}
	s.Bootstrap = boot
	if boot.Replaced {
		s.log.Warn("bootstrap token replaced: the previous bootstrap token no longer works")
	}
	if boot.Created {
		fmt.Fprintf(out, "Created project and admin token (shown once):\n")
		if boot.ProjectID != "" {
			fmt.Fprintf(out, "  MAYFLY_PROJECT=%s\n", boot.ProjectID)
		}
		if boot.Token != "" {
			fmt.Fprintf(out, "  MAYFLY_TOKEN=%s\n", boot.Token)
		}
	}
	return nil
}

func (s *Server) serve(cfg Config, out io.Writer) error {
	ln, err := api.Listen(cfg.Listen, cfg.Limits, s.log)
	if err != nil {
		return err
	}
	// Remote runners wait in long-polls of up to a minute; shutdown ends
	// those at once (they come back to the next server), instead of
	// holding the stop up for the longest of them.
	polls, endPolls := context.WithCancel(context.Background())
	opts := api.Options{Version: cfg.Version, Log: s.log, Metrics: s.Metrics}
	if p, ok := cfg.Driver.(driver.Pinger); ok && cfg.Runner != nil {
		opts.Ready = func(ctx context.Context) error {
			if err := p.Ping(ctx); err != nil {
				return fmt.Errorf("container engine: %w", err)
			}
			return nil
		}
	}
	srv := api.NewHTTPServer(endLongPolls(api.New(s.Service, opts), polls),
		cfg.Limits, s.log)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.serveErr <- fmt.Errorf("http server: %w", err)
		}
	}()
	s.Addr = ln.Addr().String()
	fmt.Fprintf(out, "Mayfly %s listening on http://%s\n", cfg.Version, s.Addr)
	s.stops = append(s.stops, func() {
		endPolls()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			s.log.Warn("http shutdown", "err", err)
		}
		<-done
	})
	return nil
}

// endLongPolls makes the runner's lease long-polls end when stop does.
func endLongPolls(h http.Handler, stop context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/runner/lease" {
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			defer context.AfterFunc(stop, cancel)()
			r = r.WithContext(ctx)
		}
		h.ServeHTTP(w, r)
	})
}

// relay carries wake-ups between the servers sharing the store, when it
// is shared (PostgreSQL).
func (s *Server) relay() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Service.RunRelay(ctx) }()
	s.stops = append(s.stops, func() { cancel(); <-done })
}

// lead runs maintenance and the scheduler on one server at a time: this
// one while it holds the store's leader lock, or always when the store
// has no lock to share (SQLite: one server).
func (s *Server) lead(cfg Config) {
	locker, _ := s.Store.(store.Locker)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		leader.Run(ctx, locker, "leader", leader.Config{Log: s.log, OnChange: s.leading.Store}, func(ctx context.Context) {
			var wg sync.WaitGroup
			if cfg.MaintenanceInterval > 0 {
				wg.Go(func() { s.maintain(ctx, cfg.MaintenanceInterval, cfg.RescueDelay) })
			}
			if cfg.Scheduler {
				wg.Go(func() { _ = scheduler.New(s.Service, scheduler.Config{Log: s.log}).Run(ctx) })
			}
			wg.Wait()
		})
	}()
	s.stops = append(s.stops, func() { cancel(); <-done })
}

// Leading reports whether this server runs the scheduler and maintenance
// now.
func (s *Server) Leading() bool { return s.leading.Load() }

func (s *Server) maintain(ctx context.Context, interval, firstAfter time.Duration) {
	// Leases that ran out while no server led belong to runners that may
	// not have reached one: they renew them within a heartbeat of its
	// return, so the rescue waits before it takes any task from a runner
	// still working on it.
	select {
	case <-ctx.Done():
		return
	case <-time.After(firstAfter):
	}
	s.Service.RunMaintenance(ctx, interval)
}

func (s *Server) embedRunner(cfg Config) error {
	if cfg.Driver == nil {
		return errors.New("an embedded runner needs a driver")
	}
	rc := *cfg.Runner
	if rc.ID == "" {
		rid, err := RunnerID(cfg.DataDir)
		if err != nil {
			return err
		}
		rc.ID = rid
	}
	if rc.CacheDir == "" {
		rc.CacheDir = filepath.Join(cfg.DataDir, "cache", "packages")
	}
	if rc.RunDir == "" {
		rc.RunDir = RunDir(cfg.DataDir, rc.ID)
	}
	if rc.IsLeaseLost == nil {
		rc.IsLeaseLost = func(err error) bool { return errors.Is(err, service.ErrLeaseLost) }
	}
	if rc.Log == nil {
		rc.Log = s.log
	}
	if rc.Metrics == nil {
		rc.Metrics = s.Metrics
	}
	var q runner.Queue = s.Service
	if cfg.RunnerQueue != nil {
		q = cfg.RunnerQueue(s.Service)
	}
	run, err := runner.New(rc, q, cfg.Driver)
	if err != nil {
		return err
	}
	s.Runner = run
	s.stops = append(s.stops, RunRunner(run, cfg.DrainGrace, s.log))
	return nil
}

// RunRunner runs r until the returned stop is called; stop makes it take
// no more tasks, lets the running ones finish within grace (the rest run
// again elsewhere once their leases run out) and returns when every task
// goroutine has ended. The embedded runner and `mayfly runner` both run
// through it.
func RunRunner(r *runner.Runner, grace time.Duration, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	return func() {
		cancel()
		<-done
		log.Info("draining running tasks", "grace", grace)
		dctx, cancelDrain := context.WithTimeout(context.Background(), grace)
		defer cancelDrain()
		if err := r.Drain(dctx); err != nil {
			log.Warn("drain incomplete", "err", err)
		}
	}
}

// Err reports a failure of the HTTP server, after which it serves no more.
func (s *Server) Err() <-chan error { return s.serveErr }

// Stop stops everything in reverse start order and waits for it. Safe to
// call more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		for i := len(s.stops) - 1; i >= 0; i-- {
			s.stops[i]()
		}
		s.log.Info("stopped")
	})
}

// RunnerID keeps a runner's id (the embedded one's, or a remote runner's)
// in dataDir across restarts, so a restarted runner recognises and
// removes its own orphaned containers.
func RunnerID(dataDir string) (string, error) {
	p := filepath.Join(dataDir, "runner-id")
	if b, err := os.ReadFile(p); err == nil && id.Valid(strings.TrimSpace(string(b))) {
		return strings.TrimSpace(string(b)), nil
	}
	rid := id.New()
	if err := os.WriteFile(p, []byte(rid+"\n"), 0o640); err != nil {
		return "", fmt.Errorf("save runner id: %w", err)
	}
	return rid, nil
}

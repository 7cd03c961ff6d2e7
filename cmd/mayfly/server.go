package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/driver/docker"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/stack"
)

// serverConfig is everything `mayfly server` can be told.
type serverConfig struct {
	Listen         string
	DataDir        string
	BlobURL        string
	DatabaseURL    string
	Runner         bool
	RunnerCapacity int
	RunnerClusters []string
	taskLimits
	LeaseDuration    time.Duration
	MaxAttempts      int
	MaxPayloadBytes  int64
	MaxCodeBytes     int64
	MaxUnpackedBytes int64
	MaxPackageFiles  int
	MaxLogBytes      int64
	DefaultTimeout   int
	MaxTimeout       int
	MaxDelay         int
	MinRunEvery      time.Duration
	MinFreeBytes     int64
	BootstrapProject string
	BootstrapToken   string
	LogLevel         string
	LogFormat        string

	// Quotas are every project's limits unless it sets its own.
	Quotas service.Quotas

	Retention      time.Duration
	RunnerCacheTTL time.Duration
	RunnerWarm     warmConfig
	RunnerDriver   string
	// Limits guard the listener against clients that hold connections or
	// flood requests.
	Limits api.Limits
}

func newServerCmd() *cobra.Command {
	var c serverConfig
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the Mayfly server: API, durable queue and an embedded runner",
		Long: `Run the Mayfly server: the IronWorker v2 REST API, the durable task queue
(SQLite in --data-dir), code package storage (files in --data-dir) and, unless
--runner=false, an embedded runner that starts one Docker container per task.

On an empty store the server creates a project and an admin token and prints
them; MAYFLY_BOOTSTRAP_PROJECT and MAYFLY_BOOTSTRAP_TOKEN fix them instead. A
new MAYFLY_BOOTSTRAP_TOKEN replaces the previous bootstrap token, which stops
working. The keys in task-token.key and token-hash.key in --data-dir are
made on first start; every token depends on them, so back them up with the
store (a damaged key file stops the start instead of being replaced).
Every flag can also be set by the environment variable named in its help.
SIGTERM or SIGINT drains: no new tasks are taken, running ones get
--drain-grace to finish, and the rest run again after a restart.`,
		Example: `  mayfly server
  MAYFLY_LISTEN=0.0.0.0:8080 MAYFLY_DATA_DIR=/var/lib/mayfly mayfly server --runner-capacity 8`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServer(ctx, c, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	d := service.DefaultConfig()
	f.StringVar(&c.Listen, "listen", envStr("MAYFLY_LISTEN", "127.0.0.1:8080"), "address to serve HTTP on (MAYFLY_LISTEN)")
	f.StringVar(&c.DataDir, "data-dir", envStr("MAYFLY_DATA_DIR", "data"), "where the SQLite store and code packages live (MAYFLY_DATA_DIR)")
	f.StringVar(&c.DatabaseURL, "database-url", envStr("MAYFLY_DATABASE_URL", ""), "the store: sqlite:///path, or postgres://user:pass@host/db?sslmode=... that several servers may share; default SQLite in --data-dir (MAYFLY_DATABASE_URL)")
	f.StringVar(&c.BlobURL, "blob-url", envStr("MAYFLY_BLOB_URL", ""), "where code packages are kept: file:///path, or s3://bucket/prefix with endpoint, region and credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; default the blobs folder in --data-dir (MAYFLY_BLOB_URL)")
	f.BoolVar(&c.Runner, "runner", envBool("MAYFLY_RUNNER", true), "run tasks in this process too (MAYFLY_RUNNER)")
	f.IntVar(&c.RunnerCapacity, "runner-capacity", envInt("MAYFLY_RUNNER_CAPACITY", 4), "tasks the embedded runner runs at once (MAYFLY_RUNNER_CAPACITY)")
	f.StringSliceVar(&c.RunnerClusters, "runner-clusters", envList("MAYFLY_RUNNER_CLUSTERS", []string{""}), "clusters the embedded runner serves; empty is the default cluster (MAYFLY_RUNNER_CLUSTERS)")
	c.taskLimits.register(f)
	c.RunnerWarm.register(f, "runner-")
	f.DurationVar(&c.LeaseDuration, "lease-duration", envDuration("MAYFLY_LEASE_DURATION", d.LeaseDuration), "a runner that is silent this long loses its task (MAYFLY_LEASE_DURATION)")
	f.IntVar(&c.MaxAttempts, "max-attempts", envInt("MAYFLY_MAX_ATTEMPTS", d.MaxAttempts), "leases a task may lose before it ends killed (MAYFLY_MAX_ATTEMPTS)")
	f.Int64Var(&c.MaxPayloadBytes, "max-payload-bytes", envInt64("MAYFLY_MAX_PAYLOAD_BYTES", d.MaxPayloadBytes), "largest task payload (MAYFLY_MAX_PAYLOAD_BYTES)")
	f.Int64Var(&c.MaxCodeBytes, "max-code-bytes", envInt64("MAYFLY_MAX_CODE_BYTES", d.MaxCodeBytes), "largest code package zip (MAYFLY_MAX_CODE_BYTES)")
	f.Int64Var(&c.MaxUnpackedBytes, "max-unpacked-bytes", envInt64("MAYFLY_MAX_UNPACKED_BYTES", d.Package.MaxUnpackedBytes), "largest unpacked code package (MAYFLY_MAX_UNPACKED_BYTES)")
	f.IntVar(&c.MaxPackageFiles, "max-package-files", envInt("MAYFLY_MAX_PACKAGE_FILES", d.Package.MaxFiles), "most entries in a code package (MAYFLY_MAX_PACKAGE_FILES)")
	f.Int64Var(&c.MaxLogBytes, "max-log-bytes", envInt64("MAYFLY_MAX_LOG_BYTES", d.MaxLogBytes), "log kept per task; the rest is cut with a marker (MAYFLY_MAX_LOG_BYTES)")
	f.IntVar(&c.DefaultTimeout, "default-timeout", envInt("MAYFLY_DEFAULT_TIMEOUT", d.DefaultTimeout), "task timeout in seconds when none is given (MAYFLY_DEFAULT_TIMEOUT)")
	f.IntVar(&c.MaxTimeout, "max-timeout", envInt("MAYFLY_MAX_TIMEOUT", d.MaxTimeout), "largest task timeout in seconds, 0 = no limit (MAYFLY_MAX_TIMEOUT)")
	f.IntVar(&c.MaxDelay, "max-delay", envInt("MAYFLY_MAX_DELAY", 0), "largest task delay in seconds, 0 = no limit (MAYFLY_MAX_DELAY)")
	f.DurationVar(&c.MinRunEvery, "min-run-every", envDuration("MAYFLY_MIN_RUN_EVERY", time.Minute), "shortest run_every a schedule may have (MAYFLY_MIN_RUN_EVERY)")
	f.Int64Var(&c.MinFreeBytes, "min-free-bytes", envInt64("MAYFLY_MIN_FREE_BYTES", 64<<20), "/readyz fails while the data directory has less space free; 0 = no check (MAYFLY_MIN_FREE_BYTES)")
	f.DurationVar(&c.Retention, "retention", envDuration("MAYFLY_RETENTION", d.Retention), "finished tasks and their logs are deleted this long after they ended, 0 = keep forever (MAYFLY_RETENTION)")
	f.StringVar(&c.RunnerDriver, "runner-driver", envStr("MAYFLY_RUNNER_DRIVER", "docker"), "container driver of the embedded runner: docker, or oci (crun or runc directly, MAYFLY_OCI_RUNTIME forces one; see docs/operations.md) (MAYFLY_RUNNER_DRIVER)")
	f.DurationVar(&c.RunnerCacheTTL, "runner-cache-ttl", envDuration("MAYFLY_RUNNER_CACHE_TTL", 7*24*time.Hour), "the embedded runner removes code packages and code images unused this long, 0 = keep forever (MAYFLY_RUNNER_CACHE_TTL)")
	l := api.DefaultLimits()
	f.IntVar(&c.Limits.MaxConns, "max-conns", envInt("MAYFLY_MAX_CONNS", l.MaxConns), "open HTTP connections in all; more are closed at once, 0 = no cap; default half the open-file limit, at most 10000 (MAYFLY_MAX_CONNS)")
	f.IntVar(&c.Limits.MaxConnsPerClient, "max-conns-per-client", envInt("MAYFLY_MAX_CONNS_PER_CLIENT", l.MaxConnsPerClient), "open HTTP connections from one client IP (IPv6: /64), 0 = no cap (MAYFLY_MAX_CONNS_PER_CLIENT)")
	f.Float64Var(&c.Limits.RequestRate, "request-rate", envFloat("MAYFLY_REQUEST_RATE", l.RequestRate), "requests per second one client IP may make without a valid token (a valid token gives its share back), over it 429; 0 = no limit (MAYFLY_REQUEST_RATE)")
	f.IntVar(&c.Limits.RequestBurst, "request-burst", envInt("MAYFLY_REQUEST_BURST", l.RequestBurst), "requests one client IP may make at once above --request-rate; also bounds its requests in flight (MAYFLY_REQUEST_BURST)")
	f.DurationVar(&c.Limits.ReadHeaderTimeout, "read-header-timeout", envDuration("MAYFLY_READ_HEADER_TIMEOUT", l.ReadHeaderTimeout), "time to send a request's headers (MAYFLY_READ_HEADER_TIMEOUT)")
	f.DurationVar(&c.Limits.BodyTimeout, "body-timeout", envDuration("MAYFLY_BODY_TIMEOUT", l.BodyTimeout), "longest wait for the next bytes of a request body (MAYFLY_BODY_TIMEOUT)")
	f.Int64Var(&c.Limits.MinBodyRate, "min-body-rate", envInt64("MAYFLY_MIN_BODY_RATE", l.MinBodyRate), "bytes/s a request body must average once it has taken longer than --body-timeout, 0 = none (MAYFLY_MIN_BODY_RATE)")
	f.DurationVar(&c.Limits.WriteTimeout, "write-timeout", envDuration("MAYFLY_WRITE_TIMEOUT", l.WriteTimeout), "time to answer once a request is in, and longest wait for a client to take the next part of an answer; long-polls get their wait on top (MAYFLY_WRITE_TIMEOUT)")
	f.DurationVar(&c.Limits.IdleTimeout, "idle-timeout", envDuration("MAYFLY_IDLE_TIMEOUT", l.IdleTimeout), "keep-alive connection with no request is closed after (MAYFLY_IDLE_TIMEOUT)")
	dq := service.DefaultQuotas()
	f.Int64Var(&c.Quotas.QueuedTasks, "quota-queued-tasks", envInt64("MAYFLY_QUOTA_QUEUED_TASKS", dq.QueuedTasks), "tasks a project may have queued, unless it sets its own quota; over it an enqueue gets 403; 0 = no limit (MAYFLY_QUOTA_QUEUED_TASKS)")
	f.Int64Var(&c.Quotas.RunningTasks, "quota-running-tasks", envInt64("MAYFLY_QUOTA_RUNNING_TASKS", dq.RunningTasks), "tasks of a project running at once across every runner, unless it sets its own quota; 0 = no limit (MAYFLY_QUOTA_RUNNING_TASKS)")
	f.Int64Var(&c.Quotas.Schedules, "quota-schedules", envInt64("MAYFLY_QUOTA_SCHEDULES", dq.Schedules), "schedules a project may have, unless it sets its own quota; 0 = no limit (MAYFLY_QUOTA_SCHEDULES)")
	f.Int64Var(&c.Quotas.CodeBytes, "quota-code-bytes", envInt64("MAYFLY_QUOTA_CODE_BYTES", dq.CodeBytes), "bytes of code packages (every revision) a project may keep, unless it sets its own quota; 0 = no limit (MAYFLY_QUOTA_CODE_BYTES)")
	f.Float64Var(&c.Quotas.RequestRate, "quota-request-rate", envFloat("MAYFLY_QUOTA_REQUEST_RATE", dq.RequestRate), "API requests a second per project token, on each server, unless its project sets its own quota; over it 429 with Retry-After; 0 = no limit (MAYFLY_QUOTA_REQUEST_RATE)")
	f.StringVar(&c.LogLevel, "log-level", envStr("MAYFLY_LOG_LEVEL", "info"), "debug, info, warn or error (MAYFLY_LOG_LEVEL)")
	f.StringVar(&c.LogFormat, "log-format", envStr("MAYFLY_LOG_FORMAT", "text"), "text or json (MAYFLY_LOG_FORMAT)")
	c.BootstrapProject = os.Getenv("MAYFLY_BOOTSTRAP_PROJECT")
	c.BootstrapToken = os.Getenv("MAYFLY_BOOTSTRAP_TOKEN")
	return cmd
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

func runServer(ctx context.Context, c serverConfig, out interface{ Write([]byte) (int, error) }) error {
	if len(envErrs) > 0 {
		return errors.Join(envErrs...)
	}
	log, err := newLogger(c.LogLevel, c.LogFormat)
	if err != nil {
		return err
	}
	if c.RunnerCapacity < 1 {
		return fmt.Errorf("--runner-capacity must be at least 1")
	}
	if c.Retention < 0 || c.RunnerCacheTTL < 0 {
		return fmt.Errorf("--retention and --runner-cache-ttl must not be negative (0 keeps forever)")
	}
	if q := c.Quotas; q.QueuedTasks < 0 || q.RunningTasks < 0 || q.Schedules < 0 || q.CodeBytes < 0 || !(q.RequestRate >= 0) {
		return fmt.Errorf("--quota-* must not be negative (0 = no limit)")
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	if err := c.taskLimits.validate(); err != nil {
		return err
	}
	cfg := assembly.Config{
		DataDir: c.DataDir, DatabaseURL: c.DatabaseURL, BlobURL: c.BlobURL,
		Service: service.Config{
			MaxPayloadBytes: c.MaxPayloadBytes, MaxCodeBytes: c.MaxCodeBytes,
			DefaultTimeout: c.DefaultTimeout, MaxTimeout: c.MaxTimeout, MaxDelay: c.MaxDelay,
			MaxLogBytes: c.MaxLogBytes, LeaseDuration: c.LeaseDuration, MaxAttempts: c.MaxAttempts,
			KnownStacks: stack.Names(), AllowImages: c.AllowImages,
			MinRunEvery: c.MinRunEvery, MinFreeBytes: c.MinFreeBytes, Retention: c.Retention,
			Quotas: c.Quotas,
		}.WithPackageLimits(c.MaxPackageFiles, c.MaxUnpackedBytes),
		BootstrapProject: c.BootstrapProject, BootstrapToken: c.BootstrapToken,
		Listen: c.Listen, Limits: c.Limits, Version: version,
		MaintenanceInterval: time.Second, RescueDelay: c.LeaseDuration, Scheduler: true,
		DrainGrace: c.DrainGrace, Log: log, Out: out,
	}
	if c.Runner {
		var warm docker.Options
		if c.RunnerWarm.N != 0 {
			if warm, err = c.serverWarm(); err != nil {
				return err
			}
			warm.Log = log
		}
		drv, closeDrv, err := openDriver(ctx, c.RunnerDriver, filepath.Join(c.DataDir, "oci"), os.Getenv("MAYFLY_OCI_RUNTIME"), warm, log)
		if err != nil {
			return fmt.Errorf("embedded runner (or start with --runner=false): %w", err)
		}
		defer closeDrv()
		cfg.Driver = drv
		rc := c.taskLimits.apply(runner.Config{
			Capacity: c.RunnerCapacity, Clusters: c.RunnerClusters, StackImage: stack.Image,
			CacheTTL: c.RunnerCacheTTL, Host: hostname(), Version: version, Driver: c.RunnerDriver, Stacks: stack.Installed,
		})
		cfg.Runner = &rc
	}
	srv, err := assembly.Start(ctx, cfg)
	if err != nil {
		return err
	}
	log.Info("serving", "max_conns", c.Limits.MaxConns, "max_conns_per_client", c.Limits.MaxConnsPerClient,
		"request_rate", c.Limits.RequestRate)
	select {
	case err = <-srv.Err():
	case <-ctx.Done():
		log.Info("shutting down", "drain_grace", c.DrainGrace)
	}
	srv.Stop()
	return err
}

// serverWarm is the warm containers' configuration of the embedded runner,
// whose task files go where assembly puts them for the runner's id.
func (c serverConfig) serverWarm() (docker.Options, error) {
	if c.RunnerWarm.N < 0 || c.RunnerWarm.N > maxWarm {
		return docker.Options{}, fmt.Errorf("--runner-warm-containers must be 0 to %d", maxWarm)
	}
	dataDir, err := filepath.Abs(c.DataDir)
	if err != nil {
		return docker.Options{}, fmt.Errorf("data directory: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return docker.Options{}, fmt.Errorf("create data directory: %w", err)
	}
	rid, err := assembly.RunnerID(dataDir)
	if err != nil {
		return docker.Options{}, err
	}
	return c.RunnerWarm.options("runner-", c.RunnerDriver, assembly.RunDir(dataDir, rid), nil)
}

// hostname names this host to the registry of runners.
func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

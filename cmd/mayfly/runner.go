package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/driver/docker"
	"github.com/mayfly-run/mayfly/internal/driver/oci"
	"github.com/mayfly-run/mayfly/internal/imagepolicy"
	"github.com/mayfly-run/mayfly/internal/metrics"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/stack"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// taskLimits are what every runner, embedded in the server or remote,
// applies to the containers it starts; both commands register the same
// flags for them.
type taskLimits struct {
	TaskMemoryMB int64
	TaskPids     int64
	TaskCPUs     float64
	TaskNoFile   int64
	TaskTmpMB    int64
	TaskDirMB    int64
	AllowImages  []string
	TaskNetwork  bool
	StopGrace    time.Duration
	DrainGrace   time.Duration
}

func (l *taskLimits) register(f *pflag.FlagSet) {
	f.Int64Var(&l.TaskMemoryMB, "task-memory-mb", envInt64("MAYFLY_TASK_MEMORY_MB", 512), "memory limit of a task container in MiB (MAYFLY_TASK_MEMORY_MB)")
	f.Int64Var(&l.TaskPids, "task-pids", envInt64("MAYFLY_TASK_PIDS", 512), "process limit of a task container (MAYFLY_TASK_PIDS)")
	f.Float64Var(&l.TaskCPUs, "task-cpus", envFloat("MAYFLY_TASK_CPUS", 1), "CPU limit of a task container in cores, e.g. 0.5 (MAYFLY_TASK_CPUS)")
	f.Int64Var(&l.TaskNoFile, "task-nofile", envInt64("MAYFLY_TASK_NOFILE", 1024), "open-file limit of each task process (MAYFLY_TASK_NOFILE)")
	f.Int64Var(&l.TaskTmpMB, "task-tmp-mb", envInt64("MAYFLY_TASK_TMP_MB", 64), "size of a task's /tmp in MiB; an in-memory file system counted in --task-memory-mb (MAYFLY_TASK_TMP_MB)")
	f.Int64Var(&l.TaskDirMB, "task-dir-mb", envInt64("MAYFLY_TASK_DIR_MB", 256), "size of a task's /mnt/task (code package included) in MiB; in memory, counted in --task-memory-mb (MAYFLY_TASK_DIR_MB)")
	f.StringSliceVar(&l.AllowImages, "allow-image", envList("MAYFLY_ALLOW_IMAGES", nil), "image pattern image codes may name, e.g. 'myorg/*' or 'alpine:3.*'; repeatable; Mayfly's stacks are always allowed (MAYFLY_ALLOW_IMAGES, comma-separated)")
	f.BoolVar(&l.TaskNetwork, "task-network", envBool("MAYFLY_TASK_NETWORK", false), "give task containers a network (MAYFLY_TASK_NETWORK)")
	f.DurationVar(&l.StopGrace, "stop-grace", envDuration("MAYFLY_STOP_GRACE", 10*time.Second), "SIGTERM to SIGKILL when a task is cancelled (MAYFLY_STOP_GRACE)")
	f.DurationVar(&l.DrainGrace, "drain-grace", envDuration("MAYFLY_DRAIN_GRACE", 30*time.Second), "how long running tasks may finish on shutdown (MAYFLY_DRAIN_GRACE)")
}

func (l taskLimits) validate() error {
	if l.TaskCPUs <= 0 || l.TaskNoFile < 16 || l.TaskTmpMB < 1 || l.TaskDirMB < 1 {
		return fmt.Errorf("--task-cpus must be above 0, --task-nofile at least 16, --task-tmp-mb and --task-dir-mb at least 1")
	}
	if _, err := imagepolicy.New(l.AllowImages); err != nil {
		return fmt.Errorf("--allow-image: %w", err)
	}
	return nil
}

// apply sets the limits on a runner's configuration.
func (l taskLimits) apply(cfg runner.Config) runner.Config {
	cfg.MemoryBytes = l.TaskMemoryMB << 20
	cfg.PidsLimit = l.TaskPids
	cfg.NanoCPUs = int64(l.TaskCPUs * 1e9)
	cfg.NoFile = l.TaskNoFile
	cfg.TmpBytes = l.TaskTmpMB << 20
	cfg.TaskDirBytes = l.TaskDirMB << 20
	cfg.AllowImages = l.AllowImages
	cfg.Network = l.TaskNetwork
	cfg.StopGrace = l.StopGrace
	return cfg
}

// runnerConfig is everything `mayfly runner` can be told.
type runnerConfig struct {
	Server   string
	Token    string
	Clusters []string
	Capacity int
	DataDir  string
	Driver   string
	// OCIDir and OCIRuntime configure --driver oci.
	OCIDir     string
	OCIRuntime string
	CacheTTL   time.Duration
	// MetricsListen, when set, serves the runner's Prometheus metrics.
	MetricsListen string
	taskLimits
	warm      warmConfig
	LogLevel  string
	LogFormat string
}

func newRunnerCmd() *cobra.Command {
	var c runnerConfig
	cmd := &cobra.Command{
		Use:   "runner --server URL --token TOKEN",
		Short: "Run tasks of a remote Mayfly server on this host",
		Long: `Run a remote runner: it leases tasks from the server at --server over HTTP
(the runner protocol) and runs each in a fresh container on this host,
exactly as the server's embedded runner does: through the Docker engine, or
with --driver oci directly with runc (see docs/operations.md). The token
must be allowed to act as a runner: a runner token (mayfly token create
--runner), or an admin token.

--data-dir holds the runner's id (kept across restarts, so a restarted runner
removes the containers of its earlier life), its code package cache and the
API sockets of running tasks; the Docker engine must be able to bind-mount it.

When the server restarts or the connection drops, running tasks keep running:
the runner keeps heartbeating and retries log chunks and the end of each task
until the server answers again. A task whose runner stays silent longer than
the server's --lease-duration runs again elsewhere.

SIGTERM or SIGINT drains: no new tasks are taken, running ones get
--drain-grace to finish, and the rest run again elsewhere once their leases
run out. Every flag can also be set by the environment variable named in its
help.`,
		Example: `  mayfly runner --server http://mayfly.internal:8080 --token "$MAYFLY_RUNNER_TOKEN" --capacity 8
  mayfly runner --server http://10.0.0.5:8080 --token "$T" --cluster gpu --cluster default --data-dir /var/lib/mayfly-runner`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runRunner(ctx, c, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Server, "server", envStr("MAYFLY_SERVER", envStr("MAYFLY_URL", client.DefaultURL)), "URL of the Mayfly server (MAYFLY_SERVER, else MAYFLY_URL)")
	// Shadows the CLI's --token: a runner presents a runner token, which
	// is not a project's. The environment is read at run time, so that
	// --help never prints a secret as a default.
	f.StringVar(&c.Token, "token", "", "token allowed to act as a runner (MAYFLY_RUNNER_TOKEN, else MAYFLY_TOKEN)")
	f.StringSliceVar(&c.Clusters, "cluster", envList("MAYFLY_RUNNER_CLUSTERS", []string{""}), "cluster to serve, repeatable; \"\" or \"default\" is the default cluster (MAYFLY_RUNNER_CLUSTERS)")
	f.IntVar(&c.Capacity, "capacity", envInt("MAYFLY_RUNNER_CAPACITY", 4), "tasks run at once (MAYFLY_RUNNER_CAPACITY)")
	f.StringVar(&c.DataDir, "data-dir", envStr("MAYFLY_RUNNER_DATA_DIR", "runner-data"), "runner id, package cache and task sockets (MAYFLY_RUNNER_DATA_DIR)")
	f.StringVar(&c.Driver, "driver", envStr("MAYFLY_RUNNER_DRIVER", "docker"), "container driver: docker, or oci to start containers with runc directly (root, overlayfs; stacks still come from the Docker engine) (MAYFLY_RUNNER_DRIVER)")
	f.StringVar(&c.OCIDir, "oci-dir", envStr("MAYFLY_RUNNER_OCI_DIR", ""), "with --driver oci: root file system layers and container bundles; default DATA-DIR/oci (MAYFLY_RUNNER_OCI_DIR)")
	f.StringVar(&c.OCIRuntime, "oci-runtime", envStr("MAYFLY_OCI_RUNTIME", ""), "with --driver oci: the OCI runtime binary; empty takes crun where a trial container works on this host's cgroup set-up, else runc (MAYFLY_OCI_RUNTIME)")
	f.DurationVar(&c.CacheTTL, "cache-ttl", envDuration("MAYFLY_RUNNER_CACHE_TTL", 7*24*time.Hour), "remove code packages and code images unused this long, 0 = keep forever (MAYFLY_RUNNER_CACHE_TTL)")
	f.StringVar(&c.MetricsListen, "metrics-listen", envStr("MAYFLY_RUNNER_METRICS_LISTEN", ""), "address to serve Prometheus metrics at /metrics, without authentication (keep it on loopback or a private network); \"\" = none (MAYFLY_RUNNER_METRICS_LISTEN)")
	c.taskLimits.register(f)
	c.warm.register(f, "")
	f.StringVar(&c.LogLevel, "log-level", envStr("MAYFLY_LOG_LEVEL", "info"), "debug, info, warn or error (MAYFLY_LOG_LEVEL)")
	f.StringVar(&c.LogFormat, "log-format", envStr("MAYFLY_LOG_FORMAT", "text"), "text or json (MAYFLY_LOG_FORMAT)")
	return cmd
}

// maxWarm bounds --warm-containers.
const maxWarm = 64

// warmConfig is how many containers the docker driver creates ahead of
// demand (see internal/driver/docker/warm.go), and with which launcher.
type warmConfig struct {
	N        int
	Launcher string
}

// register adds the flags, named with prefix ("runner-" on the server).
func (w *warmConfig) register(f *pflag.FlagSet, prefix string) {
	f.IntVar(&w.N, prefix+"warm-containers", envInt("MAYFLY_RUNNER_WARM_CONTAINERS", 0), "docker driver: containers of each task shape (image, user, limits; up to 64) created and started ahead of demand, each waiting for a task, so a task waits for neither; 0 = create each when its task comes (MAYFLY_RUNNER_WARM_CONTAINERS)")
	f.StringVar(&w.Launcher, prefix+"warm-launcher", envStr("MAYFLY_RUNNER_WARM_LAUNCHER", ""), "with --"+prefix+"warm-containers: the static mayfly-launch binary warm containers start tasks with; default the one beside this program (make build puts it there) (MAYFLY_RUNNER_WARM_LAUNCHER)")
}

// options are the docker driver's options for a runner whose task files
// live in runDir; prefix is the flags'.
func (w warmConfig) options(prefix, driverName, runDir string, log *slog.Logger) (docker.Options, error) {
	if w.N < 0 || w.N > maxWarm {
		// Each is a running container per shape (up to 4 shapes).
		return docker.Options{}, fmt.Errorf("--%swarm-containers must be 0 to %d", prefix, maxWarm)
	}
	if w.N == 0 {
		return docker.Options{}, nil
	}
	if driverName != "docker" {
		return docker.Options{}, fmt.Errorf("--%swarm-containers: only the docker driver keeps warm containers, not %q", prefix, driverName)
	}
	launcher := w.Launcher
	if launcher == "" {
		var err error
		if launcher, err = docker.FindLauncher(); err != nil {
			return docker.Options{}, err
		}
	} else if err := docker.CheckLauncher(launcher); err != nil {
		return docker.Options{}, err
	}
	// Beside the task files, on the same file system (in memory where
	// there is one): the launch files hold the tasks' environments.
	return docker.Options{WarmContainers: w.N, Launcher: launcher, WarmDir: runDir + ".warm", Log: log}, nil
}

func runRunner(ctx context.Context, c runnerConfig, out io.Writer) error {
	if len(envErrs) > 0 {
		return errors.Join(envErrs...)
	}
	log, err := newLogger(c.LogLevel, c.LogFormat)
	if err != nil {
		return err
	}
	if c.Token == "" {
		c.Token = cmp.Or(os.Getenv("MAYFLY_RUNNER_TOKEN"), os.Getenv("MAYFLY_TOKEN"))
	}
	switch {
	case c.Token == "":
		return errors.New("no runner token: use --token or MAYFLY_RUNNER_TOKEN")
	case c.Capacity < 1:
		return errors.New("--capacity must be at least 1")
	case c.Driver != "docker" && c.Driver != "oci" && testDrivers[c.Driver] == nil:
		return fmt.Errorf("--driver %q: docker and oci are supported", c.Driver)
	case c.CacheTTL < 0:
		return errors.New("--cache-ttl must not be negative (0 keeps forever)")
	}
	if err := c.taskLimits.validate(); err != nil {
		return err
	}
	// Absolute, because task socket directories under it are bind-mounted
	// by the Docker engine, which knows no working directory of ours.
	if c.DataDir, err = filepath.Abs(c.DataDir); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := os.MkdirAll(c.DataDir, 0o750); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	rid, err := assembly.RunnerID(c.DataDir)
	if err != nil {
		return err
	}
	q := client.NewRunnerQueue(c.Server, c.Token, client.WithUserAgent("mayfly-runner/"+version))
	if err := checkRunnerToken(ctx, q, rid, c.Clusters, log); err != nil {
		return err
	}
	m := metrics.New()
	warm, err := c.warm.options("", c.Driver, assembly.RunDir(c.DataDir, rid), log)
	if err != nil {
		return err
	}
	drv, closeDrv, err := openDriver(ctx, c.Driver, cmp.Or(c.OCIDir, filepath.Join(c.DataDir, "oci")), c.OCIRuntime, warm, log)
	if err != nil {
		return err
	}
	defer closeDrv()

	run, err := runner.New(c.taskLimits.apply(runner.Config{
		ID: rid, Capacity: c.Capacity, Clusters: c.Clusters,
		CacheDir: filepath.Join(c.DataDir, "cache", "packages"), StackImage: stack.Image,
		RunDir:      assembly.RunDir(c.DataDir, rid),
		IsLeaseLost: client.IsLeaseLost,
		Log:         log, CacheTTL: c.CacheTTL,
		Host: hostname(), Version: version, Driver: c.Driver, Stacks: stack.Installed, Metrics: m,
	}), q, drv)
	if err != nil {
		return err
	}
	if c.MetricsListen != "" {
		stopMetrics, err := serveMetrics(c.MetricsListen, m, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	fmt.Fprintf(out, "Mayfly runner %s (%s) taking tasks from %s\n", rid, version, c.Server)
	log.Info("runner started", "runner_id", rid, "server", c.Server, "capacity", c.Capacity,
		"clusters", c.Clusters, "data_dir", c.DataDir)

	stop := assembly.RunRunner(run, c.DrainGrace, log)
	<-ctx.Done()
	log.Info("shutting down: no more tasks are taken")
	stop()
	log.Info("stopped")
	return nil
}

// openDriver connects the container driver a runner names: docker (the
// default), oci (runc on overlayfs layers kept in ociDir) or a test build's
// own.
func openDriver(ctx context.Context, name, ociDir, ociRuntime string, warm docker.Options, log *slog.Logger) (driver.Driver, func(), error) {
	if newDrv := testDrivers[name]; newDrv != nil {
		return newDrv(), func() {}, nil
	}
	switch name {
	case "oci":
		d, err := oci.New(ctx, oci.Options{Dir: ociDir, Runtime: ociRuntime, Log: log})
		if err != nil {
			return nil, nil, fmt.Errorf("runner needs runc, root, overlayfs and the Docker engine the stacks are in: %w", err)
		}
		return d, func() { d.Close() }, nil
	case "docker":
		d, err := docker.NewWithOptions(ctx, warm)
		if err != nil {
			return nil, nil, fmt.Errorf("runner needs Docker: %w", err)
		}
		if warm.WarmContainers > 0 {
			log.Info("warm containers", "per_shape", warm.WarmContainers, "launcher", warm.Launcher)
		}
		return d, func() { d.Close() }, nil
	}
	return nil, nil, fmt.Errorf("--driver %q: docker and oci are supported", name)
}

// checkRunnerToken refuses to start with a token the server refuses, which
// would otherwise only show as endless lease warnings. A server that does
// not answer yet is no reason to stop: the lease loop waits for it.
func checkRunnerToken(ctx context.Context, q *client.RunnerQueue, rid string, clusters []string, log *slog.Logger) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Max 0 takes no task; the server still checks the token and that it
	// is good for these clusters.
	_, err := q.Lease(cctx, wire.LeaseRequest{RunnerID: rid, Max: 0, Clusters: clusters})
	var ae *client.APIError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden):
		// %v: the CLI would print only the server's msg of a wrapped
		// APIError, which does not say whose token it refused.
		return fmt.Errorf("the server refuses this runner's token: %v", err)
	}
	log.Warn("server does not answer yet; will keep trying", "err", err)
	return nil
}

// serveMetrics serves m at /metrics on addr until the returned stop.
func serveMetrics(addr string, m *metrics.Metrics, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	go srv.Serve(ln)
	log.Info("serving metrics", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

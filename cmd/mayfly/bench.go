package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mayfly-run/mayfly/internal/bench"
)

func newBenchCmd() *cobra.Command {
	cfg := bench.DefaultConfig()
	var (
		out     string
		repeat  int
		verbose bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "bench [latency|throughput|queue|queue-pg|scale-pg|depth|oci]...",
		Short: "Measure Mayfly against docker run and River, in the same run",
		Long: `Runs benchmarks of Mayfly against baselines measured in the same run on
this machine, and reports each result as a ratio to its baseline:

  latency     N trivial tasks one after another, queued through the HTTP API
              of an in-process server and run by its embedded runner, beside
              N "docker run --rm --network none" of the same image, one for one,
              and (docker driver) N more through a second server whose
              driver keeps warm containers (--warm-containers 1)
  throughput  M tasks queued at once on a runner of capacity C, beside M
              "docker run --rm" at parallelism C
  queue       the queue alone (a driver that starts no container) against
              River on SQLite doing the same no-op work; River is built from
              bench/river with the go command (its modules are fetched the
              first time)
  queue-pg    the same with Mayfly's store on PostgreSQL against River's
              PostgreSQL driver, each on a database of its own created on the
              server of --postgres-url (River's migrations run before timing)
  scale-pg    the same no-op tasks worked by one server on PostgreSQL, then by
              two sharing one database (two stores, services and embedded
              runners in this process, as two "mayfly server" would run)
  depth       lease+finish latency with a small and a large queue
  oci         N trivial tasks on the oci driver, N on the docker driver, N
              "docker run --rm", N bare runs of the OCI runtime on the
              stack's root file system with its default spec and N with
              the driver's sandbox config, interleaved one for one; where an
              oci task's time goes, phase by phase; then M tasks queued at
              once on an oci runner of capacity C, beside M bare runtime
              runs at parallelism C. Needs root, overlayfs and runc or
              crun; skipped, and the report says why, where the oci driver
              cannot start

With no scenario named, all run. The PostgreSQL scenarios need an admin URL
of a server where they may create and drop databases (--postgres-url or
MAYFLY_BENCH_POSTGRES_URL); without one they are skipped, and the report
says so. "make bench" starts a throw-away server for them
(scripts/pg-cluster.sh).

Everything runs in this process on a temporary data directory and a
loopback listener; the container scenarios
need the Docker engine, its CLI and the busybox stack image (mayfly stack
build busybox). Results go to --out as results.json, bench.png and
results.md.`,
		Example: `  mayfly bench
  mayfly bench latency --latency-n 20
  mayfly bench queue depth --depth-large 100000 --out /tmp/bench
  mayfly bench queue queue-pg --repeat 5 --postgres-url postgres://mayfly@127.0.0.1:5432/postgres
  mayfly bench queue-pg scale-pg --postgres-url postgres://mayfly@127.0.0.1:5432/postgres`,
		ValidArgs: bench.Scenarios,
		Args:      cobra.OnlyValidArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			cfg.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			w := cmd.OutOrStdout()
			var runs []*bench.Results
			for i := range max(repeat, 1) {
				res, err := bench.Run(ctx, cfg, args...)
				if err != nil {
					return err
				}
				res.Command = commandLine(cmd, args)
				dir := out
				if repeat > 1 {
					// Each run whole in a directory of its own, so any one
					// of them can be read as a single run.
					dir = filepath.Join(out, fmt.Sprintf("run-%d", i+1))
				}
				paths, err := bench.WriteAll(dir, res)
				if err != nil {
					return err
				}
				if err := bench.WriteMarkdown(w, res); err != nil {
					return err
				}
				fmt.Fprintf(w, "\nWrote %s\n\n", strings.Join(paths, ", "))
				runs = append(runs, res)
			}
			if len(runs) < 2 {
				return nil
			}
			var table strings.Builder
			if err := bench.WriteRepeatability(&table, runs); err != nil {
				return err
			}
			p := filepath.Join(out, "repeatability.md")
			if err := os.WriteFile(p, []byte(table.String()), 0o644); err != nil {
				return fmt.Errorf("write %s: %w", p, err)
			}
			fmt.Fprintf(w, "%s\nWrote %s\n", table.String(), p)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "bench-results", "directory for results.json, bench.png and results.md")
	f.IntVar(&repeat, "repeat", 1, "run the scenarios this many times, one after another, each run's results in OUT/run-N, and write a table of every ratio's median and spread to OUT/repeatability.md")
	f.IntVar(&cfg.LatencyN, "latency-n", cfg.LatencyN, "latency: tasks, and as many docker runs")
	f.IntVar(&cfg.ThroughputM, "throughput-m", cfg.ThroughputM, "throughput: tasks queued at once, and as many docker runs")
	f.IntVar(&cfg.ThroughputC, "throughput-c", cfg.ThroughputC, "throughput: runner capacity and docker run parallelism")
	f.IntVar(&cfg.QueueTasks, "queue-tasks", cfg.QueueTasks, "queue: no-op tasks for Mayfly and for River each")
	f.IntVar(&cfg.QueueC, "queue-c", cfg.QueueC, "queue: runner capacity and River workers")
	f.IntVar(&cfg.QueueBatch, "queue-batch", cfg.QueueBatch, "queue: tasks per enqueue")
	f.IntVar(&cfg.DepthSmall, "depth-small", cfg.DepthSmall, "depth: tasks in the shallow queue")
	f.IntVar(&cfg.DepthLarge, "depth-large", cfg.DepthLarge, "depth: tasks in the deep queue")
	f.IntVar(&cfg.DepthSample, "depth-sample", cfg.DepthSample, "depth: leases measured in each queue")
	f.StringVar(&cfg.PostgresURL, "postgres-url", envStr(bench.PostgresURLEnv, ""),
		"admin URL of a PostgreSQL server where queue-pg and scale-pg may create throw-away databases; empty skips them ("+bench.PostgresURLEnv+")")
	f.StringVar(&cfg.RiverDir, "river-dir", cfg.RiverDir, "directory of the River baseline's Go module")
	f.StringVar(&cfg.Image, "image", "", "image the container scenarios run (default: the busybox stack's)")
	f.StringVar(&cfg.Driver, "driver", "docker", "driver Mayfly's runner uses in the container scenarios: docker or oci (the baseline is docker run either way)")
	f.StringVar(&cfg.WarmLauncher, "warm-launcher", "", "latency: the static mayfly-launch of the docker driver's warm containers (default: the one beside this program, else built with go)")
	f.StringVar(&cfg.OCIRuntime, "oci-runtime", "", "oci scenario: OCI runtime binary (default: crun where it works, else runc)")
	f.StringVar(&cfg.DockerCLI, "docker", "", "docker command of the baselines (default: docker on PATH)")
	f.StringVar(&cfg.WorkDir, "work-dir", "", "where the scenarios' databases go (default: a temporary directory, removed after)")
	f.DurationVar(&timeout, "timeout", time.Hour, "give up after this long")
	f.BoolVarP(&verbose, "verbose", "v", false, "log every sample")
	return cmd
}

// commandLine is the command as it could be typed again to reproduce the
// run: the scenarios and every flag that was set.
func commandLine(cmd *cobra.Command, args []string) string {
	parts := []string{cmd.CommandPath()}
	parts = append(parts, args...)
	cmd.Flags().Visit(func(f *pflag.Flag) {
		v := f.Value.String()
		if u, err := url.Parse(v); err == nil && f.Name == "postgres-url" {
			// Reports are shared: a password must not be in them.
			v = u.Redacted()
		}
		parts = append(parts, "--"+f.Name+"="+v)
	})
	return strings.Join(parts, " ")
}

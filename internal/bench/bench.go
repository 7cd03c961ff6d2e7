// Package bench measures Mayfly against baselines run on the same machine
// in the same run, so that every figure it reports is a ratio and not an
// absolute number that means little on another machine:
//
//   - latency: one trivial task at a time, queued through the HTTP API and
//     run in a container by the embedded runner, against `docker run --rm`
//     of the same image, the two interleaved one for one so that drift in
//     the engine hits both alike;
//   - throughput: many tasks queued at once on a runner of capacity C,
//     against as many `docker run --rm` at parallelism C;
//   - queue: the queue alone (a driver that starts nothing) against River on
//     SQLite doing the same no-op work;
//   - queue-pg: the same with Mayfly's store on PostgreSQL against River's
//     PostgreSQL driver, each on a fresh database of one server;
//   - scale-pg: the same no-op tasks worked by one server on PostgreSQL and
//     by two sharing one database;
//   - depth: the cost of a lease with a thousand tasks queued against the
//     cost with a million;
//   - oci: a trivial task on the oci driver, on the docker driver, a bare
//     `docker run --rm` and a bare run of the OCI runtime, interleaved; the
//     oci path's phases; its throughput at capacity C.
//
// Benchmarks are never pass/fail on timing: the harness reports ratios and
// whether each meets its target, and the tests only check that each
// scenario runs and returns sane results.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// Scenario names, as `mayfly bench` takes them.
const (
	Latency    = "latency"
	Throughput = "throughput"
	Queue      = "queue"
	QueuePG    = "queue-pg"
	ScalePG    = "scale-pg"
	Depth      = "depth"
	OCI        = "oci"
)

// Scenarios lists every scenario in the order a full run takes them.
var Scenarios = []string{Latency, Throughput, Queue, QueuePG, ScalePG, Depth, OCI}

// postgresScenarios need Config.PostgresURL; without one they are skipped,
// and the report says so.
var postgresScenarios = []string{QueuePG, ScalePG}

// PostgresURLEnv is the variable `mayfly bench` reads Config.PostgresURL
// from when --postgres-url is not given.
const PostgresURLEnv = "MAYFLY_BENCH_POSTGRES_URL"

// Config sizes the scenarios and says where their tools are. Zero sizes
// take the defaults of DefaultConfig.
type Config struct {
	LatencyN int // tasks, and as many docker runs

	ThroughputM int // tasks queued at once, and as many docker runs
	ThroughputC int // runner capacity and docker parallelism

	QueueTasks int // no-op tasks, for Mayfly and River each
	QueueC     int // runner capacity and River MaxWorkers
	QueueBatch int // tasks per enqueue; queue-pg and scale-pg take the same sizes

	DepthSmall  int // tasks queued in the shallow queue
	DepthLarge  int // tasks queued in the deep queue
	DepthSample int // leases measured in each

	// Image is the stack image the container scenarios run; empty means
	// the busybox stack's.
	Image string
	// Driver is what Mayfly's runner starts containers with in the
	// container scenarios: "docker" (default) or "oci". The baseline is
	// `docker run --rm` either way.
	Driver string
	// WarmLauncher is the static mayfly-launch the latency scenario's
	// warm containers start tasks with; empty = the one beside this
	// program, else one built with the go command.
	WarmLauncher string
	// OCIRuntime is the runtime the oci scenario's driver uses; empty
	// lets the driver choose (crun where it works, else runc).
	OCIRuntime string
	// DockerCLI is the docker command for the baselines; empty means
	// whichever docker is on PATH.
	DockerCLI string
	// RiverDir is the directory of the River baseline's module.
	RiverDir string
	// Go is the go command that builds the River baseline; empty means
	// whichever go is on PATH, else the one of this toolchain.
	Go string
	// PostgresURL is an admin URL (postgres://...) of a PostgreSQL server
	// on which the PostgreSQL scenarios may create and drop databases of
	// their own; empty skips those scenarios.
	PostgresURL string
	// WorkDir holds the scenarios' databases; empty means a new temporary
	// directory, removed afterwards.
	WorkDir string
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// DefaultConfig is the size of the run BENCHMARKS.md reports.
func DefaultConfig() Config {
	return Config{
		LatencyN:    50,
		ThroughputM: 100, ThroughputC: 4,
		QueueTasks: 5000, QueueC: 8, QueueBatch: 500,
		DepthSmall: 1000, DepthLarge: 1_000_000, DepthSample: 300,
		RiverDir: "bench/river",
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&c.LatencyN, d.LatencyN)
	set(&c.ThroughputM, d.ThroughputM)
	set(&c.ThroughputC, d.ThroughputC)
	set(&c.QueueTasks, d.QueueTasks)
	set(&c.QueueC, d.QueueC)
	set(&c.QueueBatch, d.QueueBatch)
	set(&c.DepthSmall, d.DepthSmall)
	set(&c.DepthLarge, d.DepthLarge)
	set(&c.DepthSample, d.DepthSample)
	if c.RiverDir == "" {
		c.RiverDir = d.RiverDir
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// Results is everything one run measured; it is what results.json holds.
type Results struct {
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"`
	Command string    `json:"command,omitempty"`
	Machine Machine   `json:"machine"`
	// LoadAvg is /proc/loadavg when the run started and ended: a run on a
	// busy machine is noisier, though the interleaving keeps its ratios
	// fair.
	LoadAvg    [2]string         `json:"loadavg"`
	Latency    *LatencyResult    `json:"latency,omitempty"`
	Throughput *ThroughputResult `json:"throughput,omitempty"`
	Queue      *QueueResult      `json:"queue,omitempty"`
	QueuePG    *QueueResult      `json:"queue_pg,omitempty"`
	ScalePG    *ScaleResult      `json:"scale_pg,omitempty"`
	Depth      *DepthResult      `json:"depth,omitempty"`
	OCI        *OCIResult        `json:"oci,omitempty"`
	// Skipped names the scenarios asked for that could not run here, and
	// why, so a report without them says so.
	Skipped []Skip `json:"skipped,omitempty"`
}

// Skip is a scenario that was not run.
type Skip struct {
	Scenario string `json:"scenario"`
	Reason   string `json:"reason"`
}

// Target is one ratio and the bound it should meet.
type Target struct {
	Name  string  `json:"name"`
	Ratio float64 `json:"ratio"`
	Op    string  `json:"op"` // "<=" or ">="
	Bound float64 `json:"bound"`
	Met   bool    `json:"met"`
}

func target(name string, ratio float64, op string, bound float64) Target {
	t := Target{Name: name, Ratio: ratio, Op: op, Bound: bound}
	switch op {
	case "<=":
		t.Met = ratio <= bound
	case ">=":
		t.Met = ratio >= bound
	}
	return t
}

// Targets returns the ratio of every scenario that ran, in scenario order.
func (r *Results) Targets() []Target {
	var ts []Target
	if r.Latency != nil {
		ts = append(ts, r.Latency.Target)
		if r.Latency.WarmTarget != nil {
			ts = append(ts, *r.Latency.WarmTarget)
		}
	}
	if r.Throughput != nil {
		ts = append(ts, r.Throughput.Target)
	}
	if r.Queue != nil {
		ts = append(ts, r.Queue.Target)
	}
	if r.QueuePG != nil {
		ts = append(ts, r.QueuePG.Target)
	}
	if r.ScalePG != nil {
		ts = append(ts, r.ScalePG.Target)
	}
	if r.Depth != nil {
		ts = append(ts, r.Depth.Target)
	}
	if r.OCI != nil {
		ts = append(ts, r.OCI.Targets...)
	}
	return ts
}

// Run runs the named scenarios (all when none are named) and returns what
// they measured. A scenario that fails stops the run: a partial comparison
// would be read as a whole one.
func Run(ctx context.Context, cfg Config, scenarios ...string) (*Results, error) {
	cfg = cfg.withDefaults()
	if len(scenarios) == 0 {
		scenarios = Scenarios
	}
	for _, s := range scenarios {
		if !slices.Contains(Scenarios, s) {
			return nil, fmt.Errorf("unknown scenario %q: use %s", s, strings.Join(Scenarios, ", "))
		}
	}
	if cfg.WorkDir == "" {
		dir, err := os.MkdirTemp("", "mayfly-bench-")
		if err != nil {
			return nil, fmt.Errorf("create work directory: %w", err)
		}
		defer os.RemoveAll(dir)
		cfg.WorkDir = dir
	}
	res := &Results{Started: time.Now().UTC(), Machine: DescribeMachine(ctx, cfg.DockerCLI)}
	res.LoadAvg[0] = loadAvg()
	for _, s := range scenarios {
		if cfg.PostgresURL == "" && slices.Contains(postgresScenarios, s) {
			sk := Skip{Scenario: s, Reason: "no PostgreSQL server given: pass --postgres-url (or " + PostgresURLEnv +
				") with an admin URL of a server where the bench may create databases, or run `make bench`, which starts a throw-away one"}
			cfg.Log.Warn("scenario skipped", "scenario", s, "reason", sk.Reason)
			res.Skipped = append(res.Skipped, sk)
			continue
		}
		cfg.Log.Info("scenario starting", "scenario", s)
		t0 := time.Now()
		var err error
		switch s {
		case Latency:
			res.Latency, err = RunLatency(ctx, cfg)
		case Throughput:
			res.Throughput, err = RunThroughput(ctx, cfg)
		case Queue:
			res.Queue, err = RunQueue(ctx, cfg)
		case QueuePG:
			res.QueuePG, err = RunQueuePG(ctx, cfg)
		case ScalePG:
			res.ScalePG, err = RunScalePG(ctx, cfg)
		case Depth:
			res.Depth, err = RunDepth(ctx, cfg)
		case OCI:
			res.OCI, err = RunOCI(ctx, cfg)
		}
		var skip *skipError
		if errors.As(err, &skip) {
			cfg.Log.Warn("scenario skipped", "scenario", s, "reason", skip.reason)
			res.Skipped = append(res.Skipped, Skip{Scenario: s, Reason: skip.reason})
			continue
		}
		if err != nil {
			return res, fmt.Errorf("scenario %s: %w", s, err)
		}
		cfg.Log.Info("scenario done", "scenario", s, "seconds", time.Since(t0).Seconds())
	}
	res.Seconds = time.Since(res.Started).Seconds()
	res.LoadAvg[1] = loadAvg()
	return res, nil
}

// Stats summarises a sample of durations, in milliseconds.
type Stats struct {
	N    int     `json:"n"`
	Min  float64 `json:"min_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// Summarize computes Stats; percentiles are nearest-rank, so every one is
// a duration that was actually measured.
func Summarize(d []time.Duration) Stats {
	if len(d) == 0 {
		return Stats{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	var sum time.Duration
	for _, v := range s {
		sum += v
	}
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return ms(s[min(max(i, 0), len(s)-1)])
	}
	return Stats{N: len(s), Min: ms(s[0]), P50: rank(0.50), P90: rank(0.90), P99: rank(0.99),
		Max: ms(s[len(s)-1]), Mean: ms(sum / time.Duration(len(s)))}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.Inf(1)
	}
	return a / b
}

// dockerCLI resolves the docker command of the baselines.
func dockerCLI(cfg Config) (string, error) {
	if cfg.DockerCLI != "" {
		return cfg.DockerCLI, nil
	}
	p, err := exec.LookPath("docker")
	if err != nil {
		return "", fmt.Errorf("the docker CLI runs the baseline and none is on PATH: %w", err)
	}
	return p, nil
}

// dockerRun is one baseline container: `docker run --rm` of the image,
// without a network, running true.
func dockerRun(ctx context.Context, cli, image string) (time.Duration, error) {
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, cli, "run", "--rm", "--network", "none", image, "true").CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("docker run --rm %s true: %w: %s", image, err, strings.TrimSpace(string(out)))
	}
	return d, nil
}

// goCommand resolves the go command that builds the River baseline.
func goCommand(cfg Config) (string, error) {
	if cfg.Go != "" {
		return cfg.Go, nil
	}
	p, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the River baseline is built with the go command, and none is on PATH: %w", err)
	}
	return p, nil
}

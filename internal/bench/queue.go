package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver/noop"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// QueueResult compares the dispatch rate of Mayfly's queue (tasks enqueued
// in batches, leased by the embedded runner, run by a driver that starts
// nothing, finished) with River doing the same on the same kind of
// database.
type QueueResult struct {
	Store      string      `json:"store"` // sqlite or postgres, for both sides
	Tasks      int         `json:"tasks"`
	C          int         `json:"c"`
	Batch      int         `json:"batch"`
	MayflySecs float64     `json:"mayfly_wall_seconds"`
	MayflyRate float64     `json:"mayfly_tasks_per_sec"`
	River      riverResult `json:"river"`
	Target     Target      `json:"target"`
}

// riverResult is what bench/river prints; keep it in step with that
// program's Result.
type riverResult struct {
	System        string  `json:"system"`
	Database      string  `json:"database"`
	Version       string  `json:"version"`
	Tasks         int     `json:"tasks"`
	Workers       int     `json:"workers"`
	Batch         int     `json:"batch"`
	FetchCooldown string  `json:"fetch_cooldown"`
	FetchPoll     string  `json:"fetch_poll_interval"`
	InsertSeconds float64 `json:"insert_seconds"`
	WallSeconds   float64 `json:"wall_seconds"`
	TasksPerSec   float64 `json:"tasks_per_sec"`
}

// RunQueue runs the queue-only scenario: Mayfly first, then River, each on
// a fresh SQLite file.
func RunQueue(ctx context.Context, cfg Config) (*QueueResult, error) {
	cfg = cfg.withDefaults()
	// Build River first: a compile running beside Mayfly's half would
	// take its CPU.
	riverBin, err := buildRiver(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res := &QueueResult{Store: "sqlite", Tasks: cfg.QueueTasks, C: cfg.QueueC, Batch: cfg.QueueBatch}
	wall, err := mayflyQueue(ctx, cfg, serverOptions{dir: filepath.Join(cfg.WorkDir, "queue")})
	if err != nil {
		return nil, err
	}
	res.MayflySecs, res.MayflyRate = wall.Seconds(), float64(cfg.QueueTasks)/wall.Seconds()

	dir := filepath.Join(cfg.WorkDir, "river")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create River directory: %w", err)
	}
	if res.River, err = runRiver(ctx, cfg, riverBin, dir, ""); err != nil {
		return nil, err
	}
	res.Target = target("queue only, Mayfly / River (tasks/s)", ratio(res.MayflyRate, res.River.TasksPerSec), ">=", 1.0)
	return res, nil
}

// mayflyQueue starts a server as o says, with the noop driver and a runner
// of capacity QueueC, queues QueueTasks in batches through the service and
// returns the time from the first enqueue until the last task's end was
// recorded.
func mayflyQueue(ctx context.Context, cfg Config, o serverOptions) (time.Duration, error) {
	o.driver, o.capacity = noop.New(), cfg.QueueC
	s, err := startServer(ctx, o)
	if err != nil {
		return 0, err
	}
	defer s.stop()
	t0 := time.Now()
	if err := queueNoop(ctx, cfg, s); err != nil {
		return 0, err
	}
	if err := s.queue.waitFinished(ctx, int64(cfg.QueueTasks)); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// queueNoop queues QueueTasks of the trivial code through s's service, in
// batches of QueueBatch.
func queueNoop(ctx context.Context, cfg Config, s *server) error {
	for i := 0; i < cfg.QueueTasks; i += cfg.QueueBatch {
		batch := make([]wire.NewTask, min(cfg.QueueBatch, cfg.QueueTasks-i))
		for j := range batch {
			batch[j] = wire.NewTask{CodeName: codeName}
		}
		if _, err := s.svc.QueueTasks(ctx, s.project, batch); err != nil {
			return fmt.Errorf("enqueue tasks %d-%d: %w", i, i+len(batch), err)
		}
	}
	return nil
}

// runRiver runs the River baseline at the queue scenario's sizes; dbURL
// is its PostgreSQL database, or "" for SQLite in dir.
func runRiver(ctx context.Context, cfg Config, bin, dir, dbURL string) (riverResult, error) {
	args := []string{"-tasks", strconv.Itoa(cfg.QueueTasks),
		"-workers", strconv.Itoa(cfg.QueueC), "-batch", strconv.Itoa(cfg.QueueBatch)}
	if dir != "" {
		args = append(args, "-dir", dir)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	// In the environment, not the arguments: the URL may hold a password,
	// and arguments are in the process list for every local user to see.
	cmd.Env = append(os.Environ(), "RIVER_BENCH_DATABASE_URL="+dbURL)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return riverResult{}, fmt.Errorf("run River baseline: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var r riverResult
	if err := json.Unmarshal(out, &r); err != nil {
		return riverResult{}, fmt.Errorf("read River baseline's result %q: %w", out, err)
	}
	if r.Tasks != cfg.QueueTasks || r.TasksPerSec <= 0 {
		return riverResult{}, fmt.Errorf("River baseline reports %d tasks at %.1f/s, asked for %d", r.Tasks, r.TasksPerSec, cfg.QueueTasks)
	}
	return r, nil
}

// buildRiver compiles the River baseline into the work directory. It is a
// module of its own, so River never enters Mayfly's dependencies; building
// it needs the go command and, the first time, the module proxy.
func buildRiver(ctx context.Context, cfg Config) (string, error) {
	goCmd, err := goCommand(cfg)
	if err != nil {
		return "", err
	}
	dir, err := filepath.Abs(cfg.RiverDir)
	if err != nil {
		return "", fmt.Errorf("River baseline directory %s: %w", cfg.RiverDir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("River baseline not found in %s (run from the repository root or pass its directory): %w", dir, err)
	}
	bin := filepath.Join(cfg.WorkDir, "river-bench")
	// -trimpath as `make build` uses, so the SQLite driver both modules
	// share (the same version) comes from the build cache instead of a
	// minute-long compile.
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = dir
	// The baseline's go.mod is the whole truth: no workspace may mix
	// Mayfly's module in.
	cmd.Env = append(os.Environ(), "GOWORK=off")
	t0 := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build River baseline in %s: %w: %s", dir, err, strings.TrimSpace(string(out)))
	}
	cfg.Log.Info("River baseline built", "seconds", time.Since(t0).Seconds())
	return bin, nil
}

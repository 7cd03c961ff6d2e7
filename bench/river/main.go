// Command river is the baseline of Mayfly's queue-only benchmark: River
// doing the same work as Mayfly's queue with a driver that runs nothing
// (insert in batches, fetch, work a no-op job, complete), either on a
// SQLite file with the same durability settings Mayfly uses (WAL,
// synchronous=FULL) or, with -database-url, on a PostgreSQL database
// through River's pgx driver. It prints one JSON object on stdout, which
// `mayfly bench queue` and `mayfly bench queue-pg` read.
//
// It lives in a module of its own so that River and its dependencies never
// enter Mayfly's.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	_ "modernc.org/sqlite"
)

// Result is what the harness reads; keep it in step with
// internal/bench's riverResult.
type Result struct {
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

type noopArgs struct{}

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

func main() {
	var (
		tasks   = flag.Int("tasks", 1000, "jobs to insert and work")
		workers = flag.Int("workers", 8, "jobs worked at once")
		batch   = flag.Int("batch", 1000, "jobs per InsertMany")
		dir     = flag.String("dir", "", "directory for the SQLite file (default: a new temporary one)")
		// The URL may hold a password: the environment keeps it out of
		// the process list.
		dbURL = flag.String("database-url", os.Getenv("RIVER_BENCH_DATABASE_URL"),
			"postgres:// URL of an empty database to use instead of SQLite (RIVER_BENCH_DATABASE_URL)")
		cooldown = flag.Duration("fetch-cooldown", 1*time.Millisecond, "River FetchCooldown")
		poll     = flag.Duration("fetch-poll", 10*time.Millisecond, "River FetchPollInterval")
		timeout  = flag.Duration("timeout", 10*time.Minute, "give up after this long")
	)
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var (
		res Result
		err error
	)
	if *dbURL != "" {
		res, err = runPostgres(ctx, *tasks, *workers, *batch, *dbURL, *cooldown, *poll)
	} else {
		res, err = runSQLite(ctx, *tasks, *workers, *batch, *dir, *cooldown, *poll)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "river bench:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "river bench: write result:", err)
		os.Exit(1)
	}
}

func runSQLite(ctx context.Context, tasks, workers, batch int, dir string, cooldown, poll time.Duration) (Result, error) {
	if tasks <= 0 || workers <= 0 || batch <= 0 {
		return Result{}, errors.New("-tasks, -workers and -batch must be positive")
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "river-bench-")
		if err != nil {
			return Result{}, fmt.Errorf("create temporary directory: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	path := filepath.Join(dir, "river.db")
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return Result{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	// The riversqlite documentation asks for one connection: SQLite has
	// one writer, and River's parallel maintenance otherwise meets
	// SQLITE_BUSY.
	db.SetMaxOpenConns(1)

	res, err := work(ctx, riversqlite.New(db), tasks, workers, batch, cooldown, poll)
	res.Database = "sqlite"
	return res, err
}

// runPostgres is the same on PostgreSQL: River's pgx driver on a pool of
// pgx's defaults, as River's documentation sets it up.
func runPostgres(ctx context.Context, tasks, workers, batch int, dbURL string, cooldown, poll time.Duration) (Result, error) {
	if tasks <= 0 || workers <= 0 || batch <= 0 {
		return Result{}, errors.New("-tasks, -workers and -batch must be positive")
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return Result{}, fmt.Errorf("open PostgreSQL pool: %w", err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return Result{}, fmt.Errorf("reach PostgreSQL: %w", err)
	}
	res, err := work(ctx, riverpgxv5.New(pool), tasks, workers, batch, cooldown, poll)
	res.Database = "postgres"
	return res, err
}

// work migrates River's schema (before the clock starts), then inserts the
// jobs in batches and waits until every one has completed.
func work[TTx any](ctx context.Context, drv riverdriver.Driver[TTx], tasks, workers, batch int, cooldown, poll time.Duration) (Result, error) {
	mig, err := rivermigrate.New(drv, nil)
	if err != nil {
		return Result{}, fmt.Errorf("prepare River migrations: %w", err)
	}
	if _, err := mig.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return Result{}, fmt.Errorf("migrate River schema: %w", err)
	}

	w := river.NewWorkers()
	river.AddWorker(w, noopWorker{})
	client, err := river.NewClient(drv, &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		Workers:           w,
		FetchCooldown:     cooldown,
		FetchPollInterval: poll,
		Logger:            nil,
	})
	if err != nil {
		return Result{}, fmt.Errorf("create River client: %w", err)
	}
	events, unsub := client.SubscribeConfig(&river.SubscribeConfig{
		Kinds: []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed}, ChanSize: tasks + 16,
	})
	defer unsub()
	if err := client.Start(ctx); err != nil {
		return Result{}, fmt.Errorf("start River client: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = client.Stop(sctx)
	}()

	start := time.Now()
	for i := 0; i < tasks; i += batch {
		n := min(batch, tasks-i)
		params := make([]river.InsertManyParams, n)
		for j := range params {
			params[j] = river.InsertManyParams{Args: noopArgs{}}
		}
		if _, err := client.InsertMany(ctx, params); err != nil {
			return Result{}, fmt.Errorf("insert jobs %d-%d: %w", i, i+n, err)
		}
	}
	inserted := time.Since(start)
	for done := 0; done < tasks; {
		select {
		case ev := <-events:
			if ev.Kind != river.EventKindJobCompleted {
				return Result{}, fmt.Errorf("job %d ended %s", ev.Job.ID, ev.Kind)
			}
			done++
		case <-ctx.Done():
			return Result{}, fmt.Errorf("waiting for %d jobs to complete: %w", tasks-done, ctx.Err())
		}
	}
	wall := time.Since(start)
	return Result{
		System: "river", Version: moduleVersion("github.com/riverqueue/river"),
		Tasks: tasks, Workers: workers, Batch: batch,
		FetchCooldown: cooldown.String(), FetchPoll: poll.String(),
		InsertSeconds: inserted.Seconds(), WallSeconds: wall.Seconds(),
		TasksPerSec: float64(tasks) / wall.Seconds(),
	}, nil
}

func moduleVersion(path string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range bi.Deps {
		if d.Path == path {
			return d.Version
		}
	}
	return "unknown"
}

package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/driver/noop"
)

// pgDatabase makes a fresh, empty database on the server of cfg's admin
// URL, so that each side of a comparison starts from nothing and sees no
// table of the other's. It returns the database's URL and a drop that
// removes it again.
func pgDatabase(ctx context.Context, cfg Config, side string) (dbURL string, drop func(), err error) {
	u, err := url.Parse(cfg.PostgresURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		// The URL may hold a password: it is not repeated.
		return "", nil, fmt.Errorf("--postgres-url: want postgres://user[:password]@host[:port]/database[?...]")
	}
	var b [6]byte
	rand.Read(b[:])
	name := "mayfly_bench_" + side + "_" + hex.EncodeToString(b[:])
	if err := pgAdmin(ctx, cfg.PostgresURL, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database %s for the %s side: %w", name, side, err)
	}
	drop = func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		// FORCE: a connection a failed run left open must not keep the
		// throw-away database alive.
		if err := pgAdmin(dctx, cfg.PostgresURL, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			cfg.Log.Warn("could not drop benchmark database", "database", name, "err", err)
		}
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// pgAdmin runs one statement on the server of adminURL.
func pgAdmin(ctx context.Context, adminURL, sql string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to the PostgreSQL server of --postgres-url: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql); err != nil {
		return err
	}
	return nil
}

// RunQueuePG is the queue scenario on PostgreSQL: Mayfly with its store on
// a fresh database, then River's pgx driver on another fresh database of
// the same server.
func RunQueuePG(ctx context.Context, cfg Config) (*QueueResult, error) {
	cfg = cfg.withDefaults()
	if cfg.PostgresURL == "" {
		return nil, fmt.Errorf("the PostgreSQL queue scenario needs a server: pass --postgres-url or set %s", PostgresURLEnv)
	}
	riverBin, err := buildRiver(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res := &QueueResult{Store: "postgres", Tasks: cfg.QueueTasks, C: cfg.QueueC, Batch: cfg.QueueBatch}

	dbURL, drop, err := pgDatabase(ctx, cfg, "mayfly")
	if err != nil {
		return nil, err
	}
	wall, err := mayflyQueue(ctx, cfg, serverOptions{dir: filepath.Join(cfg.WorkDir, "queue-pg"), databaseURL: dbURL})
	drop()
	if err != nil {
		return nil, fmt.Errorf("Mayfly on PostgreSQL: %w", err)
	}
	res.MayflySecs, res.MayflyRate = wall.Seconds(), float64(cfg.QueueTasks)/wall.Seconds()

	dbURL, drop, err = pgDatabase(ctx, cfg, "river")
	if err != nil {
		return nil, err
	}
	res.River, err = runRiver(ctx, cfg, riverBin, "", dbURL)
	drop()
	if err != nil {
		return nil, err
	}
	res.Target = target("queue only on PostgreSQL, Mayfly / River (tasks/s)", ratio(res.MayflyRate, res.River.TasksPerSec), ">=", 1.0)
	return res, nil
}

// ScaleResult compares the no-op task rate of one server on a PostgreSQL
// store with that of two servers sharing one database, each with its own
// embedded runner of the same capacity.
type ScaleResult struct {
	Tasks  int `json:"tasks"`  // per round
	Rounds int `json:"rounds"` // of each case; the rates are over all of them
	C      int `json:"c"`      // capacity of each server's runner
	Batch  int `json:"batch"`
	// InProcess says that both servers ran in the bench's process: two
	// stores (two connection pools), two services, two runners, sharing
	// nothing but the database, the code package folder and the keys, as
	// two `mayfly server` processes would.
	InProcess bool    `json:"in_process"`
	OneSecs   float64 `json:"one_server_wall_seconds"`
	OneRate   float64 `json:"one_server_tasks_per_sec"`
	TwoSecs   float64 `json:"two_servers_wall_seconds"`
	TwoRate   float64 `json:"two_servers_tasks_per_sec"`
	TwoShare  [2]int  `json:"two_servers_tasks_each"` // tasks each of the two finished
	Target    Target  `json:"target"`
}

// scaleOrder is the order of the scale-out rounds, one server (1) and two
// (2): ABBA, so that a machine getting busier or quieter over the run
// weighs on both cases alike.
var scaleOrder = []int{1, 2, 2, 1}

// RunScalePG runs QueueTasks no-op tasks on one server with its store on
// PostgreSQL, and on two servers sharing a database, in the rounds of
// scaleOrder, each round on a fresh database; the tasks are queued
// through the first server, as a client of either would.
func RunScalePG(ctx context.Context, cfg Config) (*ScaleResult, error) {
	cfg = cfg.withDefaults()
	if cfg.PostgresURL == "" {
		return nil, fmt.Errorf("the PostgreSQL scale-out scenario needs a server: pass --postgres-url or set %s", PostgresURLEnv)
	}
	res := &ScaleResult{Tasks: cfg.QueueTasks, C: cfg.QueueC, Batch: cfg.QueueBatch, Rounds: len(scaleOrder) / 2, InProcess: true}
	var one, two time.Duration
	for i, servers := range scaleOrder {
		dbURL, drop, err := pgDatabase(ctx, cfg, fmt.Sprintf("scale%d", servers))
		if err != nil {
			return nil, err
		}
		round := fmt.Sprintf("scale-%d-%d", i, servers)
		if servers == 1 {
			wall, err := mayflyQueue(ctx, cfg, serverOptions{dir: filepath.Join(cfg.WorkDir, round), databaseURL: dbURL})
			drop()
			if err != nil {
				return nil, fmt.Errorf("one server: %w", err)
			}
			one += wall
			continue
		}
		wall, share, err := twoServers(ctx, cfg, filepath.Join(cfg.WorkDir, round), dbURL)
		drop()
		if err != nil {
			return nil, fmt.Errorf("two servers: %w", err)
		}
		two += wall
		res.TwoShare[0] += share[0]
		res.TwoShare[1] += share[1]
	}
	n := float64(cfg.QueueTasks * res.Rounds)
	res.OneSecs, res.OneRate = one.Seconds(), n/one.Seconds()
	res.TwoSecs, res.TwoRate = two.Seconds(), n/two.Seconds()
	res.Target = target("two servers / one on PostgreSQL (no-op tasks/s)", ratio(res.TwoRate, res.OneRate), ">=", 1.0)
	return res, nil
}

// twoServers starts two servers on dbURL, the second with the first's key
// files and code package folder (servers sharing a store must share
// both), queues the tasks through the first and waits until the two have
// finished them all between them.
func twoServers(ctx context.Context, cfg Config, dir, dbURL string) (time.Duration, [2]int, error) {
	var share [2]int
	kick := make(chan struct{}, 1)
	blobs := filepath.Join(dir, "blobs")
	first, err := startServer(ctx, serverOptions{dir: filepath.Join(dir, "a"), databaseURL: dbURL, blobURL: blobs,
		driver: noop.New(), capacity: cfg.QueueC, kick: kick})
	if err != nil {
		return 0, share, err
	}
	defer first.stop()
	dirB := filepath.Join(dir, "b")
	if err := os.MkdirAll(dirB, 0o750); err != nil {
		return 0, share, fmt.Errorf("create second server's data directory: %w", err)
	}
	for _, key := range []string{"task-token.key", "token-hash.key"} {
		b, err := os.ReadFile(filepath.Join(first.dataDir, key))
		if err != nil {
			return 0, share, fmt.Errorf("read first server's key: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dirB, key), b, 0o600); err != nil {
			return 0, share, fmt.Errorf("give the second server the first's key: %w", err)
		}
	}
	second, err := startServer(ctx, serverOptions{dir: dirB, databaseURL: dbURL, blobURL: blobs,
		driver: noop.New(), capacity: cfg.QueueC, kick: kick, noCode: true})
	if err != nil {
		return 0, share, err
	}
	defer second.stop()

	t0 := time.Now()
	if err := queueNoop(ctx, cfg, first); err != nil {
		return 0, share, err
	}
	if err := waitAllFinished(ctx, int64(cfg.QueueTasks), kick, first.queue, second.queue); err != nil {
		return 0, share, err
	}
	wall := time.Since(t0)
	share = [2]int{int(first.queue.finished.Load()), int(second.queue.finished.Load())}
	return wall, share, nil
}

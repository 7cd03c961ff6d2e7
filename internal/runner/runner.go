// Package runner takes tasks from the queue and runs each in a fresh
// container. The same code serves the embedded runner (Queue is the service
// itself) and remote runners (Queue speaks HTTP), so the queue never knows
// which is which.
//
// One task's life on a runner:
//
//	lease -> image check -> package from cache -> container start -> started
//	      -> heartbeats (renew lease, learn of cancel) + log shipping
//	      -> exit | timeout | cancel -> destroy container -> finish
//
// If the lease is lost (the server handed the task on) the runner stops the
// container and reports nothing: the task belongs to someone else now.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/imagepolicy"
	"github.com/mayfly-run/mayfly/internal/metrics"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// Queue is the runner's view of the server.
type Queue interface {
	Lease(ctx context.Context, req wire.LeaseRequest) ([]wire.Job, error)
	// Every report names the lease it is made under; one whose lease is no
	// longer current fails with an error Config.IsLeaseLost recognises.
	Started(ctx context.Context, lease wire.LeaseRef) error
	Heartbeat(ctx context.Context, lease wire.LeaseRef) (cancel bool, err error)
	AppendLog(ctx context.Context, lease wire.LeaseRef, data []byte) error
	Finish(ctx context.Context, lease wire.LeaseRef, req wire.FinishRequest) error
	OpenPackage(ctx context.Context, revisionID string) (io.ReadCloser, error)
	// ReportProgress forwards progress a task sent with its own token.
	ReportProgress(ctx context.Context, token, taskID string, p wire.Progress) error
}

// Config says how a runner runs tasks.
type Config struct {
	ID       string
	Capacity int      // tasks at once
	Clusters []string // "" is the default cluster
	CacheDir string   // code packages by checksum
	// RunDir holds each running task's API socket directory; it must be a
	// path the Docker engine can bind-mount (the same host).
	RunDir string
	// StackImage maps a stack name to its image reference.
	StackImage func(stack string) string
	// IsLeaseLost tells a lost lease from a passing error in Queue calls.
	IsLeaseLost func(error) bool

	HeartbeatInterval time.Duration // at most; shortened to a quarter of the lease
	StopGrace         time.Duration // SIGTERM to SIGKILL on cancel
	LeaseWait         time.Duration // long-poll length
	SweepInterval     time.Duration // how often untracked containers are looked for
	MemoryBytes       int64
	PidsLimit         int64
	NanoCPUs          int64 // CPU time in billionths of a core; 0 = one core
	NoFile            int64 // open files per task process; 0 = 1024
	// TmpBytes and TaskDirBytes cap /tmp and the task directory, the only
	// writable places of a task (its root file system is read-only).
	// Both are tmpfs: what a task writes there counts against
	// MemoryBytes. 0 = 64 MiB and 256 MiB.
	TmpBytes     int64
	TaskDirBytes int64
	// AllowImages are the patterns of images an image code may name,
	// besides Mayfly's stacks (see imagepolicy). The runner checks them
	// itself before it runs a task, whatever the server let through.
	AllowImages []string
	Network     bool
	User        string // uid:gid of the task process
	Log         *slog.Logger

	// What the runner says of itself to the registry of runners: its
	// host, version and driver, and Stacks, which lists the stacks it has
	// (asked at most once a minute; nil = none reported).
	Host    string
	Version string
	Driver  string
	Stacks  func(ctx context.Context) ([]string, error)

	// RunningMarkDelay is how long a container runs before its task is
	// marked running in the store (200ms when zero); a task that ends
	// sooner is recorded at its end only. Until then it is shown as
	// running with the phase "preparing".
	RunningMarkDelay time.Duration
	// LeaseSettle bounds how long the runner, once a slot is free, waits
	// for the other tasks of its last lease to free theirs before it asks
	// for more (5ms when zero; see leaseLoop).
	LeaseSettle time.Duration
	// ReportRetry is how long the end of a task and its log chunks are
	// retried while the server cannot be reached (restart, network cut).
	ReportRetry time.Duration

	// CacheTTL: code packages and code images unused this long are
	// removed; 0 keeps them for good.
	CacheTTL           time.Duration
	CachePruneInterval time.Duration // how often they are looked for
	// Metrics records the runner's tasks and slots; nil records nothing.
	Metrics *metrics.Metrics
}

func (c *Config) defaults() {
	if c.Capacity <= 0 {
		c.Capacity = 2
	}
	if len(c.Clusters) == 0 {
		c.Clusters = []string{""}
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 5 * time.Second
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 10 * time.Second
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = time.Minute
	}
	if c.CachePruneInterval <= 0 {
		c.CachePruneInterval = 10 * time.Minute
	}
	if c.LeaseWait <= 0 {
		c.LeaseWait = 20 * time.Second
	}
	if c.LeaseSettle <= 0 {
		c.LeaseSettle = 5 * time.Millisecond
	}
	if c.RunningMarkDelay <= 0 {
		c.RunningMarkDelay = 200 * time.Millisecond
	}
	if c.ReportRetry <= 0 {
		c.ReportRetry = 10 * time.Minute
	}
	if c.PidsLimit == 0 {
		c.PidsLimit = 512
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = 512 << 20
	}
	if c.User == "" {
		c.User = "65534:65534"
	}
	if c.NanoCPUs == 0 {
		c.NanoCPUs = 1e9
	}
	if c.NoFile == 0 {
		c.NoFile = 1024
	}
	if c.TmpBytes == 0 {
		c.TmpBytes = 64 << 20
	}
	if c.TaskDirBytes == 0 {
		c.TaskDirBytes = 256 << 20
	}
	if c.IsLeaseLost == nil {
		c.IsLeaseLost = func(error) bool { return false }
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Runner runs tasks from a queue on a driver.
type Runner struct {
	cfg    Config
	queue  Queue
	driver driver.Driver
	log    *slog.Logger
	cache  *packageCache
	images sync.Map // image ref -> struct{}: seen present, so not checked again
	policy imagepolicy.Policy

	baked    sync.Map // code image ref -> time.Time it was last known to exist
	baseIDs  sync.Map // base image ref -> baseID
	runners  sync.Map // package sha256 -> has __runner__.sh
	bakes    singleflight.Group
	active   sync.Map      // container id -> task id, of the containers this runner tracks
	inflight sync.Map      // task id -> struct{}, from lease to report
	ending   chan struct{} // tasks past their slots whose containers are being removed; made by Run
	// reporting: tasks past their slots whose ends are being reported;
	// made by Run. Wider than ending: a store may hold an end a few
	// milliseconds for company (internal/store/postgres/group.go).
	reporting chan struct{}
	busy      atomic.Int64 // tasks holding slots

	// imgMu orders a task's use of a code image against its removal by
	// the cache prune; imageUsed maps code image ref -> last use.
	imgMu     sync.Mutex
	imageUsed map[string]time.Time

	wg sync.WaitGroup

	stacksMu sync.Mutex
	stacks   []string
	stacksAt time.Time
	// hardStop ends every running task without reporting it (shutdown
	// after the drain grace); the server requeues them when their leases
	// run out.
	hardStop context.CancelFunc
	hardCtx  context.Context
	// homes are the tasks' directories and sockets, kept for the next
	// tasks; defaultSockLimits bound what a task can do through them.
	homes *homes
}

// warmCounter is a driver that keeps warm containers (docker's), whose
// counts the runner's metrics export.
type warmCounter interface {
	WarmCounts() (hits, misses int64, idle, pending int, ok bool)
}

// New returns a runner.
func New(cfg Config, q Queue, d driver.Driver) (*Runner, error) {
	cfg.defaults()
	if cfg.ID == "" {
		return nil, errors.New("runner needs an id")
	}
	if cfg.StackImage == nil {
		return nil, errors.New("runner needs a StackImage mapping")
	}
	policy, err := imagepolicy.New(cfg.AllowImages)
	if err != nil {
		return nil, fmt.Errorf("runner image allow-list: %w", err)
	}
	cache, err := newPackageCache(cfg.CacheDir, q)
	if err != nil {
		return nil, err
	}
	if cfg.RunDir == "" {
		if cfg.RunDir, err = os.MkdirTemp("", "mayfly-run-"); err != nil {
			return nil, fmt.Errorf("create runner directory: %w", err)
		}
	}
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("create runner directory %s: %w", cfg.RunDir, err)
	}
	if wc, ok := d.(warmCounter); ok {
		cfg.Metrics.WatchWarm(wc.WarmCounts)
	}
	hardCtx, hardStop := context.WithCancel(context.Background())
	log := cfg.Log.With("runner_id", cfg.ID)
	return &Runner{cfg: cfg, queue: q, driver: d, log: log, cache: cache, policy: policy,
		hardCtx: hardCtx, hardStop: hardStop, imageUsed: map[string]time.Time{},
		homes: newHomes(cfg.RunDir, defaultSockLimits, cfg.Capacity, log)}, nil
}

// Run leases and runs tasks until ctx ends, then returns without waiting
// for running tasks (call Drain for that), once its background sweeps
// have stopped.
func (r *Runner) Run(ctx context.Context) error {
	var loops sync.WaitGroup
	defer loops.Wait()
	// Containers of an earlier life of this runner belong to tasks whose
	// leases will run out and be retried; nobody tracks them any more.
	if n, err := r.driver.RemoveOrphans(ctx, r.cfg.ID, nil); err != nil {
		r.log.Warn("could not remove orphaned containers", "err", err)
	} else if n > 0 {
		r.log.Info("removed orphaned containers", "count", n)
	}
	// Their task sockets went with them.
	if stale, err := os.ReadDir(r.cfg.RunDir); err == nil {
		for _, e := range stale {
			os.RemoveAll(filepath.Join(r.cfg.RunDir, e.Name()))
		}
	}
	loops.Go(func() { r.sweepOrphans(ctx) })
	if r.cfg.CacheTTL > 0 {
		loops.Go(func() { r.pruneCacheLoop(ctx) })
	}
	slots := make(chan struct{}, r.cfg.Capacity)
	r.cfg.Metrics.RunnerCapacity(r.cfg.Capacity)
	// Tasks past their slots: their containers being removed, their ends
	// being reported (see runJob).
	r.ending = make(chan struct{}, r.cfg.Capacity)
	r.reporting = make(chan struct{}, r.cfg.Capacity+reportSlack)
	r.leaseLoop(ctx, slots)
	return nil
}

// reportSlack is how many more ends than slots may wait for their
// report's answer before a slot waits for one.
const reportSlack = 64

// leaseLoop waits for free slots, leases as many tasks as it holds, and
// starts them, until ctx ends. It never asks for more tasks than it holds
// free slots, so no task waits on a runner for a slot.
//
// When the first slot frees, the loop waits up to LeaseSettle for the rest
// of the tasks its last lease handed out to free theirs: short tasks end
// a few hundred microseconds apart, and a lease that went at the first
// would carry one task and leave the others to the next round trip. One
// lease of eight costs the store about what a lease of two does.
func (r *Runner) leaseLoop(ctx context.Context, slots chan struct{}) {
	wait := time.Duration(0)
	var last *leased
	settle := time.NewTimer(r.cfg.LeaseSettle)
	settle.Stop()
	for {
		// Wait for at least one free slot, then ask for as many tasks as
		// there are free slots.
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		if last != nil {
			settle.Reset(r.cfg.LeaseSettle)
			select {
			case <-last.done:
			case <-settle.C:
			case <-ctx.Done():
			}
			settle.Stop()
		}
		free := 1
	fill:
		for free < r.cfg.Capacity {
			select {
			case slots <- struct{}{}:
				free++
			default:
				break fill
			}
		}
		// Take no task while the engine is away: it would only fail.
		if err := r.waitEngine(ctx); err != nil {
			for range free {
				<-slots
			}
			continue
		}
		req := r.self(ctx)
		req.Max, req.Busy, req.WaitMs = free, int(r.busy.Load()), int(r.cfg.LeaseWait.Milliseconds())
		jobs, err := r.queue.Lease(ctx, req)
		if err != nil && ctx.Err() == nil {
			// A restarting server is met by every runner at once; jitter
			// keeps them from coming back in step.
			wait = backoff(wait)
			r.log.Warn("lease failed; retrying", "err", err, "in", wait)
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		} else {
			wait = 0
		}
		for i := len(jobs); i < free; i++ {
			<-slots
		}
		batch := newLeased(len(jobs))
		last = batch
		for _, job := range jobs {
			r.wg.Add(1)
			r.busy.Add(1)
			go func() {
				defer r.wg.Done()
				r.runJob(job, func() {
					r.busy.Add(-1)
					batch.leave()
					<-slots
				})
			}()
		}
	}
}

// leased counts the tasks of one lease that still hold their slots.
type leased struct {
	left atomic.Int64
	done chan struct{} // closed when none does
}

// newLeased counts n tasks; nil for none, which there is nothing to wait for.
func newLeased(n int) *leased {
	if n == 0 {
		return nil
	}
	l := &leased{done: make(chan struct{})}
	l.left.Store(int64(n))
	return l
}

func (l *leased) leave() {
	if l.left.Add(-1) == 0 {
		close(l.done)
	}
}

// backoff returns the wait after one that was prev: doubling from 100ms
// to 5s, each drawn from its upper half so that runners that failed
// together do not retry together.
func backoff(prev time.Duration) time.Duration {
	next := min(max(prev*2, 100*time.Millisecond), 5*time.Second)
	return next/2 + rand.N(next/2+1)
}

// engineDown reports whether the driver's engine does not answer.
func (r *Runner) engineDown(ctx context.Context) error {
	p, ok := r.driver.(driver.Pinger)
	if !ok {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return p.Ping(pctx)
}

// waitEngine returns once the engine answers, or with ctx's error.
func (r *Runner) waitEngine(ctx context.Context) error {
	wait := 200 * time.Millisecond
	for logged := false; ; {
		err := r.engineDown(ctx)
		if err == nil {
			if logged {
				r.log.Info("container engine answers again; taking tasks")
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !logged {
			r.log.Warn("container engine does not answer; taking no tasks until it does", "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// destroy removes a task's container and says whether it is gone. While
// the engine is away it keeps trying in the background for a few
// minutes; the orphan sweep is the last resort.
func (r *Runner) destroy(h driver.Handle, taskID string) (removed bool) {
	try := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return h.Destroy(ctx)
	}
	err := try()
	if err == nil {
		r.active.Delete(h.ID())
		return true
	}
	r.log.Warn("could not remove container; will retry", "task_id", taskID, "container", h.ID(), "err", err)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.active.Delete(h.ID())
		wait := time.Second
		for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); {
			select {
			case <-r.hardCtx.Done():
				return
			case <-time.After(wait):
			}
			if try() == nil {
				return
			}
			wait = min(wait*2, 15*time.Second)
		}
		r.log.Error("gave up removing container; the orphan sweep will", "task_id", taskID, "container", h.ID())
	}()
	return false
}

// sweepOrphans removes, every SweepInterval, containers of this runner that no
// task tracks: ones whose removal failed while the engine was away.
func (r *Runner) sweepOrphans(ctx context.Context) {
	t := time.NewTicker(r.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		keep := func(containerID, taskID string) bool {
			_, tracked := r.active.Load(containerID)
			_, starting := r.inflight.Load(taskID)
			return tracked || starting
		}
		if n, err := r.driver.RemoveOrphans(ctx, r.cfg.ID, keep); err != nil {
			r.log.Warn("orphan sweep failed", "err", err)
		} else if n > 0 {
			r.log.Info("removed orphaned containers", "count", n)
		}
	}
}

// Drain waits for running tasks to end. When ctx ends first, the remaining
// containers are stopped and destroyed and their tasks left to the lease
// rescue, so they run again elsewhere instead of being lost.
func (r *Runner) Drain(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		// Every task has left its home; a run directory in memory (one
		// per runner id) must not outlive its runner empty.
		r.homes.close()
		os.Remove(r.cfg.RunDir)
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		r.hardStop()
		<-done
		return fmt.Errorf("drain: tasks still running after the grace period were stopped and will be retried: %w", ctx.Err())
	}
}

// stacksEvery is how often a runner asks its driver which stacks it has.
const stacksEvery = time.Minute

// self is the lease request with what the runner says of itself filled in.
func (r *Runner) self(ctx context.Context) wire.LeaseRequest {
	req := wire.LeaseRequest{RunnerID: r.cfg.ID, Clusters: r.cfg.Clusters, Capacity: r.cfg.Capacity,
		Host: r.cfg.Host, Version: r.cfg.Version, Driver: r.cfg.Driver}
	if r.cfg.Stacks == nil {
		return req
	}
	r.stacksMu.Lock()
	defer r.stacksMu.Unlock()
	if time.Since(r.stacksAt) >= stacksEvery {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := r.cfg.Stacks(sctx)
		cancel()
		if err != nil {
			r.log.Warn("could not list stacks", "err", err)
		} else {
			r.stacks = got
		}
		r.stacksAt = time.Now()
	}
	req.Stacks = r.stacks
	return req
}

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
	"sync"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// Queue is the runner's view of the server.
type Queue interface {
	Lease(ctx context.Context, req wire.LeaseRequest) ([]wire.Job, error)
	Started(ctx context.Context, taskID, runnerID string) error
	Heartbeat(ctx context.Context, taskID, runnerID string) (cancel bool, err error)
	AppendLog(ctx context.Context, taskID, runnerID string, data []byte) error
	Finish(ctx context.Context, taskID string, req wire.FinishRequest) error
	OpenPackage(ctx context.Context, revisionID string) (io.ReadCloser, error)
}

// Config says how a runner runs tasks.
type Config struct {
	ID       string
	Capacity int      // tasks at once
	Clusters []string // "" is the default cluster
	CacheDir string   // code packages by checksum
	// StackImage maps a stack name to its image reference.
	StackImage func(stack string) string
	// IsLeaseLost tells a lost lease from a passing error in Queue calls.
	IsLeaseLost func(error) bool

	HeartbeatInterval time.Duration // at most; shortened to a quarter of the lease
	StopGrace         time.Duration // SIGTERM to SIGKILL on cancel
	LeaseWait         time.Duration // long-poll length
	MemoryBytes       int64
	PidsLimit         int64
	NanoCPUs          int64
	Network           bool
	User              string // uid:gid of the task process
	Log               *slog.Logger
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
	if c.LeaseWait <= 0 {
		c.LeaseWait = 20 * time.Second
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

	wg sync.WaitGroup
	mu sync.Mutex
	// hardStop ends every running task without reporting it (shutdown
	// after the drain grace); the server requeues them when their leases
	// run out.
	hardStop context.CancelFunc
	hardCtx  context.Context
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
	cache, err := newPackageCache(cfg.CacheDir, q)
	if err != nil {
		return nil, err
	}
	hardCtx, hardStop := context.WithCancel(context.Background())
	return &Runner{cfg: cfg, queue: q, driver: d, log: cfg.Log.With("runner_id", cfg.ID), cache: cache,
		hardCtx: hardCtx, hardStop: hardStop}, nil
}

// Run leases and runs tasks until ctx ends, then returns without waiting
// for running tasks; call Drain for that.
func (r *Runner) Run(ctx context.Context) error {
	// Containers of an earlier life of this runner belong to tasks whose
	// leases will run out and be retried; nobody tracks them any more.
	if n, err := r.driver.RemoveOrphans(ctx, r.cfg.ID, nil); err != nil {
		r.log.Warn("could not remove orphaned containers", "err", err)
	} else if n > 0 {
		r.log.Info("removed orphaned containers", "count", n)
	}
	slots := make(chan struct{}, r.cfg.Capacity)
	backoff := time.Duration(0)
	for {
		// Wait for at least one free slot, then ask for as many tasks as
		// there are free slots.
		select {
		case <-ctx.Done():
			return nil
		case slots <- struct{}{}:
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
		jobs, err := r.queue.Lease(ctx, wire.LeaseRequest{RunnerID: r.cfg.ID, Max: free,
			Clusters: r.cfg.Clusters, WaitMs: int(r.cfg.LeaseWait.Milliseconds())})
		if err != nil && ctx.Err() == nil {
			backoff = min(max(backoff*2, 100*time.Millisecond), 5*time.Second)
			r.log.Warn("lease failed; retrying", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
		} else {
			backoff = 0
		}
		for i := len(jobs); i < free; i++ {
			<-slots
		}
		for _, job := range jobs {
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer func() { <-slots }()
				r.runJob(job)
			}()
		}
	}
}

// Drain waits for running tasks to end. When ctx ends first, the remaining
// containers are stopped and destroyed and their tasks left to the lease
// rescue, so they run again elsewhere instead of being lost.
func (r *Runner) Drain(ctx context.Context) error {
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		r.hardStop()
		<-done
		return fmt.Errorf("drain: tasks still running after the grace period were stopped and will be retried: %w", ctx.Err())
	}
}

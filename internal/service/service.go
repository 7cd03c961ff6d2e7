// Package service is Mayfly's domain: projects and tokens, codes and their
// revisions, tasks and their state machine, and the lease protocol runners
// use. The HTTP API and the embedded runner both call it; it alone talks to
// the store and the blob store, so every rule lives in one place.
//
// A task moves through the states of mayfly.Status, by the rules of
// mayfly.CanMove: queued -> preparing (leased; the runner prepares the image
// and container) -> running (container started) -> one of complete, error,
// timeout, killed, cancelled. A lease that runs out gives the task back to
// the queue until its attempts are used up, then it ends killed.
package service

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mayfly-run/mayfly/internal/blob"
	"github.com/mayfly-run/mayfly/internal/codepkg"
	"github.com/mayfly-run/mayfly/internal/imagepolicy"
	"github.com/mayfly-run/mayfly/internal/metrics"
	"github.com/mayfly-run/mayfly/internal/store"
	"golang.org/x/sync/semaphore"
)

// Kinds of error the API turns into statuses; every error the service
// returns to a caller wraps one of them.
var (
	ErrInvalid      = errors.New("invalid")
	ErrUnauthorized = errors.New("unauthorized")
	ErrForbidden    = errors.New("forbidden")
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("conflict")
	ErrTooLarge     = errors.New("too large")
	// ErrCorrupt is stored data that no longer matches its checksum.
	ErrCorrupt = errors.New("corrupt")
	// ErrQuota is a project's quota reached: 403, as IronWorker answers
	// for a project's resource limits.
	ErrQuota = errors.New("quota exceeded")
)

// Error is a user-facing error: Msg is shown as is, Kind picks the status.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func errorf(kind error, format string, a ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, a...)}
}

// Config holds the limits and timings of the service. Zero values take the
// defaults of DefaultConfig.
type Config struct {
	MaxPayloadBytes int64          // per task payload
	MaxCodeBytes    int64          // uploaded zip
	Package         codepkg.Limits // what a zip may unpack to
	DefaultTimeout  int            // seconds, for timeout 0
	MaxTimeout      int            // seconds; 0 = no limit
	MaxDelay        int            // seconds; 0 = no limit
	MaxTasksPerPost int
	MaxLogBytes     int64 // per task; the rest is cut with a marker
	LeaseDuration   time.Duration
	// LeasePoll is how long a runner waiting for a task sleeps before
	// looking again without a wake-up (default 250ms): what starts delayed
	// tasks near their time, and the fallback when another server's
	// wake-ups do not arrive.
	LeasePoll   time.Duration
	MaxAttempts int // leases a task may lose before it ends killed
	// KnownStacks lists the stacks a code may name.
	KnownStacks []string
	// Metrics records what the service does; nil records nothing.
	Metrics *metrics.Metrics
	// AllowImages are the patterns of images an image code may name
	// besides Mayfly's stacks (imagepolicy); none = stacks only.
	AllowImages []string
	MinRunEvery time.Duration // shortest run_every of a schedule; 0 = a minute
	// TaskTokenKey signs the tokens tasks report progress with. Servers
	// sharing a store must share the key.
	TaskTokenKey []byte
	// TokenHashKey keys the digests API tokens are stored under; it lives
	// outside the store, so a copy of the database alone does not allow
	// guessing tokens. Servers sharing a store must share the key.
	TokenHashKey []byte
	// DataDir is where the store and blobs live; with MinFreeBytes, Ready
	// is false while it has less space free. Empty: no free-space check.
	DataDir      string
	MinFreeBytes int64
	// NoSpaceHold is how long Ready stays false after a write found the
	// disk full; zero = 30 s.
	NoSpaceHold time.Duration
	// Retention: finished tasks and their logs are deleted this long
	// after they ended. Unlike the other fields, 0 keeps them forever.
	Retention      time.Duration
	UpkeepInterval time.Duration // how often pruning and the blob sweep run
	BlobGrace      time.Duration // age before an unnamed package or temporary file is removed
	PruneBatch     int           // tasks deleted per transaction
	// Quotas are the limits of a project that sets none of its own; 0 is
	// no limit. Unlike the other fields, zero values stay zero.
	Quotas store.Quotas
}

// Quotas bound what one project may hold or do.
type Quotas = store.Quotas

// DefaultQuotas are `mayfly server`'s defaults for projects that set no
// quotas of their own: generous, so that only a runaway client meets
// them. Schedules follow IronWorker's limit of 100.
func DefaultQuotas() Quotas {
	return Quotas{QueuedTasks: 1_000_000, Schedules: 100, CodeBytes: 10 << 30, RequestRate: 100}
}

// DefaultConfig is what a server runs with unless told otherwise.
func DefaultConfig() Config {
	return Config{
		MaxPayloadBytes: 1 << 20,
		MaxCodeBytes:    256 << 20,
		Package:         codepkg.DefaultLimits,
		DefaultTimeout:  3600,
		MaxTimeout:      24 * 3600,
		MaxTasksPerPost: 1000,
		MaxLogBytes:     10 << 20,
		LeaseDuration:   30 * time.Second,
		MaxAttempts:     3,
		Retention:       30 * 24 * time.Hour,
		UpkeepInterval:  defaultUpkeepInterval,
		BlobGrace:       defaultBlobGrace,
		PruneBatch:      defaultPruneBatch,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxPayloadBytes <= 0 {
		c.MaxPayloadBytes = d.MaxPayloadBytes
	}
	if c.MaxCodeBytes <= 0 {
		c.MaxCodeBytes = d.MaxCodeBytes
	}
	if c.Package.MaxFiles <= 0 {
		c.Package.MaxFiles = d.Package.MaxFiles
	}
	if c.Package.MaxUnpackedBytes <= 0 {
		c.Package.MaxUnpackedBytes = d.Package.MaxUnpackedBytes
	}
	if c.DefaultTimeout <= 0 {
		c.DefaultTimeout = d.DefaultTimeout
	}
	if c.MaxTasksPerPost <= 0 {
		c.MaxTasksPerPost = d.MaxTasksPerPost
	}
	if c.MaxLogBytes <= 0 {
		c.MaxLogBytes = d.MaxLogBytes
	}
	if c.LeaseDuration <= 0 {
		c.LeaseDuration = d.LeaseDuration
	}
	if c.LeasePoll <= 0 {
		c.LeasePoll = defaultLeasePoll
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.NoSpaceHold <= 0 {
		c.NoSpaceHold = defaultNoSpaceHold
	}
	if c.UpkeepInterval <= 0 {
		c.UpkeepInterval = d.UpkeepInterval
	}
	if c.BlobGrace <= 0 {
		c.BlobGrace = d.BlobGrace
	}
	if c.PruneBatch <= 0 {
		c.PruneBatch = d.PruneBatch
	}
	if len(c.TaskTokenKey) == 0 {
		// Good for one server; servers sharing a store configure one key.
		c.TaskTokenKey = randomKey()
	}
	if len(c.TokenHashKey) == 0 {
		// Good for one process only: tokens stored under it do not
		// authenticate after a restart. Servers load a key file.
		c.TokenHashKey = randomKey()
	}
	return c
}

func randomKey() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic("service: no randomness: " + err.Error())
	}
	return k
}

// Service is safe for concurrent use.
type Service struct {
	store  store.Store
	blobs  blob.Store
	cfg    Config
	policy imagepolicy.Policy
	log    *slog.Logger
	now    func() time.Time

	mu        sync.Mutex
	wake      chan struct{} // closed and replaced when tasks are queued
	leasePoll time.Duration
	relay     *relay // nil when the store is not shared

	sched   scheduleWake
	runners runnerRegistry
	logs    logWatches
	revs    revisionCache
	usage   usageCache

	noSpaceAt atomic.Int64 // unix ns of the last disk-full write; 0 = none
	// parse bounds the memory that code packages being checked may take
	// at once; each holds what its directory costs archive/zip to parse.
	parse *semaphore.Weighted
}

// parseBudget is the memory all code package checks may take together. One
// package at the default limits costs at most about 23 MB.
const parseBudget = 48 << 20

// New returns a service over the given stores.
func New(st store.Store, blobs blob.Store, cfg Config, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	policy, err := imagepolicy.New(cfg.AllowImages)
	if err != nil {
		// Callers check the patterns first (imagepolicy.New); a bad one
		// here leaves the safe default, stacks only.
		log.Error("image allow-list refused; image codes may name stacks only", "err", err)
	}
	s := &Service{store: st, blobs: blobs, cfg: cfg.withDefaults(), policy: policy, log: log,
		now: func() time.Time { return time.Now().UTC() }, wake: make(chan struct{}),
		parse: semaphore.NewWeighted(parseBudget)}
	s.leasePoll = s.cfg.LeasePoll
	if n, ok := st.(store.Notifier); ok {
		s.relay = newRelay(n)
	}
	return s
}

// Config returns the effective configuration.
func (s *Service) Config() Config { return s.cfg }

// notify wakes every runner waiting in Lease, here and on the other
// servers sharing the store.
func (s *Service) notify() {
	s.wakeRunners()
	s.relay.publish(topicTasks)
}

// notifySchedules wakes the scheduler, here or on the server that leads.
func (s *Service) notifySchedules() {
	s.sched.notify()
	s.relay.publish(topicSchedules)
}

// wakeRunners wakes the runners waiting in Lease on this server.
func (s *Service) wakeRunners() {
	s.mu.Lock()
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
}

func (s *Service) wakeChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wake
}

// mapStoreErr turns store sentinels into user-facing errors about what.
func mapStoreErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return errorf(ErrNotFound, "%s not found", what)
	case errors.Is(err, store.ErrConflict):
		return errorf(ErrConflict, "%s: conflicting change", what)
	}
	return err
}

// Ready reports whether the store answers and has room to write.
func (s *Service) Ready(ctx context.Context) error {
	if _, err := s.store.CountProjects(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return s.spaceReady()
}

// ReadyDeps reports whether what lies past the service's own store
// connection answers: the database takes writes (not a standby), the code
// package store is reachable. Each check is a call out; callers answering
// probes should not make it more than about once a second.
func (s *Service) ReadyDeps(ctx context.Context) error {
	if w, ok := s.store.(interface{ Writable(context.Context) error }); ok {
		if err := w.Writable(ctx); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	if p, ok := s.blobs.(interface{ Ping(context.Context) error }); ok {
		if err := p.Ping(ctx); err != nil {
			return fmt.Errorf("code packages: %w", err)
		}
	}
	return nil
}

// WithPackageLimits sets what a code package may unpack to; zero keeps the
// default.
func (c Config) WithPackageLimits(files int, unpackedBytes int64) Config {
	c.Package.MaxFiles, c.Package.MaxUnpackedBytes = files, unpackedBytes
	return c
}

// Package scheduler turns due schedules into tasks: one loop that sleeps
// until the earliest next_start (looking again at least every MaxWait, so
// schedules made by another server are seen) and then asks the service to
// fire what is due. Claiming a run and queueing its task is one store
// transaction in the service, so the loop itself may be stopped at any
// moment, or run twice, without losing or doubling a run. With PostgreSQL
// only the elected leader will run it; with SQLite there is one server.
package scheduler

import (
	"context"
	"log/slog"
	"time"
)

// Firer is what the scheduler needs of the service.
type Firer interface {
	// FireDueSchedules fires what is due and returns the earliest due
	// time left; ok is false when nothing is scheduled.
	FireDueSchedules(ctx context.Context) (next time.Time, ok bool, err error)
	// ScheduleChanged returns a channel closed when a schedule changes.
	ScheduleChanged() <-chan struct{}
}

// Config tunes the loop; zero values take the defaults.
type Config struct {
	// MaxWait is the longest the loop sleeps between looks (default 1s).
	MaxWait time.Duration
	Log     *slog.Logger
}

// Scheduler is the loop. Run it with Run.
type Scheduler struct {
	f       Firer
	maxWait time.Duration
	log     *slog.Logger
}

// New returns a scheduler over f.
func New(f Firer, cfg Config) *Scheduler {
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Scheduler{f: f, maxWait: cfg.MaxWait, log: cfg.Log.With("component", "scheduler")}
}

// retryWait is how long the loop waits when something is still due after
// a pass, i.e. a schedule failed to fire and will be tried again.
const retryWait = 250 * time.Millisecond

// Run fires schedules until ctx ends, then returns nil. Failures are
// logged and retried; they never end the loop.
func (s *Scheduler) Run(ctx context.Context) error {
	s.log.Info("scheduler started", "max_wait", s.maxWait)
	defer s.log.Info("scheduler stopped")
	// Since Go 1.23 Reset discards a pending tick, so the timer needs no
	// draining.
	timer := time.NewTimer(s.maxWait)
	defer timer.Stop()
	for {
		// Taken before the pass, so that a change during it is not missed.
		changed := s.f.ScheduleChanged()
		wait := s.maxWait
		next, ok, err := s.f.FireDueSchedules(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			s.log.Error("fire due schedules", "err", err)
		case ok:
			if d := time.Until(next); d < wait {
				wait = max(d, 0)
				if d <= 0 {
					wait = retryWait
				}
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-timer.C:
		}
	}
}

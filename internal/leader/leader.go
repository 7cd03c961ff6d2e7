// Package leader runs the work that must happen on one server at a time
// (firing schedules, rescuing expired leases, pruning) on whichever server
// of those sharing a store holds the store's lock, and moves it to another
// when that server dies. The lock decides who leads; the work itself must
// still tolerate two leaders for a moment, because a leader that lost its
// connection learns it only at its next check.
package leader

import (
	"context"
	"log/slog"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// DefaultRetry is how often a follower tries to take the lock: with the
// store's own check of the leader's session (about a second), a dead
// leader is replaced within a few seconds.
const DefaultRetry = 2 * time.Second

// Config tunes Run; zero values take the defaults.
type Config struct {
	Retry time.Duration
	Log   *slog.Logger
	// OnChange, if set, is told each time this process starts (true) or
	// stops (false) leading.
	OnChange func(leading bool)
}

// Run calls work whenever this process holds the lock called name, with a
// context that ends when the lock may be lost or ctx ends, and returns
// when ctx ends and work has returned. A nil locker means there is no one
// to share with: work runs at once, for as long as ctx.
func Run(ctx context.Context, l store.Locker, name string, cfg Config, work func(ctx context.Context)) {
	if cfg.Retry <= 0 {
		cfg.Retry = DefaultRetry
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func(bool) {}
	}
	log := cfg.Log.With("lock", name)
	if l == nil {
		cfg.OnChange(true)
		work(ctx)
		cfg.OnChange(false)
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	waiting := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lock, err := l.TryLock(ctx, name)
		switch {
		case ctx.Err() != nil:
			if lock != nil {
				lock.Release()
			}
			return
		case err != nil:
			log.Warn("could not try to lead", "err", err, "retry_in", cfg.Retry)
		case lock == nil:
			if !waiting {
				log.Info("another server leads; following")
				waiting = true
			}
		default:
			waiting = false
			lead(ctx, lock, log, cfg.OnChange, work)
		}
		t.Reset(cfg.Retry)
	}
}

func lead(ctx context.Context, lock store.Lock, log *slog.Logger, onChange func(bool), work func(context.Context)) {
	log.Info("leading: the leader's work runs on this server")
	wctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-lock.Lost():
			cancel()
		case <-wctx.Done():
		}
	}()
	onChange(true)
	work(wctx)
	onChange(false)
	lostFirst := false
	select {
	case <-lock.Lost():
		lostFirst = ctx.Err() == nil
	default:
	}
	cancel()
	lock.Release()
	if lostFirst {
		log.Warn("stopped leading: lost the connection that held the lock")
	} else {
		log.Info("stopped leading")
	}
}

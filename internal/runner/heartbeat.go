package runner

import (
	"context"
	"sync"
	"time"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// heartbeat holds a task's lease from the moment it is leased: image
// checks, package fetches and container creation can take longer than a
// lease under load, so renewing only once the container runs would lose
// tasks that are merely slow to start.
type heartbeat struct {
	cancel chan struct{} // closed when a user asked to cancel the task
	lost   chan struct{} // closed when the lease is gone
	stop   context.CancelFunc
	done   chan struct{}
}

func (r *Runner) startHeartbeat(ctx context.Context, job wire.Job) *heartbeat {
	interval := min(r.cfg.HeartbeatInterval, time.Duration(job.LeaseMs)*time.Millisecond/4)
	interval = max(interval, 50*time.Millisecond)
	ctx, stop := context.WithCancel(ctx)
	h := &heartbeat{cancel: make(chan struct{}), lost: make(chan struct{}), stop: stop, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		var cancelOnce sync.Once
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cancel, err := r.queue.Heartbeat(ctx, job.Lease(r.cfg.ID))
			switch {
			case err != nil && r.cfg.IsLeaseLost(err):
				close(h.lost)
				return
			case err != nil:
				if ctx.Err() == nil {
					r.log.Warn("heartbeat failed", "task_id", job.TaskID, "err", err)
				}
			case cancel:
				// Keep beating: the lease must hold while the container
				// stops, or the task would be handed on meanwhile.
				cancelOnce.Do(func() { close(h.cancel) })
			}
		}
	}()
	return h
}

// Stop ends the heartbeats and waits until none is in flight, so the
// finish report is never overtaken by a late renewal.
func (h *heartbeat) Stop() {
	h.stop()
	<-h.done
}

func (h *heartbeat) isLost() bool {
	select {
	case <-h.lost:
		return true
	default:
		return false
	}
}

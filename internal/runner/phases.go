package runner

import (
	"time"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// phases are the moments of one task on a runner. Their differences go
// with the finish report and show in the task's JSON as "timings", so the
// next speed-up is chosen from data: where a task's time goes.
type phases struct {
	leased, prepared, started, exited, logged time.Time
}

func (p *phases) mark(t *time.Time) { *t = time.Now() }

// span is the time from one mark to another, 0 when either is missing.
func span(from, to time.Time) time.Duration {
	if from.IsZero() || to.IsZero() || to.Before(from) {
		return 0
	}
	return to.Sub(from)
}

// ms returns each phase that both ends of were marked, in milliseconds:
// queue (due to leased), prepare (image and package), start (container
// create, attach and start), run (start to exit), logs (the last log
// upload).
func (p phases) ms(job wire.Job) map[string]float64 {
	out := map[string]float64{}
	span := func(name string, from, to time.Time) {
		if !from.IsZero() && !to.IsZero() && !to.Before(from) {
			out[name] = float64(to.Sub(from).Microseconds()) / 1000
		}
	}
	if !job.DueAt.IsZero() && p.leased.After(job.DueAt) {
		span("queue", job.DueAt, p.leased)
	}
	span("prepare", p.leased, p.prepared)
	span("start", p.prepared, p.started)
	span("run", p.started, p.exited)
	span("logs", p.exited, p.logged)
	if len(out) == 0 {
		return nil
	}
	return out
}

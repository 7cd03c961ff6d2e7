package store

import (
	"context"
	"time"

	"github.com/mayfly-run/mayfly/internal/mayfly"
)

// Runner is a runner as the registry knows it, as in package mayfly.
type Runner = mayfly.Runner

// RunnerStore is the registry of runners, shared by every server on a
// store: it tells which clusters have a live runner and which stacks the
// runners have.
type RunnerStore interface {
	// RecordRunner stores what a runner said of itself, LastSeen included.
	RecordRunner(ctx context.Context, r Runner) error
	// TouchRunner moves a known runner's LastSeen; unknown ids are ignored.
	TouchRunner(ctx context.Context, runnerID string, seen time.Time) error
	// ListRunners returns the runners heard from at or after since, by id.
	ListRunners(ctx context.Context, since time.Time) ([]Runner, error)
}

package store

import (
	"context"
	"time"
)

// Runner is what the store knows of one runner: what it said of itself on
// its last lease, and when it was last heard from.
type Runner struct {
	ID       string
	Host     string
	Clusters []string // "" is the default cluster
	Capacity int
	Busy     int
	Version  string
	Driver   string
	Stacks   []string
	LastSeen time.Time
}

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

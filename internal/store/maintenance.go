package store

import (
	"context"
	"time"
)

// PruneParams selects finished tasks to delete.
type PruneParams struct {
	// EndedBefore: only tasks that ended before this time go.
	EndedBefore time.Time
	// Limit caps the tasks deleted in one call (one transaction), so a
	// large prune never holds the writer for long. 0 means 1000.
	Limit int
}

// MaintenanceStore is what background upkeep needs of a store: giving a
// lease back, pruning old tasks and telling which code packages are still
// in use.
type MaintenanceStore interface {
	// ReleaseTask gives a task the runner holds in preparing back to the
	// queue as if it had not been leased (its attempt is not counted):
	// for when the server could not hand it out. ErrLeaseLost if the
	// runner does not hold it.
	ReleaseTask(ctx context.Context, taskID, runnerID string, now time.Time) error
	// PruneTasks deletes up to p.Limit finished tasks that ended before
	// p.EndedBefore, with their logs, and returns how many it deleted.
	// Links to them (retry_of, retry_at) in the tasks that stay are
	// cleared, so no task points at one that is gone.
	PruneTasks(ctx context.Context, p PruneParams) (int, error)
	// ReferencedPackageKeys returns which of keys a code revision names
	// as its package.
	ReferencedPackageKeys(ctx context.Context, keys []string) (map[string]bool, error)
}

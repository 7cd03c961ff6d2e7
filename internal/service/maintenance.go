package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mayfly-run/mayfly/internal/blob"
	"github.com/mayfly-run/mayfly/internal/store"
)

// Upkeep defaults. The blob grace must outlast the gap between an upload's
// blob write and its revision's commit (milliseconds in practice): a blob
// younger than it is never taken for an orphan.
const (
	defaultUpkeepInterval = time.Hour
	defaultBlobGrace      = time.Hour
	defaultPruneBatch     = 1000
	// pruneBatchPause lets other writers through between prune batches.
	pruneBatchPause = 10 * time.Millisecond
	// keyBatch bounds one reference look-up of the blob sweep.
	keyBatch = 500
)

// runUpkeep prunes old tasks and sweeps orphaned blobs at once and then
// every UpkeepInterval, until ctx ends.
func (s *Service) runUpkeep(ctx context.Context) {
	t := time.NewTicker(s.cfg.UpkeepInterval)
	defer t.Stop()
	for {
		if _, err := s.PruneTasks(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("prune old tasks", "err", err)
		}
		if _, err := s.SweepBlobs(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("sweep orphaned code packages", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PruneTasks deletes finished tasks (and their logs) that ended longer than
// Retention ago, one bounded batch per transaction, and returns how many.
// A zero Retention keeps everything.
func (s *Service) PruneTasks(ctx context.Context) (int, error) {
	if s.cfg.Retention <= 0 {
		return 0, nil
	}
	before := s.now().Add(-s.cfg.Retention)
	total := 0
	for {
		n, err := s.store.PruneTasks(ctx, store.PruneParams{EndedBefore: before, Limit: s.cfg.PruneBatch})
		total += n
		if err != nil {
			return total, fmt.Errorf("prune tasks ended before %s: %w", before.Format(time.RFC3339), err)
		}
		if n < s.cfg.PruneBatch {
			break
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(pruneBatchPause):
		}
	}
	if total > 0 {
		s.log.Info("pruned finished tasks", "count", total, "ended_before", before)
	}
	return total, nil
}

// SweepBlobs removes what a crash between a package's write and its
// revision's commit leaves behind: temporary files and blobs that no code
// revision names, once older than BlobGrace (an upload in flight writes its
// blob before its revision commits, so a young blob is never touched). It
// returns how many blobs and temporary files it removed.
func (s *Service) SweepBlobs(ctx context.Context) (int, error) {
	before := s.now().Add(-s.cfg.BlobGrace)
	removed, err := s.blobs.RemoveTemp(ctx, before)
	if err != nil {
		return removed, fmt.Errorf("remove stale temporary packages: %w", err)
	}
	list, err := s.blobs.List(ctx)
	if err != nil {
		return removed, fmt.Errorf("list code packages: %w", err)
	}
	var old []string
	for _, b := range list {
		if b.ModTime.Before(before) {
			old = append(old, b.Key)
		}
	}
	for len(old) > 0 {
		batch := old[:min(len(old), keyBatch)]
		old = old[len(batch):]
		used, err := s.store.ReferencedPackageKeys(ctx, batch)
		if err != nil {
			return removed, fmt.Errorf("look up code packages in use: %w", err)
		}
		for _, k := range batch {
			if used[k] {
				continue
			}
			if err := s.blobs.Delete(ctx, k); err != nil && !errors.Is(err, blob.ErrNotFound) {
				return removed, fmt.Errorf("remove orphaned code package: %w", err)
			}
			s.log.Info("removed orphaned code package", "key", k)
			removed++
		}
	}
	return removed, nil
}

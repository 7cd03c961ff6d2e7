package runner

import (
	"context"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
)

// markImageUsed records that a task is about to use a code image. It runs
// before the image is looked up, so the prune, which checks the record
// under the same lock, never removes an image between its check and use.
func (r *Runner) markImageUsed(ref string) {
	r.imgMu.Lock()
	r.imageUsed[ref] = time.Now()
	r.imgMu.Unlock()
}

// pruneCacheLoop removes packages and code images unused for CacheTTL,
// every CachePruneInterval, until ctx ends.
func (r *Runner) pruneCacheLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.CachePruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.pruneCache(ctx, time.Now())
	}
}

// pruneCache removes what was last used before now - CacheTTL.
func (r *Runner) pruneCache(ctx context.Context, now time.Time) (packages, images int) {
	before := now.Add(-r.cfg.CacheTTL)
	packages, err := r.cache.prune(before)
	if err != nil {
		r.log.Warn("could not prune the package cache", "err", err)
	}
	if packages > 0 {
		r.log.Info("removed unused code packages", "count", packages, "unused_for", r.cfg.CacheTTL)
	}
	pruner, ok := r.driver.(driver.ImagePruner)
	if !ok {
		return packages, 0
	}
	refs, err := pruner.ListImages(ctx, map[string]string{labelCodeImage: "true"})
	if err != nil {
		r.log.Warn("could not list code images", "err", err)
		return packages, 0
	}
	r.forgetGone(refs)
	for _, ref := range refs {
		if ctx.Err() != nil {
			break
		}
		if r.pruneImage(ctx, pruner, ref, now, before) {
			images++
		}
	}
	if images > 0 {
		r.log.Info("removed unused code images", "count", images, "unused_for", r.cfg.CacheTTL)
	}
	return packages, images
}

func (r *Runner) pruneImage(ctx context.Context, pruner driver.ImagePruner, ref string, now, before time.Time) bool {
	r.imgMu.Lock()
	defer r.imgMu.Unlock()
	last, ok := r.imageUsed[ref]
	if !ok {
		// Baked in an earlier life of this runner (or by another on the
		// same engine): its clock starts now.
		r.imageUsed[ref] = now
		return false
	}
	if !last.Before(before) {
		return false
	}
	// Forget it first: the next task bakes anew rather than trust a
	// cached "it exists".
	r.baked.Delete(ref)
	removed, err := pruner.RemoveImage(ctx, ref)
	if err != nil {
		r.log.Warn("could not remove unused code image", "image", ref, "err", err)
		return false
	}
	if removed {
		delete(r.imageUsed, ref)
	}
	return removed
}

// forgetGone drops the use records of images no longer on the engine
// (removed as old revisions, or by hand), so the record stays small.
func (r *Runner) forgetGone(refs []string) {
	present := make(map[string]bool, len(refs))
	for _, ref := range refs {
		present[ref] = true
	}
	r.imgMu.Lock()
	defer r.imgMu.Unlock()
	for ref := range r.imageUsed {
		if !present[ref] {
			delete(r.imageUsed, ref)
		}
	}
}

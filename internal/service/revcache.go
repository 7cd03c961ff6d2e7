package service

import (
	"context"
	"sync"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// revisionCache keeps the code revisions leases have read, so that a lease
// costs no read of its code's revision beside the lease itself. A revision
// never changes once written, so a cached one is never wrong in what it
// says; it can only outlive the deletion of its code. DeleteCode on this
// server forgets its revisions at once; a deletion on another server
// sharing the store is seen once the entry is revisionTTL old, and a task
// leased meanwhile fails when its runner finds the package gone, as it
// would had it been leased just before the deletion.
type revisionCache struct {
	mu sync.Mutex
	m  map[string]cachedRevision
}

type cachedRevision struct {
	rev store.CodeRevision
	at  time.Time
}

const (
	revisionTTL = 10 * time.Second
	// revisionCacheMax bounds the cache; it is emptied when full, which
	// costs one read per revision in use.
	revisionCacheMax = 4096
)

func (c *revisionCache) get(id string, now time.Time) (store.CodeRevision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || now.Sub(e.at) >= revisionTTL || now.Before(e.at) {
		return store.CodeRevision{}, false
	}
	return e.rev, true
}

func (c *revisionCache) put(rev store.CodeRevision, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= revisionCacheMax {
		c.m = make(map[string]cachedRevision)
	}
	c.m[rev.ID] = cachedRevision{rev: rev, at: now}
}

// forget drops the revisions of a code.
func (c *revisionCache) forget(codeID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.m {
		if e.rev.CodeID == codeID {
			delete(c.m, id)
		}
	}
}

// leasedRevision returns the code revision of a leased task.
func (s *Service) leasedRevision(ctx context.Context, id string) (store.CodeRevision, error) {
	now := time.Now()
	if rev, ok := s.revs.get(id, now); ok {
		return rev, nil
	}
	rev, err := s.store.GetCodeRevision(ctx, id)
	if err == nil {
		s.revs.put(rev, now)
	}
	return rev, err
}

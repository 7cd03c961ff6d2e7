package service

import (
	"context"
	"sync"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// usageFor is how long a count of a project's queued tasks is trusted
// before it is made again. Counting a queue of a million takes a while;
// the queued-tasks quota is checked against a count at most this old plus
// what this server queued since, so it holds to within a second's worth
// of enqueues on the other servers.
const usageFor = time.Second

type usageCache struct {
	mu sync.Mutex
	m  map[string]*usageEntry
}

type usageEntry struct {
	at     time.Time
	queued int64 // counted at `at`, plus what this server queued since
}

// forgetUsage drops what is cached of a project's usage.
func (s *Service) forgetUsage(projectID string) {
	s.usage.mu.Lock()
	delete(s.usage.m, projectID)
	s.usage.mu.Unlock()
}

// checkQueued refuses n more queued tasks in a project past its quota, and
// counts them in once they may go.
func (s *Service) checkQueued(ctx context.Context, projectID string, n int) error {
	p, err := s.store.GetProject(ctx, projectID)
	if err != nil {
		return mapStoreErr(err, "Project")
	}
	limit := s.EffectiveQuotas(p).QueuedTasks
	if limit <= 0 {
		return nil
	}
	now := s.now()
	s.usage.mu.Lock()
	e := s.usage.m[projectID]
	s.usage.mu.Unlock()
	if e == nil || now.Sub(e.at) >= usageFor || now.Before(e.at) {
		u, err := s.store.ProjectUsage(ctx, projectID, limit)
		if err != nil {
			return err
		}
		e = &usageEntry{at: now, queued: u.Queued}
	}
	s.usage.mu.Lock()
	defer s.usage.mu.Unlock()
	if s.usage.m == nil {
		s.usage.m = map[string]*usageEntry{}
	}
	if cur := s.usage.m[projectID]; cur != nil && !cur.at.Before(e.at) {
		e = cur
	}
	if e.queued+int64(n) > limit {
		s.usage.m[projectID] = e
		return errorf(ErrQuota, "Quota exceeded: project may hold %d queued tasks; it holds %d and %d more were asked for", limit, e.queued, n)
	}
	e.queued += int64(n)
	s.usage.m[projectID] = e
	return nil
}

// checkSchedules refuses n more schedules past the project's quota.
func (s *Service) checkSchedules(ctx context.Context, projectID string, n int) error {
	p, err := s.store.GetProject(ctx, projectID)
	if err != nil {
		return mapStoreErr(err, "Project")
	}
	limit := s.EffectiveQuotas(p).Schedules
	if limit <= 0 {
		return nil
	}
	u, err := s.store.ProjectUsage(ctx, projectID, 1)
	if err != nil {
		return err
	}
	if u.Schedules+int64(n) > limit {
		return errorf(ErrQuota, "Quota exceeded: project may have %d schedules; it has %d and %d more were asked for", limit, u.Schedules, n)
	}
	return nil
}

// codeRoom returns how many more package bytes a project may store (-1:
// no limit).
func (s *Service) codeRoom(ctx context.Context, projectID string) (int64, error) {
	p, err := s.store.GetProject(ctx, projectID)
	if err != nil {
		return 0, mapStoreErr(err, "Project")
	}
	limit := s.EffectiveQuotas(p).CodeBytes
	if limit <= 0 {
		return -1, nil
	}
	u, err := s.store.ProjectUsage(ctx, projectID, 1)
	if err != nil {
		return 0, err
	}
	return max(limit-u.CodeBytes, 0), nil
}

// RequestRate is the API requests a second a token may make (0: no
// limit): a project token's project's quota, or the server's default.
// Admin and runner tokens are the operator's and are not limited here.
func (s *Service) RequestRate(ctx context.Context, t store.Token) (float64, error) {
	if t.Kind != store.TokenProject {
		return 0, nil
	}
	p, err := s.store.GetProject(ctx, t.ProjectID)
	if err != nil {
		return 0, mapStoreErr(err, "Project")
	}
	return s.EffectiveQuotas(p).RequestRate, nil
}

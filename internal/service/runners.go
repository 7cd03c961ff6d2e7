package service

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// The registry of runners lives in the store, so every server sees every
// runner. A runner says what it is on each lease; that is stored at most
// every runnerRecordEvery per runner (or at once when it changed), and a
// heartbeat only moves its last-seen time, so the registry costs a write
// every few seconds per runner, not one per request.
const (
	runnerRecordEvery = 5 * time.Second
	// RunnerLive: a runner heard from within it is live. An idle runner
	// long-polls at least every 20 s, a busy one heartbeats its tasks.
	RunnerLive   = 2 * time.Minute
	liveCacheFor = time.Second
)

type runnerRegistry struct {
	mu       sync.Mutex
	recorded map[string]runnerMemo // runner id -> what was stored last
	sweptAt  time.Time             // when quiet runners were last forgotten
	cachedAt time.Time
	clusters map[string]bool // clusters with a live runner, as of cachedAt
}

type runnerMemo struct {
	at   time.Time
	info store.Runner
}

// Busy is left out: it changes with nearly every lease, and a write per
// lease would cost every task a commit; it is recorded with the rest at
// most every runnerRecordEvery.
func sameRunner(a, b store.Runner) bool {
	return a.Host == b.Host && slices.Equal(a.Clusters, b.Clusters) && a.Capacity == b.Capacity &&
		a.Version == b.Version && a.Driver == b.Driver && slices.Equal(a.Stacks, b.Stacks)
}

// forgetQuiet drops the memos of runners not heard from in RunnerLive, so
// a server that sees runners come and go for months keeps only the live
// ones; a forgotten runner that returns is simply recorded again. Called
// with mu held; it walks the map at most once per RunnerLive.
func (reg *runnerRegistry) forgetQuiet(now time.Time) {
	if reg.recorded == nil {
		reg.recorded = map[string]runnerMemo{}
	}
	if now.Sub(reg.sweptAt) < RunnerLive {
		return
	}
	reg.sweptAt = now
	for id, m := range reg.recorded {
		if now.Sub(m.at) > RunnerLive {
			delete(reg.recorded, id)
		}
	}
}

// noteRunner stores what a leasing runner said of itself, when due.
func (s *Service) noteRunner(ctx context.Context, req wire.LeaseRequest, clusters []string) {
	now := s.now()
	r := store.Runner{ID: req.RunnerID, Host: req.Host, Clusters: clusters, Capacity: req.Capacity, Busy: req.Busy,
		Version: req.Version, Driver: req.Driver, Stacks: req.Stacks, LastSeen: now}
	reg := &s.runners
	reg.mu.Lock()
	reg.forgetQuiet(now)
	last, ok := reg.recorded[r.ID]
	due := !ok || now.Sub(last.at) >= runnerRecordEvery || !sameRunner(last.info, r)
	if due {
		reg.recorded[r.ID] = runnerMemo{at: now, info: r}
		// A runner that leased is live now, whatever the cache says.
		if !ok || !sameRunner(last.info, r) {
			reg.cachedAt = time.Time{}
		}
	}
	reg.mu.Unlock()
	if !due {
		return
	}
	if err := s.store.RecordRunner(ctx, r); err != nil {
		s.log.Warn("could not record runner", "runner_id", r.ID, "err", err)
	}
}

// touchRunner moves a runner's last-seen time when due: busy runners do
// not lease, but they heartbeat.
func (s *Service) touchRunner(ctx context.Context, runnerID string) {
	now := s.now()
	reg := &s.runners
	reg.mu.Lock()
	reg.forgetQuiet(now)
	// A runner this server never recorded (it leases through another
	// server) is touched too, at most once per interval.
	last, ok := reg.recorded[runnerID]
	due := !ok || now.Sub(last.at) >= runnerRecordEvery
	if due {
		if !ok {
			last.info = store.Runner{ID: runnerID}
		}
		last.at = now
		reg.recorded[runnerID] = last
	}
	reg.mu.Unlock()
	if !due {
		return
	}
	if err := s.store.TouchRunner(ctx, runnerID, now); err != nil {
		s.log.Warn("could not touch runner", "runner_id", runnerID, "err", err)
	}
}

// Runners lists the live runners.
func (s *Service) Runners(ctx context.Context) ([]store.Runner, error) {
	rs, err := s.store.ListRunners(ctx, s.now().Add(-RunnerLive))
	if err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	return rs, nil
}

// Stacks lists the stacks the live runners have, sorted.
func (s *Service) Stacks(ctx context.Context) ([]string, error) {
	rs, err := s.Runners(ctx)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, r := range rs {
		for _, st := range r.Stacks {
			if !slices.Contains(out, st) {
				out = append(out, st)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// liveClusters says which clusters a live runner serves, from a view at
// most liveCacheFor old.
func (s *Service) liveClusters(ctx context.Context) (map[string]bool, error) {
	reg := &s.runners
	reg.mu.Lock()
	if now := s.now(); now.Sub(reg.cachedAt) < liveCacheFor && reg.clusters != nil {
		c := reg.clusters
		reg.mu.Unlock()
		return c, nil
	}
	reg.mu.Unlock()
	rs, err := s.Runners(ctx)
	if err != nil {
		return nil, err
	}
	c := map[string]bool{}
	for _, r := range rs {
		for _, cl := range r.Clusters {
			c[cl] = true
		}
	}
	reg.mu.Lock()
	reg.clusters, reg.cachedAt = c, s.now()
	reg.mu.Unlock()
	return c, nil
}

// explainWaits gives a queued task that no live runner could take a msg
// saying so; the msg is not stored, so it goes as soon as a runner for its
// cluster appears.
func (s *Service) explainWaits(ctx context.Context, tasks []store.Task) {
	var live map[string]bool
	for i := range tasks {
		t := &tasks[i]
		if t.Status != store.StatusQueued || t.Msg != "" {
			continue
		}
		if live == nil {
			var err error
			if live, err = s.liveClusters(ctx); err != nil {
				s.log.Warn("could not tell which clusters have runners", "err", err)
				return
			}
		}
		if live[t.Cluster] {
			continue
		}
		if t.Cluster == "" {
			t.Msg = "No live runner serves the default cluster: the task waits until one does"
		} else {
			t.Msg = fmt.Sprintf("No live runner serves cluster %q: the task waits until one does", t.Cluster)
		}
	}
}

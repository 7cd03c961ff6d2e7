package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// insertBatch is how many tasks one bulk-insert transaction holds: large
// enough that the fsync per commit stops mattering.
const insertBatch = 20_000

// DepthResult compares the cost of a lease (and the finish after it) with
// a shallow queue and with a deep one.
type DepthResult struct {
	Small  DepthSide `json:"small"`
	Large  DepthSide `json:"large"`
	Target Target    `json:"target"`
}

// DepthSide is one queue depth.
type DepthSide struct {
	Queued     int     `json:"queued"`
	InsertSecs float64 `json:"insert_seconds"`
	Lease      Stats   `json:"lease"`
	Finish     Stats   `json:"finish"`
	Total      Stats   `json:"lease_and_finish"`
}

// RunDepth runs the depth scenario. Both queues are filled first, each in
// its own store, and then leased from in turn, one lease from each per
// round, so both sides see the same machine at the same moments.
func RunDepth(ctx context.Context, cfg Config) (*DepthResult, error) {
	cfg = cfg.withDefaults()
	if cfg.DepthSample > cfg.DepthSmall {
		return nil, fmt.Errorf("depth sample %d is larger than the small queue of %d", cfg.DepthSample, cfg.DepthSmall)
	}
	res := &DepthResult{Small: DepthSide{Queued: cfg.DepthSmall}, Large: DepthSide{Queued: cfg.DepthLarge}}
	var servers [2]*server
	for i, side := range []*DepthSide{&res.Small, &res.Large} {
		// No runner: the scenario leases by hand.
		s, err := startServer(ctx, serverOptions{dir: filepath.Join(cfg.WorkDir, fmt.Sprintf("depth-%d", side.Queued))})
		if err != nil {
			return nil, err
		}
		defer s.stop()
		servers[i] = s
		t0 := time.Now()
		if err := s.fill(ctx, side.Queued, cfg.Log); err != nil {
			return nil, err
		}
		side.InsertSecs = time.Since(t0).Seconds()
	}

	var lease, finish, total [2][]time.Duration
	runnerID := id.New()
	zero := 0
	for n := range cfg.DepthSample {
		// Alternate which queue goes first in a round.
		for k := range servers {
			i := (n + k) % len(servers)
			s := servers[i]
			t0 := time.Now()
			jobs, err := s.svc.Lease(ctx, wire.LeaseRequest{RunnerID: runnerID, Max: 1})
			if err != nil {
				return nil, err
			}
			if len(jobs) != 1 {
				return nil, fmt.Errorf("lease from a queue of %d: got %d tasks, want 1", servers[i].queued, len(jobs))
			}
			t1 := time.Now()
			if err := s.svc.Finish(ctx, jobs[0].Lease(runnerID), wire.FinishRequest{RunnerID: runnerID,
				Status: string(store.StatusComplete), ExitCode: &zero}); err != nil {
				return nil, err
			}
			t2 := time.Now()
			lease[i], finish[i], total[i] = append(lease[i], t1.Sub(t0)), append(finish[i], t2.Sub(t1)), append(total[i], t2.Sub(t0))
		}
	}
	for i, side := range []*DepthSide{&res.Small, &res.Large} {
		side.Lease, side.Finish, side.Total = Summarize(lease[i]), Summarize(finish[i]), Summarize(total[i])
	}
	res.Target = target(fmt.Sprintf("lease+finish p50, %s / %s queued", count(cfg.DepthLarge), count(cfg.DepthSmall)),
		ratio(res.Large.Total.P50, res.Small.Total.P50), "<=", 1.2)
	return res, nil
}

// fill queues n due tasks of the trivial code straight into the store, in
// large transactions: the API would take minutes for a million, and how
// they got there does not change what a lease costs.
func (s *server) fill(ctx context.Context, n int, log interface{ Info(string, ...any) }) error {
	code, err := s.svc.GetCode(ctx, s.project, s.codeID)
	if err != nil {
		return fmt.Errorf("look up code %s: %w", codeName, err)
	}
	now := time.Now().UTC().Add(-time.Minute)
	batch := make([]store.Task, 0, min(n, insertBatch))
	for done := 0; done < n; {
		batch = batch[:0]
		for range min(insertBatch, n-done) {
			batch = append(batch, store.Task{
				ID: id.New(), ProjectID: s.project, CodeID: code.CodeID, CodeName: code.Name,
				CodeRevisionID: code.ID, CodeRev: code.Rev, Status: store.StatusQueued,
				Timeout: 3600, CreatedAt: now, UpdatedAt: now, DueAt: now,
			})
		}
		if err := s.st.InsertTasks(ctx, batch); err != nil {
			return fmt.Errorf("fill queue to %d tasks (at %d): %w", n, done, err)
		}
		done += len(batch)
		if done%200_000 == 0 {
			log.Info("filling queue", "queued", done, "of", n)
		}
	}
	s.queued = n
	return nil
}

// count writes 1000 as 1k and 1000000 as 1M.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

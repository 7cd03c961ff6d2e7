package service

import (
	"context"
	"errors"
	"fmt"
	"github.com/mayfly-run/mayfly/internal/mayfly"
	"io"
	"sync"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// defaultLeasePoll bounds how long a waiting runner sleeps before looking
// again, so delayed tasks start close to their due time without a wake-up.
// Everything else that makes a task leasable wakes waiting runners at once.
const defaultLeasePoll = 250 * time.Millisecond

// ErrLeaseLost tells a runner to abandon a task: its lease ran out and the
// task was handed on, or it already ended.
var ErrLeaseLost = errors.New("lease lost")

// Lease hands up to req.Max tasks to a runner, waiting up to req.WaitMs for
// one to become available.
func (s *Service) Lease(ctx context.Context, req wire.LeaseRequest) ([]wire.Job, error) {
	if req.RunnerID == "" {
		return nil, errorf(ErrInvalid, "runner_id is required")
	}
	clusters := make([]string, 0, len(req.Clusters))
	for _, c := range req.Clusters {
		clusters = append(clusters, wire.Cluster(c))
	}
	if len(clusters) == 0 {
		clusters = []string{""}
	}
	// A lease for nothing (no free slot) still tells the registry the
	// runner is there.
	s.noteRunner(ctx, req, clusters)
	if req.Max <= 0 {
		return nil, nil
	}
	deadline := time.Now().Add(time.Duration(req.WaitMs) * time.Millisecond)
	for {
		wake := s.wakeChan()
		tasks, err := s.store.LeaseTasks(ctx, store.LeaseParams{
			RunnerID: req.RunnerID, Max: req.Max, Clusters: clusters,
			LeaseDuration: s.cfg.LeaseDuration, Now: s.now(), RunningTasks: s.cfg.Quotas.RunningTasks,
		})
		if err != nil {
			return nil, fmt.Errorf("lease tasks for runner %s: %w", req.RunnerID, err)
		}
		if len(tasks) > 0 {
			return s.jobs(ctx, tasks)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		t := time.NewTimer(min(left, s.leasePoll))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-wake:
			t.Stop()
		case <-t.C:
		}
	}
}

func (s *Service) jobs(ctx context.Context, tasks []store.Task) ([]wire.Job, error) {
	now := s.now()
	for _, t := range tasks {
		s.cfg.Metrics.TaskLeased(t.DueAt, now)
	}
	jobs := make([]wire.Job, 0, len(tasks))
	revs := map[string]store.CodeRevision{}
	var lookupErr error
	for _, t := range tasks {
		rev, ok := revs[t.CodeRevisionID]
		if !ok {
			var err error
			rev, err = s.leasedRevision(ctx, t.CodeRevisionID)
			if errors.Is(err, store.ErrNotFound) {
				// The code was deleted after the task was queued: end the
				// task rather than hand out something unrunnable.
				ferr := s.store.FinishTask(ctx, store.FinishParams{TaskID: t.ID, RunnerID: t.RunnerID, Attempt: t.Attempt,
					Status: store.StatusError, Msg: "Code revision no longer exists: " + err.Error(), Now: s.now()})
				if ferr != nil {
					s.log.Error("could not end task of a deleted code; its lease will run out", "task_id", t.ID, "err", ferr)
				}
				continue
			}
			if err != nil {
				// A passing store failure is not the task's fault: give
				// it back to the queue as it was. Should that fail too,
				// its lease runs out and the rescue requeues it.
				s.log.Warn("could not read a leased task's code revision; task goes back to the queue",
					"task_id", t.ID, "revision_id", t.CodeRevisionID, "err", err)
				if rerr := s.store.ReleaseTask(context.WithoutCancel(ctx), t.ID, t.RunnerID, s.now()); rerr != nil {
					go s.retryRelease(t, rerr)
				}
				lookupErr = err
				continue
			}
			revs[t.CodeRevisionID] = rev
		}
		jobs = append(jobs, wire.Job{
			TaskID: t.ID, ProjectID: t.ProjectID, CodeID: t.CodeID, CodeName: t.CodeName,
			Payload: t.Payload, Timeout: t.Timeout, Attempt: t.Attempt, ScheduleID: t.ScheduleID, DueAt: t.DueAt,
			LeaseMs: s.cfg.LeaseDuration.Milliseconds(), MaxLogBytes: s.cfg.MaxLogBytes,
			// Valid past the task's timeout with room for a slow start.
			TaskToken: s.MintTaskToken(t.ProjectID, t.ID, time.Duration(t.Timeout)*time.Second+time.Hour),
			Code: wire.JobCode{
				RevisionID: rev.ID, Rev: rev.Rev, Runtime: rev.Runtime, FileName: rev.FileName,
				Stack: rev.Stack, Image: rev.Image, Command: rev.Command, Config: rev.Config,
				EnvVars: rev.EnvVars, PackageSHA256: rev.PackageSHA256, PackageSize: rev.PackageSize,
			},
		})
	}
	if len(jobs) == 0 && lookupErr != nil {
		// An error, not an empty answer, so the runner backs off instead
		// of leasing the released task straight back into the same fault.
		return nil, fmt.Errorf("read code revisions of leased tasks: %w", lookupErr)
	}
	return jobs, nil
}

func leaseErr(err error, taskID string) error {
	if errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("task %s: %w", taskID, ErrLeaseLost)
	}
	return err
}

// Started records that a leased task's container is running.
func (s *Service) Started(ctx context.Context, lease wire.LeaseRef) error {
	return s.fenced("started", leaseErr(s.store.MarkRunning(ctx, store.StartParams{TaskID: lease.TaskID, RunnerID: lease.RunnerID,
		Attempt: lease.Attempt, Now: s.now()}), lease.TaskID))
}

// fenced counts a runner's report refused for a stale lease, and passes
// err on.
func (s *Service) fenced(report string, err error) error {
	if errors.Is(err, ErrLeaseLost) {
		s.cfg.Metrics.ReportFenced(report)
	}
	return err
}

// Heartbeat renews a lease and says whether the task should be cancelled.
func (s *Service) Heartbeat(ctx context.Context, lease wire.LeaseRef) (bool, error) {
	s.touchRunner(ctx, lease.RunnerID)
	cancel, err := s.store.Heartbeat(ctx, store.HeartbeatParams{TaskID: lease.TaskID, RunnerID: lease.RunnerID,
		Attempt: lease.Attempt, LeaseDuration: s.cfg.LeaseDuration, Now: s.now()})
	return cancel, s.fenced("heartbeat", leaseErr(err, lease.TaskID))
}

// AppendLog adds output to a task's log. Runners cut logs at the job's
// MaxLogBytes themselves; the store holds the cap whatever they send.
func (s *Service) AppendLog(ctx context.Context, lease wire.LeaseRef, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	err := s.store.AppendLog(ctx, store.AppendLogParams{TaskID: lease.TaskID, RunnerID: lease.RunnerID,
		Attempt: lease.Attempt, Data: data, MaxBytes: s.cfg.MaxLogBytes})
	if err == nil {
		s.logChanged(lease.TaskID)
	}
	return s.fenced("log", leaseErr(s.noteIfNoSpace(err), lease.TaskID))
}

// Finish records how a task ended.
func (s *Service) Finish(ctx context.Context, lease wire.LeaseRef, req wire.FinishRequest) error {
	taskID := lease.TaskID
	status := mayfly.Status(req.Status)
	if !status.Valid() || !status.Terminal() {
		return errorf(ErrInvalid, "status %q is not a final status", req.Status)
	}
	now := s.now()
	retry, err := s.autoRetry(ctx, taskID, status, now)
	if err != nil {
		return err
	}
	// The runner's own spans tell, for a task whose running mark never got
	// through, how long ago its container started.
	var started time.Time // zero: no container started, no start time
	if run, ok := req.Timings["run"]; ok {
		if ms := run + req.Timings["logs"]; ms >= 0 && ms < float64(48*time.Hour/time.Millisecond) {
			started = now.Add(-time.Duration(ms * float64(time.Millisecond)))
		}
	}
	err = s.store.FinishTask(ctx, store.FinishParams{TaskID: taskID, RunnerID: lease.RunnerID, Attempt: lease.Attempt,
		Status: status, Msg: cleanText(req.Msg), ExitCode: req.ExitCode, Now: now, Retry: retry, Timings: req.Timings,
		StartedAt: started})
	if err != nil {
		return s.fenced("finish", leaseErr(err, taskID))
	}
	s.cfg.Metrics.TaskEnded(req.Status)
	s.logChanged(taskID)
	// A finish frees a slot of its code's max_concurrency: a runner waiting
	// for that code's next task should not wait for its next poll.
	s.notify()
	if retry != nil {
		s.cfg.Metrics.TasksQueued(retry.CodeName, 1)
		s.log.Info("task finished; retry queued", "task_id", taskID, "status", req.Status, "retry_id", retry.ID,
			"retry_count", retry.RetryCount, "due_at", retry.DueAt)
		return nil
	}
	s.log.Info("task finished", "task_id", taskID, "status", req.Status, "runner_id", lease.RunnerID, "attempt", lease.Attempt)
	return nil
}

// OpenPackage opens the zip of a code revision for a runner.
func (s *Service) OpenPackage(ctx context.Context, revisionID string) (io.ReadCloser, error) {
	rev, err := s.store.GetCodeRevision(ctx, revisionID)
	if err != nil {
		return nil, mapStoreErr(err, "Code revision")
	}
	if rev.PackageKey == "" {
		return nil, errorf(ErrNotFound, "Code revision %s has no package", revisionID)
	}
	return s.openVerified(ctx, rev)
}

// RunMaintenance rescues tasks whose lease ran out, every interval, and
// prunes old tasks and sweeps orphaned packages every UpkeepInterval, until
// ctx ends; it returns once all of its work has stopped.
func (s *Service) RunMaintenance(ctx context.Context, interval time.Duration) {
	var upkeep sync.WaitGroup
	upkeep.Go(func() { s.runUpkeep(ctx) })
	defer upkeep.Wait()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := s.store.RescueExpired(ctx, store.RescueParams{Now: s.now(), MaxAttempts: s.cfg.MaxAttempts})
		if err != nil && ctx.Err() == nil {
			s.log.Error("rescue expired leases", "err", err)
		}
		if n > 0 {
			s.cfg.Metrics.LeasesExpired(n)
			s.log.Warn("rescued tasks whose runner stopped answering", "count", n)
			s.notify()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// releaseMargin is how long before a lease runs out a server stops trying
// to give the leased task back: past that, the rescue may hand it on, and
// a late release must not touch what another lease holds.
const releaseMargin = 2 * time.Second

// retryRelease keeps trying to give back a task that was leased but never
// handed out, because the store failed (a database restarting): once the
// store answers, the task is queued again as it was, without an attempt
// counted, instead of waiting for its lease to run out and counting one.
// It gives up, leaving the task to the rescue, shortly before the lease
// would run out.
func (s *Service) retryRelease(t store.Task, first error) {
	if t.LeaseExpiresAt == nil {
		s.log.Error("could not give a task back to the queue; its lease will run out", "task_id", t.ID, "err", first)
		return
	}
	deadline := t.LeaseExpiresAt.Add(-releaseMargin)
	wait := 100 * time.Millisecond
	for {
		if time.Now().Add(wait).After(deadline) {
			s.log.Error("could not give a task back to the queue; its lease will run out", "task_id", t.ID, "err", first)
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Second)
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := s.store.ReleaseTask(ctx, t.ID, t.RunnerID, s.now())
		cancel()
		switch {
		case err == nil:
			s.log.Info("gave a task back to the queue after the store came back", "task_id", t.ID)
			s.notify()
			return
		case errors.Is(err, store.ErrLeaseLost):
			return // ended or handed on meanwhile
		}
	}
}

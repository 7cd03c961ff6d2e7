package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// Schedules make tasks at due times. Each due time is claimed once, with
// its task, in one store transaction (store.FireSchedule), so a run is
// never made twice, whichever server claims it or when one restarts. A due
// time missed while no scheduler ran fires once when one runs again; the
// next due time is computed from then, not caught up interval by interval.

// fireBatch is how many due schedules one pass reads at a time.
const fireBatch = 100

// Messages a schedule reports in its msg.
const (
	msgRanMaxTimes = "Ran max times."
	msgRanOnce     = "Ran once."
	msgPastEnd     = "Ended: past end_at"
)

// scheduleWake wakes the scheduler when schedules change, so a new or
// moved schedule does not wait for the scheduler's next look.
type scheduleWake struct {
	mu sync.Mutex
	ch chan struct{}
}

func (w *scheduleWake) wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

func (w *scheduleWake) notify() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// ScheduleChanged returns a channel closed at the next change of any
// schedule's timing.
func (s *Service) ScheduleChanged() <-chan struct{} { return s.sched.wait() }

func (s *Service) minRunEvery() time.Duration {
	if s.cfg.MinRunEvery > 0 {
		return s.cfg.MinRunEvery
	}
	return time.Minute
}

// CreateSchedules validates and stores a batch of schedules, all or none,
// and returns their ids in request order.
func (s *Service) CreateSchedules(ctx context.Context, projectID string, reqs []wire.NewSchedule) ([]string, error) {
	if len(reqs) == 0 {
		return nil, errorf(ErrInvalid, "No schedules given: send {\"schedules\":[{\"code_name\":...}]}")
	}
	if len(reqs) > s.cfg.MaxTasksPerPost {
		return nil, errorf(ErrTooLarge, "At most %d schedules per request (got %d)", s.cfg.MaxTasksPerPost, len(reqs))
	}
	now := s.now()
	codes := map[string]store.Code{}
	out := make([]store.Schedule, 0, len(reqs))
	for i, r := range reqs {
		sc, err := s.newSchedule(ctx, projectID, r, codes, now)
		if err != nil {
			var e *Error
			if len(reqs) > 1 && errors.As(err, &e) {
				return nil, &Error{Kind: e.Kind, Msg: fmt.Sprintf("Schedule %d: %s", i, e.Msg)}
			}
			return nil, err
		}
		out = append(out, sc)
	}
	if err := s.checkSchedules(ctx, projectID, len(out)); err != nil {
		return nil, err
	}
	if err := s.store.CreateSchedules(ctx, out); err != nil {
		return nil, fmt.Errorf("create %d schedules: %w", len(out), err)
	}
	s.notifySchedules()
	ids := make([]string, len(out))
	for i, sc := range out {
		ids[i] = sc.ID
		s.log.Info("schedule created", "schedule_id", sc.ID, "project_id", projectID, "code_name", sc.CodeName,
			"next_start", sc.NextStart)
		s.audit(ctx, projectID, "schedule.create", sc.ID, "code_name="+quoteDetail(sc.CodeName))
	}
	return ids, nil
}

func (s *Service) newSchedule(ctx context.Context, projectID string, r wire.NewSchedule, codes map[string]store.Code, now time.Time) (store.Schedule, error) {
	sc := store.Schedule{
		ID: id.New(), ProjectID: projectID, CodeName: strings.TrimSpace(r.CodeName), Name: r.Name,
		Payload: r.Payload, Status: store.ScheduleScheduled, StartAt: r.StartAt, EndAt: r.EndAt,
		Cron: strings.TrimSpace(r.Cron), Timezone: strings.TrimSpace(r.Timezone),
		Cluster: wire.Cluster(r.Cluster), Label: r.Label, CreatedAt: now, UpdatedAt: now,
	}
	if r.RunEvery != nil {
		sc.RunEvery = *r.RunEvery
	}
	if r.RunTimes != nil {
		sc.RunTimes = *r.RunTimes
	}
	if r.Priority != nil && *r.Priority >= 0 && *r.Priority <= 2 {
		sc.Priority = r.Priority
	}
	if r.Timeout != nil {
		sc.Timeout = *r.Timeout
	}
	if r.Delay != nil {
		sc.Delay = *r.Delay
	}
	if !unset(r.MaxConcurrency) {
		sc.MaxConcurrency = *r.MaxConcurrency
	}
	if err := s.checkSchedule(ctx, &sc, codes, now); err != nil {
		return store.Schedule{}, err
	}
	return sc, nil
}

// checkSchedule validates sc and sets its next_start from now. Its code
// and task settings are checked by building the task its first run would
// make.
func (s *Service) checkSchedule(ctx context.Context, sc *store.Schedule, codes map[string]store.Code, now time.Time) error {
	if sc.CodeName == "" {
		return errorf(ErrInvalid, "code_name is required")
	}
	if len(sc.Name) > 256 {
		return errorf(ErrInvalid, "name is limited to 256 characters")
	}
	if err := checkText(map[string]string{"name": sc.Name, "cron": sc.Cron, "timezone": sc.Timezone}); err != nil {
		return err
	}
	if sc.RunEvery < 0 {
		return errorf(ErrInvalid, "run_every must not be negative (got %d)", sc.RunEvery)
	}
	if sc.RunEvery > 0 && sc.Cron != "" {
		return errorf(ErrInvalid, "Give run_every or cron, not both")
	}
	if min := s.minRunEvery(); sc.RunEvery > 0 && time.Duration(sc.RunEvery)*time.Second < min {
		return errorf(ErrInvalid, "run_every must be at least %d seconds (got %d)", int(min/time.Second), sc.RunEvery)
	}
	if sc.Timezone != "" && sc.Cron == "" {
		return errorf(ErrInvalid, "timezone applies to cron schedules only")
	}
	if sc.RunTimes < 0 {
		return errorf(ErrInvalid, "run_times must be 0 (no limit) or more (got %d)", sc.RunTimes)
	}
	if sc.MaxConcurrency < 0 {
		return errorf(ErrInvalid, "max_concurrency must be 0 (no limit) or more (got %d)", sc.MaxConcurrency)
	}
	if sc.EndAt != nil && sc.StartAt != nil && !sc.EndAt.After(*sc.StartAt) {
		return errorf(ErrInvalid, "end_at must be after start_at")
	}
	if sc.EndAt != nil && !sc.EndAt.After(now) {
		return errorf(ErrInvalid, "end_at %s is in the past", sc.EndAt.Format(time.RFC3339))
	}
	var spec *cronSpec
	if sc.Cron != "" {
		var err error
		if spec, err = parseCron(sc.Cron, sc.Timezone); err != nil {
			return errorf(ErrInvalid, "%s", capitalize(err.Error()))
		}
	}
	if _, err := s.newTask(ctx, sc.ProjectID, scheduleTask(*sc), codes, now); err != nil {
		return err
	}
	next := firstStart(*sc, spec, now)
	if next == nil {
		return errorf(ErrInvalid, "cron %q never matches a future time", sc.Cron)
	}
	if sc.EndAt != nil && next.After(*sc.EndAt) {
		return errorf(ErrInvalid, "The first run (%s) would be after end_at (%s)", next.Format(time.RFC3339), sc.EndAt.Format(time.RFC3339))
	}
	sc.NextStart = next
	return nil
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// scheduleTask is the task request each run of sc makes.
func scheduleTask(sc store.Schedule) wire.NewTask {
	t := wire.NewTask{CodeName: sc.CodeName, Payload: sc.Payload, Priority: sc.Priority,
		Cluster: sc.Cluster, Label: sc.Label}
	if sc.Timeout != 0 {
		t.Timeout = &sc.Timeout
	}
	if sc.Delay != 0 {
		t.Delay = &sc.Delay
	}
	return t
}

// firstStart is the first due time of sc from now on: at start_at, or now
// when that is past or not given (the next cron time for cron schedules).
// A schedule with neither run_every nor cron runs once: at start_at, or
// now, as IronWorker's reference has it.
// After an update, an interval schedule keeps its rhythm from its last run.
func firstStart(sc store.Schedule, spec *cronSpec, now time.Time) *time.Time {
	if spec != nil {
		after := now
		if sc.StartAt != nil && sc.StartAt.Add(-time.Nanosecond).After(after) {
			after = sc.StartAt.Add(-time.Nanosecond)
		}
		if sc.LastRunTime != nil && sc.LastRunTime.After(after) {
			after = *sc.LastRunTime
		}
		t := spec.next(after)
		if t.IsZero() {
			return nil
		}
		return &t
	}
	t := now
	if sc.StartAt != nil && sc.StartAt.After(t) {
		t = *sc.StartAt
	}
	if sc.RunEvery > 0 && sc.LastRunTime != nil {
		if n := sc.LastRunTime.Add(time.Duration(sc.RunEvery) * time.Second); n.After(t) {
			t = n
		}
	}
	return &t
}

// nextStart is the due time after the run due at due, fired at now, or nil
// and why the schedule ends.
func nextStart(sc store.Schedule, spec *cronSpec, due, now time.Time) (*time.Time, string) {
	var next time.Time
	switch {
	case spec != nil:
		// From now, not from due: cron times missed while no scheduler
		// ran are not made up one by one.
		next = spec.next(now)
		if next.IsZero() {
			return nil, "Ended: the cron expression matches no later time"
		}
	case sc.RunEvery > 0:
		every := time.Duration(sc.RunEvery) * time.Second
		next = due.Add(every)
		if !next.After(now) {
			next = now.Add(every)
		}
	default:
		return nil, msgRanOnce
	}
	if sc.EndAt != nil && next.After(*sc.EndAt) {
		return nil, msgPastEnd
	}
	return &next, ""
}

// outcome is how sc stands after a run that leaves it at runs runs, with
// next as computed; msg explains a skipped run.
func outcome(sc store.Schedule, next *time.Time, why string, runs int, msg string) store.ScheduleOutcome {
	switch {
	case sc.RunTimes > 0 && runs >= sc.RunTimes:
		return store.ScheduleOutcome{Status: store.ScheduleComplete, Msg: msgRanMaxTimes}
	case next == nil:
		if msg != "" && why == msgRanOnce {
			why = msg
		} else if msg != "" {
			why = msg + "; " + why
		}
		return store.ScheduleOutcome{Status: store.ScheduleComplete, Msg: why}
	}
	return store.ScheduleOutcome{Status: store.ScheduleScheduled, NextStart: next, Msg: msg}
}

// GetSchedule returns a schedule of the project.
func (s *Service) GetSchedule(ctx context.Context, projectID, scheduleID string) (store.Schedule, error) {
	if !id.Valid(scheduleID) {
		return store.Schedule{}, errorf(ErrNotFound, "Schedule not found")
	}
	sc, err := s.store.GetSchedule(ctx, projectID, scheduleID)
	return sc, mapStoreErr(err, "Schedule")
}

// ListSchedules lists a project's schedules, newest first.
func (s *Service) ListSchedules(ctx context.Context, projectID string, page store.Page) ([]store.Schedule, error) {
	return s.store.ListSchedules(ctx, projectID, page)
}

// UpdateSchedule changes the fields upd gives. A change of start_at,
// run_every, cron or timezone moves next_start as a new schedule's would
// be set, keeping an interval schedule's rhythm from its last run.
func (s *Service) UpdateSchedule(ctx context.Context, projectID, scheduleID string, upd wire.ScheduleUpdate) (store.Schedule, error) {
	for attempt := 0; ; attempt++ {
		cur, err := s.GetSchedule(ctx, projectID, scheduleID)
		if err != nil {
			return store.Schedule{}, err
		}
		if cur.Status != store.ScheduleScheduled {
			return cur, errorf(ErrConflict, "Schedule is %s; only a scheduled schedule can be updated", cur.Status)
		}
		sc, err := s.applyUpdate(ctx, cur, upd)
		if err != nil {
			return store.Schedule{}, err
		}
		out, err := s.store.UpdateSchedule(ctx, sc)
		if errors.Is(err, store.ErrConflict) && attempt < 5 {
			continue // it fired or changed meanwhile: apply the update to what it is now
		}
		if err != nil {
			return store.Schedule{}, mapStoreErr(err, "Schedule")
		}
		s.notifySchedules()
		s.audit(ctx, projectID, "schedule.update", scheduleID, "")
		return out, nil
	}
}

func (s *Service) applyUpdate(ctx context.Context, cur store.Schedule, u wire.ScheduleUpdate) (store.Schedule, error) {
	sc := cur
	now := s.now()
	sc.UpdatedAt = now
	timing := false
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&sc.CodeName, u.CodeName)
	set(&sc.Name, u.Name)
	set(&sc.Payload, u.Payload)
	set(&sc.Cluster, u.Cluster)
	sc.Cluster = wire.Cluster(sc.Cluster)
	set(&sc.Label, u.Label)
	sc.CodeName = strings.TrimSpace(sc.CodeName)
	if u.StartAt != nil {
		sc.StartAt, timing = u.StartAt, true
	}
	if u.EndAt != nil {
		sc.EndAt = u.EndAt
	}
	if u.RunEvery != nil {
		sc.RunEvery, timing = *u.RunEvery, true
		if sc.RunEvery > 0 && u.Cron == nil {
			sc.Cron, sc.Timezone = "", ""
		}
	}
	if u.Cron != nil {
		sc.Cron, timing = strings.TrimSpace(*u.Cron), true
		if sc.Cron != "" && u.RunEvery == nil {
			sc.RunEvery = 0
		}
		if sc.Cron == "" && u.Timezone == nil {
			sc.Timezone = ""
		}
	}
	if u.Timezone != nil {
		sc.Timezone, timing = strings.TrimSpace(*u.Timezone), true
	}
	if u.RunTimes != nil {
		sc.RunTimes = *u.RunTimes
	}
	if u.Priority != nil {
		sc.Priority = nil
		if *u.Priority >= 0 && *u.Priority <= 2 {
			sc.Priority = u.Priority
		}
	}
	if u.Timeout != nil {
		sc.Timeout = *u.Timeout
	}
	if u.Delay != nil {
		sc.Delay = *u.Delay
	}
	if u.MaxConcurrency != nil {
		sc.MaxConcurrency = 0
		if !unset(u.MaxConcurrency) {
			sc.MaxConcurrency = *u.MaxConcurrency
		}
	}
	keep := sc.NextStart
	if err := s.checkSchedule(ctx, &sc, map[string]store.Code{}, now); err != nil {
		return store.Schedule{}, err
	}
	if !timing && keep != nil {
		sc.NextStart = keep
		if sc.EndAt != nil && keep.After(*sc.EndAt) {
			return store.Schedule{}, errorf(ErrInvalid, "The next run (%s) would be after end_at (%s)", keep.Format(time.RFC3339), sc.EndAt.Format(time.RFC3339))
		}
	}
	sc.Msg = ""
	if sc.RunTimes > 0 && sc.RunCount >= sc.RunTimes {
		sc.Status, sc.NextStart, sc.Msg = store.ScheduleComplete, nil, msgRanMaxTimes
	}
	return sc, nil
}

// CancelSchedule stops a schedule; tasks it made already are left alone.
func (s *Service) CancelSchedule(ctx context.Context, projectID, scheduleID string) (store.Schedule, error) {
	if !id.Valid(scheduleID) {
		return store.Schedule{}, errorf(ErrNotFound, "Schedule not found")
	}
	sc, err := s.store.CancelSchedule(ctx, projectID, scheduleID, s.now())
	if errors.Is(err, store.ErrConflict) {
		if cur, gerr := s.store.GetSchedule(ctx, projectID, scheduleID); gerr == nil {
			return cur, errorf(ErrConflict, "Schedule is already %s; nothing to cancel", cur.Status)
		}
	}
	if err != nil {
		return store.Schedule{}, mapStoreErr(err, "Schedule")
	}
	s.notifySchedules()
	s.log.Info("schedule cancelled", "schedule_id", scheduleID, "project_id", projectID)
	s.audit(ctx, projectID, "schedule.cancel", scheduleID, "")
	return sc, nil
}

// FireDueSchedules fires every schedule that is due, and returns the
// earliest due time left (ok false when no schedule is scheduled). A
// schedule that fails to fire for a passing reason (the store, say) stays
// due and is tried again on the next call.
func (s *Service) FireDueSchedules(ctx context.Context) (next time.Time, ok bool, err error) {
	for {
		now := s.now()
		due, err := s.store.DueSchedules(ctx, now, fireBatch)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("find due schedules: %w", err)
		}
		failed := 0
		for _, sc := range due {
			if err := s.fireSchedule(ctx, sc, now); err != nil {
				if ctx.Err() != nil {
					return time.Time{}, false, ctx.Err()
				}
				failed++
				s.log.Error("fire schedule", "schedule_id", sc.ID, "project_id", sc.ProjectID, "err", err)
			}
		}
		if len(due) < fireBatch || failed > 0 {
			break
		}
	}
	next, ok, err = s.store.NextScheduleStart(ctx)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("find the next schedule start: %w", err)
	}
	return next, ok, nil
}

// fireSchedule makes the task of sc's due run, or records why not.
func (s *Service) fireSchedule(ctx context.Context, sc store.Schedule, now time.Time) error {
	due := *sc.NextStart
	log := s.log.With("schedule_id", sc.ID, "project_id", sc.ProjectID, "due", due)
	p := store.FireParams{ProjectID: sc.ProjectID, ScheduleID: sc.ID, DueAt: due, Version: sc.Version,
		Now: now, MaxActive: sc.MaxConcurrency}
	skip := func(msg string) error {
		p.Task = nil
		p.Skipped = store.ScheduleOutcome{Status: store.ScheduleComplete, Msg: msg}
		return s.claimed(s.store.FireSchedule(ctx, p))
	}
	if sc.EndAt != nil && due.After(*sc.EndAt) {
		// Only an update racing this pass can leave such a due time.
		return skip(msgPastEnd)
	}
	var spec *cronSpec
	if sc.Cron != "" {
		var err error
		if spec, err = parseCron(sc.Cron, sc.Timezone); err != nil {
			log.Error("schedule stopped", "err", err)
			return skip("Stopped: " + err.Error())
		}
	}
	next, why := nextStart(sc, spec, due, now)
	p.Fired = outcome(sc, next, why, sc.RunCount+1, "")
	task, err := s.newTask(ctx, sc.ProjectID, scheduleTask(sc), map[string]store.Code{}, now)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return err
		}
		// The code was deleted, or a limit changed: this run cannot be
		// made, later ones may.
		msg := fmt.Sprintf("Skipped the run due %s: %s", due.Format(time.RFC3339), e.Msg)
		log.Warn("schedule run skipped", "reason", e.Msg)
		p.Skipped = outcome(sc, next, why, sc.RunCount, msg)
		return s.claimed(s.store.FireSchedule(ctx, p))
	}
	task.ScheduleID = sc.ID
	p.Task = &task
	if sc.MaxConcurrency > 0 {
		p.Skipped = outcome(sc, next, why, sc.RunCount, fmt.Sprintf(
			"Skipped the run due %s: max_concurrency %d reached (tasks of this schedule still queued or running)",
			due.Format(time.RFC3339), sc.MaxConcurrency))
	}
	fired, err := s.store.FireSchedule(ctx, p)
	if err := s.claimed(fired, err); err != nil {
		return err
	}
	if err != nil {
		return nil // claimed elsewhere
	}
	s.cfg.Metrics.ScheduleRun(fired)
	if fired {
		s.cfg.Metrics.TasksQueued(task.CodeName, 1)
		s.notify()
		log.Info("schedule fired", "task_id", task.ID, "run", sc.RunCount+1, "next_start", p.Fired.NextStart)
	} else {
		log.Info("schedule run skipped", "reason", p.Skipped.Msg)
	}
	return nil
}

// claimed treats a run that someone else claimed first as done.
func (s *Service) claimed(_ bool, err error) error {
	if errors.Is(err, store.ErrConflict) {
		s.log.Debug("schedule run claimed elsewhere", "err", err)
		return nil
	}
	return err
}

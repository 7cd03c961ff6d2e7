package store

import (
	"context"
	"time"

	"github.com/mayfly-run/mayfly/internal/mayfly"
)

// Schedule is a schedule, as in package mayfly.
type Schedule = mayfly.Schedule

// Schedule statuses, as in package mayfly.
const (
	ScheduleScheduled = mayfly.ScheduleScheduled
	ScheduleComplete  = mayfly.ScheduleComplete
	ScheduleCancelled = mayfly.ScheduleCancelled
)

// ScheduleOutcome is how a schedule stands after one of its runs.
type ScheduleOutcome struct {
	Status    string
	NextStart *time.Time
	Msg       string
}

// FireParams claim one run of a schedule.
type FireParams struct {
	ProjectID  string
	ScheduleID string
	// DueAt and Version are the schedule's next_start and version as the
	// caller read them: the run is claimed only if both are unchanged, so
	// each due time is claimed once, whoever else tries.
	DueAt   time.Time
	Version int
	Now     time.Time
	// Task is inserted when the run fires; nil skips the run.
	Task *Task
	// MaxActive, when above 0, skips the run while this many tasks of the
	// schedule are queued, preparing or running.
	MaxActive int
	// Fired is applied when the task was inserted (run_count grows by one
	// and last_run_time becomes Now); Skipped when the run was skipped.
	Fired   ScheduleOutcome
	Skipped ScheduleOutcome
}

// ScheduleStore keeps schedules. FireSchedule is the only way a schedule
// makes a task, so that claiming a run and queueing its task happen
// together or not at all.
type ScheduleStore interface {
	// CreateSchedules stores all schedules or none.
	CreateSchedules(ctx context.Context, schedules []Schedule) error
	GetSchedule(ctx context.Context, projectID, scheduleID string) (Schedule, error)
	// ListSchedules returns a project's schedules, newest first.
	ListSchedules(ctx context.Context, projectID string, page Page) ([]Schedule, error)
	// UpdateSchedule stores s over the schedule if its version is still
	// s.Version and returns it with its new version; ErrConflict when it
	// changed meanwhile. RunCount and LastRunTime are left as stored.
	UpdateSchedule(ctx context.Context, s Schedule) (Schedule, error)
	// CancelSchedule ends a scheduled schedule; ErrConflict when it is
	// complete or cancelled already.
	CancelSchedule(ctx context.Context, projectID, scheduleID string, now time.Time) (Schedule, error)
	// DueSchedules returns up to limit scheduled schedules whose next_start
	// is at or before now, earliest first, across projects.
	DueSchedules(ctx context.Context, now time.Time, limit int) ([]Schedule, error)
	// NextScheduleStart returns the earliest next_start of all scheduled
	// schedules; ok is false when none is scheduled.
	NextScheduleStart(ctx context.Context) (next time.Time, ok bool, err error)
	// FireSchedule claims the run due at p.DueAt and, in the same
	// transaction, inserts p.Task (fired = true) or records the skip.
	// ErrConflict when the run was claimed already or the schedule changed.
	FireSchedule(ctx context.Context, p FireParams) (fired bool, err error)
}

// Package store defines what Mayfly keeps durably (projects, tokens, codes,
// tasks and their logs) and the Store interface that every backend
// implements. Backends live in sub-packages (sqlite, postgres) and all
// pass the contract suite in storetest, so the service above never needs to
// know which one it talks to.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mayfly-run/mayfly/internal/mayfly"
)

// The domain types live in package mayfly, a leaf every layer shares; the
// store names them as its own so backends read naturally.
type (
	Project      = mayfly.Project
	Quotas       = mayfly.Quotas
	AuditEntry   = mayfly.AuditEntry
	Token        = mayfly.Token
	CodeRevision = mayfly.CodeRevision
	Code         = mayfly.Code
	Task         = mayfly.Task
	Status       = mayfly.Status
	Page         = mayfly.Page
	TaskFilter   = mayfly.TaskFilter
)

// Task statuses and token kinds, as in package mayfly.
const (
	StatusQueued    = mayfly.StatusQueued
	StatusPreparing = mayfly.StatusPreparing
	StatusRunning   = mayfly.StatusRunning
	StatusComplete  = mayfly.StatusComplete
	StatusError     = mayfly.StatusError
	StatusTimeout   = mayfly.StatusTimeout
	StatusKilled    = mayfly.StatusKilled
	StatusCancelled = mayfly.StatusCancelled

	TokenAdmin   = mayfly.TokenAdmin
	TokenProject = mayfly.TokenProject
	TokenRunner  = mayfly.TokenRunner
	TokenTask    = mayfly.TokenTask
)

// Terminal reports whether a task in status s has ended for good.
func Terminal(s Status) bool { return s.Terminal() }

// Sentinel errors every backend maps its own errors to.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: the row is not in a state that allows the change (for
	// example cancelling a finished task).
	ErrConflict = errors.New("conflict")
	// ErrLeaseLost: the runner no longer holds the task's lease (it expired
	// and the task was given back to the queue, or the task ended).
	ErrLeaseLost = errors.New("lease lost")
	// ErrNoSpace: the disk (or quota) under the store is full; the write
	// changed nothing.
	ErrNoSpace = errors.New("no space left for the store")
)

// Usage is what a project holds.
type Usage struct {
	Queued    int64 // tasks queued, due or not
	Active    int64 // tasks preparing or running
	Schedules int64 // schedules still scheduled
	CodeBytes int64 // package bytes of every revision
}

type LeaseParams struct {
	RunnerID      string
	Max           int      // at most this many tasks
	Clusters      []string // a task's cluster must be one of these ("" is the default cluster)
	LeaseDuration time.Duration
	Now           time.Time
	// RunningTasks is the running-tasks quota of a project that sets none
	// (0: no limit): never more of a project's tasks preparing or running
	// at once, across every runner, than its quota.
	RunningTasks int64
}

// LeaseStart is when a lease of length d (or its renewal) asked for at
// now, on a call that began at asked, starts. A store may hold a write
// back behind others (a long insert, a group commit), and a lease counted
// from the time it was asked for would start partly spent, or already
// over: the task would be handed on while its runner starts it. So a call
// that waited a tenth of the lease or more has its lease start that much
// later; a shorter wait costs the lease little, and the lease starts at
// now exactly.
func LeaseStart(now, asked time.Time, d time.Duration) time.Time {
	if waited := time.Since(asked); waited >= d/10 {
		return now.Add(waited)
	}
	return now
}

// Every report a runner makes names its lease: the task, the runner that
// holds it and the attempt (leases taken so far, counting this one). A
// store refuses a report whose lease is no longer current with
// ErrLeaseLost and writes nothing, so a runner presumed dead can never
// write into a later attempt, even under the same runner id.

type HeartbeatParams struct {
	TaskID        string
	RunnerID      string
	Attempt       int
	LeaseDuration time.Duration
	Now           time.Time
}

type StartParams struct {
	TaskID   string
	RunnerID string
	Attempt  int
	Now      time.Time
}

// AppendLogParams adds Data to the log of a task under its current lease.
type AppendLogParams struct {
	TaskID   string
	RunnerID string
	Attempt  int
	Data     []byte
	// MaxBytes caps the log (0 = no cap): what would take it past the cap
	// is dropped, with a marker, whatever a runner sends.
	MaxBytes int64
}

// logMarkerRoom is what a log may hold past its cap: room for the
// runner's own truncation marker.
const logMarkerRoom = 256

// CapLog returns what of data a log that holds size bytes may take under
// a cap of max bytes (0 = no cap), with a marker when it cuts. Every store
// applies it, so the cap holds whatever a runner sends.
func CapLog(data []byte, size, max int64) []byte {
	if max <= 0 {
		return data
	}
	limit := max + logMarkerRoom
	if size+int64(len(data)) <= limit {
		return data
	}
	marker := fmt.Sprintf("\n[mayfly: log cut by the server at %d bytes]\n", max)
	keep := limit - size - int64(len(marker))
	if keep < 0 {
		return nil
	}
	return append(data[:keep:keep], marker...)
}

type FinishParams struct {
	TaskID   string
	RunnerID string
	Attempt  int
	Status   Status // a terminal status
	Msg      string // "" keeps the task's msg (the last progress message)
	ExitCode *int
	Now      time.Time
	Timings  map[string]float64
	// StartedAt is when the container started, for a task whose running
	// mark never got through (the database was away when it was sent):
	// its start_time is set to it if it has none. Zero means no container
	// started (an image that would not pull): the task keeps no start.
	StartedAt time.Time
	// Retry, when set, is inserted in the same transaction as the finish,
	// and the finished task's retry_at points at it: a retry is never lost
	// nor made twice.
	Retry *Task
}

type ProgressParams struct {
	TaskID  string
	Percent int
	Msg     string
	Now     time.Time
}

type RescueParams struct {
	Now         time.Time
	MaxAttempts int // a task whose lease expires after this many attempts ends killed
}

// Store is everything Mayfly keeps durably. Methods that write return only
// once the change is durable.
type Store interface {
	ScheduleStore
	MaintenanceStore
	RunnerStore
	OverviewStore
	CreateProject(ctx context.Context, p Project) error
	GetProject(ctx context.Context, id string) (Project, error)
	CountProjects(ctx context.Context) (int, error)
	// ListProjects lists projects oldest first.
	ListProjects(ctx context.Context, page Page) ([]Project, error)
	// UpdateProject stores p's name, quotas and updated time;
	// ErrNotFound when there is no such project.
	UpdateProject(ctx context.Context, p Project) error
	// DeleteProject removes a project with its codes, tasks, schedules and
	// tokens, and returns its code revisions so the caller can remove their
	// packages; ErrNotFound when there is none.
	DeleteProject(ctx context.Context, id string) ([]CodeRevision, error)
	// ProjectUsage counts what a project holds, for its quotas. Queued
	// counts at most queuedCap+1 tasks (0: no cap), so a check against a
	// limit never reads a long queue whole.
	ProjectUsage(ctx context.Context, projectID string, queuedCap int64) (Usage, error)

	// AddAudit records a change.
	AddAudit(ctx context.Context, e AuditEntry) error
	// ListAudit lists the records of a project, or all when projectID is
	// "", newest first.
	ListAudit(ctx context.Context, projectID string, page Page) ([]AuditEntry, error)

	CreateToken(ctx context.Context, t Token) error
	GetTokenByHash(ctx context.Context, hash string) (Token, error)
	// UpdateTokenHash moves a token from oldHash to newHash (a digest
	// scheme upgrade); ErrNotFound when the token no longer has oldHash, so
	// two concurrent upgrades of one token both end well.
	UpdateTokenHash(ctx context.Context, tokenID, oldHash, newHash string) error
	// ReplaceNamedToken stores t and, in the same transaction, removes
	// every other token of t's kind and name; it returns how many it
	// removed. A token that must exist once (the bootstrap admin token)
	// is kept this way, so a new secret revokes the old one.
	ReplaceNamedToken(ctx context.Context, t Token) (removed int, err error)
	// ListTokens lists the tokens (never their digests' secrets) of a
	// project, or every token when projectID is "", oldest first.
	ListTokens(ctx context.Context, projectID string) ([]Token, error)
	// DeleteToken revokes a token; ErrNotFound when there is none.
	DeleteToken(ctx context.Context, tokenID string) error
	// RunnerHoldsRevision reports whether the runner holds a lease on a
	// task of the code revision: what a runner token may download.
	RunnerHoldsRevision(ctx context.Context, runnerID, revisionID string) (bool, error)

	// PutCodeRevision stores a new revision. When no code of that name
	// exists in the project it creates one (rev.CodeID is then used as its
	// id); otherwise it appends revision Rev = latest+1 to the existing
	// code and returns the code with its real id.
	PutCodeRevision(ctx context.Context, rev CodeRevision) (Code, error)
	GetCode(ctx context.Context, projectID, codeID string) (Code, error)
	GetCodeByName(ctx context.Context, projectID, name string) (Code, error)
	ListCodes(ctx context.Context, projectID string, page Page) ([]Code, error)
	// DeleteCode removes the code and its revisions and returns the
	// revisions so the caller can remove their packages.
	DeleteCode(ctx context.Context, projectID, codeID string) ([]CodeRevision, error)
	ListCodeRevisions(ctx context.Context, projectID, codeID string, page Page) ([]CodeRevision, error)
	GetCodeRevision(ctx context.Context, revisionID string) (CodeRevision, error)

	// InsertTasks stores all tasks or none.
	InsertTasks(ctx context.Context, tasks []Task) error
	GetTask(ctx context.Context, projectID, taskID string) (Task, error)
	ListTasks(ctx context.Context, f TaskFilter) ([]Task, error)
	// QueueStats counts the queued tasks of every project and returns the
	// earliest due time among those due at now (zero when none is due).
	QueueStats(ctx context.Context, now time.Time) (queued int64, oldestDue time.Time, err error)

	// LeaseTasks hands queued, due tasks to a runner in order (priority
	// desc, due time, id), never more running tasks of one code than its
	// max_concurrency, and marks them preparing under a lease.
	LeaseTasks(ctx context.Context, p LeaseParams) ([]Task, error)
	// MarkRunning moves a leased task from preparing to running.
	MarkRunning(ctx context.Context, p StartParams) error
	// Heartbeat extends the lease and reports whether a cancel was asked.
	Heartbeat(ctx context.Context, p HeartbeatParams) (cancel bool, err error)
	FinishTask(ctx context.Context, p FinishParams) error
	// CancelTask ends a queued task at once (and returns it cancelled) and
	// flags a preparing or running one so its runner stops it.
	CancelTask(ctx context.Context, projectID, taskID string, now time.Time) (Task, error)
	// RetryTask queues next as a retry of a finished task (retry_at of
	// the old task points at it); ErrConflict if the task is unfinished or
	// already retried.
	RetryTask(ctx context.Context, projectID, taskID string, next Task) error
	// GetTaskByID finds a task whatever its project (runner protocol).
	GetTaskByID(ctx context.Context, taskID string) (Task, error)
	// SetProgress records a running task's percent and message;
	// ErrConflict once the task has ended.
	SetProgress(ctx context.Context, p ProgressParams) error
	// SetCodePaused stops (or resumes) leasing of a code's tasks.
	SetCodePaused(ctx context.Context, projectID, codeID string, paused bool) error
	// CancelCodeTasks cancels every unfinished task of a code as CancelTask
	// does, and returns how many.
	CancelCodeTasks(ctx context.Context, projectID, codeID string, now time.Time) (int, error)
	// CodeStats counts a code's tasks by status.
	CodeStats(ctx context.Context, projectID, codeID string) (map[Status]int, error)
	// RescueExpired gives tasks whose lease ran out back to the queue, or
	// ends them killed after their last attempt. It returns how many moved.
	RescueExpired(ctx context.Context, p RescueParams) (int, error)

	// AppendLog adds output to a task's log under its current lease;
	// ErrLeaseLost when the lease is not current.
	AppendLog(ctx context.Context, p AppendLogParams) error
	// GetLog returns the whole log; ErrNotFound when none was written.
	GetLog(ctx context.Context, taskID string) ([]byte, error)
	// ReadLog calls fn with the task's log chunks in order, from the one
	// after chunk afterSeq (0: from the start), and returns the seq of the
	// last chunk passed to fn (afterSeq when none was). It holds no
	// database resources while fn runs, so fn may write to a slow client,
	// and it reads a bounded amount at a time, however long the log.
	// ErrNotFound when afterSeq is 0 and the task wrote no log. A caller
	// that follows a running task's log calls it again with the seq
	// returned. An error from fn ends the read and is returned wrapped.
	ReadLog(ctx context.Context, taskID string, afterSeq int64, fn func(chunk []byte) error) (lastSeq int64, err error)

	Close() error
}

// A store that several servers share may offer these too. The service and
// the assembly look for them with a type assertion; a store used by one
// process alone (SQLite) needs neither.

// Notifier carries short messages between the processes sharing a store,
// so work queued on one server wakes runners waiting on another.
type Notifier interface {
	// Notify sends payload on topic to every listener, the sender's own
	// process included. Delivery is best effort.
	Notify(ctx context.Context, topic, payload string) error
	// Listen calls fn for each message on topics until ctx ends, and once
	// per topic with an empty payload after it had to reconnect (messages
	// sent meanwhile are gone). It returns ctx's error.
	Listen(ctx context.Context, topics []string, fn func(topic, payload string), log *slog.Logger) error
}

// Locker elects a leader among the processes sharing a store.
type Locker interface {
	// TryLock takes the lock called name if no process holds it, and
	// returns nil and no error if one does.
	TryLock(ctx context.Context, name string) (Lock, error)
}

// Lock is a held Locker lock.
type Lock interface {
	// Lost is closed when the lock may have been lost (its holder's
	// connection broke); another process may hold it soon after.
	Lost() <-chan struct{}
	// Release gives the lock up and waits until it has.
	Release()
}

// StartTime is the start a finish records for a task that has none:
// StartedAt, no later than Now; nil when no container started.
func (p FinishParams) StartTime() *time.Time {
	switch {
	case p.StartedAt.IsZero():
		return nil
	case p.StartedAt.After(p.Now):
		return &p.Now
	}
	return &p.StartedAt
}

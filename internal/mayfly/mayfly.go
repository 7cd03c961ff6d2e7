// Package mayfly holds Mayfly's domain types: projects, tokens, codes and
// their revisions, tasks with their status and its state machine,
// schedules and runners. It is a leaf: it imports nothing of Mayfly's, so
// the API, the runner, the service and the stores share these types
// without depending on one another.
package mayfly

import "time"

// Status is where a task is in its life. Only queued, preparing and
// running are unfinished; clients treat every other status as final.
type Status string

const (
	StatusQueued    Status = "queued"
	StatusPreparing Status = "preparing" // leased: the runner readies image and container
	StatusRunning   Status = "running"   // the container runs
	StatusComplete  Status = "complete"  // exit 0
	StatusError     Status = "error"     // non-zero exit, or failed to start
	StatusTimeout   Status = "timeout"   // ran past its timeout
	StatusKilled    Status = "killed"    // stopped by the system: out of memory, lease lost after its last attempt
	StatusCancelled Status = "cancelled" // by a user
)

// Statuses lists every status in lifecycle order.
var Statuses = []Status{StatusQueued, StatusPreparing, StatusRunning, StatusComplete, StatusError,
	StatusTimeout, StatusKilled, StatusCancelled}

// Terminal reports whether a task in status s has ended for good.
func (s Status) Terminal() bool {
	switch s {
	case StatusQueued, StatusPreparing, StatusRunning:
		return false
	}
	return true
}

// Valid reports whether s is one of Statuses.
func (s Status) Valid() bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// CanMove reports whether a task may go from one status to another: the
// state machine every store enforces in its queries.
//
//	queued    -> preparing (leased) | cancelled
//	preparing -> running (started) | queued (lease ran out, or given back) | any end
//	running   -> queued (lease ran out) | any end
//
// The end statuses never change; a retry is a new task.
func CanMove(from, to Status) bool {
	switch from {
	case StatusQueued:
		return to == StatusPreparing || to == StatusCancelled
	case StatusPreparing:
		return to == StatusRunning || to == StatusQueued || to.Terminal()
	case StatusRunning:
		return to == StatusQueued || to.Terminal()
	}
	return false
}

// Token kinds.
const (
	TokenAdmin   = "admin"   // every project, and management
	TokenProject = "project" // the IronWorker OAuth token of one project
	TokenRunner  = "runner"  // lease and report only
	// TokenTask is never stored: a task's own signed token, good only for
	// reporting that task's progress.
	TokenTask = "task"
)

type Project struct {
	ID        string
	Name      string
	Quotas    Quotas
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Quotas bound what one project may hold or do. In a project, 0 means the
// server's default and -1 means no limit; the server's defaults use 0 for
// no limit.
type Quotas struct {
	QueuedTasks  int64   // tasks queued (due or not) at once
	RunningTasks int64   // tasks preparing or running at once, across every runner
	Schedules    int64   // schedules still scheduled
	CodeBytes    int64   // bytes of code packages, every revision counted
	RequestRate  float64 // API requests a second per token of the project
}

// Resolve returns the limits that hold for a project with quotas q on a
// server whose defaults are def: 0 in the result means no limit.
func (q Quotas) Resolve(def Quotas) Quotas {
	pick := func(v, d int64) int64 {
		switch {
		case v < 0:
			return 0
		case v == 0:
			return max(d, 0)
		}
		return v
	}
	r := Quotas{
		QueuedTasks:  pick(q.QueuedTasks, def.QueuedTasks),
		RunningTasks: pick(q.RunningTasks, def.RunningTasks),
		Schedules:    pick(q.Schedules, def.Schedules),
		CodeBytes:    pick(q.CodeBytes, def.CodeBytes),
		RequestRate:  q.RequestRate,
	}
	switch {
	case q.RequestRate < 0:
		r.RequestRate = 0
	case q.RequestRate == 0:
		r.RequestRate = max(def.RequestRate, 0)
	}
	return r
}

// AuditEntry records who changed what: the token (by id and name, never
// its secret), the action and the object it acted on.
type AuditEntry struct {
	ID        string
	ProjectID string // "" for changes outside any project (admin and runner tokens)
	TokenID   string
	TokenName string
	TokenKind string
	Action    string // e.g. project.create, token.revoke, task.cancel
	Target    string // id of the object acted on
	Detail    string // what changed, in a few words; never a secret
	CreatedAt time.Time
}

type Token struct {
	ID        string
	Hash      string // a keyed digest of the secret (the service picks the scheme); the secret itself is never stored
	Kind      string
	ProjectID string // empty for admin and runner tokens
	Name      string
	// Clusters limits a runner token to these clusters ("" is the default
	// cluster); none = any.
	Clusters  []string
	CreatedAt time.Time
	// ExpiresAt, when set, is when the token stops working.
	ExpiresAt *time.Time
}

// Expired reports whether the token no longer works at now.
func (t Token) Expired(now time.Time) bool {
	return t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)
}

// CodeRevision is one upload of a code: its settings and its package. A code
// is the latest revision under a name; older revisions stay downloadable.
type CodeRevision struct {
	ID              string // id of this revision
	CodeID          string // stable id of the code across revisions
	ProjectID       string
	Name            string
	Rev             int
	Runtime         string
	FileName        string
	Stack           string
	Image           string
	Command         string
	Config          string
	EnvVars         map[string]string
	MaxConcurrency  int // 0 = unlimited
	Retries         int
	RetriesDelay    int    // seconds
	RetriesBackoff  string // "" = the same delay every time; "exponential" = doubled per retry
	DefaultPriority int
	PackageKey      string // blob key of the zip; empty for image codes without a zip
	PackageSHA256   string
	PackageSize     int64
	CreatedAt       time.Time
}

// Code is a code's latest revision plus what belongs to the code as a whole.
// Mind the embedding: the code's own id is CodeID; ID is its latest
// revision's.
type Code struct {
	CodeRevision
	CreatedAt time.Time // of the code (first revision)
	UpdatedAt time.Time // of the latest revision
	Paused    bool
}

type Task struct {
	ID             string
	ProjectID      string
	CodeID         string
	CodeName       string
	CodeRevisionID string
	CodeRev        int
	Status         Status
	Priority       int
	Payload        string
	Timeout        int // seconds
	Delay          int // seconds
	Cluster        string
	Label          string
	Msg            string
	ExitCode       *int
	Percent        int
	Attempt        int // how many times a runner has taken it
	RunnerID       string
	LeaseExpiresAt *time.Time
	CancelRequest  bool
	RetryOf        string
	RetryAt        string
	RetryCount     int
	ScheduleID     string
	LogSize        int64
	Timings        map[string]float64 // ms per phase on the runner
	CreatedAt      time.Time
	UpdatedAt      time.Time
	DueAt          time.Time
	StartTime      *time.Time
	EndTime        *time.Time
}

// Schedule statuses. A schedule is scheduled until it has run its
// run_times, passed its end_at or run its one run (complete), or a user
// cancelled it (cancelled). Only scheduled schedules fire.
const (
	ScheduleScheduled = "scheduled"
	ScheduleComplete  = "complete"
	ScheduleCancelled = "cancelled"
)

// Schedule makes tasks of a code: every RunEvery seconds, at the times of
// a Cron expression in Timezone, or once at StartAt when neither is set.
type Schedule struct {
	ID             string
	ProjectID      string
	CodeName       string
	Name           string
	Payload        string
	Status         string
	StartAt        *time.Time
	EndAt          *time.Time
	RunEvery       int    // seconds; 0 = not an interval schedule
	Cron           string // 5-field expression; "" = not a cron schedule
	Timezone       string // IANA name the cron expression is read in; "" = UTC
	RunTimes       int    // 0 = no limit
	Priority       *int   // nil = the code's default_priority
	Timeout        int    // seconds; 0 = the server's default
	Delay          int    // seconds each task waits after it is made
	Cluster        string
	Label          string
	MaxConcurrency int // 0 = no limit on the schedule's active tasks
	RunCount       int // tasks made so far
	LastRunTime    *time.Time
	// NextStart is the due time of the next run; nil once the schedule no
	// longer fires.
	NextStart *time.Time
	Msg       string
	// Version grows with every change, so that a writer that read an older
	// copy finds out instead of overwriting (see UpdateSchedule and
	// FireSchedule).
	Version   int
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Runner is what the store knows of one runner: what it said of itself on
// its last lease, and when it was last heard from.
type Runner struct {
	ID       string
	Host     string
	Clusters []string // "" is the default cluster
	Capacity int
	Busy     int
	Version  string
	Driver   string
	Stacks   []string
	LastSeen time.Time
}

// Page selects a slice of a newest-first list. Page is 0-based.
type Page struct {
	Page    int
	PerPage int
}

// TaskFilter selects tasks of a project for a list, newest first.
type TaskFilter struct {
	ProjectID string
	CodeName  string
	Label     string
	Statuses  []Status   // empty = all
	FromTime  *time.Time // created_at >= FromTime
	ToTime    *time.Time // created_at < ToTime, so adjacent windows never overlap
	Page
}

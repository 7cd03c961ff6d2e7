// Package wire holds the JSON shapes of the IronWorker v2 REST API as Mayfly
// speaks it. The server (internal/api) writes them and the Go client
// (internal/client) reads them, so both sides agree by construction. Field
// names follow IronWorker's; Mayfly's extensions are extra fields that the
// official clients ignore.
package wire

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// Error is every error body: {"msg": "..."}.
type Error struct {
	Msg string `json:"msg"`
}

// Msg is a plain acknowledgement, e.g. {"msg":"Cancelled"}.
type Msg struct {
	Msg string `json:"msg"`
}

type Project struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Quotas are the project's own settings (0 = the server's default,
	// -1 = no limit); Limits what holds (0 = no limit).
	Quotas *Quotas `json:"quotas,omitempty"`
	Limits *Quotas `json:"limits,omitempty"`
}

// Quotas of a project.
type Quotas struct {
	QueuedTasks  int64   `json:"queued_tasks"`
	RunningTasks int64   `json:"running_tasks"`
	Schedules    int64   `json:"schedules"`
	CodeBytes    int64   `json:"code_bytes"`
	RequestRate  float64 `json:"request_rate"`
}

// QuotaChange is the quotas of POST /2/projects and PATCH
// /2/projects/{id}: fields left out stay as they are.
type QuotaChange struct {
	QueuedTasks  *int64   `json:"queued_tasks,omitempty"`
	RunningTasks *int64   `json:"running_tasks,omitempty"`
	Schedules    *int64   `json:"schedules,omitempty"`
	CodeBytes    *int64   `json:"code_bytes,omitempty"`
	RequestRate  *float64 `json:"request_rate,omitempty"`
}

// ProjectChange is the body of POST /2/projects and PATCH
// /2/projects/{id}.
type ProjectChange struct {
	Name   *string      `json:"name,omitempty"`
	Quotas *QuotaChange `json:"quotas,omitempty"`
}

type ProjectList struct {
	Projects []Project `json:"projects"`
}

// AuditEntry is one record of GET /2/audit.
type AuditEntry struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id,omitempty"`
	TokenID   string    `json:"token_id,omitempty"`
	TokenName string    `json:"token_name"`
	TokenKind string    `json:"token_kind"`
	Action    string    `json:"action"`
	Target    string    `json:"target"`
	Detail    string    `json:"detail,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

type AuditList struct {
	Audit []AuditEntry `json:"audit"`
}

// CodeUpload is the JSON in the `data` field of POST codes. Pointer fields
// distinguish "not given" from zero; IronWorker's sentinels
// (max_concurrency -1000, default_priority -1000, retries -1000) also mean
// "not given".
type CodeUpload struct {
	Name            string            `json:"name"`
	Runtime         string            `json:"runtime,omitempty"`
	FileName        string            `json:"file_name,omitempty"`
	Stack           string            `json:"stack,omitempty"`
	Image           string            `json:"image,omitempty"`
	Command         string            `json:"command,omitempty"`
	Config          string            `json:"config,omitempty"`
	EnvVars         map[string]string `json:"env_vars,omitempty"`
	MaxConcurrency  *int              `json:"max_concurrency,omitempty"`
	Retries         *int              `json:"retries,omitempty"`
	RetriesDelay    *int              `json:"retries_delay,omitempty"`
	DefaultPriority *int              `json:"default_priority,omitempty"`
	// RetriesBackoff "exponential" doubles retries_delay per retry
	// (extension).
	RetriesBackoff string `json:"retries_backoff,omitempty"`
}

func (c *CodeUpload) UnmarshalJSON(b []byte) error {
	type plain CodeUpload
	var v struct {
		plain
		MaxConcurrency  json.RawMessage `json:"max_concurrency"`
		Retries         json.RawMessage `json:"retries"`
		RetriesDelay    json.RawMessage `json:"retries_delay"`
		DefaultPriority json.RawMessage `json:"default_priority"`
		Config          json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*c = CodeUpload(v.plain)
	// The Ruby gem's codes.register sends config as the caller's object,
	// not as a JSON string as the multipart uploads do; the task reads it
	// from a file either way.
	switch cfg := bytes.TrimSpace(v.Config); {
	case len(cfg) == 0 || string(cfg) == "null":
	case cfg[0] == '"':
		if err := json.Unmarshal(cfg, &c.Config); err != nil {
			return &FieldError{Field: "config", Msg: "must be a string or a JSON object"}
		}
	case cfg[0] == '{' || cfg[0] == '[':
		c.Config = string(cfg)
	default:
		return &FieldError{Field: "config", Msg: "must be a string or a JSON object"}
	}
	return decodeInts(intField{"max_concurrency", v.MaxConcurrency, &c.MaxConcurrency},
		intField{"retries", v.Retries, &c.Retries}, intField{"retries_delay", v.RetriesDelay, &c.RetriesDelay},
		intField{"default_priority", v.DefaultPriority, &c.DefaultPriority})
}

// UploadResponse answers POST codes.
type UploadResponse struct {
	ID  string `json:"id"`
	Msg string `json:"msg"`
	// Extensions.
	Rev int `json:"rev"`
}

type Code struct {
	ID              string            `json:"id"`
	ProjectID       string            `json:"project_id"`
	Name            string            `json:"name"`
	Runtime         string            `json:"runtime"`
	FileName        string            `json:"file_name"`
	Stack           string            `json:"stack"`
	Image           string            `json:"image,omitempty"`
	Command         string            `json:"command,omitempty"`
	Config          string            `json:"config,omitempty"`
	EnvVars         map[string]string `json:"env_vars,omitempty"`
	MaxConcurrency  int               `json:"max_concurrency"`
	Retries         int               `json:"retries"`
	RetriesDelay    int               `json:"retries_delay"`
	RetriesBackoff  string            `json:"retries_backoff,omitempty"`
	DefaultPriority int               `json:"default_priority"`
	Rev             int               `json:"rev"`
	LatestHistoryID string            `json:"latest_history_id"`
	LatestChecksum  string            `json:"latest_checksum"`
	PackageSize     int64             `json:"package_size"`
	Paused          bool              `json:"paused"`
	CreatedAt       time.Time         `json:"created_at"`
	UpdatedAt       time.Time         `json:"updated_at"`
	LatestChange    time.Time         `json:"latest_change"`
}

type CodeList struct {
	Codes []Code `json:"codes"`
}

// Revision is one entry of GET codes/{id}/revisions.
type Revision struct {
	ID        string    `json:"id"`
	CodeID    string    `json:"code_id"`
	ProjectID string    `json:"project_id"`
	Name      string    `json:"name"`
	Rev       int       `json:"rev"`
	Runtime   string    `json:"runtime"`
	FileName  string    `json:"file_name"`
	Stack     string    `json:"stack"`
	Image     string    `json:"image,omitempty"`
	Checksum  string    `json:"checksum"`
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
}

type RevisionList struct {
	Revisions []Revision `json:"revisions"`
}

// NewTask is one element of POST tasks. Priority outside 0-2 (IronWorker
// sends -3 for "unset") means the code's default_priority; timeout 0 means
// the default.
type NewTask struct {
	CodeName string `json:"code_name"`
	Payload  string `json:"payload"`
	Priority *int   `json:"priority,omitempty"`
	Timeout  *int   `json:"timeout,omitempty"`
	Delay    *int   `json:"delay,omitempty"`
	Cluster  string `json:"cluster,omitempty"`
	Label    string `json:"label,omitempty"`
}

func (t *NewTask) UnmarshalJSON(b []byte) error {
	type plain NewTask
	var v struct {
		plain
		Priority json.RawMessage `json:"priority"`
		Timeout  json.RawMessage `json:"timeout"`
		Delay    json.RawMessage `json:"delay"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*t = NewTask(v.plain)
	return decodeInts(intField{"priority", v.Priority, &t.Priority}, intField{"timeout", v.Timeout, &t.Timeout},
		intField{"delay", v.Delay, &t.Delay})
}

// Cluster returns the stored name of a cluster: IronWorker's "default" is
// the default cluster, which Mayfly keeps as "".
func Cluster(name string) string {
	name = strings.TrimSpace(name)
	if strings.EqualFold(name, "default") {
		return ""
	}
	return name
}

type QueueRequest struct {
	Tasks []NewTask `json:"tasks"`
}

type QueuedTask struct {
	ID string `json:"id"`
}

type QueueResponse struct {
	Msg   string       `json:"msg"`
	Tasks []QueuedTask `json:"tasks"`
}

// RetryRequest is the body of POST tasks/{id}/retry.
type RetryRequest struct {
	Delay int `json:"delay"`
}

func (r *RetryRequest) UnmarshalJSON(b []byte) error {
	var v struct {
		Delay json.RawMessage `json:"delay"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	var d *int
	if err := decodeInts(intField{"delay", v.Delay, &d}); err != nil {
		return err
	}
	r.Delay = 0
	if d != nil {
		r.Delay = *d
	}
	return nil
}

// RetryResponse answers POST tasks/{id}/retry with the new task.
type RetryResponse struct {
	Msg   string       `json:"msg"`
	Tasks []QueuedTask `json:"tasks"`
}

// Progress is the body of POST tasks/{id}/progress.
type Progress struct {
	Percent *int   `json:"percent"`
	Msg     string `json:"msg"`
}

func (p *Progress) UnmarshalJSON(b []byte) error {
	type plain Progress
	var v struct {
		plain
		Percent json.RawMessage `json:"percent"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = Progress(v.plain)
	return decodeInts(intField{"percent", v.Percent, &p.Percent})
}

// CodeStats answers GET codes/{id}/stats: task counts by status.
type CodeStats struct {
	Queued    int `json:"queued"`
	Preparing int `json:"preparing"`
	Running   int `json:"running"`
	Complete  int `json:"complete"`
	Error     int `json:"error"`
	Timeout   int `json:"timeout"`
	Killed    int `json:"killed"`
	Cancelled int `json:"cancelled"`
}

// WebhookResponse answers POST tasks/webhook.
type WebhookResponse struct {
	ID  string `json:"id"`
	Msg string `json:"msg"`
}

type Task struct {
	ID         string `json:"id"`
	ProjectID  string `json:"project_id"`
	CodeID     string `json:"code_id"`
	CodeName   string `json:"code_name"`
	CodeRev    string `json:"code_rev"`
	CodeHistID string `json:"code_history_id"`
	// Status is what IronWorker clients read. A preparing task shows as
	// running, because iron_go3's and the Ruby gem's wait loops go on only
	// while a task is queued or running; Phase has the exact status.
	Status     string     `json:"status"`
	Msg        string     `json:"msg,omitempty"`
	Priority   int        `json:"priority"`
	Timeout    int        `json:"timeout"`
	Delay      int        `json:"delay"`
	Cluster    string     `json:"cluster,omitempty"`
	Label      string     `json:"label,omitempty"`
	Payload    string     `json:"payload,omitempty"`
	Percent    int        `json:"percent"`
	Duration   int64      `json:"duration"` // ms
	RunTimes   int        `json:"run_times"`
	RetryCount int        `json:"retry_count"`
	RetryOf    string     `json:"retry_of,omitempty"`
	RetryAt    string     `json:"retry_at,omitempty"`
	ScheduleID string     `json:"schedule_id,omitempty"`
	LogSize    int64      `json:"log_size"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	StartTime  *time.Time `json:"start_time"`
	EndTime    *time.Time `json:"end_time"`
	// Extensions.
	// Phase is the exact status: queued, preparing, running, or the end.
	Phase    string `json:"phase,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	// PayloadBase64 replaces payload when the payload is not valid UTF-8
	// (a binary webhook body); see EncodePayload.
	PayloadBase64 string `json:"payload_base64,omitempty"`
	// Timings is where the task's time went on its runner, in ms: queue,
	// prepare, start, run, logs.
	Timings  map[string]float64 `json:"timings,omitempty"`
	Attempt  int                `json:"attempt"`
	RunnerID string             `json:"runner_id,omitempty"`
	DueAt    time.Time          `json:"due_at"`
}

// ClientStatus is the status IronWorker clients are shown for a task's
// exact status: preparing reads as running (see Task.Status).
func ClientStatus(status string) string {
	if status == "preparing" {
		return "running"
	}
	return status
}

// Exact returns t with Status set to its exact status, for Mayfly's own
// tools, which tell preparing from running.
func (t Task) Exact() Task {
	if t.Phase != "" {
		t.Status = t.Phase
	}
	return t
}

type TaskList struct {
	Tasks []Task `json:"tasks"`
}

// Version answers GET /version.
type Version struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
}

// The runner protocol: what embedded and remote runners exchange with the
// server. The embedded runner uses the same types in-process.

// LeaseRequest asks for up to Max tasks, waiting up to WaitMs for one.
type LeaseRequest struct {
	RunnerID string   `json:"runner_id"`
	Max      int      `json:"max"`
	Clusters []string `json:"clusters,omitempty"`
	WaitMs   int      `json:"wait_ms"`
	// What the runner says of itself, for the registry of runners
	// (GET /2/runners, GET /2/stacks, and why a task waits).
	Host     string   `json:"host,omitempty"`
	Capacity int      `json:"capacity,omitempty"`
	Busy     int      `json:"busy,omitempty"`
	Version  string   `json:"version,omitempty"`
	Driver   string   `json:"driver,omitempty"`
	Stacks   []string `json:"stacks,omitempty"`
}

// Runner is one runner as GET /2/runners shows it.
type Runner struct {
	ID       string    `json:"id"`
	Host     string    `json:"host"`
	Clusters []string  `json:"clusters"` // "" is the default cluster
	Capacity int       `json:"capacity"`
	Busy     int       `json:"busy"`
	Version  string    `json:"version"`
	Driver   string    `json:"driver"`
	Stacks   []string  `json:"stacks"`
	LastSeen time.Time `json:"last_heartbeat"`
}

type RunnerList struct {
	Runners []Runner `json:"runners"`
}

// Job is one leased task with everything a runner needs to run it.
type Job struct {
	TaskID     string `json:"task_id"`
	ProjectID  string `json:"project_id"`
	CodeID     string `json:"code_id"`
	CodeName   string `json:"code_name"`
	Payload    string `json:"payload"`
	Timeout    int    `json:"timeout"`
	Attempt    int    `json:"attempt"`
	ScheduleID string `json:"schedule_id,omitempty"`
	// DueAt is when the task became due; the runner measures its queue
	// wait from it.
	DueAt time.Time `json:"due_at"`
	// LeaseMs is how long the lease lasts without a heartbeat.
	LeaseMs int64 `json:"lease_ms"`
	// TaskToken lets the task report its own progress, and nothing else.
	TaskToken string `json:"task_token,omitempty"`
	// MaxLogBytes is where the runner cuts the task's log.
	MaxLogBytes int64   `json:"max_log_bytes"`
	Code        JobCode `json:"code"`
	// PayloadBase64 replaces payload when it is not valid UTF-8.
	PayloadBase64 string `json:"payload_base64,omitempty"`
}

// JobCode is the code revision a job runs.
type JobCode struct {
	RevisionID    string            `json:"revision_id"`
	Rev           int               `json:"rev"`
	Runtime       string            `json:"runtime"`
	FileName      string            `json:"file_name"`
	Stack         string            `json:"stack"`
	Image         string            `json:"image,omitempty"`
	Command       string            `json:"command,omitempty"`
	Config        string            `json:"config,omitempty"`
	EnvVars       map[string]string `json:"env_vars,omitempty"`
	PackageSHA256 string            `json:"package_sha256,omitempty"`
	PackageSize   int64             `json:"package_size,omitempty"`
}

// LeaseRef names one lease of a task, and every report a runner makes
// (started, heartbeat, log, finish) carries it: a report whose lease is
// no longer current is refused with 410 Gone and changes nothing.
type LeaseRef struct {
	TaskID   string `json:"-"`
	RunnerID string `json:"runner_id"`
	Attempt  int    `json:"attempt"`
}

// Lease is the reference of the lease a job was handed under.
func (j Job) Lease(runnerID string) LeaseRef {
	return LeaseRef{TaskID: j.TaskID, RunnerID: runnerID, Attempt: j.Attempt}
}

type LeaseResponse struct {
	Jobs []Job `json:"jobs"`
}

type HeartbeatResponse struct {
	Cancel bool `json:"cancel"`
}

// FinishRequest reports how a task ended.
type FinishRequest struct {
	RunnerID string `json:"runner_id"`
	Attempt  int    `json:"attempt"`
	Status   string `json:"status"`
	Msg      string `json:"msg,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	// Timings are the task's phases on the runner, in ms.
	Timings map[string]float64 `json:"timings,omitempty"`
}

// NewToken is the body of POST /2/tokens.
type NewToken struct {
	Kind      string   `json:"kind"` // admin, project or runner
	ProjectID string   `json:"project_id,omitempty"`
	Name      string   `json:"name"`
	Clusters  []string `json:"clusters,omitempty"` // runner tokens: the clusters it may serve; none = any
	// ExpiresAt, when set, is when the token stops working.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Token is a token as GET /2/tokens shows it: never its secret.
type Token struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"`
	ProjectID string     `json:"project_id,omitempty"`
	Name      string     `json:"name"`
	Clusters  []string   `json:"clusters,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

type TokenList struct {
	Tokens []Token `json:"tokens"`
}

// CreatedToken answers POST /2/tokens: the only time the secret is shown.
type CreatedToken struct {
	Token
	Secret string `json:"token"`
	Msg    string `json:"msg"`
}

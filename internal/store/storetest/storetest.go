// Package storetest is the contract suite every store.Store backend must
// pass. It is ordinary code, not a _test file, so each backend's test runs
// it in one line against the real database:
//
//	storetest.Run(t, storetest.Harness{New: newStore, Reopen: reopenStore})
//
// A change in the store's semantics goes into this suite first; a backend
// is done when the suite passes.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// Harness says how to get stores of one backend.
type Harness struct {
	// New returns a store on a fresh, empty database and closes it when t
	// ends. Each subtest gets its own, so subtests run in parallel.
	New func(t *testing.T) store.Store
	// Reopen closes s, opens the same database again and returns the new
	// store (closed when t ends). Optional: without it the durability test
	// is skipped.
	Reopen func(t *testing.T, s store.Store) store.Store
	// Twin opens another store on the database s is on (closed when t
	// ends), as a second server sharing it would. Optional: without it
	// the cases of several stores on one database are skipped.
	Twin func(t *testing.T, s store.Store) store.Store
}

// Run runs the whole contract suite against the backend h describes.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b *bundle)
	}{
		{"Projects", testProjects},
		{"Tokens", testTokens},
		{"CodeRevisionNumbering", testCodeRevisionNumbering},
		{"ListCodes", testListCodes},
		{"DeleteCode", testDeleteCode},
		{"TaskRoundTrip", testTaskRoundTrip},
		{"QueueStats", testQueueStats},
		{"FinishWithoutRunningMark", testFinishWithoutRunningMark},
		{"InsertTasksAllOrNone", testInsertTasksAllOrNone},
		{"ListTasksFilters", testListTasksFilters},
		{"ListTasksPaging", testListTasksPaging},
		{"LeaseOrder", testLeaseOrder},
		{"LeaseOrderMany", testLeaseOrderMany},
		{"LeaseFields", testLeaseFields},
		{"LeaseDelayed", testLeaseDelayed},
		{"LeaseMaxConcurrency", testLeaseMaxConcurrency},
		{"LeaseStepsPastCodesAtLimit", testLeaseStepsPastCodesAtLimit},
		{"LeaseClusters", testLeaseClusters},
		{"LeaseConcurrent", testLeaseConcurrent},
		{"LeasePausedCode", testLeasePausedCode},
		{"Lifecycle", testLifecycle},
		{"WrongRunner", testWrongRunner},
		{"StaleAttemptFencedOff", testStaleAttemptFencedOff},
		{"BinaryPayload", testBinaryPayload},
		{"LogCappedByTheStore", testLogCappedByTheStore},
		{"RescueRequeuesThenKills", testRescueRequeuesThenKills},
		{"RescueHeartbeatExtends", testRescueHeartbeatExtends},
		{"RescueCancelRequested", testRescueCancelRequested},
		{"CancelTask", testCancelTask},
		{"Logs", testLogs},
		{"ProjectIsolation", testProjectIsolation},
		{"Durability", testDurability},
		{"FinishWithRetry", testFinishWithRetry},
		{"FinishTimings", testFinishTimings},
		{"RetryTask", testRetryTask},
		{"Progress", testProgress},
		{"CancelCodeTasksAndStats", testCancelCodeTasksAndStats},
		{"Overview", testOverview},
	}
	tests = append(tests, scheduleTests...)
	tests = append(tests, tokenLogTests...)
	tests = append(tests, tenantTests...)
	tests = append(tests, maintenanceTests...)
	tests = append(tests, runnerTests...)
	tests = append(tests, concurrencyTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, setup(t, h))
		})
	}
}

// bundle is what one subtest works with: its own store, a project in it
// and a fixed clock (times are microsecond-precise, as stores keep them).
type bundle struct {
	h       Harness
	s       store.Store
	ctx     context.Context
	project store.Project
	now     time.Time
}

func setup(t *testing.T, h Harness) *bundle {
	t.Helper()
	b := &bundle{
		h:   h,
		s:   h.New(t),
		ctx: t.Context(),
		now: time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC),
	}
	b.project = b.newProject(t, "main")
	return b
}

// NewID returns a random 24-hex id like the ones the service generates.
func NewID() string {
	var buf [12]byte
	rand.Read(buf[:])
	return hex.EncodeToString(buf[:])
}

func (b *bundle) newProject(t *testing.T, name string) store.Project {
	t.Helper()
	p := store.Project{ID: NewID(), Name: name, CreatedAt: b.now}
	if err := b.s.CreateProject(b.ctx, p); err != nil {
		t.Fatalf("create project: %v", err)
	}
	return p
}

// putCode uploads a revision of name in the bundle's project.
func (b *bundle) putCode(t *testing.T, name string, mods ...func(*store.CodeRevision)) store.Code {
	t.Helper()
	return b.putCodeIn(t, b.project.ID, name, mods...)
}

func (b *bundle) putCodeIn(t *testing.T, projectID, name string, mods ...func(*store.CodeRevision)) store.Code {
	t.Helper()
	rev := store.CodeRevision{
		ID:        NewID(),
		CodeID:    NewID(),
		ProjectID: projectID,
		Name:      name,
		Runtime:   "sh",
		FileName:  "run.sh",
		Stack:     "default",
		CreatedAt: b.now,
	}
	for _, m := range mods {
		m(&rev)
	}
	c, err := b.s.PutCodeRevision(b.ctx, rev)
	if err != nil {
		t.Fatalf("put revision of code %s: %v", name, err)
	}
	return c
}

// task returns (without storing) a queued, due task of code.
func (b *bundle) task(code store.Code, mods ...func(*store.Task)) store.Task {
	tk := store.Task{
		ID:             NewID(),
		ProjectID:      code.ProjectID,
		CodeID:         code.CodeID,
		CodeName:       code.Name,
		CodeRevisionID: code.CodeRevision.ID,
		CodeRev:        code.Rev,
		Status:         store.StatusQueued,
		Payload:        `{"n":1}`,
		Timeout:        3600,
		CreatedAt:      b.now,
		UpdatedAt:      b.now,
		DueAt:          b.now,
	}
	for _, m := range mods {
		m(&tk)
	}
	return tk
}

func (b *bundle) insert(t *testing.T, tasks ...store.Task) {
	t.Helper()
	if err := b.s.InsertTasks(b.ctx, tasks); err != nil {
		t.Fatalf("insert tasks: %v", err)
	}
}

// insertN stores n tasks of code and returns them.
func (b *bundle) insertN(t *testing.T, n int, code store.Code, mods ...func(*store.Task)) []store.Task {
	t.Helper()
	tasks := make([]store.Task, n)
	for i := range tasks {
		tasks[i] = b.task(code, mods...)
	}
	b.insert(t, tasks...)
	return tasks
}

// logTo appends to the log of a task that runner r1 holds on its first
// attempt.
func (b *bundle) logTo(taskID string, data []byte) error {
	return b.s.AppendLog(b.ctx, store.AppendLogParams{TaskID: taskID, RunnerID: "r1", Attempt: 1, Data: data})
}

// leaseOnly leases exactly tk to runner r1.
func (b *bundle) leaseOnly(t *testing.T, tk store.Task) {
	t.Helper()
	got := b.lease(t, "r1", 1, b.now)
	if len(got) != 1 || got[0].ID != tk.ID {
		t.Fatalf("leased %v, want only task %s", got, tk.ID)
	}
}

func (b *bundle) lease(t *testing.T, runner string, n int, at time.Time, clusters ...string) []store.Task {
	t.Helper()
	got, err := b.s.LeaseTasks(b.ctx, store.LeaseParams{
		RunnerID:      runner,
		Max:           n,
		Clusters:      clusters,
		LeaseDuration: 30 * time.Second,
		Now:           at,
	})
	if err != nil {
		t.Fatalf("lease tasks for %s: %v", runner, err)
	}
	if len(got) > n {
		t.Fatalf("lease Max %d returned %d tasks", n, len(got))
	}
	return got
}

func (b *bundle) getTask(t *testing.T, id string) store.Task {
	t.Helper()
	tk, err := b.s.GetTask(b.ctx, b.project.ID, id)
	if err != nil {
		t.Fatalf("get task %s: %v", id, err)
	}
	return tk
}

func (b *bundle) finish(t *testing.T, tk store.Task, status store.Status) {
	t.Helper()
	zero := 0
	if err := b.s.FinishTask(b.ctx, store.FinishParams{
		TaskID: tk.ID, RunnerID: tk.RunnerID, Attempt: tk.Attempt, Status: status, ExitCode: &zero, Now: b.now,
	}); err != nil {
		t.Fatalf("finish task %s: %v", tk.ID, err)
	}
}

func ids(tasks []store.Task) []string {
	out := make([]string, len(tasks))
	for i, tk := range tasks {
		out[i] = tk.ID
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func wantErr(t *testing.T, err, want error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// normTime makes times comparable with reflect.DeepEqual whatever location
// value a backend returns them in.
func normTime(p *time.Time) {
	*p = p.UTC()
}

func normTimePtr(p **time.Time) {
	if *p != nil {
		t := (*p).UTC()
		*p = &t
	}
}

func normTask(tk store.Task) store.Task {
	normTime(&tk.CreatedAt)
	normTime(&tk.UpdatedAt)
	normTime(&tk.DueAt)
	normTimePtr(&tk.LeaseExpiresAt)
	normTimePtr(&tk.StartTime)
	normTimePtr(&tk.EndTime)
	return tk
}

func normRev(r store.CodeRevision) store.CodeRevision {
	normTime(&r.CreatedAt)
	if len(r.EnvVars) == 0 {
		r.EnvVars = nil
	}
	return r
}

func normCode(c store.Code) store.Code {
	c.CodeRevision = normRev(c.CodeRevision)
	normTime(&c.CreatedAt)
	normTime(&c.UpdatedAt)
	return c
}

func sameTask(t *testing.T, got, want store.Task) {
	t.Helper()
	if g, w := normTask(got), normTask(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("task differs:\n got %+v\nwant %+v", g, w)
	}
}

func sameRev(t *testing.T, got, want store.CodeRevision) {
	t.Helper()
	if g, w := normRev(got), normRev(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("code revision differs:\n got %+v\nwant %+v", g, w)
	}
}

func sameCode(t *testing.T, got, want store.Code) {
	t.Helper()
	if g, w := normCode(got), normCode(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("code differs:\n got %+v\nwant %+v", g, w)
	}
}

func sameIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got ids\n %v\nwant\n %v", what, got, want)
	}
}

package scheduler_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/assembly/assemblytest"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// bundle is one test's world: a real store and service, one image code,
// and the scheduler loop running until the test ends. No runner runs, so
// tasks stay queued.
type bundle struct {
	t       *testing.T
	ctx     context.Context
	svc     *service.Service
	project string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := t.Context()
	// The server's parts with the scheduler, as `mayfly server` runs it.
	a := assemblytest.Start(t, assembly.Config{
		Service:   service.Config{MinRunEvery: time.Second, AllowImages: []string{"busybox"}},
		Scheduler: true,
	})
	if _, err := a.Service.UploadCode(ctx, a.Bootstrap.ProjectID, wire.CodeUpload{Name: "hello", Image: "busybox"}, nil); err != nil {
		t.Fatal(err)
	}
	return &bundle{t: t, ctx: ctx, svc: a.Service, project: a.Bootstrap.ProjectID}
}

func (b *bundle) create(s wire.NewSchedule) string {
	b.t.Helper()
	if s.CodeName == "" {
		s.CodeName = "hello"
	}
	ids, err := b.svc.CreateSchedules(b.ctx, b.project, []wire.NewSchedule{s})
	if err != nil {
		b.t.Fatalf("create schedule: %v", err)
	}
	return ids[0]
}

func (b *bundle) get(id string) store.Schedule {
	b.t.Helper()
	sc, err := b.svc.GetSchedule(b.ctx, b.project, id)
	if err != nil {
		b.t.Fatalf("get schedule %s: %v", id, err)
	}
	return sc
}

// tasks returns the tasks schedule id made, newest first.
func (b *bundle) tasks(id string) []store.Task {
	b.t.Helper()
	all, err := b.svc.ListTasks(b.ctx, store.TaskFilter{ProjectID: b.project, Page: store.Page{PerPage: 100}})
	if err != nil {
		b.t.Fatal(err)
	}
	var out []store.Task
	for _, tk := range all {
		if tk.ScheduleID == id {
			out = append(out, tk)
		}
	}
	return out
}

// waitFor polls cond until it holds, failing the test after a deadline.
func (b *bundle) waitFor(what string, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }

func TestRunTimes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	start := time.Now().Add(2 * time.Second).UTC().Truncate(time.Second)
	id := b.create(wire.NewSchedule{Payload: `{"n":1}`, StartAt: &start, RunEvery: ptr(1), RunTimes: ptr(2), Label: "sched"})
	if sc := b.get(id); sc.Status != store.ScheduleScheduled || sc.NextStart == nil || !sc.NextStart.Equal(start) {
		t.Fatalf("new schedule: %+v", sc)
	}
	b.waitFor("the schedule to complete", func() bool { return b.get(id).Status == store.ScheduleComplete })
	sc := b.get(id)
	if sc.Msg != "Ran max times." || sc.RunCount != 2 || sc.NextStart != nil || sc.LastRunTime == nil {
		t.Fatalf("completed schedule: %+v", sc)
	}
	tasks := b.tasks(id)
	if len(tasks) != 2 {
		t.Fatalf("%d tasks; want 2", len(tasks))
	}
	for _, tk := range tasks {
		if tk.Payload != `{"n":1}` || tk.Label != "sched" || tk.Status != store.StatusQueued {
			t.Fatalf("scheduled task: %+v", tk)
		}
		if tk.CreatedAt.Before(start) {
			t.Fatalf("task made at %v, before start_at %v", tk.CreatedAt, start)
		}
	}
}

// TestCancel cancels a running schedule, then waits until another
// schedule has fired twice more: the scheduler has had its chances, and the
// cancelled schedule made nothing more.
func TestCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.create(wire.NewSchedule{RunEvery: ptr(1)})
	b.waitFor("a first run", func() bool { return b.get(id).RunCount >= 1 })
	cancelled, err := b.svc.CancelSchedule(b.ctx, b.project, id)
	if err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if cancelled.Status != store.ScheduleCancelled || cancelled.NextStart != nil {
		t.Fatalf("cancelled schedule: %+v", cancelled)
	}
	made := len(b.tasks(id))
	if made != cancelled.RunCount {
		t.Fatalf("%d tasks for run_count %d", made, cancelled.RunCount)
	}
	probe := b.create(wire.NewSchedule{RunEvery: ptr(1)})
	b.waitFor("the probe schedule to run twice", func() bool { return b.get(probe).RunCount >= 2 })
	if n := len(b.tasks(id)); n != made {
		t.Fatalf("cancelled schedule made %d tasks after the cancel", n-made)
	}
	if _, err := b.svc.CancelSchedule(b.ctx, b.project, id); err == nil || !strings.Contains(err.Error(), "already cancelled") {
		t.Fatalf("cancel twice: %v", err)
	}
}

// TestMaxConcurrency: no runner runs, so the first task stays queued and
// later runs are skipped, saying so, until it is cancelled.
func TestMaxConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.create(wire.NewSchedule{RunEvery: ptr(1), MaxConcurrency: ptr(1)})
	b.waitFor("a skipped run", func() bool { return strings.Contains(b.get(id).Msg, "max_concurrency 1 reached") })
	tasks := b.tasks(id)
	if sc := b.get(id); len(tasks) != 1 || sc.RunCount != 1 || sc.Status != store.ScheduleScheduled {
		t.Fatalf("after a skip: %d tasks, %+v", len(tasks), sc)
	}
	if _, err := b.svc.CancelTask(b.ctx, b.project, tasks[0].ID); err != nil {
		t.Fatal(err)
	}
	b.waitFor("a run once the task ended", func() bool { return len(b.tasks(id)) == 2 })
	if sc := b.get(id); sc.RunCount != 2 {
		t.Fatalf("run_count %d with 2 tasks", sc.RunCount)
	}
}

// TestOneShot: neither run_every nor cron: one run at start_at.
func TestOneShot(t *testing.T) {
	t.Parallel()
	b := setup(t)
	start := time.Now().Add(time.Second).UTC()
	id := b.create(wire.NewSchedule{StartAt: &start})
	b.waitFor("the one run", func() bool { return b.get(id).Status == store.ScheduleComplete })
	if sc, n := b.get(id), len(b.tasks(id)); sc.RunCount != 1 || n != 1 || sc.Msg != "Ran once." {
		t.Fatalf("one-shot schedule: %d tasks, %+v", n, sc)
	}
}

package storetest

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// scheduleTests are the schedule part of the suite; Run runs them with the
// rest, each on its own store.
var scheduleTests = []struct {
	name string
	fn   func(t *testing.T, b *bundle)
}{
	{"ScheduleRoundTrip", testScheduleRoundTrip},
	{"ListSchedules", testListSchedules},
	{"UpdateScheduleVersion", testUpdateScheduleVersion},
	{"CancelSchedule", testCancelSchedule},
	{"DueSchedules", testDueSchedules},
	{"FireSchedule", testFireSchedule},
	{"FireScheduleConcurrent", testFireScheduleConcurrent},
	{"FireScheduleMaxActive", testFireScheduleMaxActive},
	{"FireScheduleAcrossReopen", testFireScheduleAcrossReopen},
}

// schedule returns (without storing) a scheduled interval schedule of
// code, due at b.now.
func (b *bundle) schedule(code store.Code, mods ...func(*store.Schedule)) store.Schedule {
	sc := store.Schedule{
		ID:        NewID(),
		ProjectID: code.ProjectID,
		CodeName:  code.Name,
		Payload:   `{"s":1}`,
		Status:    store.ScheduleScheduled,
		RunEvery:  60,
		NextStart: ptr(b.now),
		CreatedAt: b.now,
		UpdatedAt: b.now,
	}
	for _, m := range mods {
		m(&sc)
	}
	return sc
}

func (b *bundle) createSchedules(t *testing.T, schedules ...store.Schedule) {
	t.Helper()
	if err := b.s.CreateSchedules(b.ctx, schedules); err != nil {
		t.Fatalf("create schedules: %v", err)
	}
}

func (b *bundle) getSchedule(t *testing.T, id string) store.Schedule {
	t.Helper()
	sc, err := b.s.GetSchedule(b.ctx, b.project.ID, id)
	if err != nil {
		t.Fatalf("get schedule %s: %v", id, err)
	}
	return sc
}

// scheduleTasks returns the tasks of the bundle's project made by the
// schedule id.
func (b *bundle) scheduleTasks(t *testing.T, id string) []store.Task {
	t.Helper()
	var out []store.Task
	for page := 0; ; page++ {
		tasks, err := b.s.ListTasks(b.ctx, store.TaskFilter{ProjectID: b.project.ID, Page: store.Page{Page: page, PerPage: 100}})
		if err != nil {
			t.Fatalf("list tasks: %v", err)
		}
		for _, tk := range tasks {
			if tk.ScheduleID == id {
				out = append(out, tk)
			}
		}
		if len(tasks) < 100 {
			return out
		}
	}
}

func normSchedule(s store.Schedule) store.Schedule {
	normTime(&s.CreatedAt)
	normTime(&s.UpdatedAt)
	normTimePtr(&s.StartAt)
	normTimePtr(&s.EndAt)
	normTimePtr(&s.LastRunTime)
	normTimePtr(&s.NextStart)
	return s
}

func sameSchedule(t *testing.T, got, want store.Schedule) {
	t.Helper()
	if g, w := normSchedule(got), normSchedule(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("schedule differs:\n got %+v\nwant %+v", g, w)
	}
}

// fire claims sc's current run with a task of code and the given outcome.
func (b *bundle) fireParams(sc store.Schedule, code store.Code, at time.Time) store.FireParams {
	tk := b.task(code, func(tk *store.Task) { tk.ScheduleID = sc.ID; tk.CreatedAt = at; tk.UpdatedAt = at; tk.DueAt = at })
	next := sc.NextStart.Add(time.Minute)
	return store.FireParams{
		ProjectID: sc.ProjectID, ScheduleID: sc.ID, DueAt: *sc.NextStart, Version: sc.Version, Now: at,
		Task:    &tk,
		Fired:   store.ScheduleOutcome{Status: store.ScheduleScheduled, NextStart: &next},
		Skipped: store.ScheduleOutcome{Status: store.ScheduleScheduled, NextStart: &next, Msg: "skipped"},
	}
}

func testScheduleRoundTrip(t *testing.T, b *bundle) {
	code := b.putCode(t, "sched")
	plain := b.schedule(code)
	full := b.schedule(code, func(s *store.Schedule) {
		s.Name = "nightly report"
		s.Payload = `{"report":"all"}`
		s.StartAt = ptr(b.now.Add(time.Hour))
		s.EndAt = ptr(b.now.Add(48 * time.Hour))
		s.RunEvery = 0
		s.Cron = "30 2 * * *"
		s.Timezone = "Europe/Berlin"
		s.RunTimes = 5
		s.Priority = ptr(2)
		s.Timeout = 120
		s.Delay = 7
		s.Cluster = "gpu"
		s.Label = "reports"
		s.MaxConcurrency = 1
		s.RunCount = 3
		s.LastRunTime = ptr(b.now.Add(-time.Minute))
		s.NextStart = ptr(b.now.Add(2 * time.Hour))
		s.Msg = "skipped once"
		s.Version = 4
		s.UpdatedAt = b.now.Add(time.Second)
	})
	done := b.schedule(code, func(s *store.Schedule) { s.Status = store.ScheduleComplete; s.NextStart = nil })
	b.createSchedules(t, plain, full, done)
	for _, want := range []store.Schedule{plain, full, done} {
		got := b.getSchedule(t, want.ID)
		sameSchedule(t, got, want)
		if got.CreatedAt.Location() != time.UTC {
			t.Fatalf("schedule times not in UTC: %v", got.CreatedAt.Location())
		}
	}
	if err := b.s.CreateSchedules(b.ctx, nil); err != nil {
		t.Fatalf("create no schedules: %v", err)
	}
	_, err := b.s.GetSchedule(b.ctx, b.project.ID, NewID())
	wantErr(t, err, store.ErrNotFound, "get missing schedule")
	other := b.newProject(t, "other")
	_, err = b.s.GetSchedule(b.ctx, other.ID, plain.ID)
	wantErr(t, err, store.ErrNotFound, "get a schedule through another project")

	// All or none.
	fresh := b.schedule(code)
	dup := b.schedule(code, func(s *store.Schedule) { s.ID = plain.ID })
	wantErr(t, b.s.CreateSchedules(b.ctx, []store.Schedule{fresh, dup}), store.ErrConflict, "create a batch with a used id")
	_, err = b.s.GetSchedule(b.ctx, b.project.ID, fresh.ID)
	wantErr(t, err, store.ErrNotFound, "get a schedule of a failed batch")
}

func testListSchedules(t *testing.T, b *bundle) {
	code := b.putCode(t, "list")
	var want []string
	for i := range 5 {
		sc := b.schedule(code, func(s *store.Schedule) { s.CreatedAt = b.now.Add(time.Duration(i) * time.Second) })
		b.createSchedules(t, sc)
		want = append([]string{sc.ID}, want...) // newest first
	}
	other := b.newProject(t, "other")
	otherCode := b.putCodeIn(t, other.ID, "list")
	b.createSchedules(t, b.schedule(otherCode))

	var got []string
	for page := 0; page < 3; page++ {
		scs, err := b.s.ListSchedules(b.ctx, b.project.ID, store.Page{Page: page, PerPage: 2})
		if err != nil {
			t.Fatalf("list schedules: %v", err)
		}
		for _, s := range scs {
			got = append(got, s.ID)
		}
	}
	sameIDs(t, "schedules newest first", got, want)
}

func testUpdateScheduleVersion(t *testing.T, b *bundle) {
	code := b.putCode(t, "upd")
	sc := b.schedule(code)
	b.createSchedules(t, sc)

	change := sc
	change.Payload = "new"
	change.RunEvery = 0
	change.Cron = "*/5 * * * *"
	change.Timezone = "Asia/Tokyo"
	change.MaxConcurrency = 2
	change.NextStart = ptr(b.now.Add(5 * time.Minute))
	change.UpdatedAt = b.now.Add(time.Second)
	change.RunCount = 99 // not the caller's to change
	got, err := b.s.UpdateSchedule(b.ctx, change)
	if err != nil {
		t.Fatalf("update schedule: %v", err)
	}
	want := change
	want.RunCount = 0
	want.Version = sc.Version + 1
	sameSchedule(t, got, want)
	sameSchedule(t, b.getSchedule(t, sc.ID), want)

	// A writer holding the old copy loses.
	stale := sc
	stale.Payload = "stale"
	_, err = b.s.UpdateSchedule(b.ctx, stale)
	wantErr(t, err, store.ErrConflict, "update from a stale copy")
	sameSchedule(t, b.getSchedule(t, sc.ID), want)

	missing := sc
	missing.ID = NewID()
	_, err = b.s.UpdateSchedule(b.ctx, missing)
	wantErr(t, err, store.ErrNotFound, "update a missing schedule")
}

func testCancelSchedule(t *testing.T, b *bundle) {
	code := b.putCode(t, "cancel")
	sc := b.schedule(code)
	b.createSchedules(t, sc)
	at := b.now.Add(time.Second)
	got, err := b.s.CancelSchedule(b.ctx, b.project.ID, sc.ID, at)
	if err != nil {
		t.Fatalf("cancel schedule: %v", err)
	}
	if got.Status != store.ScheduleCancelled || got.NextStart != nil || !got.UpdatedAt.Equal(at) || got.Version != sc.Version+1 {
		t.Fatalf("cancelled schedule: %+v", got)
	}
	_, err = b.s.CancelSchedule(b.ctx, b.project.ID, sc.ID, at)
	wantErr(t, err, store.ErrConflict, "cancel twice")
	_, err = b.s.CancelSchedule(b.ctx, b.project.ID, NewID(), at)
	wantErr(t, err, store.ErrNotFound, "cancel a missing schedule")
	due, err := b.s.DueSchedules(b.ctx, b.now.Add(time.Hour), 10)
	if err != nil || len(due) != 0 {
		t.Fatalf("due after cancel: %v, %v", ids2(due), err)
	}
	// The cancelled schedule's old run can no longer be claimed.
	_, err = b.s.FireSchedule(b.ctx, b.fireParams(sc, code, at))
	wantErr(t, err, store.ErrConflict, "fire a cancelled schedule")
	if n := len(b.scheduleTasks(t, sc.ID)); n != 0 {
		t.Fatalf("cancelled schedule made %d tasks", n)
	}
}

func ids2(scs []store.Schedule) []string {
	out := make([]string, len(scs))
	for i, s := range scs {
		out[i] = s.ID
	}
	return out
}

func testDueSchedules(t *testing.T, b *bundle) {
	code := b.putCode(t, "due")
	at := func(sec int) *time.Time { return ptr(b.now.Add(time.Duration(sec) * time.Second)) }
	late := b.schedule(code, func(s *store.Schedule) { s.NextStart = at(-10) })
	now := b.schedule(code, func(s *store.Schedule) { s.NextStart = at(0) })
	future := b.schedule(code, func(s *store.Schedule) { s.NextStart = at(30) })
	done := b.schedule(code, func(s *store.Schedule) { s.Status = store.ScheduleComplete; s.NextStart = at(-20) })
	other := b.newProject(t, "other")
	elsewhere := b.schedule(b.putCodeIn(t, other.ID, "due"), func(s *store.Schedule) { s.NextStart = at(-5) })
	b.createSchedules(t, late, now, future, done, elsewhere)

	due, err := b.s.DueSchedules(b.ctx, b.now, 10)
	if err != nil {
		t.Fatalf("due schedules: %v", err)
	}
	sameIDs(t, "due schedules, earliest first, all projects", ids2(due), []string{late.ID, elsewhere.ID, now.ID})
	due, err = b.s.DueSchedules(b.ctx, b.now, 1)
	if err != nil || len(due) != 1 || due[0].ID != late.ID {
		t.Fatalf("due with limit 1: %v, %v", ids2(due), err)
	}
	next, ok, err := b.s.NextScheduleStart(b.ctx)
	if err != nil || !ok || !next.Equal(*late.NextStart) {
		t.Fatalf("next schedule start: %v %v %v; want %v", next, ok, err, late.NextStart)
	}

	empty := setup(t, b.h)
	if _, ok, err := empty.s.NextScheduleStart(empty.ctx); ok || err != nil {
		t.Fatalf("next schedule start of an empty store: ok %v, %v", ok, err)
	}
}

func testFireSchedule(t *testing.T, b *bundle) {
	code := b.putCode(t, "fire")
	sc := b.schedule(code, func(s *store.Schedule) { s.Msg = "old msg" })
	b.createSchedules(t, sc)
	at := b.now.Add(300 * time.Millisecond)
	p := b.fireParams(sc, code, at)
	fired, err := b.s.FireSchedule(b.ctx, p)
	if err != nil || !fired {
		t.Fatalf("fire: %v, %v", fired, err)
	}
	got := b.getSchedule(t, sc.ID)
	want := sc
	want.RunCount = 1
	want.LastRunTime = &at
	want.NextStart = p.Fired.NextStart
	want.Msg = ""
	want.Version = sc.Version + 1
	want.UpdatedAt = at
	sameSchedule(t, got, want)
	tasks := b.scheduleTasks(t, sc.ID)
	if len(tasks) != 1 {
		t.Fatalf("fire made %d tasks", len(tasks))
	}
	sameTask(t, tasks[0], *p.Task)

	// The same due time again: already claimed.
	again := b.fireParams(sc, code, at)
	_, err = b.s.FireSchedule(b.ctx, again)
	wantErr(t, err, store.ErrConflict, "fire the same run twice")

	// The next run ends the schedule.
	last := b.fireParams(got, code, at.Add(time.Minute))
	last.Fired = store.ScheduleOutcome{Status: store.ScheduleComplete, Msg: "Ran max times."}
	if fired, err := b.s.FireSchedule(b.ctx, last); err != nil || !fired {
		t.Fatalf("fire the last run: %v, %v", fired, err)
	}
	got = b.getSchedule(t, sc.ID)
	if got.Status != store.ScheduleComplete || got.NextStart != nil || got.RunCount != 2 || got.Msg != "Ran max times." {
		t.Fatalf("schedule after its last run: %+v", got)
	}
	if n := len(b.scheduleTasks(t, sc.ID)); n != 2 {
		t.Fatalf("%d tasks after two runs", n)
	}

	// A run without a task is a skip.
	skip := b.schedule(code)
	b.createSchedules(t, skip)
	sp := b.fireParams(skip, code, at)
	sp.Task = nil
	if fired, err := b.s.FireSchedule(b.ctx, sp); err != nil || fired {
		t.Fatalf("skip: fired %v, %v", fired, err)
	}
	got = b.getSchedule(t, skip.ID)
	if got.RunCount != 0 || got.Msg != "skipped" || !got.NextStart.Equal(*sp.Skipped.NextStart) || got.LastRunTime != nil {
		t.Fatalf("skipped schedule: %+v", got)
	}

	// A task that cannot be inserted leaves the run unclaimed.
	bad := b.schedule(code)
	b.createSchedules(t, bad)
	bp := b.fireParams(bad, code, at)
	bp.Task.ID = tasks[0].ID
	_, err = b.s.FireSchedule(b.ctx, bp)
	wantErr(t, err, store.ErrConflict, "fire with a used task id")
	sameSchedule(t, b.getSchedule(t, bad.ID), bad)
}

// testFireScheduleConcurrent races many claims of one run, as several
// servers (or a restarted one) might: exactly one wins, and exactly one
// task exists.
func testFireScheduleConcurrent(t *testing.T, b *bundle) {
	code := b.putCode(t, "race")
	sc := b.schedule(code)
	b.createSchedules(t, sc)
	const racers = 8
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		wins   int
		errs   []error
		taskOf = map[string]bool{}
	)
	for range racers {
		p := b.fireParams(sc, code, b.now)
		taskOf[p.Task.ID] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			fired, err := b.s.FireSchedule(b.ctx, p)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && fired:
				wins++
			case errors.Is(err, store.ErrConflict):
			default:
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 || wins != 1 {
		t.Fatalf("%d of %d claims won (want 1); other errors: %v", wins, racers, errs)
	}
	tasks := b.scheduleTasks(t, sc.ID)
	if len(tasks) != 1 || !taskOf[tasks[0].ID] {
		t.Fatalf("%d tasks after racing claims; want 1", len(tasks))
	}
	if got := b.getSchedule(t, sc.ID); got.RunCount != 1 {
		t.Fatalf("run_count %d after racing claims", got.RunCount)
	}
}

func testFireScheduleMaxActive(t *testing.T, b *bundle) {
	code := b.putCode(t, "limited")
	sc := b.schedule(code, func(s *store.Schedule) { s.MaxConcurrency = 1 })
	b.createSchedules(t, sc)
	p := b.fireParams(sc, code, b.now)
	p.MaxActive = 1
	if fired, err := b.s.FireSchedule(b.ctx, p); err != nil || !fired {
		t.Fatalf("first run: %v, %v", fired, err)
	}
	cur := b.getSchedule(t, sc.ID)
	p = b.fireParams(cur, code, b.now.Add(time.Minute))
	p.MaxActive = 1
	if fired, err := b.s.FireSchedule(b.ctx, p); err != nil || fired {
		t.Fatalf("run while one task is active: fired %v, %v", fired, err)
	}
	cur = b.getSchedule(t, sc.ID)
	if cur.RunCount != 1 || cur.Msg != "skipped" {
		t.Fatalf("schedule after a skip: %+v", cur)
	}
	if n := len(b.scheduleTasks(t, sc.ID)); n != 1 {
		t.Fatalf("%d tasks after a skip", n)
	}
	// Once its task ends, the next run fires.
	leased := b.lease(t, "r1", 10, b.now.Add(time.Minute))
	if len(leased) != 1 {
		t.Fatalf("lease: %d tasks", len(leased))
	}
	b.finish(t, leased[0], store.StatusComplete)
	p = b.fireParams(cur, code, b.now.Add(2*time.Minute))
	p.MaxActive = 1
	if fired, err := b.s.FireSchedule(b.ctx, p); err != nil || !fired {
		t.Fatalf("run after the task ended: %v, %v", fired, err)
	}
	// Tasks of other schedules do not count.
	free := b.schedule(code, func(s *store.Schedule) { s.MaxConcurrency = 1 })
	b.createSchedules(t, free)
	fp := b.fireParams(free, code, b.now)
	fp.MaxActive = 1
	if fired, err := b.s.FireSchedule(b.ctx, fp); err != nil || !fired {
		t.Fatalf("run of another schedule: %v, %v", fired, err)
	}
}

// testFireScheduleAcrossReopen fires, closes and reopens the store, as a
// restarted server does: the claimed run stays claimed and the next one
// fires once.
func testFireScheduleAcrossReopen(t *testing.T, b *bundle) {
	if b.h.Reopen == nil {
		t.Skip("backend has no Reopen hook")
	}
	code := b.putCode(t, "reopen")
	sc := b.schedule(code)
	b.createSchedules(t, sc)
	first := b.fireParams(sc, code, b.now)
	if fired, err := b.s.FireSchedule(b.ctx, first); err != nil || !fired {
		t.Fatalf("fire: %v, %v", fired, err)
	}

	b.s = b.h.Reopen(t, b.s)

	_, err := b.s.FireSchedule(b.ctx, first)
	wantErr(t, err, store.ErrConflict, "fire the claimed run after reopen")
	cur := b.getSchedule(t, sc.ID)
	if cur.RunCount != 1 || !cur.NextStart.Equal(*first.Fired.NextStart) {
		t.Fatalf("schedule after reopen: %+v", cur)
	}
	due, err := b.s.DueSchedules(b.ctx, *cur.NextStart, 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("due after reopen: %v, %v", ids2(due), err)
	}
	if fired, err := b.s.FireSchedule(b.ctx, b.fireParams(due[0], code, *cur.NextStart)); err != nil || !fired {
		t.Fatalf("fire the next run after reopen: %v, %v", fired, err)
	}
	tasks := b.scheduleTasks(t, sc.ID)
	if len(tasks) != 2 {
		t.Fatalf("%d tasks; want 2", len(tasks))
	}
	sameTask(t, tasks[1], *first.Task)
}

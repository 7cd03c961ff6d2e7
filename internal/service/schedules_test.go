package service

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	blobfs "github.com/mayfly-run/mayfly/internal/blob/fs"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/store/sqlite"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// clockBundle is a service on a real store whose clock the test moves.
type clockBundle struct {
	t       *testing.T
	ctx     context.Context
	svc     *Service
	project string
	now     time.Time
}

func setupClock(t *testing.T) *clockBundle {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "mayfly.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	blobs, err := blobfs.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	b := &clockBundle{t: t, ctx: ctx, now: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}
	b.svc = New(st, blobs, Config{AllowImages: []string{"busybox"}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.svc.now = func() time.Time { return b.now }
	boot, err := b.svc.EnsureBootstrap(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	b.project = boot.ProjectID
	if _, err := b.svc.UploadCode(ctx, b.project, wire.CodeUpload{Name: "hello", Image: "busybox"}, nil); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *clockBundle) create(s wire.NewSchedule) (string, error) {
	if s.CodeName == "" {
		s.CodeName = "hello"
	}
	ids, err := b.svc.CreateSchedules(b.ctx, b.project, []wire.NewSchedule{s})
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

func (b *clockBundle) fire() {
	b.t.Helper()
	if _, _, err := b.svc.FireDueSchedules(b.ctx); err != nil {
		b.t.Fatalf("fire due schedules: %v", err)
	}
}

func (b *clockBundle) get(id string) store.Schedule {
	b.t.Helper()
	sc, err := b.svc.GetSchedule(b.ctx, b.project, id)
	if err != nil {
		b.t.Fatal(err)
	}
	return sc
}

func (b *clockBundle) count(id string) int {
	b.t.Helper()
	tasks, err := b.svc.ListTasks(b.ctx, store.TaskFilter{ProjectID: b.project, Page: store.Page{PerPage: 100}})
	if err != nil {
		b.t.Fatal(err)
	}
	n := 0
	for _, tk := range tasks {
		if tk.ScheduleID == id {
			n++
		}
	}
	return n
}

func iptr(v int) *int { return &v }

// TestMissedRunsFireOnce: after downtime a schedule fires once, not once
// per missed interval, and its next run is an interval from then.
func TestMissedRunsFireOnce(t *testing.T) {
	t.Parallel()
	b := setupClock(t)
	id, err := b.create(wire.NewSchedule{RunEvery: iptr(60)})
	if err != nil {
		t.Fatal(err)
	}
	b.fire()
	b.fire() // the same instant: nothing more is due
	if n := b.count(id); n != 1 {
		t.Fatalf("%d tasks after the first run", n)
	}
	b.now = b.now.Add(10*time.Minute + 5*time.Second)
	b.fire()
	b.fire()
	sc := b.get(id)
	if n := b.count(id); n != 2 || sc.RunCount != 2 {
		t.Fatalf("after 10 missed minutes: %d tasks, run_count %d; want 2", n, sc.RunCount)
	}
	if want := b.now.Add(time.Minute); !sc.NextStart.Equal(want) {
		t.Fatalf("next_start %v; want %v", sc.NextStart, want)
	}
	// On time again: the rhythm holds from there.
	b.now = *sc.NextStart
	b.fire()
	if sc := b.get(id); sc.RunCount != 3 || !sc.NextStart.Equal(b.now.Add(time.Minute)) {
		t.Fatalf("on-time run: %+v", sc)
	}
}

func TestCronScheduleMissedRuns(t *testing.T) {
	t.Parallel()
	b := setupClock(t)
	id, err := b.create(wire.NewSchedule{Cron: "*/5 * * * *", Timezone: "Europe/Berlin"})
	if err != nil {
		t.Fatal(err)
	}
	if sc := b.get(id); !sc.NextStart.Equal(b.now.Add(5 * time.Minute)) {
		t.Fatalf("first cron run %v", sc.NextStart)
	}
	b.now = b.now.Add(time.Hour + time.Minute)
	b.fire()
	sc := b.get(id)
	if n := b.count(id); n != 1 || !sc.NextStart.Equal(time.Date(2026, 5, 1, 11, 5, 0, 0, time.UTC)) {
		t.Fatalf("after an hour of downtime: %d tasks, next %v", n, sc.NextStart)
	}
}

func TestEndAt(t *testing.T) {
	t.Parallel()
	b := setupClock(t)
	end := b.now.Add(90 * time.Second)
	id, err := b.create(wire.NewSchedule{RunEvery: iptr(60), EndAt: &end})
	if err != nil {
		t.Fatal(err)
	}
	b.fire()
	b.now = b.now.Add(time.Minute)
	b.fire()
	if sc := b.get(id); sc.Status != store.ScheduleComplete || sc.Msg != msgPastEnd || sc.RunCount != 2 {
		t.Fatalf("schedule at its end: %+v", sc)
	}
	// A run that came due before end_at is made even when the server
	// comes back after end_at; then the schedule ends.
	start := b.now.Add(time.Minute)
	id, err = b.create(wire.NewSchedule{RunEvery: iptr(60), StartAt: &start, EndAt: ptrTime(b.now.Add(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	b.now = b.now.Add(2 * time.Hour)
	b.fire()
	b.fire()
	if sc := b.get(id); sc.Status != store.ScheduleComplete || sc.Msg != msgPastEnd || b.count(id) != 1 {
		t.Fatalf("schedule back after its end: %d tasks, %+v", b.count(id), sc)
	}
}

func ptrTime(t time.Time) *time.Time { return &t }

func TestUpdateSchedule(t *testing.T) {
	t.Parallel()
	b := setupClock(t)
	id, err := b.create(wire.NewSchedule{RunEvery: iptr(60), Payload: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b.fire()
	cron, payload := "0 12 * * *", "b"
	sc, err := b.svc.UpdateSchedule(b.ctx, b.project, id, wire.ScheduleUpdate{Cron: &cron, Payload: &payload})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if sc.RunEvery != 0 || sc.Cron != cron || sc.Payload != "b" || sc.RunCount != 1 ||
		!sc.NextStart.Equal(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("updated schedule: %+v", sc)
	}
	runTimes := 1
	sc, err = b.svc.UpdateSchedule(b.ctx, b.project, id, wire.ScheduleUpdate{RunTimes: &runTimes})
	if err != nil || sc.Status != store.ScheduleComplete || sc.Msg != msgRanMaxTimes {
		t.Fatalf("run_times below run_count: %+v, %v", sc, err)
	}
	_, err = b.svc.UpdateSchedule(b.ctx, b.project, id, wire.ScheduleUpdate{Payload: &payload})
	wantKind(t, err, ErrConflict, "complete")
}

func wantKind(t *testing.T, err, kind error, part string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, kind) || !strings.Contains(e.Msg, part) {
		t.Fatalf("got %v; want a %v error mentioning %q", err, kind, part)
	}
}

func TestCreateScheduleRefuses(t *testing.T) {
	t.Parallel()
	b := setupClock(t)
	past := b.now.Add(-time.Hour)
	future := b.now.Add(time.Hour)
	for _, c := range []struct {
		s    wire.NewSchedule
		kind error
		part string
	}{
		{wire.NewSchedule{CodeName: "ghost", RunEvery: iptr(60)}, ErrNotFound, `no code named "ghost"`},
		{wire.NewSchedule{RunEvery: iptr(30)}, ErrInvalid, "at least 60 seconds"},
		{wire.NewSchedule{RunEvery: iptr(60), Cron: "* * * * *"}, ErrInvalid, "not both"},
		{wire.NewSchedule{Cron: "61 * * * *"}, ErrInvalid, "above maximum"},
		{wire.NewSchedule{Cron: "0 0 30 2 *"}, ErrInvalid, "never matches"},
		{wire.NewSchedule{Cron: "0 3 * * *", Timezone: "Nowhere/Special"}, ErrInvalid, "time zone"},
		{wire.NewSchedule{RunEvery: iptr(60), Timezone: "UTC"}, ErrInvalid, "cron schedules only"},
		{wire.NewSchedule{RunEvery: iptr(60), EndAt: &past}, ErrInvalid, "in the past"},
		{wire.NewSchedule{StartAt: &future, EndAt: &future}, ErrInvalid, "after start_at"},
		{wire.NewSchedule{RunEvery: iptr(60), RunTimes: iptr(-1)}, ErrInvalid, "run_times"},
		{wire.NewSchedule{RunEvery: iptr(60), Timeout: iptr(-5)}, ErrInvalid, "timeout"},
	} {
		_, err := b.create(c.s)
		wantKind(t, err, c.kind, c.part)
	}
	// IronWorker's "unset" max_concurrency is no limit.
	id, err := b.create(wire.NewSchedule{RunEvery: iptr(60), MaxConcurrency: iptr(-1000), Priority: iptr(-3)})
	if err != nil {
		t.Fatal(err)
	}
	if sc := b.get(id); sc.MaxConcurrency != 0 || sc.Priority != nil {
		t.Fatalf("unset markers: %+v", sc)
	}
}

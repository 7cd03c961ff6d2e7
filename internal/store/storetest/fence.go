package storetest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// A runner presumed dead comes back under the same runner id after its
// task was leased again: every report of its old attempt is refused and
// writes nothing into the new attempt.
func testStaleAttemptFencedOff(t *testing.T, b *bundle) {
	code := b.putCode(t, "fenced")
	tk := b.task(code)
	b.insert(t, tk)
	first := b.lease(t, "r1", 1, b.now)
	if len(first) != 1 || first[0].Attempt != 1 {
		t.Fatalf("first lease: %+v", first)
	}
	if err := b.logTo(tk.ID, []byte("attempt 1\n")); err != nil {
		t.Fatal(err)
	}
	// Silent past its lease: rescued, then leased again by the same runner
	// id (a restarted runner that kept its id).
	later := b.now.Add(time.Minute)
	if n, err := b.s.RescueExpired(b.ctx, store.RescueParams{Now: later, MaxAttempts: 3}); err != nil || n != 1 {
		t.Fatalf("rescue: %d, %v", n, err)
	}
	second := b.lease(t, "r1", 1, later)
	if len(second) != 1 || second[0].Attempt != 2 {
		t.Fatalf("second lease: %+v", second)
	}
	stale := func(what string, err error) {
		t.Helper()
		wantErr(t, err, store.ErrLeaseLost, what+" of a stale attempt")
	}
	stale("started", b.s.MarkRunning(b.ctx, store.StartParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, Now: later}))
	_, err := b.s.Heartbeat(b.ctx, store.HeartbeatParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, LeaseDuration: time.Hour, Now: later})
	stale("heartbeat", err)
	stale("log", b.s.AppendLog(b.ctx, store.AppendLogParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, Data: []byte("late\n")}))
	stale("finish", b.s.FinishTask(b.ctx, store.FinishParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, Status: store.StatusError, Msg: "late", Now: later}))
	got := b.getTask(t, tk.ID)
	if got.Status != store.StatusPreparing || got.Attempt != 2 || got.Msg == "late" || got.LogSize != int64(len("attempt 1\n")) {
		t.Fatalf("a stale report changed the task: %+v", got)
	}
	// The current attempt reports as usual; once it has finished, no log
	// is taken any more, not even from it.
	cur := store.AppendLogParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 2, Data: []byte("attempt 2\n")}
	if err := b.s.AppendLog(b.ctx, cur); err != nil {
		t.Fatal(err)
	}
	b.finish(t, second[0], store.StatusComplete)
	stale("log after the finish", b.s.AppendLog(b.ctx, cur))
	log, err := b.s.GetLog(b.ctx, tk.ID)
	if err != nil || string(log) != "attempt 1\nattempt 2\n" {
		t.Fatalf("log %q, %v", log, err)
	}
}

// The store holds the log cap whatever a runner sends.
func testLogCappedByTheStore(t *testing.T, b *bundle) {
	code := b.putCode(t, "capped-log")
	tk := b.task(code)
	b.insert(t, tk)
	b.leaseOnly(t, tk)
	const max = 1000
	for range 50 {
		err := b.s.AppendLog(b.ctx, store.AppendLogParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1,
			Data: bytes.Repeat([]byte("x"), 300), MaxBytes: max})
		if err != nil {
			t.Fatal(err)
		}
	}
	log, err := b.s.GetLog(b.ctx, tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) > max+512 || len(log) < max || !strings.Contains(string(log), "log cut by the server at 1000 bytes") {
		t.Fatalf("log of %d bytes past a cap of %d: %q", len(log), max, log[max-10:])
	}
	if got := b.getTask(t, tk.ID); got.LogSize != int64(len(log)) {
		t.Fatalf("log_size %d, log %d bytes", got.LogSize, len(log))
	}
}

// A payload is bytes, not text: a webhook body with NUL and invalid UTF-8
// comes back byte for byte, from tasks and from schedules.
func testBinaryPayload(t *testing.T, b *bundle) {
	code := b.putCode(t, "binary")
	payload := "a\x00b\xff\xfe\x80c" + string(bytes.Repeat([]byte{0, 0xff}, 100))
	tk := b.task(code, func(tk *store.Task) { tk.Payload = payload })
	b.insert(t, tk)
	if got := b.getTask(t, tk.ID); got.Payload != payload {
		t.Fatalf("task payload came back as %q", got.Payload)
	}
	leased := b.lease(t, "r1", 1, b.now)
	if len(leased) != 1 || leased[0].Payload != payload {
		t.Fatalf("leased task payload: %+v", leased)
	}
	sc := store.Schedule{ID: NewID(), ProjectID: b.project.ID, CodeName: code.Name, Payload: payload,
		Status: store.ScheduleScheduled, NextStart: ptr(b.now.Add(time.Hour)), CreatedAt: b.now, UpdatedAt: b.now}
	if err := b.s.CreateSchedules(b.ctx, []store.Schedule{sc}); err != nil {
		t.Fatal(err)
	}
	got, err := b.s.GetSchedule(b.ctx, b.project.ID, sc.ID)
	if err != nil || got.Payload != payload {
		t.Fatalf("schedule payload: %q, %v", got.Payload, err)
	}
}

package storetest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

func testTaskRoundTrip(t *testing.T, b *bundle) {
	code := b.putCode(t, "rt")
	plain := b.task(code)
	full := b.task(code, func(tk *store.Task) {
		tk.Status = store.StatusError
		tk.Priority = 2
		tk.Payload = `{"big":"` + string(bytes.Repeat([]byte("x"), 10000)) + `"}`
		tk.Timeout = 60
		tk.Delay = 30
		tk.Cluster = "gpu"
		tk.Label = "nightly"
		tk.Msg = "exit status 3"
		tk.ExitCode = ptr(3)
		tk.Percent = 42
		tk.Attempt = 2
		tk.RunnerID = "runner-1"
		tk.LeaseExpiresAt = ptr(b.now.Add(time.Minute))
		tk.CancelRequest = true
		tk.RetryOf = NewID()
		tk.RetryAt = NewID()
		tk.RetryCount = 1
		tk.ScheduleID = NewID()
		tk.LogSize = 77
		tk.UpdatedAt = b.now.Add(time.Second)
		tk.DueAt = b.now.Add(30 * time.Second)
		tk.StartTime = ptr(b.now.Add(31 * time.Second))
		tk.EndTime = ptr(b.now.Add(32 * time.Second))
	})
	b.insert(t, plain, full)
	for _, want := range []store.Task{plain, full} {
		got := b.getTask(t, want.ID)
		sameTask(t, got, want)
		if got.CreatedAt.Location() != time.UTC || got.DueAt.Location() != time.UTC {
			t.Fatalf("task times not in UTC: %v", got.CreatedAt.Location())
		}
	}
	if err := b.s.InsertTasks(b.ctx, nil); err != nil {
		t.Fatalf("insert no tasks: %v", err)
	}
	_, err := b.s.GetTask(b.ctx, b.project.ID, NewID())
	wantErr(t, err, store.ErrNotFound, "get missing task")
}

func testInsertTasksAllOrNone(t *testing.T, b *bundle) {
	code := b.putCode(t, "batch")
	first := b.task(code)
	b.insert(t, first)
	fresh := b.task(code)
	dup := b.task(code, func(tk *store.Task) { tk.ID = first.ID })
	err := b.s.InsertTasks(b.ctx, []store.Task{fresh, dup})
	wantErr(t, err, store.ErrConflict, "insert a batch with a used id")
	_, err = b.s.GetTask(b.ctx, b.project.ID, fresh.ID)
	wantErr(t, err, store.ErrNotFound, "get a task from a failed batch")
	sameTask(t, b.getTask(t, first.ID), first)
}

func testListTasksFilters(t *testing.T, b *bundle) {
	a := b.putCode(t, "alpha")
	z := b.putCode(t, "zeta")
	at := func(min int) time.Time { return b.now.Add(time.Duration(min) * time.Minute) }
	// created one minute apart; t0 oldest.
	tasks := []store.Task{
		b.task(a, func(tk *store.Task) { tk.CreatedAt = at(0); tk.Label = "x" }),
		b.task(z, func(tk *store.Task) { tk.CreatedAt = at(1); tk.Status = store.StatusComplete }),
		b.task(a, func(tk *store.Task) { tk.CreatedAt = at(2); tk.Status = store.StatusError; tk.Label = "x" }),
		b.task(a, func(tk *store.Task) { tk.CreatedAt = at(3); tk.Status = store.StatusRunning }),
		b.task(z, func(tk *store.Task) { tk.CreatedAt = at(4); tk.Label = "x" }),
	}
	b.insert(t, tasks...)
	other := b.newProject(t, "other")
	oc := b.putCodeIn(t, other.ID, "alpha")
	b.insert(t, b.task(oc))

	id := func(i ...int) []string {
		var out []string
		for _, n := range i {
			out = append(out, tasks[n].ID)
		}
		return out
	}
	cases := []struct {
		name string
		f    store.TaskFilter
		want []string
	}{
		{"all", store.TaskFilter{}, id(4, 3, 2, 1, 0)},
		{"code", store.TaskFilter{CodeName: "alpha"}, id(3, 2, 0)},
		{"code prefix is not a match", store.TaskFilter{CodeName: "alp"}, nil},
		{"label", store.TaskFilter{Label: "x"}, id(4, 2, 0)},
		{"code and label", store.TaskFilter{CodeName: "alpha", Label: "x"}, id(2, 0)},
		{"one status", store.TaskFilter{Statuses: []store.Status{store.StatusQueued}}, id(4, 0)},
		{"statuses", store.TaskFilter{Statuses: []store.Status{store.StatusComplete, store.StatusError}}, id(2, 1)},
		{"from inclusive", store.TaskFilter{FromTime: ptr(at(2))}, id(4, 3, 2)},
		{"to exclusive", store.TaskFilter{ToTime: ptr(at(2))}, id(1, 0)},
		{"window", store.TaskFilter{FromTime: ptr(at(1)), ToTime: ptr(at(4))}, id(3, 2, 1)},
		{"everything", store.TaskFilter{CodeName: "alpha", Label: "x", Statuses: []store.Status{store.StatusError},
			FromTime: ptr(at(1)), ToTime: ptr(at(3))}, id(2)},
	}
	for _, c := range cases {
		c.f.ProjectID = b.project.ID
		got, err := b.s.ListTasks(b.ctx, c.f)
		if err != nil {
			t.Fatalf("list tasks %s: %v", c.name, err)
		}
		sameIDs(t, "list tasks "+c.name, ids(got), c.want)
	}
	got, err := b.s.ListTasks(b.ctx, store.TaskFilter{ProjectID: b.project.ID, CodeName: "alpha", Label: "x"})
	if err != nil || len(got) != 2 {
		t.Fatalf("list tasks for full rows: %d, %v", len(got), err)
	}
	sameTask(t, got[0], tasks[2])
}

func testListTasksPaging(t *testing.T, b *bundle) {
	code := b.putCode(t, "many")
	// 35 tasks: pairs share a created_at, so id breaks the tie.
	var tasks []store.Task
	for i := range 35 {
		tasks = append(tasks, b.task(code, func(tk *store.Task) {
			tk.CreatedAt = b.now.Add(time.Duration(i/2) * time.Second)
		}))
	}
	b.insert(t, tasks...)
	all, err := b.s.ListTasks(b.ctx, store.TaskFilter{ProjectID: b.project.ID, Page: store.Page{PerPage: 100}})
	if err != nil || len(all) != 35 {
		t.Fatalf("list all tasks: %d, %v", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		p, c := all[i-1], all[i]
		if p.CreatedAt.Before(c.CreatedAt) || p.CreatedAt.Equal(c.CreatedAt) && p.ID < c.ID {
			t.Fatalf("list tasks not newest first (created_at desc, id desc) at %d: %v %s then %v %s",
				i, p.CreatedAt, p.ID, c.CreatedAt, c.ID)
		}
	}
	def, err := b.s.ListTasks(b.ctx, store.TaskFilter{ProjectID: b.project.ID})
	if err != nil {
		t.Fatalf("list tasks default page: %v", err)
	}
	sameIDs(t, "default page (PerPage 0 = 30)", ids(def), ids(all[:30]))
	var paged []store.Task
	for page := 0; ; page++ {
		got, err := b.s.ListTasks(b.ctx, store.TaskFilter{ProjectID: b.project.ID, Page: store.Page{Page: page, PerPage: 4}})
		if err != nil {
			t.Fatalf("list tasks page %d: %v", page, err)
		}
		if len(got) == 0 {
			break
		}
		if len(got) > 4 {
			t.Fatalf("page %d has %d tasks, PerPage 4", page, len(got))
		}
		paged = append(paged, got...)
	}
	sameIDs(t, "pages of 4 put together", ids(paged), ids(all))
}

func testLifecycle(t *testing.T, b *bundle) {
	code := b.putCode(t, "life")
	tk := b.task(code)
	b.insert(t, tk)
	leased := b.lease(t, "r1", 1, b.now)
	if len(leased) != 1 {
		t.Fatalf("lease: got %d tasks", len(leased))
	}

	start := b.now.Add(time.Second)
	if err := b.s.MarkRunning(b.ctx, store.StartParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, Now: start}); err != nil {
		t.Fatalf("mark running: %v", err)
	}
	got := b.getTask(t, tk.ID)
	if got.Status != store.StatusRunning || got.StartTime == nil || !got.StartTime.Equal(start) {
		t.Fatalf("after mark running: status %s start %v", got.Status, got.StartTime)
	}
	err := b.s.MarkRunning(b.ctx, store.StartParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, Now: start})
	wantErr(t, err, store.ErrLeaseLost, "mark running twice")

	cancel, err := b.s.Heartbeat(b.ctx, store.HeartbeatParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, LeaseDuration: time.Minute, Now: b.now.Add(10 * time.Second)})
	if err != nil || cancel {
		t.Fatalf("heartbeat: cancel %v, %v", cancel, err)
	}
	got = b.getTask(t, tk.ID)
	if got.LeaseExpiresAt == nil || !got.LeaseExpiresAt.Equal(b.now.Add(70*time.Second)) {
		t.Fatalf("heartbeat: lease expires %v, want now+70s", got.LeaseExpiresAt)
	}

	end := b.now.Add(20 * time.Second)
	if err := b.s.FinishTask(b.ctx, store.FinishParams{
		TaskID: tk.ID, RunnerID: "r1", Attempt: 1, Status: store.StatusError, Msg: "boom", ExitCode: ptr(3), Now: end,
	}); err != nil {
		t.Fatalf("finish: %v", err)
	}
	got = b.getTask(t, tk.ID)
	if got.Status != store.StatusError || got.Msg != "boom" || got.ExitCode == nil || *got.ExitCode != 3 ||
		got.EndTime == nil || !got.EndTime.Equal(end) || got.LeaseExpiresAt != nil {
		t.Fatalf("after finish: %+v", got)
	}
	if !got.StartTime.Equal(start) || got.Attempt != 1 {
		t.Fatalf("after finish: start %v attempt %d", got.StartTime, got.Attempt)
	}

	_, err = b.s.Heartbeat(b.ctx, store.HeartbeatParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, LeaseDuration: time.Minute, Now: end})
	wantErr(t, err, store.ErrLeaseLost, "heartbeat after finish")
	err = b.s.FinishTask(b.ctx, store.FinishParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, Status: store.StatusComplete, Now: end})
	wantErr(t, err, store.ErrLeaseLost, "finish twice")

	// A task can end straight from preparing (its image would not pull).
	tk2 := b.task(code)
	b.insert(t, tk2)
	if l := b.lease(t, "r1", 1, b.now); len(l) != 1 || l[0].ID != tk2.ID {
		t.Fatalf("lease second task: %v", ids(l))
	}
	if err := b.s.FinishTask(b.ctx, store.FinishParams{TaskID: tk2.ID, RunnerID: "r1", Attempt: 1, Status: store.StatusError, Msg: "pull failed", Now: end}); err != nil {
		t.Fatalf("finish from preparing: %v", err)
	}
	if got := b.getTask(t, tk2.ID); got.Status != store.StatusError || got.ExitCode != nil || got.StartTime != nil {
		t.Fatalf("finished from preparing: %+v", got)
	}
	// Unknown tasks are lost leases too: the runner holds nothing.
	err = b.s.MarkRunning(b.ctx, store.StartParams{TaskID: NewID(), RunnerID: "r1", Attempt: 1, Now: end})
	wantErr(t, err, store.ErrLeaseLost, "mark unknown task running")
}

func testWrongRunner(t *testing.T, b *bundle) {
	code := b.putCode(t, "wrong")
	tk := b.task(code)
	b.insert(t, tk)
	b.lease(t, "r1", 1, b.now)

	err := b.s.MarkRunning(b.ctx, store.StartParams{TaskID: tk.ID, RunnerID: "r2", Attempt: 1, Now: b.now})
	wantErr(t, err, store.ErrLeaseLost, "mark running by the wrong runner")
	_, err = b.s.Heartbeat(b.ctx, store.HeartbeatParams{TaskID: tk.ID, RunnerID: "r2", Attempt: 1, LeaseDuration: time.Minute, Now: b.now})
	wantErr(t, err, store.ErrLeaseLost, "heartbeat by the wrong runner")
	err = b.s.FinishTask(b.ctx, store.FinishParams{TaskID: tk.ID, RunnerID: "r2", Attempt: 1, Status: store.StatusComplete, Now: b.now})
	wantErr(t, err, store.ErrLeaseLost, "finish by the wrong runner")

	got := b.getTask(t, tk.ID)
	if got.Status != store.StatusPreparing || got.RunnerID != "r1" || got.LeaseExpiresAt == nil ||
		!got.LeaseExpiresAt.Equal(b.now.Add(30*time.Second)) {
		t.Fatalf("wrong runner changed the task: %+v", got)
	}
}

func testCancelTask(t *testing.T, b *bundle) {
	code := b.putCode(t, "cancel")
	queued := b.task(code)
	running := b.task(code, func(tk *store.Task) { tk.Priority = 1 })
	b.insert(t, queued, running)
	if l := b.lease(t, "r1", 1, b.now); len(l) != 1 || l[0].ID != running.ID {
		t.Fatalf("lease: %v", ids(l))
	}
	if err := b.s.MarkRunning(b.ctx, store.StartParams{TaskID: running.ID, RunnerID: "r1", Attempt: 1, Now: b.now}); err != nil {
		t.Fatalf("mark running: %v", err)
	}

	at := b.now.Add(time.Minute)
	got, err := b.s.CancelTask(b.ctx, b.project.ID, queued.ID, at)
	if err != nil {
		t.Fatalf("cancel queued: %v", err)
	}
	if got.Status != store.StatusCancelled || got.Msg != "Cancelled" || got.EndTime == nil || !got.EndTime.Equal(at) {
		t.Fatalf("cancel queued returned %+v", got)
	}
	sameTask(t, b.getTask(t, queued.ID), got)
	if l := b.lease(t, "r2", 10, at); len(l) != 0 {
		t.Fatalf("a cancelled task was leased: %v", ids(l))
	}

	got, err = b.s.CancelTask(b.ctx, b.project.ID, running.ID, at)
	if err != nil {
		t.Fatalf("cancel running: %v", err)
	}
	if got.Status != store.StatusRunning || !got.CancelRequest || got.EndTime != nil {
		t.Fatalf("cancel running returned %+v", got)
	}
	cancel, err := b.s.Heartbeat(b.ctx, store.HeartbeatParams{TaskID: running.ID, RunnerID: "r1", Attempt: 1, LeaseDuration: time.Minute, Now: at})
	if err != nil || !cancel {
		t.Fatalf("heartbeat after cancel: cancel %v, %v", cancel, err)
	}
	// Asking again is harmless.
	if _, err := b.s.CancelTask(b.ctx, b.project.ID, running.ID, at); err != nil {
		t.Fatalf("cancel running twice: %v", err)
	}
	if err := b.s.FinishTask(b.ctx, store.FinishParams{TaskID: running.ID, RunnerID: "r1", Attempt: 1, Status: store.StatusCancelled, Msg: "Cancelled", Now: at}); err != nil {
		t.Fatalf("finish cancelled: %v", err)
	}

	for _, id := range []string{queued.ID, running.ID} {
		_, err = b.s.CancelTask(b.ctx, b.project.ID, id, at)
		wantErr(t, err, store.ErrConflict, "cancel a finished task")
	}
	_, err = b.s.CancelTask(b.ctx, b.project.ID, NewID(), at)
	wantErr(t, err, store.ErrNotFound, "cancel a missing task")
}

func testLogs(t *testing.T, b *bundle) {
	code := b.putCode(t, "logs")
	tk := b.task(code, func(tk *store.Task) { tk.Priority = 2 })
	quiet := b.task(code)
	b.insert(t, tk, quiet)
	b.leaseOnly(t, tk)

	_, err := b.s.GetLog(b.ctx, quiet.ID)
	wantErr(t, err, store.ErrNotFound, "get log of a task that wrote none")
	wantErr(t, b.logTo(NewID(), []byte("x")), store.ErrNotFound, "append to a missing task's log")

	var want []byte
	for i := range 50 {
		chunk := []byte(fmt.Sprintf("line %d\n", i))
		if i == 25 {
			chunk = append(chunk, 0, 0xff, '\n') // logs are bytes, not text
		}
		if err := b.logTo(tk.ID, chunk); err != nil {
			t.Fatalf("append log chunk %d: %v", i, err)
		}
		want = append(want, chunk...)
	}
	got, err := b.s.GetLog(b.ctx, tk.ID)
	if err != nil {
		t.Fatalf("get log: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("log differs:\n got %q\nwant %q", got, want)
	}
	if size := b.getTask(t, tk.ID).LogSize; size != int64(len(want)) {
		t.Fatalf("log_size %d, want %d", size, len(want))
	}
	if size := b.getTask(t, quiet.ID).LogSize; size != 0 {
		t.Fatalf("quiet task log_size %d", size)
	}
}

func testDurability(t *testing.T, b *bundle) {
	if b.h.Reopen == nil {
		t.Skip("backend has no Reopen hook")
	}
	tok := store.Token{ID: NewID(), Hash: NewID(), Kind: store.TokenRunner, Name: "r", CreatedAt: b.now}
	if err := b.s.CreateToken(b.ctx, tok); err != nil {
		t.Fatalf("create token: %v", err)
	}
	code := b.putCode(t, "durable", func(r *store.CodeRevision) { r.EnvVars = map[string]string{"K": "V"} })
	queued := b.task(code)
	leasedTask := b.task(code, func(tk *store.Task) { tk.Priority = 1 })
	b.insert(t, queued, leasedTask)
	leased := b.lease(t, "r1", 1, b.now)
	if len(leased) != 1 {
		t.Fatalf("lease: %d tasks", len(leased))
	}
	if err := b.logTo(leasedTask.ID, []byte("kept")); err != nil {
		t.Fatalf("append log: %v", err)
	}

	b.s = b.h.Reopen(t, b.s)

	if _, err := b.s.GetProject(b.ctx, b.project.ID); err != nil {
		t.Fatalf("project after reopen: %v", err)
	}
	gotTok, err := b.s.GetTokenByHash(b.ctx, tok.Hash)
	if err != nil || gotTok.ID != tok.ID {
		t.Fatalf("token after reopen: %+v, %v", gotTok, err)
	}
	gotCode, err := b.s.GetCode(b.ctx, b.project.ID, code.CodeID)
	if err != nil {
		t.Fatalf("code after reopen: %v", err)
	}
	sameCode(t, gotCode, code)
	sameTask(t, b.getTask(t, queued.ID), queued)
	want := leased[0]
	want.LogSize = 4
	sameTask(t, b.getTask(t, leasedTask.ID), want)
	if log, err := b.s.GetLog(b.ctx, leasedTask.ID); err != nil || string(log) != "kept" {
		t.Fatalf("log after reopen: %q, %v", log, err)
	}
	// The reopened store keeps working.
	if l := b.lease(t, "r2", 5, b.now); len(l) != 1 || l[0].ID != queued.ID {
		t.Fatalf("lease after reopen: %v", ids(l))
	}
	b.finish(t, leased[0], store.StatusComplete)
}

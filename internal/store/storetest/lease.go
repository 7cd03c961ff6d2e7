package storetest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

func testLeaseOrder(t *testing.T, b *bundle) {
	code := b.putCode(t, "order")
	mins := func(n int) time.Time { return b.now.Add(time.Duration(n) * time.Minute) }
	tieIDs := []string{NewID(), NewID(), NewID()}
	slices.Sort(tieIDs)
	// Expected lease order: priority desc, then due_at, then id.
	want := []store.Task{
		b.task(code, func(tk *store.Task) { tk.Priority = 2; tk.DueAt = mins(-5) }),
		b.task(code, func(tk *store.Task) { tk.Priority = 2; tk.DueAt = mins(-1) }),
		b.task(code, func(tk *store.Task) { tk.Priority = 1; tk.DueAt = mins(-3); tk.ID = tieIDs[0] }),
		b.task(code, func(tk *store.Task) { tk.Priority = 1; tk.DueAt = mins(-3); tk.ID = tieIDs[1] }),
		b.task(code, func(tk *store.Task) { tk.Priority = 1; tk.DueAt = mins(-3); tk.ID = tieIDs[2] }),
		b.task(code, func(tk *store.Task) { tk.Priority = 1; tk.DueAt = mins(-2) }),
		b.task(code, func(tk *store.Task) { tk.Priority = 0; tk.DueAt = mins(-10) }),
		b.task(code, func(tk *store.Task) { tk.Priority = -1; tk.DueAt = mins(-20) }),
	}
	// Stored in a shuffled order, created in reverse, so neither insertion
	// nor creation order can pass for lease order.
	stored := slices.Clone(want)
	for i := range stored {
		stored[i].CreatedAt = b.now.Add(-time.Duration(i) * time.Second)
	}
	perm := []int{5, 0, 7, 3, 1, 6, 4, 2}
	var shuffled []store.Task
	for _, i := range perm {
		shuffled = append(shuffled, stored[i])
	}
	b.insert(t, shuffled...)
	sameIDs(t, "lease order, one call", ids(b.lease(t, "r1", 100, b.now)), ids(want))

	// The same order one task at a time, in another cluster.
	var again []store.Task
	for i := range want {
		again = append(again, b.task(code, func(tk *store.Task) {
			tk.Cluster = "one-by-one"
			tk.Priority = want[i].Priority
			tk.DueAt = want[i].DueAt
		}))
	}
	slices.SortFunc(again[2:5], func(x, y store.Task) int {
		if x.ID < y.ID {
			return -1
		}
		return 1
	})
	b.insert(t, again...)
	var got []store.Task
	for range again {
		got = append(got, b.lease(t, "r1", 1, b.now, "one-by-one")...)
	}
	sameIDs(t, "lease order, one at a time", ids(got), ids(again))
	if l := b.lease(t, "r1", 1, b.now, "one-by-one"); len(l) != 0 {
		t.Fatalf("leased from an empty queue: %v", ids(l))
	}
	if l, err := b.s.LeaseTasks(b.ctx, store.LeaseParams{RunnerID: "r1", Max: 0, Now: b.now}); err != nil || len(l) != 0 {
		t.Fatalf("lease Max 0: %d tasks, %v", len(l), err)
	}
}

func testLeaseOrderMany(t *testing.T, b *bundle) {
	// Enough tasks, with ties on priority and due time, in two clusters,
	// that a backend reading the queue in batches crosses batch and
	// priority boundaries many times.
	code := b.putCode(t, "many")
	var tasks []store.Task
	for i := range 240 {
		tasks = append(tasks, b.task(code, func(tk *store.Task) {
			tk.Priority = (i * 7) % 4
			tk.DueAt = b.now.Add(-time.Duration((i*5)%6) * time.Second)
			tk.Cluster = []string{"a", "b"}[i%2]
		}))
	}
	b.insert(t, tasks...)
	want := slices.Clone(tasks)
	slices.SortFunc(want, func(x, y store.Task) int {
		switch {
		case x.Priority != y.Priority:
			return y.Priority - x.Priority
		case !x.DueAt.Equal(y.DueAt):
			return x.DueAt.Compare(y.DueAt)
		case x.ID < y.ID:
			return -1
		default:
			return 1
		}
	})
	var got []store.Task
	for {
		l := b.lease(t, "r1", 7, b.now, "a", "b")
		if len(l) == 0 {
			break
		}
		got = append(got, l...)
	}
	sameIDs(t, "lease order in batches of 7", ids(got), ids(want))
}

func testLeaseFields(t *testing.T, b *bundle) {
	code := b.putCode(t, "fields")
	tk := b.task(code, func(tk *store.Task) {
		tk.Label = "l"
		tk.Payload = `{"p":true}`
		tk.Priority = 1
		tk.DueAt = b.now.Add(-time.Minute)
	})
	b.insert(t, tk)
	at := b.now.Add(time.Second)
	got := b.lease(t, "r1", 5, at)
	if len(got) != 1 {
		t.Fatalf("lease: %d tasks", len(got))
	}
	want := tk
	want.Status = store.StatusPreparing
	want.RunnerID = "r1"
	want.Attempt = 1
	want.LeaseExpiresAt = ptr(at.Add(30 * time.Second))
	want.UpdatedAt = at
	sameTask(t, got[0], want)
	sameTask(t, b.getTask(t, tk.ID), want)
	if l := b.lease(t, "r2", 5, at); len(l) != 0 {
		t.Fatalf("a leased task was leased again: %v", ids(l))
	}
}

func testLeaseDelayed(t *testing.T, b *bundle) {
	code := b.putCode(t, "delayed")
	due := b.now.Add(10 * time.Second)
	tk := b.task(code, func(tk *store.Task) { tk.Delay = 10; tk.DueAt = due; tk.Priority = 5 })
	now := b.task(code)
	b.insert(t, tk, now)
	if l := b.lease(t, "r1", 10, b.now); len(l) != 1 || l[0].ID != now.ID {
		t.Fatalf("lease before due: %v, want only the due task", ids(l))
	}
	if l := b.lease(t, "r1", 10, due.Add(-time.Microsecond)); len(l) != 0 {
		t.Fatalf("leased a task a microsecond before it was due: %v", ids(l))
	}
	if l := b.lease(t, "r1", 10, due); len(l) != 1 || l[0].ID != tk.ID {
		t.Fatalf("lease at due time: %v", ids(l))
	}
}

func testLeaseMaxConcurrency(t *testing.T, b *bundle) {
	limited := b.putCode(t, "limited", func(r *store.CodeRevision) { r.MaxConcurrency = 2 })
	b.insertN(t, 10, limited)

	first := b.lease(t, "r1", 10, b.now)
	if len(first) != 2 {
		t.Fatalf("max_concurrency 2: leased %d of 10", len(first))
	}
	// The limit holds across runners, and for running tasks too.
	if err := b.s.MarkRunning(b.ctx, store.StartParams{TaskID: first[0].ID, RunnerID: "r1", Attempt: 1, Now: b.now}); err != nil {
		t.Fatalf("mark running: %v", err)
	}
	if l := b.lease(t, "r2", 10, b.now); len(l) != 0 {
		t.Fatalf("another runner went past max_concurrency: %v", ids(l))
	}
	b.finish(t, first[0], store.StatusComplete)
	if l := b.lease(t, "r2", 10, b.now); len(l) != 1 {
		t.Fatalf("after one finished: leased %d, want 1", len(l))
	}
	if l := b.lease(t, "r1", 10, b.now); len(l) != 0 {
		t.Fatalf("back at the limit: leased %v", ids(l))
	}

	// Unlimited codes (0) are not held back.
	free := b.putCode(t, "free")
	b.insertN(t, 25, free)
	if l := b.lease(t, "r3", 25, b.now); len(l) != 25 {
		t.Fatalf("unlimited code: leased %d of 25", len(l))
	}
}

func testLeaseStepsPastCodesAtLimit(t *testing.T, b *bundle) {
	// A long run of a code at its limit must not hide other codes' tasks
	// queued behind it.
	limited := b.putCode(t, "limited", func(r *store.CodeRevision) { r.MaxConcurrency = 1 })
	other := b.putCode(t, "other")
	b.insertN(t, 300, limited, func(tk *store.Task) { tk.Priority = 2 })
	behind := b.insertN(t, 3, other, func(tk *store.Task) { tk.Priority = 1 })

	got := b.lease(t, "r1", 10, b.now)
	if len(got) != 4 || got[0].CodeID != limited.CodeID {
		t.Fatalf("leased %d tasks, want 1 limited then 3 others", len(got))
	}
	gotOther := ids(got[1:])
	want := ids(behind)
	slices.Sort(gotOther)
	slices.Sort(want)
	sameIDs(t, "tasks behind the limited code", gotOther, want)

	more := b.insertN(t, 1, other)
	if l := b.lease(t, "r1", 1, b.now); len(l) != 1 || l[0].ID != more[0].ID {
		t.Fatalf("lease 1 past 299 held-back tasks: %v", ids(l))
	}
}

func testLeaseClusters(t *testing.T, b *bundle) {
	code := b.putCode(t, "clusters")
	ago := func(m int) time.Time { return b.now.Add(-time.Duration(m) * time.Minute) }
	tie := []string{NewID(), NewID()}
	slices.Sort(tie)
	def := b.task(code)
	arm := b.task(code, func(tk *store.Task) { tk.Cluster = "arm"; tk.Priority = 5 })
	gpuOld := b.task(code, func(tk *store.Task) { tk.Cluster = "gpu"; tk.DueAt = ago(3) })
	armMid := b.task(code, func(tk *store.Task) { tk.Cluster = "arm"; tk.DueAt = ago(2) })
	gpuNew := b.task(code, func(tk *store.Task) { tk.Cluster = "gpu"; tk.DueAt = ago(1) })
	armTie := b.task(code, func(tk *store.Task) { tk.Cluster = "arm"; tk.Priority = -1; tk.ID = tie[0] })
	gpuTie := b.task(code, func(tk *store.Task) { tk.Cluster = "gpu"; tk.Priority = -1; tk.ID = tie[1] })
	gpuLater := b.task(code, func(tk *store.Task) { tk.Cluster = "gpu"; tk.Priority = 9; tk.DueAt = b.now.Add(time.Hour) })
	b.insert(t, def, arm, gpuOld, armMid, gpuNew, gpuTie, armTie, gpuLater)

	if l := b.lease(t, "r-default", 10, b.now); len(l) != 1 || l[0].ID != def.ID {
		t.Fatalf("nil clusters must mean the default cluster: %v", ids(l))
	}
	if l := b.lease(t, "r-none", 10, b.now, "nowhere"); len(l) != 0 {
		t.Fatalf("unknown cluster: %v", ids(l))
	}
	// Clusters merge into one order: priority, then due time, then id,
	// whichever cluster a task is in. Listing a cluster twice changes
	// nothing.
	got := b.lease(t, "r-multi", 10, b.now, "gpu", "arm", "gpu")
	sameIDs(t, "lease across clusters", ids(got),
		[]string{arm.ID, gpuOld.ID, armMid.ID, gpuNew.ID, armTie.ID, gpuTie.ID})
	got = b.lease(t, "r-multi", 10, b.now.Add(time.Hour), "", "gpu")
	sameIDs(t, "lease once due", ids(got), []string{gpuLater.ID})
}

func testLeaseConcurrent(t *testing.T, b *bundle) {
	code := b.putCode(t, "race")
	limited := b.putCode(t, "race-limited", func(r *store.CodeRevision) { r.MaxConcurrency = 3 })
	const n = 300
	b.insertN(t, n, code, func(tk *store.Task) { tk.Priority = 1 })
	b.insertN(t, 30, limited)

	var (
		mu   sync.Mutex
		seen = map[string]string{}
		wg   sync.WaitGroup
		errs = make(chan error, 8)
	)
	for w := range 8 {
		runner := "r" + string(rune('a'+w))
		wg.Go(func() {
			for {
				got, err := b.s.LeaseTasks(b.ctx, store.LeaseParams{
					RunnerID: runner, Max: 1 + w%4, LeaseDuration: time.Minute, Now: b.now,
				})
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, tk := range got {
					if prev, dup := seen[tk.ID]; dup {
						mu.Unlock()
						t.Errorf("task %s leased to %s and %s", tk.ID, prev, runner)
						return
					}
					seen[tk.ID] = runner
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent lease: %v", err)
	}
	// A lease may come back empty while another holds the rows it would
	// have taken (SKIP LOCKED), so a worker can stop early: what is left is
	// taken by one more leaser alone, and must not include anything
	// leased already.
	for {
		got, err := b.s.LeaseTasks(b.ctx, store.LeaseParams{RunnerID: "r-last", Max: 10, LeaseDuration: time.Minute, Now: b.now})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		for _, tk := range got {
			if prev, dup := seen[tk.ID]; dup {
				t.Fatalf("task %s leased to %s and r-last", tk.ID, prev)
			}
			seen[tk.ID] = "r-last"
		}
	}
	if len(seen) != n+3 {
		t.Fatalf("leased %d distinct tasks, want %d (all unlimited plus 3 limited)", len(seen), n+3)
	}
}

func testLeasePausedCode(t *testing.T, b *bundle) {
	p := b.s
	paused := b.putCode(t, "paused")
	running := b.putCode(t, "running")
	held := b.task(paused, func(tk *store.Task) { tk.Priority = 5 })
	free := b.task(running)
	b.insert(t, held, free)
	if err := p.SetCodePaused(b.ctx, b.project.ID, paused.CodeID, true); err != nil {
		t.Fatalf("pause code: %v", err)
	}
	wantErr(t, p.SetCodePaused(b.ctx, NewID(), paused.CodeID, true), store.ErrNotFound, "pause a code with another project's id")
	if c, err := b.s.GetCode(b.ctx, b.project.ID, paused.CodeID); err != nil || !c.Paused {
		t.Fatalf("paused code reads back paused=%v, %v", c.Paused, err)
	}
	// A new revision keeps the code paused.
	if c := b.putCode(t, "paused"); !c.Paused {
		t.Fatal("a new revision unpaused the code")
	}
	if l := b.lease(t, "r1", 10, b.now); len(l) != 1 || l[0].ID != free.ID {
		t.Fatalf("lease with a paused code: %v", ids(l))
	}
	if err := p.SetCodePaused(b.ctx, b.project.ID, paused.CodeID, false); err != nil {
		t.Fatalf("resume code: %v", err)
	}
	if l := b.lease(t, "r1", 10, b.now); len(l) != 1 || l[0].ID != held.ID {
		t.Fatalf("lease after resume: %v", ids(l))
	}
}

func testRescueRequeuesThenKills(t *testing.T, b *bundle) {
	code := b.putCode(t, "rescue")
	tk := b.task(code)
	b.insert(t, tk)
	rescue := func(at time.Time) int {
		t.Helper()
		n, err := b.s.RescueExpired(b.ctx, store.RescueParams{Now: at, MaxAttempts: 2})
		if err != nil {
			t.Fatalf("rescue at %v: %v", at, err)
		}
		return n
	}

	b.lease(t, "r1", 1, b.now) // lease until now+30s
	if err := b.s.MarkRunning(b.ctx, store.StartParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, Now: b.now}); err != nil {
		t.Fatalf("mark running: %v", err)
	}
	expiry := b.now.Add(30 * time.Second)
	if n := rescue(expiry); n != 0 {
		t.Fatalf("rescued %d tasks at the exact expiry; a lease expires after it", n)
	}
	later := expiry.Add(time.Microsecond)
	if n := rescue(later); n != 1 {
		t.Fatalf("rescue after expiry moved %d tasks, want 1", n)
	}
	got := b.getTask(t, tk.ID)
	if got.Status != store.StatusQueued || got.RunnerID != "" || got.LeaseExpiresAt != nil || got.Attempt != 1 || got.EndTime != nil {
		t.Fatalf("after first rescue: %+v", got)
	}

	// The old runner has lost the task.
	_, err := b.s.Heartbeat(b.ctx, store.HeartbeatParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, LeaseDuration: time.Minute, Now: later})
	wantErr(t, err, store.ErrLeaseLost, "heartbeat after rescue")
	err = b.s.FinishTask(b.ctx, store.FinishParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, Status: store.StatusComplete, Now: later})
	wantErr(t, err, store.ErrLeaseLost, "finish after rescue")
	err = b.s.MarkRunning(b.ctx, store.StartParams{TaskID: tk.ID, RunnerID: "r1", Attempt: 1, Now: later})
	wantErr(t, err, store.ErrLeaseLost, "mark running after rescue")

	// Second and last attempt.
	l := b.lease(t, "r2", 1, later)
	if len(l) != 1 || l[0].Attempt != 2 || l[0].RunnerID != "r2" {
		t.Fatalf("second lease: %+v", l)
	}
	last := later.Add(31 * time.Second)
	if n := rescue(last); n != 1 {
		t.Fatalf("second rescue moved %d, want 1", n)
	}
	got = b.getTask(t, tk.ID)
	if got.Status != store.StatusKilled || got.Msg != "Runner lost: lease expired after 2 attempts" ||
		got.EndTime == nil || !got.EndTime.Equal(last) || got.LeaseExpiresAt != nil {
		t.Fatalf("after last attempt: %+v", got)
	}
	_, err = b.s.Heartbeat(b.ctx, store.HeartbeatParams{TaskID: tk.ID, RunnerID: "r2", Attempt: 1, LeaseDuration: time.Minute, Now: last})
	wantErr(t, err, store.ErrLeaseLost, "heartbeat after kill")
	if n := rescue(last.Add(time.Hour)); n != 0 {
		t.Fatalf("rescue of nothing moved %d", n)
	}
	if l := b.lease(t, "r3", 1, last); len(l) != 0 {
		t.Fatalf("a killed task was leased: %v", ids(l))
	}
}

func testRescueHeartbeatExtends(t *testing.T, b *bundle) {
	code := b.putCode(t, "beat")
	tasks := b.insertN(t, 2, code)
	b.lease(t, "r1", 2, b.now) // both until now+30s
	cancel, err := b.s.Heartbeat(b.ctx, store.HeartbeatParams{
		TaskID: tasks[0].ID, RunnerID: "r1", Attempt: 1, LeaseDuration: 30 * time.Second, Now: b.now.Add(20 * time.Second),
	})
	if err != nil || cancel {
		t.Fatalf("heartbeat: %v, %v", cancel, err)
	}
	n, err := b.s.RescueExpired(b.ctx, store.RescueParams{Now: b.now.Add(40 * time.Second), MaxAttempts: 3})
	if err != nil || n != 1 {
		t.Fatalf("rescue: moved %d, %v; want only the task without heartbeat", n, err)
	}
	if got := b.getTask(t, tasks[0].ID); got.Status != store.StatusPreparing || got.RunnerID != "r1" {
		t.Fatalf("heartbeated task was rescued: %+v", got)
	}
	if got := b.getTask(t, tasks[1].ID); got.Status != store.StatusQueued {
		t.Fatalf("silent task not rescued: %+v", got)
	}
}

func testRescueCancelRequested(t *testing.T, b *bundle) {
	code := b.putCode(t, "cancel-rescue")
	tk := b.task(code)
	b.insert(t, tk)
	b.lease(t, "r1", 1, b.now)
	if _, err := b.s.CancelTask(b.ctx, b.project.ID, tk.ID, b.now); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	at := b.now.Add(time.Minute)
	n, err := b.s.RescueExpired(b.ctx, store.RescueParams{Now: at, MaxAttempts: 3})
	if err != nil || n != 1 {
		t.Fatalf("rescue: %d, %v", n, err)
	}
	got := b.getTask(t, tk.ID)
	if got.Status != store.StatusCancelled || got.Msg != "Cancelled" || got.EndTime == nil || !got.EndTime.Equal(at) || got.LeaseExpiresAt != nil {
		t.Fatalf("a cancel-requested task whose runner was lost: %+v", got)
	}
}

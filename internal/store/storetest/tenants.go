package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// tenantTests cover projects with their quotas, token expiry, what a
// project holds, and the audit record.
var tenantTests = []struct {
	name string
	fn   func(t *testing.T, b *bundle)
}{
	{"ProjectUpdateListDelete", testProjectUpdateListDelete},
	{"TokenExpiry", testTokenExpiry},
	{"ProjectUsage", testProjectUsage},
	{"Audit", testAudit},
	{"LeaseProjectRunningQuota", testLeaseProjectRunningQuota},
	{"LeaseProjectRunningQuotaConcurrent", testLeaseProjectRunningQuotaConcurrent},
	{"LeaseFairShare", testLeaseFairShare},
	{"LeaseFairShareNewProjectFirst", testLeaseFairShareNewProjectFirst},
	{"LeaseFairShareConcurrent", testLeaseFairShareConcurrent},
}

// Leasers at once (on several stores sharing the database, where there
// are), projects taking turns: every task is leased once.
func testLeaseFairShareConcurrent(t *testing.T, b *bundle) {
	var all []store.Task
	for i := range 4 {
		p := b.newProject(t, fmt.Sprintf("p%d", i))
		limited := b.putCodeIn(t, p.ID, "limited", func(r *store.CodeRevision) { r.MaxConcurrency = 50 })
		all = append(all, b.insertN(t, 60, b.putCodeIn(t, p.ID, "c"), func(tk *store.Task) { tk.Priority = i % 3 })...)
		all = append(all, b.insertN(t, 20, limited)...)
	}
	stores := []store.Store{b.s}
	if b.h.Twin != nil {
		stores = append(stores, b.h.Twin(t, b.s), b.h.Twin(t, b.s))
	}
	var (
		mu   sync.Mutex
		seen = map[string]string{}
		wg   sync.WaitGroup
	)
	take := func(runner string, got []store.Task) {
		mu.Lock()
		defer mu.Unlock()
		for _, tk := range got {
			if prev, dup := seen[tk.ID]; dup {
				t.Errorf("task %s leased to %s and %s", tk.ID, prev, runner)
			}
			seen[tk.ID] = runner
		}
	}
	for w := range 6 {
		st, runner := stores[w%len(stores)], fmt.Sprintf("r%d", w)
		wg.Go(func() {
			for {
				got, err := st.LeaseTasks(b.ctx, store.LeaseParams{RunnerID: runner, Max: 1 + w%3, LeaseDuration: time.Minute, Now: b.now})
				if err != nil {
					t.Errorf("lease: %v", err)
					return
				}
				if len(got) == 0 {
					return
				}
				take(runner, got)
			}
		})
	}
	wg.Wait()
	// A lease may come back empty while others hold the rows it would
	// have taken (SKIP LOCKED): one leaser alone takes what is left.
	for {
		got := b.lease(t, "r-last", 10, b.now)
		if len(got) == 0 {
			break
		}
		take("r-last", got)
	}
	if len(seen) != len(all) {
		t.Fatalf("%d of %d tasks leased", len(seen), len(all))
	}
}

// Projects take turns: with three projects waiting, a lease of six hands
// out two of each, each project's in its own priority order, whatever the
// priorities across projects; then the order goes on where it left off.
func testLeaseFairShare(t *testing.T, b *bundle) {
	pa, pb, pc := b.project, b.newProject(t, "b"), b.newProject(t, "c")
	ca, cb, cc := b.putCode(t, "a"), b.putCodeIn(t, pb.ID, "b"), b.putCodeIn(t, pc.ID, "c")
	// a: ten tasks of priority 2; b: priority 0 and 1; c: one of each.
	b.insertN(t, 10, ca, func(tk *store.Task) { tk.Priority = 2 })
	b.insertN(t, 2, cb, func(tk *store.Task) { tk.Priority = 0 })
	b1 := b.insertN(t, 1, cb, func(tk *store.Task) { tk.Priority = 1 })
	c := []store.Task{
		b.task(cc, func(tk *store.Task) { tk.Priority = 0; tk.DueAt = b.now.Add(-time.Second) }),
		b.task(cc, func(tk *store.Task) { tk.Priority = 1 }),
	}
	b.insert(t, c...)

	got := b.lease(t, "r1", 6, b.now)
	count := map[string]int{}
	var ofB, ofC []string
	for _, tk := range got {
		count[tk.ProjectID]++
		switch tk.ProjectID {
		case pb.ID:
			ofB = append(ofB, tk.ID)
		case pc.ID:
			ofC = append(ofC, tk.ID)
		}
	}
	if count[pa.ID] != 2 || count[pb.ID] != 2 || count[pc.ID] != 2 {
		t.Fatalf("a lease of 6 over 3 projects took %v", count)
	}
	// Within a project, priority first.
	if ofB[0] != b1[0].ID || ofC[0] != c[1].ID || ofC[1] != c[0].ID {
		t.Fatalf("order within projects: b %v (want %s first), c %v", ofB, b1[0].ID, ofC)
	}
	// Leases of one take turns: b has one left, c none, a eight.
	var turns []string
	for range 4 {
		l := b.lease(t, "r1", 1, b.now)
		if len(l) != 1 {
			t.Fatalf("lease of 1 took %d", len(l))
		}
		turns = append(turns, l[0].ProjectID)
	}
	if turns[0] == turns[1] && turns[0] != pa.ID {
		t.Fatalf("turns %v", turns)
	}
	if count := countOf(turns, pb.ID); count != 1 {
		t.Fatalf("b's last task taken %d times in 4 leases of 1: %v", count, turns)
	}
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// With 10k tasks queued in one project, another project's new task is
// leased in the next lease, and leasing reads neither queue whole.
func testLeaseFairShareNewProjectFirst(t *testing.T, b *bundle) {
	code := b.putCode(t, "bulk")
	const n = 10_000
	for i := 0; i < n; i += 1000 {
		b.insertN(t, 1000, code, func(tk *store.Task) { tk.Priority = 2 })
	}
	// The big project has been served for a while.
	for range 3 {
		if got := b.lease(t, "r1", 4, b.now); len(got) != 4 || got[0].ProjectID != b.project.ID {
			t.Fatalf("lease from the big project: %d", len(got))
		}
	}
	other := b.newProject(t, "small")
	tk := b.task(b.putCodeIn(t, other.ID, "one"), func(tk *store.Task) { tk.Priority = 0 })
	b.insert(t, tk)
	got := b.lease(t, "r2", 1, b.now)
	if len(got) != 1 || got[0].ID != tk.ID {
		t.Fatalf("the small project's task was not the next one leased: %+v", got)
	}
	// And the big project's turn is next.
	got = b.lease(t, "r2", 1, b.now)
	if len(got) != 1 || got[0].ProjectID != b.project.ID {
		t.Fatalf("after the small project, the big one: %+v", got)
	}
}

func (b *bundle) setRunningQuota(t *testing.T, p store.Project, n int64) {
	t.Helper()
	p.Quotas.RunningTasks = n
	p.UpdatedAt = b.now
	if err := b.s.UpdateProject(b.ctx, p); err != nil {
		t.Fatalf("set running quota: %v", err)
	}
}

// leaseQ leases as a server with a default running-tasks quota would.
func (b *bundle) leaseQ(t *testing.T, runner string, n int, def int64) []store.Task {
	t.Helper()
	got, err := b.s.LeaseTasks(b.ctx, store.LeaseParams{RunnerID: runner, Max: n, LeaseDuration: time.Minute,
		Now: b.now, RunningTasks: def})
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	return got
}

// A project's running-tasks quota holds over many runners' slots: what it
// leaves is leased to other projects, and a finish frees a slot.
func testLeaseProjectRunningQuota(t *testing.T, b *bundle) {
	b.setRunningQuota(t, b.project, 2)
	code := b.putCode(t, "c")
	b.insertN(t, 5, code, func(tk *store.Task) { tk.Priority = 2 })
	other := b.newProject(t, "other")
	b.insertN(t, 3, b.putCodeIn(t, other.ID, "c"))
	var got []store.Task
	for r := range 4 {
		got = append(got, b.leaseQ(t, "r"+string(rune('a'+r)), 2, 0)...)
	}
	count := map[string]int{}
	for _, tk := range got {
		count[tk.ProjectID]++
	}
	if count[b.project.ID] != 2 || count[other.ID] != 3 {
		t.Fatalf("leased %v by project, want 2 of the limited one and the other's 3", count)
	}
	if got := b.leaseQ(t, "r9", 5, 0); len(got) != 0 {
		t.Fatalf("leased %d past the quota", len(got))
	}
	for _, tk := range got {
		if tk.ProjectID == b.project.ID {
			b.finish(t, tk, store.StatusComplete)
			break
		}
	}
	if got := b.leaseQ(t, "r9", 5, 0); len(got) != 1 || got[0].ProjectID != b.project.ID {
		t.Fatalf("after a finish leased %d, want 1", len(got))
	}

	// The server's default holds for projects without their own quota,
	// and -1 lifts it.
	b.insertN(t, 3, b.putCodeIn(t, other.ID, "d"))
	if got := b.leaseQ(t, "r9", 5, 3); len(got) != 0 {
		t.Fatalf("leased %d past a default quota of 3 with 3 running", len(got))
	}
	b.setRunningQuota(t, other, -1)
	if got := b.leaseQ(t, "r9", 5, 3); len(got) != 3 {
		t.Fatalf("leased %d of a project without a limit, want 3", len(got))
	}
}

// Leasers at once, each one slot at a time: the quota still holds.
func testLeaseProjectRunningQuotaConcurrent(t *testing.T, b *bundle) {
	b.setRunningQuota(t, b.project, 3)
	b.insertN(t, 40, b.putCode(t, "c"))
	stores := []store.Store{b.s}
	if b.h.Twin != nil {
		stores = append(stores, b.h.Twin(t, b.s), b.h.Twin(t, b.s))
	}
	var (
		mu    sync.Mutex
		total int
		wg    sync.WaitGroup
	)
	for w := range 6 {
		st := stores[w%len(stores)]
		wg.Go(func() {
			for range 5 {
				got, err := st.LeaseTasks(b.ctx, store.LeaseParams{RunnerID: "r", Max: 1, LeaseDuration: time.Minute, Now: b.now})
				if err != nil {
					t.Errorf("lease: %v", err)
					return
				}
				mu.Lock()
				total += len(got)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	u, err := b.s.ProjectUsage(b.ctx, b.project.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if total > 3 || u.Active > 3 {
		t.Fatalf("%d leased, %d active with a running quota of 3", total, u.Active)
	}
	if total == 0 {
		t.Fatalf("nothing leased")
	}
}

func testProjectUpdateListDelete(t *testing.T, b *bundle) {
	second := b.newProject(t, "second")
	p := b.project
	p.Name = "renamed"
	p.UpdatedAt = b.now.Add(time.Minute)
	p.Quotas = store.Quotas{QueuedTasks: 10, RunningTasks: 2, Schedules: -1, CodeBytes: 1 << 20, RequestRate: 2.5}
	if err := b.s.UpdateProject(b.ctx, p); err != nil {
		t.Fatalf("update project: %v", err)
	}
	got, err := b.s.GetProject(b.ctx, p.ID)
	if err != nil || got.Name != "renamed" || got.Quotas != p.Quotas || !got.UpdatedAt.Equal(p.UpdatedAt) {
		t.Fatalf("project after update: %+v, %v; want %+v", got, err, p)
	}
	wantErr(t, b.s.UpdateProject(b.ctx, store.Project{ID: NewID(), Name: "x"}), store.ErrNotFound, "update missing project")

	list, err := b.s.ListProjects(b.ctx, store.Page{PerPage: 10})
	if err != nil || len(list) != 2 {
		t.Fatalf("list projects: %d, %v", len(list), err)
	}
	page2, err := b.s.ListProjects(b.ctx, store.Page{Page: 1, PerPage: 1})
	if err != nil || len(page2) != 1 || page2[0].ID == list[0].ID {
		t.Fatalf("second page of projects: %+v, %v", page2, err)
	}

	// Deleting takes everything of the project with it, and nothing of
	// another's.
	code := b.putCodeIn(t, second.ID, "c", func(r *store.CodeRevision) { r.PackageKey = "k1"; r.PackageSize = 5 })
	mine := b.putCode(t, "c")
	tk := b.task(code)
	b.insert(t, tk, b.task(mine))
	tok := store.Token{ID: NewID(), Hash: NewID(), Kind: store.TokenProject, ProjectID: second.ID, Name: "ci", CreatedAt: b.now}
	if err := b.s.CreateToken(b.ctx, tok); err != nil {
		t.Fatal(err)
	}
	revs, err := b.s.DeleteProject(b.ctx, second.ID)
	if err != nil || len(revs) != 1 || revs[0].PackageKey != "k1" {
		t.Fatalf("delete project: %+v, %v", revs, err)
	}
	_, err = b.s.GetProject(b.ctx, second.ID)
	wantErr(t, err, store.ErrNotFound, "get deleted project")
	_, err = b.s.GetTokenByHash(b.ctx, tok.Hash)
	wantErr(t, err, store.ErrNotFound, "token of a deleted project")
	_, err = b.s.GetTaskByID(b.ctx, tk.ID)
	wantErr(t, err, store.ErrNotFound, "task of a deleted project")
	_, err = b.s.DeleteProject(b.ctx, second.ID)
	wantErr(t, err, store.ErrNotFound, "delete a deleted project")
	if u, err := b.s.ProjectUsage(b.ctx, b.project.ID, 0); err != nil || u.Queued != 1 {
		t.Fatalf("the other project's queue after a delete: %+v, %v", u, err)
	}
}

func testTokenExpiry(t *testing.T, b *bundle) {
	exp := b.now.Add(time.Hour)
	tok := store.Token{ID: NewID(), Hash: NewID(), Kind: store.TokenAdmin, Name: "short", CreatedAt: b.now, ExpiresAt: &exp}
	if err := b.s.CreateToken(b.ctx, tok); err != nil {
		t.Fatal(err)
	}
	got, err := b.s.GetTokenByHash(b.ctx, tok.Hash)
	if err != nil || got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("token with expiry: %+v, %v", got, err)
	}
	if got.Expired(b.now) || !got.Expired(exp) {
		t.Fatalf("expired before or not at its expiry")
	}
	list, err := b.s.ListTokens(b.ctx, "")
	if err != nil || len(list) != 1 || list[0].ExpiresAt == nil {
		t.Fatalf("list tokens: %+v, %v", list, err)
	}
}

func testProjectUsage(t *testing.T, b *bundle) {
	code := b.putCode(t, "c", func(r *store.CodeRevision) { r.PackageSize = 100 })
	b.putCode(t, "c", func(r *store.CodeRevision) { r.PackageSize = 50 })
	b.insertN(t, 5, code)
	b.lease(t, "r1", 2, b.now)
	b.createSchedules(t, b.schedule(code))
	other := b.newProject(t, "other")
	b.insertN(t, 3, b.putCodeIn(t, other.ID, "c"))

	u, err := b.s.ProjectUsage(b.ctx, b.project.ID, 0)
	want := store.Usage{Queued: 3, Active: 2, Schedules: 1, CodeBytes: 150}
	if err != nil || u != want {
		t.Fatalf("usage: %+v, %v; want %+v", u, err, want)
	}
	// A cap stops the count one past it.
	if u, err := b.s.ProjectUsage(b.ctx, b.project.ID, 1); err != nil || u.Queued != 2 {
		t.Fatalf("usage counted up to a cap of 1: %+v, %v", u, err)
	}
}

func testAudit(t *testing.T, b *bundle) {
	other := b.newProject(t, "other")
	add := func(project, action string, at time.Time) store.AuditEntry {
		e := store.AuditEntry{ID: NewID(), ProjectID: project, TokenID: NewID(), TokenName: "ci", TokenKind: "project",
			Action: action, Target: NewID(), Detail: "name=x", CreatedAt: at}
		if err := b.s.AddAudit(b.ctx, e); err != nil {
			t.Fatalf("add audit: %v", err)
		}
		return e
	}
	e1 := add(b.project.ID, "code.delete", b.now)
	e2 := add(other.ID, "task.cancel", b.now.Add(time.Second))
	e3 := add("", "token.create", b.now.Add(2*time.Second))
	all, err := b.s.ListAudit(b.ctx, "", store.Page{PerPage: 10})
	if err != nil || len(all) != 3 || all[0].ID != e3.ID || all[2].ID != e1.ID {
		t.Fatalf("all audit records, newest first: %+v, %v", all, err)
	}
	if all[2] != e1 {
		t.Fatalf("audit record round trip: %+v, want %+v", all[2], e1)
	}
	mine, err := b.s.ListAudit(b.ctx, b.project.ID, store.Page{PerPage: 10})
	if err != nil || len(mine) != 1 || mine[0].ID != e1.ID {
		t.Fatalf("a project's audit records: %+v, %v", mine, err)
	}
	p2, err := b.s.ListAudit(b.ctx, "", store.Page{Page: 1, PerPage: 2})
	if err != nil || len(p2) != 1 || p2[0].ID != e1.ID {
		t.Fatalf("second page of audit records: %+v, %v", p2, err)
	}
	// Records outlive their project.
	if _, err := b.s.DeleteProject(b.ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := b.s.ListAudit(b.ctx, other.ID, store.Page{PerPage: 10}); err != nil || len(got) != 1 || got[0].ID != e2.ID {
		t.Fatalf("audit of a deleted project: %+v, %v", got, err)
	}
}

package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

var runnerTests = []struct {
	name string
	fn   func(t *testing.T, b *bundle)
}{
	{"RunnerRegistry", testRunnerRegistry},
	{"TokenManagement", testTokenManagement},
}

func testRunnerRegistry(t *testing.T, b *bundle) {
	r1 := store.Runner{ID: NewID(), Host: "host-a", Clusters: []string{"", "gpu"}, Capacity: 4, Busy: 1,
		Version: "v1", Driver: "docker", Stacks: []string{"busybox", "python-3.11"}, LastSeen: b.now}
	r2 := store.Runner{ID: NewID(), Host: "host-b", Capacity: 2, LastSeen: b.now.Add(-time.Hour)}
	for _, r := range []store.Runner{r1, r2} {
		if err := b.s.RecordRunner(b.ctx, r); err != nil {
			t.Fatalf("record runner: %v", err)
		}
	}
	got, err := b.s.ListRunners(b.ctx, b.now.Add(-time.Minute))
	if err != nil || len(got) != 1 {
		t.Fatalf("live runners: %+v, %v; want only %s", got, err, r1.ID)
	}
	g := got[0]
	if g.ID != r1.ID || g.Host != "host-a" || !slices.Equal(g.Clusters, r1.Clusters) || g.Capacity != 4 || g.Busy != 1 ||
		g.Version != "v1" || g.Driver != "docker" || !slices.Equal(g.Stacks, r1.Stacks) || !g.LastSeen.Equal(b.now) {
		t.Fatalf("runner read back: %+v, want %+v", g, r1)
	}
	// A touch brings a quiet runner back; it never moves time backwards.
	if err := b.s.TouchRunner(b.ctx, r2.ID, b.now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := b.s.TouchRunner(b.ctx, r1.ID, b.now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := b.s.TouchRunner(b.ctx, NewID(), b.now); err != nil {
		t.Fatalf("touch an unknown runner: %v", err)
	}
	got, err = b.s.ListRunners(b.ctx, b.now.Add(-time.Minute))
	if err != nil || len(got) != 2 {
		t.Fatalf("after touches: %+v, %v", got, err)
	}
	for _, r := range got {
		if want := map[string]time.Time{r1.ID: b.now, r2.ID: b.now.Add(time.Second)}[r.ID]; !r.LastSeen.Equal(want) {
			t.Fatalf("runner %s last seen %s, want %s", r.ID, r.LastSeen, want)
		}
	}
	// A new record replaces what the runner said before.
	r1.Clusters, r1.Stacks, r1.Busy, r1.LastSeen = []string{"cpu"}, nil, 0, b.now.Add(2*time.Second)
	if err := b.s.RecordRunner(b.ctx, r1); err != nil {
		t.Fatal(err)
	}
	got, _ = b.s.ListRunners(b.ctx, b.now.Add(time.Second))
	i := slices.IndexFunc(got, func(r store.Runner) bool { return r.ID == r1.ID })
	if i < 0 || !slices.Equal(got[i].Clusters, []string{"cpu"}) || len(got[i].Stacks) != 0 || got[i].Busy != 0 {
		t.Fatalf("re-recorded runner: %+v", got)
	}
}

func testTokenManagement(t *testing.T, b *bundle) {
	other := store.Project{ID: NewID(), Name: "other", CreatedAt: b.now}
	if err := b.s.CreateProject(b.ctx, other); err != nil {
		t.Fatal(err)
	}
	runner := store.Token{ID: NewID(), Hash: NewID(), Kind: store.TokenRunner, Name: "gpu box",
		Clusters: []string{"gpu", ""}, CreatedAt: b.now}
	mine := store.Token{ID: NewID(), Hash: NewID(), Kind: store.TokenProject, ProjectID: b.project.ID, Name: "ci",
		CreatedAt: b.now.Add(time.Second)}
	theirs := store.Token{ID: NewID(), Hash: NewID(), Kind: store.TokenProject, ProjectID: other.ID, Name: "ci",
		CreatedAt: b.now.Add(2 * time.Second)}
	for _, tok := range []store.Token{runner, mine, theirs} {
		if err := b.s.CreateToken(b.ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.s.GetTokenByHash(b.ctx, runner.Hash)
	if err != nil || !slices.Equal(got.Clusters, runner.Clusters) {
		t.Fatalf("runner token clusters: %+v, %v", got, err)
	}
	ids := func(ts []store.Token) []string {
		var out []string
		for _, x := range ts {
			out = append(out, x.ID)
		}
		return out
	}
	list, err := b.s.ListTokens(b.ctx, b.project.ID)
	if err != nil || !slices.Equal(ids(list), []string{mine.ID}) {
		t.Fatalf("project tokens: %v, %v", ids(list), err)
	}
	all, err := b.s.ListTokens(b.ctx, "")
	if err != nil || !slices.Contains(ids(all), runner.ID) || !slices.Contains(ids(all), theirs.ID) {
		t.Fatalf("all tokens: %v, %v", ids(all), err)
	}
	if err := b.s.DeleteToken(b.ctx, runner.ID); err != nil {
		t.Fatal(err)
	}
	_, err = b.s.GetTokenByHash(b.ctx, runner.Hash)
	wantErr(t, err, store.ErrNotFound, "a deleted token")
	wantErr(t, b.s.DeleteToken(b.ctx, runner.ID), store.ErrNotFound, "delete a token twice")

	// What a runner holds: only revisions of tasks it has leased.
	code := b.putCode(t, "held")
	tk := b.task(code)
	b.insert(t, tk)
	if held, err := b.s.RunnerHoldsRevision(b.ctx, "r1", code.CodeRevision.ID); err != nil || held {
		t.Fatalf("before the lease: %v, %v", held, err)
	}
	b.leaseOnly(t, tk)
	if held, err := b.s.RunnerHoldsRevision(b.ctx, "r1", code.CodeRevision.ID); err != nil || !held {
		t.Fatalf("leased: %v, %v", held, err)
	}
	if held, _ := b.s.RunnerHoldsRevision(b.ctx, "r2", code.CodeRevision.ID); held {
		t.Fatal("another runner holds the revision")
	}
	b.finish(t, b.getTask(t, tk.ID), store.StatusComplete)
	if held, _ := b.s.RunnerHoldsRevision(b.ctx, "r1", code.CodeRevision.ID); held {
		t.Fatal("a finished task still holds its revision")
	}
}

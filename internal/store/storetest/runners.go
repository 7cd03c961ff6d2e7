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

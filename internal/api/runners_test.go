package api_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

func TestRunnersListedAndWaitsExplained(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	// No runner at all: a queued task says what it waits for.
	plain := b.queueOne(`{"tasks":[{"code_name":"hello","payload":""}]}`)
	gpu := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"","cluster":"gpu"}]}`)
	msgOf := func(id string) string {
		_, out := b.do("GET", b.url("/tasks/"+id), nil)
		return decode[wire.Task](t, out).Msg
	}
	if m := msgOf(plain); !strings.Contains(m, "No live runner serves the default cluster") {
		t.Fatalf("default-cluster task msg %q", m)
	}
	if m := msgOf(gpu); !strings.Contains(m, `No live runner serves cluster "gpu"`) {
		t.Fatalf("gpu task msg %q", m)
	}
	// A runner of the default cluster says what it is as it leases (for
	// nothing here: it has no free slot).
	st, out := b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(
		`{"runner_id":"r1","max":0,"host":"box-1","capacity":4,"busy":4,"version":"v9","driver":"docker","stacks":["busybox"]}`))
	if st != 200 {
		t.Fatalf("lease: %d %s", st, out)
	}
	time.Sleep(1100 * time.Millisecond) // past the cached view of live clusters
	if m := msgOf(plain); m != "" {
		t.Fatalf("a default-cluster task still says %q with a live runner", m)
	}
	if m := msgOf(gpu); !strings.Contains(m, `cluster "gpu"`) {
		t.Fatalf("gpu task msg %q", m)
	}
	_, out = b.do("GET", b.url("/tasks?queued=1"), nil)
	for _, tk := range decode[wire.TaskList](t, out).Tasks {
		if (tk.ID == gpu) != (tk.Msg != "") {
			t.Fatalf("list: task %s msg %q", tk.ID, tk.Msg)
		}
	}

	st, out = b.do("GET", b.srv.URL+"/2/runners", nil)
	rs := decode[wire.RunnerList](t, out).Runners
	if st != 200 || len(rs) != 1 {
		t.Fatalf("runners: %d %s", st, out)
	}
	if r := rs[0]; r.ID != "r1" || r.Host != "box-1" || r.Capacity != 4 || r.Busy != 4 || r.Version != "v9" ||
		r.Driver != "docker" || len(r.Clusters) != 1 || r.Clusters[0] != "" || time.Since(r.LastSeen) > time.Minute {
		t.Fatalf("runner: %s", out)
	}
	// Only an admin sees the runners.
	secret := id.Secret(20)
	b.st.CreateToken(t.Context(), store.Token{ID: id.New(), Hash: b.svc.HashToken(secret), Kind: store.TokenProject,
		ProjectID: b.project, CreatedAt: time.Now()})
	st, out = b.do("GET", b.srv.URL+"/2/runners", nil, "Authorization", "OAuth "+secret)
	wantErr(t, st, out, 403, "admin")
	st, out = b.do("GET", b.srv.URL+"/2/runners", nil, "Authorization", "")
	wantErr(t, st, out, 401, "")
}

package assembly_test

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

const sharedProject = "5f0000000000000000000a02"

// startShared starts a server without HTTP or runner on the shared
// database url, as `mayfly server` on another host would be.
func startShared(t *testing.T, url string, poll time.Duration) *assembly.Server {
	t.Helper()
	srv, err := assembly.Start(context.Background(), assembly.Config{
		DataDir: t.TempDir(), DatabaseURL: url,
		Service:          service.Config{KnownStacks: []string{"busybox"}, LeasePoll: poll},
		BootstrapProject: sharedProject, BootstrapToken: "shared-secret-token",
		MaintenanceInterval: 50 * time.Millisecond, RescueDelay: time.Millisecond, Scheduler: true,
		Log: testenv.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

func leaders(srvs ...*assembly.Server) (n int, which *assembly.Server) {
	for _, s := range srvs {
		if s.Leading() {
			n, which = n+1, s
		}
	}
	return n, which
}

func waitLeader(t *testing.T, srvs ...*assembly.Server) *assembly.Server {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, s := leaders(srvs...); n == 1 {
			return s
		}
		if time.Now().After(deadline) {
			n, _ := leaders(srvs...)
			t.Fatalf("%d of %d servers lead after 15 s; want 1", n, len(srvs))
		}
	}
}

// Two servers on one PostgreSQL database. A runner long-polling the one
// gets a task queued on the other at once, though its server looks at the
// queue only once a minute by itself: the wake-up crossed through the
// database. Exactly one of them leads (runs the scheduler and the lease
// rescue); when it stops, the other takes over within seconds.
func TestServersSharingPostgres(t *testing.T) {
	t.Parallel()
	url := testenv.Postgres(t)
	a := startShared(t, url, time.Minute)
	b := startShared(t, url, time.Minute)
	ctx := context.Background()

	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("run.sh")
	io.WriteString(w, "exit 0\n")
	zw.Close()
	if _, err := a.Service.UploadCode(ctx, sharedProject, wire.CodeUpload{Name: "hello", Runtime: "sh", FileName: "run.sh"}, &zbuf); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		type leased struct {
			jobs []wire.Job
			err  error
			at   time.Time
		}
		got := make(chan leased, 1)
		// The runner waits on b before the task exists.
		go func() {
			jobs, err := b.Service.Lease(ctx, wire.LeaseRequest{RunnerID: "runner-on-b", Max: 1, WaitMs: 50_000})
			got <- leased{jobs, err, time.Now()}
		}()
		time.Sleep(300 * time.Millisecond) // b's first look finds nothing and it sleeps
		t0 := time.Now()
		ids, err := a.Service.QueueTasks(ctx, sharedProject, []wire.NewTask{{CodeName: "hello"}})
		if err != nil {
			t.Fatal(err)
		}
		r := <-got
		if r.err != nil || len(r.jobs) != 1 || r.jobs[0].TaskID != ids[0] {
			t.Fatalf("lease on b: %+v, %v; want task %s", r.jobs, r.err, ids[0])
		}
		// Far under the minute b would have slept without the wake-up.
		if d := r.at.Sub(t0); d > 20*time.Second {
			t.Fatalf("the task queued on a reached b's waiting runner after %v", d)
		} else {
			t.Logf("round %d: queued on a, leased on b after %v", i, d)
		}
	}

	first := waitLeader(t, a, b)
	time.Sleep(500 * time.Millisecond)
	if n, _ := leaders(a, b); n != 1 {
		t.Fatalf("%d servers lead", n)
	}
	other := a
	if first == a {
		other = b
	}
	t0 := time.Now()
	first.Stop()
	waitLeader(t, other)
	t.Logf("the other server led %v after the leader stopped", time.Since(t0))
}

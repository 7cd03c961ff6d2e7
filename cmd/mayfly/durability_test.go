package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// The fault: the server is killed with SIGKILL while clients queue tasks,
// cancel queued and running ones, and a runner reports tasks' ends, all as
// fast as they can. After a restart on the same store, every write the
// server had answered with success is there: each acknowledged task
// exists, each acknowledged cancel and each acknowledged end shows (a
// running task's cancel as the cancel its runner's next heartbeat is
// told of). With SQLite (group commit) and with PostgreSQL.
func TestAcknowledgedWritesSurviveSIGKILL(t *testing.T) {
	t.Parallel()
	testenv.StackImage(t, "busybox")
	for _, st := range []string{"sqlite", "postgres"} {
		t.Run(st, func(t *testing.T) {
			t.Parallel()
			const project, token = "5f00000000000000000000f6", "durable-acks-token"
			env := []string{"MAYFLY_BOOTSTRAP_PROJECT=" + project, "MAYFLY_BOOTSTRAP_TOKEN=" + token, "MAYFLY_RUNNER=false"}
			if st == "postgres" {
				env = append(env, "MAYFLY_DATABASE_URL="+testenv.Postgres(t))
			}
			srv := startServer(t, env...)
			c := client.New("http://"+srv.addr, token, project)
			pushCode(t, c, wire.CodeUpload{Name: "work", Command: "true"})
			for round := range 2 {
				acked := killMidWrites(t, srv, c, token)
				srv = restartServer(t, srv, env...)
				c = client.New("http://"+srv.addr, token, project)
				checkAcked(t, c, client.NewRunnerQueue("http://"+srv.addr, token), acked)
				t.Logf("round %d: %d enqueues, %d cancels of queued and %d of running tasks, and %d ends acknowledged before SIGKILL; all there after the restart",
					round, len(acked.queued), len(acked.cancelled), len(acked.cancelledRunning), len(acked.ended))
			}
		})
	}
}

type ackedWrites struct {
	mu        sync.Mutex
	queued    []string
	cancelled []string
	// cancelledRunning are the leases of running tasks whose cancel was
	// acknowledged.
	cancelledRunning []wire.LeaseRef
	ended            map[string]string // task id -> status reported
}

// killMidWrites runs an enqueuer, a canceller and a runner against srv and
// kills srv with SIGKILL while they run; it returns what was answered.
func killMidWrites(t *testing.T, srv *serverProc, c *client.Client, token string) *ackedWrites {
	t.Helper()
	a := &ackedWrites{ended: map[string]string{}}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	// Tasks in a cluster no runner serves, for the canceller; and running
	// tasks the runner leaves running, for the other canceller.
	parked := make(chan string, 10000)
	running := make(chan wire.LeaseRef, 10000)
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			tasks := []wire.NewTask{{CodeName: "work"}, {CodeName: "work"}, {CodeName: "work", Cluster: "parked"}}
			ids, err := c.QueueTasks(ctx, tasks)
			if err != nil {
				return
			}
			a.mu.Lock()
			a.queued = append(a.queued, ids...)
			a.mu.Unlock()
			parked <- ids[2]
		}
	})
	wg.Go(func() {
		for ctx.Err() == nil {
			var id string
			select {
			case id = <-parked:
			case <-ctx.Done():
				return
			}
			if err := c.CancelTask(ctx, id); err != nil {
				return
			}
			a.mu.Lock()
			a.cancelled = append(a.cancelled, id)
			a.mu.Unlock()
		}
	})
	wg.Go(func() {
		for ctx.Err() == nil {
			var lease wire.LeaseRef
			select {
			case lease = <-running:
			case <-ctx.Done():
				return
			}
			if err := c.CancelTask(ctx, lease.TaskID); err != nil {
				return
			}
			a.mu.Lock()
			a.cancelledRunning = append(a.cancelledRunning, lease)
			a.mu.Unlock()
		}
	})
	wg.Go(func() {
		q := client.NewRunnerQueue("http://"+srv.addr, token)
		statuses := []string{"complete", "error", "complete"}
		for n := 0; ctx.Err() == nil; {
			jobs, err := q.Lease(ctx, wire.LeaseRequest{RunnerID: "6b0c0f3678b97ac0ae3d1a99", Max: 5, WaitMs: 200})
			if err != nil {
				return
			}
			for _, j := range jobs {
				status := statuses[n%len(statuses)]
				n++
				lease := j.Lease("6b0c0f3678b97ac0ae3d1a99")
				if err := q.Started(ctx, lease); err != nil {
					return
				}
				if n%4 == 0 {
					// Left running, to be cancelled while it runs.
					running <- lease
					continue
				}
				code := 0
				if status == "error" {
					code = 3
				}
				if err := q.Finish(ctx, lease, wire.FinishRequest{RunnerID: lease.RunnerID, Attempt: lease.Attempt,
					Status: status, ExitCode: &code}); err != nil {
					return
				}
				a.mu.Lock()
				a.ended[j.TaskID] = status
				a.mu.Unlock()
			}
		}
	})
	// Kill once all three have had their writes answered for a while.
	deadline := time.Now().Add(time.Minute)
	for {
		a.mu.Lock()
		busy := len(a.queued) > 300 && len(a.cancelled) > 50 && len(a.ended) > 100 && len(a.cancelledRunning) > 20
		a.mu.Unlock()
		if busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writers did not get going: %d queued, %d cancelled, %d running cancelled, %d ended",
				len(a.queued), len(a.cancelled), len(a.cancelledRunning), len(a.ended))
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.cmd.Process.Kill()
	<-srv.done
	stop()
	wg.Wait()
	return a
}

func checkAcked(t *testing.T, c *client.Client, q *client.RunnerQueue, a *ackedWrites) {
	t.Helper()
	ctx := context.Background()
	cancelled := map[string]bool{}
	for _, id := range a.cancelled {
		cancelled[id] = true
	}
	lost := 0
	for _, id := range a.queued {
		tk, err := c.GetTask(ctx, id)
		if err != nil {
			lost++
			if lost < 5 {
				t.Errorf("acknowledged task %s: %v", id, err)
			}
			continue
		}
		if cancelled[id] && tk.Status != "cancelled" {
			t.Errorf("acknowledged cancel of %s: status %s", id, tk.Status)
		}
		if want, ok := a.ended[id]; ok && tk.Status != want {
			t.Errorf("acknowledged end of %s as %s: status %s (%s)", id, want, tk.Status, tk.Phase)
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged tasks lost", lost, len(a.queued))
	}
	// A running task's acknowledged cancel: its runner's next heartbeat is
	// told to stop it, or, had its lease run out meanwhile, the rescue
	// ended it cancelled.
	for _, lease := range a.cancelledRunning {
		cancel, err := q.Heartbeat(ctx, lease)
		if err == nil && !cancel {
			t.Errorf("acknowledged cancel of running task %s: the heartbeat is not told to stop", lease.TaskID)
		}
		if err != nil {
			if tk, gerr := c.GetTask(ctx, lease.TaskID); gerr != nil || tk.Status != "cancelled" {
				t.Errorf("acknowledged cancel of running task %s: heartbeat %v, status %s, %v", lease.TaskID, err, tk.Status, gerr)
			}
		}
	}
	// Ends of tasks queued before this round, too.
	for id, want := range a.ended {
		if tk, err := c.GetTask(ctx, id); err != nil || tk.Status != want {
			t.Errorf("acknowledged end of %s as %s: %s, %v", id, want, tk.Status, err)
		}
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/driver/fake"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

var (
	fakeBinOnce sync.Once
	fakeBinPath string
	fakeBinErr  error
)

// fakeMayflyBin is the binary built with the fake driver (-tags
// fakedriver), for runs of hundreds of tasks through real processes
// without starting containers.
func fakeMayflyBin(t *testing.T) string {
	t.Helper()
	fakeBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mayfly-fakebin-")
		if err != nil {
			fakeBinErr = err
			return
		}
		fakeBinPath = filepath.Join(dir, "mayfly")
		out, err := exec.Command("go", "build", "-tags", "fakedriver", "-o", fakeBinPath, ".").CombinedOutput()
		if err != nil {
			fakeBinErr = fmt.Errorf("%w: %s", err, out)
		}
	})
	if fakeBinErr != nil {
		t.Fatalf("build mayfly with the fake driver: %v", fakeBinErr)
	}
	return fakeBinPath
}

func waitOutput(t *testing.T, what string, out func() string, want string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); !strings.Contains(out(), want); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not say %q within %v", what, want, within)
		}
	}
}

// Two servers on one PostgreSQL and one S3 store, two remote runners, 500
// tasks of a code limited to 3 at once and a schedule firing every two
// seconds. Mid-run the leading server is killed with SIGKILL, then
// PostgreSQL itself (every backend with it) and started again. Every task
// whose enqueue was answered runs, exactly once, never more than 3 at
// once; the other server takes over the schedule, which fires once per
// due time throughout; servers and runners recover by themselves.
func TestScaleOutSurvivesLeaderAndDatabaseDeaths(t *testing.T) {
	t.Parallel()
	testenv.Docker(t) // the runners report the stacks installed in the engine
	testenv.StackImage(t, "busybox")
	bin := fakeMayflyBin(t)
	pg := testenv.OwnPostgres(t)
	_, s3env := s3Bucket(t, "mayfly-chaos", "code")
	ctx := context.Background()
	const project, token = "5f00000000000000000000f5", "scale-out-chaos-token"
	env := append([]string{"MAYFLY_BOOTSTRAP_PROJECT=" + project, "MAYFLY_BOOTSTRAP_TOKEN=" + token,
		"MAYFLY_DATABASE_URL=" + pg.URL(), "MAYFLY_RUNNER=false", "MAYFLY_MIN_RUN_EVERY=1s", "MAYFLY_LOG_LEVEL=info"}, s3env...)

	a := startServerBin(t, bin, freeAddr(t), t.TempDir(), env...)
	waitOutput(t, "the first server", a.output, "leading", 30*time.Second)
	b := startServerBin(t, bin, freeAddr(t), sharedKeysDir(t, a.dataDir), env...)
	waitOutput(t, "the second server", b.output, "another server leads", 30*time.Second)
	ca := client.New("http://"+a.addr, token, project)
	cb := client.New("http://"+b.addr, token, project)

	three := 3
	pushCode(t, ca, wire.CodeUpload{Name: "limited", Command: "true", MaxConcurrency: &three})
	pushCode(t, cb, wire.CodeUpload{Name: "tick", Command: "true"})
	every := 2
	sids, err := cb.CreateSchedules(ctx, []wire.NewSchedule{{CodeName: "tick", RunEvery: &every,
		Payload: fake.Payload(fake.Behavior{RunMs: 10})}})
	if err != nil {
		t.Fatal(err)
	}
	// The runners reach the servers as they would across hosts; they are
	// on the server that stays, as a load balancer would move them.
	var runners []*runnerProc
	for range 2 {
		runners = append(runners, startRunnerBin(t, bin, b.addr, token, "", "--driver", "fake", "--capacity", "4"))
	}

	// The enqueuer: 500 tasks in batches of 10, through both servers
	// while both live; an enqueue is retried until it is answered, and
	// only answered ones are counted (a refused one may or may not exist).
	const total, batch = 500, 10
	var mu sync.Mutex
	var acked []string
	ackedN := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	aDead := make(chan struct{})
	enqDone := make(chan error, 1)
	go func() {
		payload := fake.Payload(fake.Behavior{RunMs: 30, Out: "ran\n"})
		for i := 0; i < total; i += batch {
			tasks := make([]wire.NewTask, batch)
			for j := range tasks {
				tasks[j] = wire.NewTask{CodeName: "limited", Payload: payload}
			}
			c := cb
			select {
			case <-aDead:
			default:
				if i/batch%2 == 0 {
					c = ca
				}
			}
			for tries := 0; ; tries++ {
				qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				ids, err := c.QueueTasks(qctx, tasks)
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, ids...)
					mu.Unlock()
					break
				}
				if tries > 600 {
					enqDone <- fmt.Errorf("enqueue batch %d never answered: %w", i/batch, err)
					return
				}
				c = cb
				time.Sleep(100 * time.Millisecond)
			}
			// Spread over about 15 s, so the deaths below come mid-run.
			time.Sleep(300 * time.Millisecond)
		}
		enqDone <- nil
	}()

	waitFor := func(what string, cond func() bool, within time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(within); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s within %v", what, within)
			}
		}
	}
	waitFor("150 tasks queued", func() bool { return ackedN() >= 150 }, 2*time.Minute)
	// kill -9 of the leader.
	killedAt := time.Now()
	a.cmd.Process.Kill()
	<-a.done
	close(aDead)
	waitOutput(t, "the second server, after the leader died", b.output, "leading: ", 30*time.Second)
	t.Logf("the second server led %v after the leader was killed", time.Since(killedAt).Round(time.Millisecond))

	waitFor("300 tasks queued", func() bool { return ackedN() >= 300 }, 2*time.Minute)
	// kill -9 of PostgreSQL, every process of it, mid-run; back after 3 s.
	pg.Kill()
	pgDown := time.Now()
	time.Sleep(3 * time.Second)
	if err := pg.Restart(); err != nil {
		t.Fatalf("restart postgres: %v", err)
	}
	pgUp := time.Now()
	t.Logf("PostgreSQL was down %v", pgUp.Sub(pgDown).Round(time.Millisecond))

	if err := <-enqDone; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	ids := slices.Clone(acked)
	mu.Unlock()
	if len(ids) != total {
		t.Fatalf("%d tasks acknowledged, want %d", len(ids), total)
	}

	// Every acknowledged task ends, complete, in its first attempt.
	tasks := map[string]wire.Task{}
	waitFor("every acknowledged task done", func() bool {
		for _, id := range ids {
			if tk, ok := tasks[id]; ok && tk.Status == "complete" {
				continue
			}
			tk, err := cb.GetTask(ctx, id)
			if err != nil {
				return false
			}
			tasks[id] = tk
			if tk.Status != "complete" {
				return false
			}
		}
		return true
	}, 3*time.Minute)
	// Exactly once: each task's container ran once, on one runner. (Its
	// attempt may be 2 without a second run: a lease the database took
	// but could not answer, when it was killed, runs out unused.)
	ran := map[string]int{}
	for _, r := range runners {
		for _, line := range strings.Split(r.output(), "\n") {
			// An abandoned task may have run too: count it as a run.
			if strings.Contains(line, `msg="task ended"`) || strings.Contains(line, `msg="task abandoned"`) {
				if _, id, ok := strings.Cut(line, "task_id="); ok {
					ran[strings.Fields(id)[0]]++
				}
			}
		}
	}
	var spans []testenv.Span
	for _, id := range ids {
		tk := tasks[id]
		if ran[id] != 1 || tk.RetryCount != 0 {
			t.Errorf("task %s ran %d times (attempt %d, retry %d), want once", id, ran[id], tk.Attempt, tk.RetryCount)
		}
		if tk.StartTime == nil || tk.EndTime == nil {
			t.Fatalf("task %s has no start or end time: %+v", id, tk)
		}
		spans = append(spans, testenv.Span{Start: float64(tk.StartTime.UnixMicro()), End: float64(tk.EndTime.UnixMicro())})
	}
	if most := testenv.MostAtOnce(spans); most > 3 {
		t.Errorf("%d tasks of the max_concurrency 3 code ran at once", most)
	} else {
		t.Logf("500 tasks, at most %d at once", most)
	}

	// The schedule fired on, once per due time: every run it counts is one
	// task, and no two came from one due time (2 s apart).
	sc, err := cb.GetSchedule(ctx, sids[0])
	if err != nil {
		t.Fatal(err)
	}
	var fired []time.Time
	for page := 0; ; page++ {
		list, err := cb.ListTasks(ctx, client.TaskFilter{CodeName: "tick", PerPage: 100, Page: page})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range list {
			if tk.ScheduleID == sids[0] {
				fired = append(fired, tk.CreatedAt)
			}
		}
		if len(list) < 100 {
			break
		}
	}
	slices.SortFunc(fired, time.Time.Compare)
	if len(fired) != sc.RunCount {
		t.Errorf("the schedule counts %d runs and made %d tasks", sc.RunCount, len(fired))
	}
	for i := 1; i < len(fired); i++ {
		if gap := fired[i].Sub(fired[i-1]); gap < time.Second {
			t.Errorf("two runs of the every-2-s schedule %v apart (at %v): a due time fired twice", gap, fired[i])
		}
	}
	between := func(from, to time.Time) int {
		n := 0
		for _, f := range fired {
			if f.After(from) && f.Before(to) {
				n++
			}
		}
		return n
	}
	if between(killedAt, pgDown) == 0 || between(pgUp, time.Now()) == 0 {
		t.Errorf("the schedule did not fire both after the leader died and after PostgreSQL came back (runs at %v)", fired)
	}
	t.Logf("the schedule fired %d times (%d after the leader died, %d after PostgreSQL came back)",
		len(fired), between(killedAt, time.Now()), between(pgUp, time.Now()))
}

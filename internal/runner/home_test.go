package runner

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// The attack: a task's home serves the runner's next task, so what a
// task left behind (its files, its socket's route, its token, a
// connection kept open) must give it nothing of the next one.
func TestTaskHomeServesOnlyItsTask(t *testing.T) {
	lim := defaultSockLimits
	p := newHomes(shortTempDir(t), lim, 2, quietLog)
	defer p.close()
	h, err := p.take()
	if err != nil {
		t.Fatal(err)
	}
	q := &progressCounter{}
	first, second := testJob(1), testJob(2)
	first.Payload = `{"secret":"` + strings.Repeat("x", 100) + `"}`
	task := beginTest(t, h, first, q)
	if b, err := os.ReadFile(filepath.Join(h.dir, "payload.json")); err != nil || string(b) != first.Payload {
		t.Fatalf("first payload %q %v", b, err)
	}
	c := sockClient(h) // one client: its connection outlives the task
	if st, body, err := postProgress(c, first, 10, "first"); err != nil || st != 200 {
		t.Fatalf("first task's progress: %d %s %v", st, body, err)
	}
	h.end(task)
	// Between tasks the socket serves nobody.
	if st, body, _ := postProgress(c, first, 20, "late"); st != http.StatusServiceUnavailable {
		t.Fatalf("progress between tasks: %d %s", st, body)
	}
	p.give(h, true)
	for _, name := range taskFileNames {
		if b, err := os.ReadFile(filepath.Join(h.dir, name)); err != nil || len(b) != 0 {
			t.Fatalf("%s of the first task left in its home: %q %v", name, b, err)
		}
	}
	again, err := p.take()
	if err != nil || again != h {
		t.Fatalf("the idle home was not taken again: %v", err)
	}
	beginTest(t, h, second, q)
	if b, _ := os.ReadFile(filepath.Join(h.dir, "payload.json")); string(b) != second.Payload {
		t.Fatalf("second payload %q", b)
	}
	if st, body, _ := postProgress(c, first, 30, "as the first"); st != http.StatusForbidden {
		t.Fatalf("the first task's route on the second's socket: %d %s", st, body)
	}
	url := fmt.Sprintf("%s/2/projects/%s/tasks/%s/progress", apiSocketURL, second.ProjectID, second.TaskID)
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{"percent":40}`))
	req.Header.Set("Authorization", "OAuth "+first.TaskToken)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the first task's token on the second's socket: %d", resp.StatusCode)
	}
	if writes, last := q.get(); writes != 1 || *last.Percent != 10 {
		t.Fatalf("%d writes, last %+v: want only the first task's one", writes, last)
	}
}

// A home a container may still see is never taken again; idle homes past
// the pool's size, or idle too long, and those of a closed pool go.
func TestTaskHomesKeptOnlyWhileSafeAndWanted(t *testing.T) {
	lim := defaultSockLimits
	p := newHomes(shortTempDir(t), lim, 1, quietLog)
	p.idleFor = 200 * time.Millisecond
	take := func() *taskHome {
		t.Helper()
		h, err := p.take()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	gone := func(h *taskHome) bool {
		_, err := os.Stat(h.dir)
		return os.IsNotExist(err)
	}
	a, b := take(), take()
	if a.dir == b.dir {
		t.Fatalf("two tasks share the home %s", a.dir)
	}
	p.give(a, false)
	if !gone(a) {
		t.Fatal("a home a container may still see was kept")
	}
	c := take()
	if c == a {
		t.Fatal("a home not kept was taken again")
	}
	p.give(b, true)
	p.give(c, true)
	if gone(b) || !gone(c) || p.idleCount() != 1 {
		t.Fatalf("pool of one: first kept %v, second closed %v, idle %d", !gone(b), gone(c), p.idleCount())
	}
	deadline := time.Now().Add(10 * time.Second)
	for !gone(b) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !gone(b) || p.idleCount() != 0 {
		t.Fatalf("an idle home outlived its idle time: idle %d", p.idleCount())
	}
	d := take()
	p.close()
	p.give(d, true)
	if !gone(d) {
		t.Fatal("a home given to a closed pool was kept")
	}
}

// slowProgress is a Queue whose progress writes take a while.
type slowProgress struct {
	progressCounter
	delay time.Duration
}

func (q *slowProgress) ReportProgress(ctx context.Context, token, taskID string, p wire.Progress) error {
	time.Sleep(q.delay)
	return q.progressCounter.ReportProgress(ctx, token, taskID, p)
}

// A report under way when the container ends is written before the end
// is reported: the end waits for it.
func TestTaskHomeEndWaitsForReportsUnderWay(t *testing.T) {
	lim := defaultSockLimits
	h, err := openHome(filepath.Join(shortTempDir(t), "t1"), lim, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	q := &slowProgress{delay: 300 * time.Millisecond}
	job := testJob(1)
	task := beginTest(t, h, job, q)
	answered := make(chan int, 1)
	go func() {
		st, _, _ := postProgress(sockClient(h), job, 70, "nearly")
		answered <- st
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		task.mu.Lock()
		active := task.active
		task.mu.Unlock()
		if active > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the report never reached the socket")
		}
	}
	h.end(task)
	if writes, last := q.get(); writes != 1 || *last.Percent != 70 {
		t.Fatalf("after the end: %d writes, last %+v; want the report under way written", writes, last)
	}
	if st := <-answered; st != 200 {
		t.Fatalf("report under way answered %d", st)
	}
}

// BenchmarkTaskHome is what a task's home costs the runner per task: made
// for the task and closed after it (Fresh), or taken from the pool and
// given back (Reused). Compare the two from the same run:
//
//	go test -run '^$' -bench TaskHome ./internal/runner/
func BenchmarkTaskHome(b *testing.B) {
	lim := defaultSockLimits
	send := func(context.Context, wire.Progress) error { return nil }
	job := testJob(1)
	dir, err := os.MkdirTemp("", "mfb")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	task := func(b *testing.B, h *taskHome) {
		t, err := h.begin(job, send)
		if err != nil {
			b.Fatal(err)
		}
		h.end(t)
	}
	b.Run("Fresh", func(b *testing.B) {
		for i := range b.N {
			h, err := openHome(filepath.Join(dir, fmt.Sprintf("f%d", i)), lim, quietLog)
			if err != nil {
				b.Fatal(err)
			}
			task(b, h)
			h.close()
		}
	})
	b.Run("Reused", func(b *testing.B) {
		p := newHomes(dir, lim, 1, quietLog)
		defer p.close()
		for range b.N {
			h, err := p.take()
			if err != nil {
				b.Fatal(err)
			}
			task(b, h)
			p.give(h, true)
		}
	})
}

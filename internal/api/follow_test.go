package api_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// A followed log streams each chunk as the runner sends it, and the answer
// ends, whole, when the task ends. Chunks written through another server
// (here: straight into the store, waking nobody) arrive too, within the
// follower's own second.
func TestFollowLogStreamsUntilTheEnd(t *testing.T) {
	b := setup(t, service.Config{})
	b.pushHello()
	st, body := b.queue(`{"tasks":[{"code_name":"hello"}]}`)
	if st != 200 {
		t.Fatalf("queue: %d %s", st, body)
	}
	taskID := decode[wire.QueueResponse](t, body).Tasks[0].ID
	jobs, err := b.svc.Lease(t.Context(), wire.LeaseRequest{RunnerID: "r1", Max: 1})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("lease: %v %v", jobs, err)
	}
	lease := jobs[0].Lease("r1")

	req, _ := http.NewRequest("GET", b.url("/tasks/"+taskID+"/log?follow=1"), nil)
	req.Header.Set("Authorization", "OAuth "+b.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("follow: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(want string, within time.Duration) time.Duration {
		t.Helper()
		t0 := time.Now()
		select {
		case got, ok := <-lines:
			if !ok || got != want {
				t.Fatalf("line %q (open %v), want %q", got, ok, want)
			}
		case <-time.After(within):
			t.Fatalf("line %q did not come within %v", want, within)
		}
		return time.Since(t0)
	}
	for i, line := range []string{"one", "two", "three"} {
		if err := b.svc.AppendLog(t.Context(), lease, []byte(line+"\n")); err != nil {
			t.Fatal(err)
		}
		// Appended through this server: at once, not at the next look.
		if d := expect(line, 5*time.Second); i > 0 && d > 700*time.Millisecond {
			t.Logf("line %d took %v", i, d)
		}
	}
	if err := b.st.AppendLog(t.Context(), store.AppendLogParams{TaskID: taskID, RunnerID: "r1", Attempt: 1, Data: []byte("elsewhere\n")}); err != nil {
		t.Fatal(err)
	}
	expect("elsewhere", 5*time.Second)
	// Still open while the task runs.
	select {
	case l, ok := <-lines:
		t.Fatalf("unexpected %q %v before the end", l, ok)
	case <-time.After(300 * time.Millisecond):
	}
	if err := b.svc.AppendLog(t.Context(), lease, []byte("last\n")); err != nil {
		t.Fatal(err)
	}
	code := 0
	if err := b.svc.Finish(t.Context(), lease, wire.FinishRequest{RunnerID: "r1", Attempt: 1, Status: "complete", ExitCode: &code}); err != nil {
		t.Fatal(err)
	}
	expect("last", 5*time.Second)
	select {
	case l, ok := <-lines:
		if ok {
			t.Fatalf("unexpected %q after the end", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the follow did not end with the task")
	}
	// A finished task's follow is its whole log at once.
	st, out := b.do("GET", b.url("/tasks/"+taskID+"/log?follow=1"), nil)
	if st != 200 || string(out) != "one\ntwo\nthree\nelsewhere\nlast\n" {
		t.Fatalf("follow of an ended task: %d %q", st, out)
	}
	// Another project's task, or none: 404 before anything streams.
	if st, _ := b.do("GET", b.url("/tasks/5f0000000000000000009999/log?follow=1"), nil); st != 404 {
		t.Fatalf("follow of an unknown task: %d", st)
	}
}

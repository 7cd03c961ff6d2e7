package client

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// Everything but the server's lost-lease answer is a passing error the
// runner retries: an error taken for a lost lease would make it stop a
// healthy task, one taken for success would lose the report.
func TestRunnerQueueErrorKinds(t *testing.T) {
	t.Parallel()
	answer := func(status int, body string) *RunnerQueue {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			io.WriteString(w, body)
		}))
		t.Cleanup(hs.Close)
		return NewRunnerQueue(hs.URL, "tok")
	}
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	for _, tc := range []struct {
		name string
		q    *RunnerQueue
		lost bool
	}{
		{"410", answer(http.StatusGone, `{"msg":"Lease lost: task x is attempt 3 now"}`), true},
		{"409 lease lost", answer(http.StatusConflict, `{"msg":"task x: lease lost"}`), true},
		{"409 other", answer(http.StatusConflict, `{"msg":"Conflict"}`), false},
		{"500", answer(http.StatusInternalServerError, `{"msg":"boom"}`), false},
		{"502 from a proxy", answer(http.StatusBadGateway, "<html>bad gateway</html>"), false},
		{"503", answer(http.StatusServiceUnavailable, ""), false},
		{"401", answer(http.StatusUnauthorized, `{"msg":"Invalid token"}`), false},
		{"connection refused", NewRunnerQueue(down.URL, "tok"), false},
	} {
		ctx := context.Background()
		ref := wire.LeaseRef{TaskID: "t1", RunnerID: "r1", Attempt: 1}
		_, err := tc.q.Heartbeat(ctx, ref)
		if err == nil || IsLeaseLost(err) != tc.lost {
			t.Errorf("%s: heartbeat error %v, lease lost %v, want %v", tc.name, err, IsLeaseLost(err), tc.lost)
		}
		err = tc.q.Finish(ctx, ref, wire.FinishRequest{Status: "complete"})
		if err == nil || IsLeaseLost(err) != tc.lost {
			t.Errorf("%s: finish error %v, lease lost %v, want %v", tc.name, err, IsLeaseLost(err), tc.lost)
		}
		if _, err := tc.q.Lease(ctx, wire.LeaseRequest{RunnerID: "r1", Max: 1}); err == nil {
			t.Errorf("%s: lease: no error", tc.name)
		}
	}
}

// A server that accepts the connection and never answers does not hold a
// report forever: it ends as a passing error the runner retries.
func TestRunnerQueueHungServer(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer hs.Close()
	defer close(release)
	q := NewRunnerQueue(hs.URL, "tok")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := q.Heartbeat(ctx, wire.LeaseRef{TaskID: "t1", RunnerID: "r1", Attempt: 1})
	if err == nil || IsLeaseLost(err) || time.Since(start) > 10*time.Second {
		t.Fatalf("heartbeat to a hung server: %v after %v", err, time.Since(start))
	}
}

// The package reaches the runner as a stream: OpenPackage returns while
// the server is still sending, so a large package never sits in memory.
func TestRunnerQueuePackageStreams(t *testing.T) {
	t.Parallel()
	more := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/runner/packages/rev1" || r.Header.Get("Authorization") != "OAuth tok" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		io.WriteString(w, "first part;")
		w.(http.Flusher).Flush()
		<-more
		io.WriteString(w, "second part")
	}))
	defer hs.Close()
	q := NewRunnerQueue(hs.URL, "tok")
	rc, err := q.OpenPackage(context.Background(), "rev1")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, len("first part;"))
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "first part;" {
		t.Fatalf("first part: %q %v", buf, err)
	}
	close(more)
	rest, err := io.ReadAll(rc)
	if err != nil || string(rest) != "second part" {
		t.Fatalf("rest: %q %v", rest, err)
	}
}

// Progress travels with the task's token only; anything else is refused
// before it leaves the runner, never sent with the runner's token.
func TestRunnerQueueProgressToken(t *testing.T) {
	t.Parallel()
	var got []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.Path+" "+r.Header.Get("Authorization"))
		io.WriteString(w, `{"msg":"Progress set"}`)
	}))
	defer hs.Close()
	q := NewRunnerQueue(hs.URL, "runner-secret")
	p := 5
	const tok = "mtt.5f0000000000000000000001.5f0000000000000000000002.99999999999.mac"
	if err := q.ReportProgress(context.Background(), tok, "5f0000000000000000000002", wire.Progress{Percent: &p}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "runner-secret", "mtt.x"} {
		if err := q.ReportProgress(context.Background(), bad, "t", wire.Progress{Percent: &p}); err == nil {
			t.Errorf("progress with token %q: no error", bad)
		}
	}
	want := "/2/projects/5f0000000000000000000001/tasks/5f0000000000000000000002/progress OAuth " + tok
	if len(got) != 1 || got[0] != want {
		t.Fatalf("requests: %q, want [%q]", got, want)
	}
	if strings.Contains(strings.Join(got, ""), "runner-secret") {
		t.Fatal("the runner's token was sent for a task's progress")
	}
}

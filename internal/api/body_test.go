package api_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// TestQueueDecodesTaskByTask: POST tasks is read one task at a time; what
// a whole-body decode accepted still works, and limits stop the read.
func TestQueueDecodesTaskByTask(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{MaxPayloadBytes: 1024, MaxTasksPerPost: 3})
	b.pushHello()
	st, body := b.queue(`{"project_id":"ignored","extra":{"deep":[1,{"x":[]}]},"tasks":[{"code_name":"hello","payload":"a","unknown":[1,2]},
		{"code_name":"hello","payload":"b"}],"after":"x"}`)
	if q := decode[wire.QueueResponse](t, body); st != 200 || len(q.Tasks) != 2 {
		t.Fatalf("queue: %d %s", st, body)
	}
	cases := []struct {
		name, body string
		status     int
		msg        string
	}{
		{"array", `[{"code_name":"hello"}]`, 400, "json object"},
		{"tasks not an array", `{"tasks":{"code_name":"hello"}}`, 400, "'tasks'"},
		{"tasks null", `{"tasks":null}`, 400, "no tasks"},
		{"truncated", `{"tasks":[{"code_name":"hello"}`, 400, "malformed json"},
		{"too many", `{"tasks":[{"code_name":"hello"},{"code_name":"hello"},{"code_name":"hello"},{"code_name":"hello"}]}`, 413, "at most 3"},
		{"second payload too large", `{"tasks":[{"code_name":"hello"},{"code_name":"hello","payload":"` + strings.Repeat("x", 1025) + `"}]}`, 413, "task 1: payload is 1025 bytes"},
	}
	for _, c := range cases {
		st, body := b.queue(c.body)
		t.Run(c.name, func(t *testing.T) { wantErr(t, st, body, c.status, c.msg) })
	}
}

// TestBodyBudget: a body larger than what is free waits for it, small
// bodies never do, and a body that cannot be admitted in time is answered
// 503 with Retry-After.
func TestBodyBudget(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{MaxPayloadBytes: 512 << 10})
	b.pushHello()
	small := httptest.NewServer(api.New(b.svc, api.Options{MaxRequestBytes: 1 << 20, MaxBodyBytesInFlight: 1 << 20}))
	t.Cleanup(small.Close)
	// A chunked body charges as it is read: this one fits.
	big := `{"tasks":[{"code_name":"hello","payload":"` + strings.Repeat("x", 300<<10) + `"}]}`
	req, _ := http.NewRequest("POST", small.URL+"/2/projects/"+b.project+"/tasks", struct{ *strings.Reader }{strings.NewReader(big)})
	req.Header.Set("Authorization", "OAuth "+b.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || req.ContentLength != 0 {
		t.Fatalf("chunked post: %d (content length %d)", resp.StatusCode, req.ContentLength)
	}
	// The budget was given back: the same again, with a length, fits too.
	st, body := b.do("POST", small.URL+"/2/projects/"+b.project+"/tasks", strings.NewReader(big))
	if st != 200 {
		t.Fatalf("second post: %d %s", st, body)
	}

	// A post that announces the whole budget and sends slowly holds it...
	pr, pw := io.Pipe()
	slow, _ := http.NewRequest("POST", small.URL+"/2/projects/"+b.project+"/tasks", pr)
	slow.ContentLength = 1 << 20
	slow.Header.Set("Authorization", "OAuth "+b.token)
	slowDone := make(chan int)
	go func() {
		resp, err := http.DefaultClient.Do(slow)
		if err != nil {
			slowDone <- 0
			return
		}
		resp.Body.Close()
		slowDone <- resp.StatusCode
	}()
	io.WriteString(pw, `{"tasks":[{"code_name":"hello","payload":"`)
	// ...so a chunked one that needs more than the free allowance is
	// turned away at once. Polled: the slow post may not be admitted yet.
	var resp2 *http.Response
	for range 100 {
		req, _ := http.NewRequest("POST", small.URL+"/2/projects/"+b.project+"/tasks", struct{ *strings.Reader }{strings.NewReader(big)})
		req.Header.Set("Authorization", "OAuth "+b.token)
		resp2, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp2.Body)
		resp2.Body.Close()
		if resp2.StatusCode == 200 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		wantErr(t, resp2.StatusCode, data, 503, "try again")
		if resp2.Header.Get("Retry-After") == "" {
			t.Fatalf("503 without Retry-After")
		}
		break
	}
	if resp2.StatusCode != 503 {
		t.Fatalf("never turned away while the budget was held")
	}
	// Small bodies pass meanwhile.
	if st, body := b.do("POST", small.URL+"/2/projects/"+b.project+"/tasks", strings.NewReader(`{"tasks":[{"code_name":"hello"}]}`)); st != 200 {
		t.Fatalf("small post while the budget is held: %d %s", st, body)
	}
	// The slow post, finished, is refused for its length mismatch or
	// taken; either way the budget comes back.
	io.WriteString(pw, `x"}]}`)
	pw.Close()
	<-slowDone
	if st, body := b.do("POST", small.URL+"/2/projects/"+b.project+"/tasks", strings.NewReader(big)); st != 200 {
		t.Fatalf("post after the slow one: %d %s", st, body)
	}
}

// A runner-protocol body counts against the body budget until its handler
// returns, as every other body does. The runner routes' token once sat in
// the request context under the same key as the budget's give-back, so
// the give-back ran at once, before the body was read: runners' bodies
// were never bounded by the budget.
func TestBodyBudgetHeldOnRunnerRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{MaxPayloadBytes: 512 << 10})
	b.pushHello()
	small := httptest.NewServer(api.New(b.svc, api.Options{MaxRequestBytes: 1 << 20, MaxBodyBytesInFlight: 1 << 20}))
	t.Cleanup(small.Close)

	// A runner's report that announces the whole budget and sends slowly...
	pr, pw := io.Pipe()
	slow, _ := http.NewRequest("POST", small.URL+"/runner/lease", pr)
	slow.ContentLength = 1 << 20
	slow.Header.Set("Authorization", "OAuth "+b.token)
	slowDone := make(chan struct{})
	go func() {
		defer close(slowDone)
		if resp, err := http.DefaultClient.Do(slow); err == nil {
			resp.Body.Close()
		}
	}()
	io.WriteString(pw, `{"runner_id":"r1",`)
	defer func() {
		pw.CloseWithError(errors.New("test over"))
		<-slowDone
	}()
	// ...holds it: a big post elsewhere is turned away meanwhile.
	big := `{"tasks":[{"code_name":"hello","payload":"` + strings.Repeat("x", 300<<10) + `"}]}`
	for range 100 {
		req, _ := http.NewRequest("POST", small.URL+"/2/projects/"+b.project+"/tasks", struct{ *strings.Reader }{strings.NewReader(big)})
		req.Header.Set("Authorization", "OAuth "+b.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 503 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("a runner's body in flight did not count against the body budget")
}

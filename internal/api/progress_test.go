package api_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// A task that has a network posts progress over the API in a tight loop
// with its own token: each accepted post is a synced write, so the server
// takes only a few a second and answers the rest 429, and the task's own
// last report still lands once it slows down.
func TestProgressFloodOverTheAPIIsRateLimited(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	id := b.queueOne(`{"tasks":[{"code_name":"hello","payload":""}]}`)
	st, out := b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(`{"runner_id":"r1","max":1,"wait_ms":10}`))
	jobs := decode[wire.LeaseResponse](t, out).Jobs
	if st != 200 || len(jobs) != 1 || jobs[0].TaskToken == "" {
		t.Fatalf("lease: %d %s", st, out)
	}
	taskToken := jobs[0].TaskToken
	start := time.Now()
	accepted, limited := 0, 0
	for i := range 500 {
		st, out := b.do("POST", b.url("/tasks/"+id+"/progress"), strings.NewReader(`{"percent":1,"msg":"spam"}`),
			"Authorization", "OAuth "+taskToken)
		switch st {
		case 200:
			accepted++
		case 429:
			limited++
			if !strings.Contains(string(out), "Too many progress reports") {
				t.Fatalf("post %d: 429 without a clear msg: %s", i, out)
			}
		default:
			t.Fatalf("post %d: %d %s", i, st, out)
		}
	}
	elapsed := time.Since(start).Seconds()
	if most := 10 + int(2*elapsed) + 1; accepted > most || limited == 0 {
		t.Fatalf("%d of 500 posts in %.1fs became writes (at most %d allowed), %d refused", accepted, elapsed, most, limited)
	}
	// Another task's reports, and the project's own work, are not held up.
	other := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"x"}]}`)
	if st, out := b.do("POST", b.url("/tasks/"+other+"/progress"), strings.NewReader(`{"percent":5}`)); st != 200 {
		t.Fatalf("another task's progress: %d %s", st, out)
	}
	// A bad token spends nothing of the task's share.
	for range 50 {
		b.do("POST", b.url("/tasks/"+id+"/progress"), strings.NewReader(`{"percent":9}`), "Authorization", "OAuth wrong-token-000000000000")
	}
	time.Sleep(1100 * time.Millisecond)
	if st, out := b.do("POST", b.url("/tasks/"+id+"/progress"), strings.NewReader(`{"percent":99,"msg":"last"}`),
		"Authorization", "OAuth "+taskToken); st != 200 {
		t.Fatalf("a report after slowing down: %d %s", st, out)
	}
	_, out = b.do("GET", b.url("/tasks/"+id), nil)
	if tk := decode[wire.Task](t, out); tk.Percent != 99 || tk.Msg != "last" {
		t.Fatalf("last report not kept: %s", out)
	}
}

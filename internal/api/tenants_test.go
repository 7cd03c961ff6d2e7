package api_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/assembly/assemblytest"
	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/mayfly"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// syncBuffer collects log output written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// as returns the bundle's do with another token.
func (b *bundle) as(secret string) func(method, url, body string) (int, []byte) {
	return func(method, url, body string) (int, []byte) {
		b.t.Helper()
		var r *strings.Reader
		if body != "" {
			r = strings.NewReader(body)
		} else {
			r = strings.NewReader("")
		}
		return b.do(method, url, r, "Authorization", "OAuth "+secret)
	}
}

func (b *bundle) newProject(body string) wire.Project {
	b.t.Helper()
	st, out := b.do("POST", b.srv.URL+"/2/projects", strings.NewReader(body))
	if st != 200 {
		b.t.Fatalf("create project %s: %d %s", body, st, out)
	}
	return decode[wire.Project](b.t, out)
}

// Projects are made, listed, changed and deleted by admin tokens; a
// project's own token reads it and nothing of the sort.
func TestProjectsAdminRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{Quotas: service.Quotas{QueuedTasks: 1000}})
	p := b.newProject(`{"name":"team a","quotas":{"running_tasks":3}}`)
	if !id24.MatchString(p.ID) || p.Name != "team a" || p.Quotas.RunningTasks != 3 || p.Limits.RunningTasks != 3 || p.Limits.QueuedTasks != 1000 {
		t.Fatalf("created project: %+v %+v %+v", p, p.Quotas, p.Limits)
	}
	st, out := b.do("GET", b.srv.URL+"/2/projects", nil)
	if l := decode[wire.ProjectList](t, out); st != 200 || len(l.Projects) != 2 {
		t.Fatalf("list projects: %d %s", st, out)
	}
	st, out = b.do("PATCH", b.srv.URL+"/2/projects/"+p.ID, strings.NewReader(`{"name":"team b","quotas":{"queued_tasks":-1}}`))
	if up := decode[wire.Project](t, out); st != 200 || up.Name != "team b" || up.Quotas.QueuedTasks != -1 || up.Limits.QueuedTasks != 0 || up.Quotas.RunningTasks != 3 {
		t.Fatalf("update project: %d %s", st, out)
	}
	st, out = b.do("PATCH", b.srv.URL+"/2/projects/"+p.ID, strings.NewReader(`{"quotas":{"queued_tasks":-5}}`))
	wantErr(t, st, out, 400, "queued_tasks")
	st, out = b.do("POST", b.srv.URL+"/2/projects", strings.NewReader(`{"name":""}`))
	wantErr(t, st, out, 400, "name")

	pt := b.createToken(`{"kind":"project","name":"ci","project_id":"` + p.ID + `"}`)
	as := b.as(pt.Secret)
	st, out = as("GET", b.srv.URL+"/2/projects/"+p.ID, "")
	if got := decode[wire.Project](t, out); st != 200 || got.ID != p.ID {
		t.Fatalf("a project token reads its project: %d %s", st, out)
	}
	// Admin routes: 403 to a project token, whatever they are.
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/2/projects", ""},
		{"POST", "/2/projects", `{"name":"x"}`},
		{"PATCH", "/2/projects/" + p.ID, `{"name":"mine now"}`},
		{"DELETE", "/2/projects/" + p.ID, ""},
		{"GET", "/2/tokens", ""},
		{"POST", "/2/tokens", `{"kind":"admin","name":"escalate"}`},
		{"DELETE", "/2/tokens/" + pt.ID, ""},
		{"GET", "/2/runners", ""},
	} {
		st, out := as(r.method, b.srv.URL+r.path, r.body)
		if st != 403 {
			t.Errorf("%s %s with a project token: %d %s, want 403", r.method, r.path, st, out)
		}
	}

	// Delete: refused while a task is queued, forced cancels it.
	pb := &bundle{t: t, srv: b.srv, svc: b.svc, st: b.st, project: p.ID, token: b.token}
	pb.pushHello()
	task := pb.queueOne(`{"tasks":[{"code_name":"hello","payload":""}]}`)
	st, out = b.do("DELETE", b.srv.URL+"/2/projects/"+p.ID, nil)
	wantErr(t, st, out, 409, "force")
	if st, _ := b.do("GET", pb.url("/tasks/"+task), nil); st != 200 {
		t.Fatalf("a refused delete lost the task: %d", st)
	}
	if st, out := b.do("DELETE", b.srv.URL+"/2/projects/"+p.ID+"?force=1", nil); st != 200 {
		t.Fatalf("forced delete: %d %s", st, out)
	}
	if st, _ := b.do("GET", b.srv.URL+"/2/projects/"+p.ID, nil); st != 404 {
		t.Fatalf("deleted project still answers: %d", st)
	}
	// Its token went with it.
	st, out = as("GET", b.srv.URL+"/2/projects/"+p.ID, "")
	wantErr(t, st, out, 401, "invalid")
	// The audit record names who did each of it.
	st, out = b.do("GET", b.srv.URL+"/2/audit?project_id="+p.ID+"&per_page=100", nil)
	al := decode[wire.AuditList](t, out)
	var actions []string
	for _, e := range al.Audit {
		actions = append(actions, e.Action)
		if e.TokenName != "bootstrap" || e.TokenKind != "admin" || e.TokenID == "" {
			t.Errorf("audit record without its token: %+v", e)
		}
	}
	want := "project.delete code.upload token.create project.update project.create"
	if st != 200 || strings.Join(actions, " ") != want {
		t.Fatalf("audit of the project: %d %v, want %s", st, actions, want)
	}
}

// Two projects: every route of one that takes an id refuses the other's
// ids as if they did not exist, and says nothing of them; the other's
// project path is refused.
func TestTwoProjectsRefuseEachOthersIDs(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	pB := b.newProject(`{"name":"b"}`)
	ta := b.createToken(`{"kind":"project","name":"a","project_id":"` + b.project + `"}`)
	tb := b.createToken(`{"kind":"project","name":"b","project_id":"` + pB.ID + `"}`)
	bb := &bundle{t: t, srv: b.srv, svc: b.svc, st: b.st, project: pB.ID, token: tb.Secret}
	code := bb.pushHello()
	task := bb.queueOne(`{"tasks":[{"code_name":"hello","payload":"secret payload"}]}`)
	st, out := bb.do("POST", bb.url("/schedules"), strings.NewReader(`{"schedules":[{"code_name":"hello","payload":"p","run_every":3600}]}`))
	if st != 200 {
		t.Fatalf("schedule in b: %d %s", st, out)
	}
	sched := decode[wire.ScheduleResponse](t, out).Schedules[0].ID

	asA := b.as(ta.Secret)
	base := b.srv.URL + "/2/projects/" + b.project
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/codes/" + code.ID, ""},
		{"DELETE", "/codes/" + code.ID, ""},
		{"GET", "/codes/" + code.ID + "/revisions", ""},
		{"GET", "/codes/" + code.ID + "/download", ""},
		{"GET", "/codes/" + code.ID + "/stats", ""},
		{"POST", "/codes/" + code.ID + "/cancel_all", "{}"},
		{"POST", "/codes/" + code.ID + "/pause_task_queue", "{}"},
		{"POST", "/codes/" + code.ID + "/resume_task_queue", "{}"},
		{"GET", "/tasks/" + task, ""},
		{"GET", "/tasks/" + task + "/log", ""},
		{"GET", "/tasks/" + task + "/outlog", ""},
		{"POST", "/tasks/" + task + "/cancel", "{}"},
		{"POST", "/tasks/" + task + "/retry", "{}"},
		{"POST", "/tasks/" + task + "/progress", `{"percent":5}`},
		{"GET", "/schedules/" + sched, ""},
		{"PUT", "/schedules/" + sched, `{"payload":"x"}`},
		{"POST", "/schedules/" + sched + "/cancel", "{}"},
	} {
		st, out := asA(r.method, base+r.path, r.body)
		if st != 404 {
			t.Errorf("%s %s of b's id with a's token: %d %s, want 404", r.method, r.path, st, out)
			continue
		}
		for _, leak := range []string{code.ID, task, sched, pB.ID, "secret payload"} {
			if strings.Contains(string(out), leak) {
				t.Errorf("%s %s answer echoes %q: %s", r.method, r.path, leak, out)
			}
		}
		// Nothing changed in b.
		if r.method != "GET" {
			if st, _ := bb.do("GET", bb.url("/tasks/"+task), nil); st != 200 {
				t.Fatalf("%s %s changed b's task: %d", r.method, r.path, st)
			}
		}
	}
	// b's own project path with a's token: 403.
	st, out = asA("GET", b.srv.URL+"/2/projects/"+pB.ID+"/tasks/"+task, "")
	wantErr(t, st, out, 403, "not valid")
	if strings.Contains(string(out), task) {
		t.Fatalf("403 echoes the task id: %s", out)
	}
	// a's audit shows its own token's making, and nothing of b.
	st, out = asA("GET", b.srv.URL+"/2/audit", "")
	if al := decode[wire.AuditList](t, out); st != 200 || len(al.Audit) != 1 || al.Audit[0].Target != ta.ID {
		t.Fatalf("a's audit: %d %s", st, out)
	}
	for _, leak := range []string{code.ID, task, sched, pB.ID, tb.ID} {
		if strings.Contains(string(out), leak) {
			t.Errorf("a's audit shows %q of b: %s", leak, out)
		}
	}
	st, out = asA("GET", b.srv.URL+"/2/audit?project_id="+pB.ID, "")
	wantErr(t, st, out, 403, "own project")
	// b's shows its own changes under b's token name.
	st, out = bb.as(tb.Secret)("GET", b.srv.URL+"/2/audit", "")
	al := decode[wire.AuditList](t, out)
	if st != 200 || len(al.Audit) != 4 || al.Audit[0].Action != "schedule.create" || al.Audit[0].TokenName != "b" {
		t.Fatalf("b's audit: %d %s", st, out)
	}
}

// An expired token and a revoked one get 401 on every kind of route.
func TestExpiredAndRevokedTokens(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	// A second server on the same store: revocation must reach it at once.
	other := httptest.NewServer(api.New(b.svc, api.Options{Version: "test"}))
	t.Cleanup(other.Close)

	past := time.Now().Add(-time.Minute)
	secret := id.Secret(24)
	if err := b.st.CreateToken(t.Context(), mayfly.Token{ID: id.New(), Hash: b.svc.HashToken(secret), Kind: mayfly.TokenAdmin,
		Name: "old", CreatedAt: past.Add(-time.Hour), ExpiresAt: &past}); err != nil {
		t.Fatal(err)
	}
	live := b.createToken(`{"kind":"admin","name":"soon","expires_at":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`)
	if live.ExpiresAt == nil {
		t.Fatalf("created token has no expiry: %+v", live)
	}
	st, out := b.do("POST", b.srv.URL+"/2/tokens", strings.NewReader(`{"kind":"admin","name":"x","expires_at":"2001-01-01T00:00:00Z"}`))
	wantErr(t, st, out, 400, "future")
	runner := b.createToken(`{"kind":"runner","name":"r"}`)
	proj := b.createToken(`{"kind":"project","name":"p","project_id":"` + b.project + `"}`)

	routes := []struct{ method, path, body string }{
		{"GET", "/2/projects/" + b.project + "/tasks", ""},
		{"GET", "/2/tokens", ""},
		{"GET", "/2/audit", ""},
		{"POST", "/runner/lease", `{"runner_id":"x","max":1,"wait_ms":1}`},
	}
	check := func(srv, secret, want string) {
		t.Helper()
		for _, r := range routes {
			st, out := b.as(secret)(r.method, srv+r.path, r.body)
			if want == "ok" {
				if st == 401 {
					t.Errorf("%s %s: %d %s", r.method, r.path, st, out)
				}
				continue
			}
			if st != 401 || !strings.Contains(string(out), want) {
				t.Errorf("%s %s: %d %s, want 401 %q", r.method, r.path, st, out, want)
			}
			if strings.Contains(string(out), secret) {
				t.Errorf("answer echoes the secret: %s", out)
			}
		}
	}
	check(b.srv.URL, secret, "expired")
	check(b.srv.URL, live.Secret, "ok")
	for _, tok := range []wire.CreatedToken{live, runner, proj} {
		if st, out := b.do("DELETE", b.srv.URL+"/2/tokens/"+tok.ID, nil); st != 200 {
			t.Fatalf("revoke: %d %s", st, out)
		}
		for _, srv := range []string{b.srv.URL, other.URL} {
			check(srv, tok.Secret, "Invalid token")
		}
	}
}

// A project token over its project's request_rate gets 429 with
// Retry-After; another project's token is not slowed by it.
func TestTokenRequestRate(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{Quotas: service.Quotas{RequestRate: 1000}})
	slow := b.newProject(`{"name":"slow","quotas":{"request_rate":1}}`)
	ts := b.createToken(`{"kind":"project","name":"s","project_id":"` + slow.ID + `"}`)
	tf := b.createToken(`{"kind":"project","name":"f","project_id":"` + b.project + `"}`)
	var limited int
	for range 30 {
		st, out := b.as(ts.Secret)("GET", b.srv.URL+"/2/projects/"+slow.ID+"/tasks", "")
		if st == 429 {
			limited++
			wantErr(t, st, out, 429, "request_rate")
		} else if st != 200 {
			t.Fatalf("slow project: %d %s", st, out)
		}
	}
	// burst 5 at 1/s: of 30 quick requests at most a handful pass.
	if limited < 20 {
		t.Fatalf("only %d of 30 requests over a rate of 1/s were refused", limited)
	}
	resp, err := httpGet(b.srv.URL+"/2/projects/"+slow.ID+"/tasks", ts.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the rate: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	for i := range 30 {
		if st, out := b.as(tf.Secret)("GET", b.url("/tasks"), ""); st != 200 {
			t.Fatalf("request %d of another project's token: %d %s", i, st, out)
		}
	}
}

// Quotas on queued tasks, schedules and code storage answer 403 with a
// msg that says which, and store nothing.
func TestProjectQuotas(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{Quotas: service.Quotas{QueuedTasks: 3, Schedules: 1, CodeBytes: 1 << 20}})
	b.pushHello()
	if st, out := b.queue(`{"tasks":[{"code_name":"hello"},{"code_name":"hello"},{"code_name":"hello"}]}`); st != 200 {
		t.Fatalf("queue 3: %d %s", st, out)
	}
	st, out := b.queue(`{"tasks":[{"code_name":"hello"}]}`)
	wantErr(t, st, out, 403, "queued tasks")
	st, out = b.do("GET", b.url("/tasks?queued=1"), nil)
	if l := decode[wire.TaskList](t, out); st != 200 || len(l.Tasks) != 3 {
		t.Fatalf("queued after a refused enqueue: %d, %d tasks", st, len(l.Tasks))
	}
	// The project's own quota overrides the server's.
	if st, out := b.do("PATCH", b.srv.URL+"/2/projects/"+b.project, strings.NewReader(`{"quotas":{"queued_tasks":-1}}`)); st != 200 {
		t.Fatalf("lift quota: %d %s", st, out)
	}
	if st, out := b.queue(`{"tasks":[{"code_name":"hello"}]}`); st != 200 {
		t.Fatalf("queue with no limit: %d %s", st, out)
	}

	sched := `{"schedules":[{"code_name":"hello","payload":"p","run_every":3600}]}`
	if st, out := b.do("POST", b.url("/schedules"), strings.NewReader(sched)); st != 200 {
		t.Fatalf("schedule: %d %s", st, out)
	}
	st, out = b.do("POST", b.url("/schedules"), strings.NewReader(sched))
	wantErr(t, st, out, 403, "schedules")

	if st, out := b.do("PATCH", b.srv.URL+"/2/projects/"+b.project, strings.NewReader(`{"quotas":{"code_bytes":300}}`)); st != 200 {
		t.Fatalf("set code quota: %d %s", st, out)
	}
	big := makeZip(t, zentry{name: "hello.sh", data: strings.Repeat("echo hello; ", 400), mode: 0o755})
	st, out = b.upload(`{"name":"big","runtime":"sh","file_name":"hello.sh"}`, big)
	wantErr(t, st, out, 403, "quota")
	if st, _ := b.do("GET", b.url("/codes"), nil); st != 200 {
		t.Fatal(st)
	}
	entries, _ := os.ReadDir(filepath.Join(b.dataDir, "blobs", "packages"))
	for _, e := range entries {
		info, _ := e.Info()
		if info != nil && info.Size() >= int64(len(big)) {
			t.Fatalf("refused package left behind: %s", e.Name())
		}
	}
}

// Secrets appear nowhere in plain text: not in logs, error messages, the
// audit record or the database file.
func TestTokensNowhereInPlainText(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := assemblytest.Start(t, assembly.Config{Service: service.Config{KnownStacks: []string{"busybox"}}, Log: log})
	srv := httptest.NewServer(api.New(a.Service, api.Options{Version: "test", Log: log}))
	t.Cleanup(srv.Close)
	b := &bundle{t: t, srv: srv, svc: a.Service, st: a.Store, project: a.Bootstrap.ProjectID, token: a.Bootstrap.Token, dataDir: a.DataDir}

	secrets := []string{a.Bootstrap.Token}
	var bodies []string
	for _, body := range []string{
		`{"kind":"admin","name":"ops"}`,
		`{"kind":"runner","name":"box","clusters":["gpu"]}`,
		`{"kind":"project","name":"ci","project_id":"` + b.project + `","expires_at":"2099-01-01T00:00:00Z"}`,
	} {
		tok := b.createToken(body)
		secrets = append(secrets, tok.Secret)
		// Use each, well and badly.
		for _, path := range []string{"/2/projects/" + b.project + "/tasks", "/2/tokens", "/runner/lease", "/2/audit"} {
			_, out := b.as(tok.Secret)("GET", srv.URL+path, "")
			bodies = append(bodies, string(out))
		}
		_, out := b.as(tok.Secret+"x")("GET", srv.URL+"/2/tokens", "")
		bodies = append(bodies, string(out))
		if st, out := b.do("DELETE", srv.URL+"/2/tokens/"+tok.ID, nil); st != 200 {
			t.Fatalf("revoke: %d %s", st, out)
		}
		_, out = b.as(tok.Secret)("GET", srv.URL+"/2/tokens", "")
		bodies = append(bodies, string(out))
	}
	_, out := b.do("GET", srv.URL+"/2/audit?per_page=100", nil)
	bodies = append(bodies, string(out))
	_, out = b.do("GET", srv.URL+"/2/tokens", nil)
	bodies = append(bodies, string(out))
	a.Stop()

	var files []string
	filepath.WalkDir(a.DataDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	var sawDB bool
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if strings.Contains(f, ".db") {
			sawDB = true
		}
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("file %s holds a token secret in plain text", f)
			}
		}
	}
	// On PostgreSQL (MAYFLY_TEST_STORE=postgres) the store is not in the
	// data directory; the SQLite run of this test reads the database file.
	if !sawDB && os.Getenv(assemblytest.StoreEnv) != "postgres" {
		t.Fatalf("no database file among %v", files)
	}
	for _, s := range secrets {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the log holds a token secret")
		}
		for _, body := range bodies {
			if strings.Contains(body, s) {
				t.Errorf("an answer holds a token secret: %s", body)
			}
		}
	}
	if !strings.Contains(logs.String(), "token created") {
		t.Fatalf("the log was not captured: %q", logs.String())
	}
}

func httpGet(url, secret string) (*http.Response, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "OAuth "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

// lease asks for up to max tasks as runner r and returns their ids.
func (b *bundle) leaseIDs(runner string, max int) []wire.Job {
	b.t.Helper()
	st, out := b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(fmt.Sprintf(`{"runner_id":%q,"max":%d,"wait_ms":10}`, runner, max)))
	if st != 200 {
		b.t.Fatalf("lease: %d %s", st, out)
	}
	return decode[wire.LeaseResponse](b.t, out).Jobs
}

// With 10k tasks queued in one project, a task queued in another is the
// next one leased, and a project's running-tasks quota holds over several
// runners' slots.
func TestFairShareAndRunningQuotaThroughTheAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	batch := `{"tasks":[` + strings.TrimSuffix(strings.Repeat(`{"code_name":"hello","priority":2},`, 1000), ",") + `]}`
	for range 10 {
		if st, out := b.queue(batch); st != 200 {
			t.Fatalf("queue 1000: %d %s", st, out)
		}
	}
	for i := range 3 {
		if jobs := b.leaseIDs(fmt.Sprintf("r%d", i), 2); len(jobs) != 2 {
			t.Fatalf("lease from the big project: %d", len(jobs))
		}
	}
	pB := b.newProject(`{"name":"small","quotas":{"running_tasks":2}}`)
	bb := &bundle{t: t, srv: b.srv, svc: b.svc, st: b.st, project: pB.ID, token: b.token}
	bb.pushHello()
	first := bb.queueOne(`{"tasks":[{"code_name":"hello","priority":0}]}`)
	if jobs := b.leaseIDs("r9", 1); len(jobs) != 1 || jobs[0].TaskID != first {
		t.Fatalf("next lease after b queued: %+v, want b's task %s", jobs, first)
	}
	// b's quota of 2 running: of five more, one more is leased, whatever
	// the slots offered.
	for range 5 {
		bb.queueOne(`{"tasks":[{"code_name":"hello"}]}`)
	}
	var ofB int
	for r := range 4 {
		for _, j := range b.leaseIDs(fmt.Sprintf("s%d", r), 3) {
			st, _ := bb.do("GET", bb.url("/tasks/"+j.TaskID), nil)
			if st == 200 {
				ofB++
			}
		}
	}
	if ofB != 1 {
		t.Fatalf("leased %d more of b's tasks with 1 running and a quota of 2", ofB)
	}
}

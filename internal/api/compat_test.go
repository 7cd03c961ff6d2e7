package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// One test per wire quirk that the official IronWorker clients (iron_worker
// for Node, iron_go3, ironcli, the Ruby gem) depend on, each sending the
// request as those clients do.

// runTask takes the task through the runner protocol: lease, start, an
// optional log line, finish.
func (b *bundle) runTask(taskID, log, status string) {
	b.t.Helper()
	st, body := b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(`{"runner_id":"r1","max":1,"wait_ms":10}`))
	if l := decode[wire.LeaseResponse](b.t, body); st != 200 || len(l.Jobs) != 1 || l.Jobs[0].TaskID != taskID {
		b.t.Fatalf("lease: %d %s", st, body)
	}
	post := func(path, body string) {
		b.t.Helper()
		if st, out := b.do("POST", b.srv.URL+"/runner/tasks/"+taskID+path, strings.NewReader(body)); st != 200 {
			b.t.Fatalf("%s: %d %s", path, st, out)
		}
	}
	post("/started", `{"runner_id":"r1","attempt":1}`)
	if log != "" {
		post("/log?runner_id=r1&attempt=1", log)
	}
	post("/finish", `{"runner_id":"r1","attempt":1,"status":"`+status+`","exit_code":0}`)
}

func (b *bundle) queueOne(tasks string) string {
	b.t.Helper()
	st, body := b.queue(tasks)
	if st != 200 {
		b.t.Fatalf("queue: %d %s", st, body)
	}
	return decode[wire.QueueResponse](b.t, body).Tasks[0].ID
}

func rawJSON(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("not a JSON object: %s", body)
	}
	return m
}

func TestCompatAcceptEncodingGzipDeflateLiteral(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	// iron_go3 sends this value literally; the answer is plain JSON.
	st, body := b.do("GET", b.url("/codes"), nil, "Accept-Encoding", "gzip/deflate")
	if st != 200 || len(decode[wire.CodeList](t, body).Codes) != 1 {
		t.Fatalf("%d %s", st, body)
	}
}

func TestCompatEmptyObjectBodyOnGetAndDelete(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	code := b.pushHello()
	taskID := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"p"}]}`)
	for _, path := range []string{"", "/codes", "/codes/" + code.ID, "/tasks", "/tasks/" + taskID, "/schedules"} {
		if st, body := b.do("GET", b.url(path), strings.NewReader("{}")); st != 200 {
			t.Errorf("GET %s with {}: %d %s", path, st, body)
		}
	}
	if st, body := b.do("DELETE", b.url("/codes/"+code.ID), strings.NewReader("{}")); st != 200 {
		t.Fatalf("DELETE with {}: %d %s", st, body)
	}
}

func TestCompatPriorityMinus3MeansCodeDefault(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	if st, body := b.upload(`{"name":"hello","runtime":"sh","file_name":"hello.sh","default_priority":2}`,
		makeZip(t, zentry{name: "hello.sh", data: "echo hi\n"})); st != 200 {
		t.Fatalf("upload: %d %s", st, body)
	}
	id := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"p","priority":-3}]}`)
	_, body := b.do("GET", b.url("/tasks/"+id), nil)
	if tk := decode[wire.Task](t, body); tk.Priority != 2 {
		t.Fatalf("priority %d, want the code's default 2: %s", tk.Priority, body)
	}
}

func TestCompatCodeSentinelsMinus1000MeanUnset(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	st, body := b.upload(`{"name":"hello","runtime":"sh","file_name":"hello.sh","default_priority":-1000,"max_concurrency":-1000,"retries":-1000,"retries_delay":-1000}`,
		makeZip(t, zentry{name: "hello.sh", data: "echo hi\n"}))
	if st != 200 {
		t.Fatalf("upload: %d %s", st, body)
	}
	_, body = b.do("GET", b.url("/codes/"+decode[wire.UploadResponse](t, body).ID), nil)
	c := decode[wire.Code](t, body)
	if c.DefaultPriority != 0 || c.MaxConcurrency != 0 || c.Retries != 0 || c.RetriesDelay != 0 {
		t.Fatalf("sentinels stored as values: %s", body)
	}
}

func TestCompatScheduleMaxConcurrencyMinus1000(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	st, body := b.do("POST", b.url("/schedules"), strings.NewReader(
		`{"schedules":[{"code_name":"hello","payload":"","run_every":3600,"priority":-3,"max_concurrency":-1000}]}`))
	if st != 200 {
		t.Fatalf("%d %s", st, body)
	}
}

func TestCompatStatusFlagsCountWhateverTheirValue(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	done := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"1"}]}`)
	b.runTask(done, "", "complete")
	queued := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"2"}]}`)
	for q, want := range map[string][]string{
		"queued=0":                   {queued},
		"running=false&queued=false": {queued},
		"complete=":                  {done},
		"complete=&queued=0":         {queued, done},
	} {
		_, body := b.do("GET", b.url("/tasks?"+q), nil)
		var got []string
		for _, tk := range decode[wire.TaskList](t, body).Tasks {
			got = append(got, tk.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("?%s: %v, want %v", q, got, want)
		}
	}
}

func TestCompatEmptyCodeNameMeansNoFilter(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	b.queueOne(`{"tasks":[{"code_name":"hello","payload":"1"}]}`)
	_, body := b.do("GET", b.url("/tasks?code_name="), nil)
	if n := len(decode[wire.TaskList](t, body).Tasks); n != 1 {
		t.Fatalf("%d tasks: %s", n, body)
	}
}

func TestCompatOAuthQueryToken(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	st, body := b.do("POST", b.url("/tasks")+"?oauth="+b.token,
		strings.NewReader(`{"tasks":[{"code_name":"hello","payload":"p"}]}`), "Authorization", "")
	if st != 200 {
		t.Fatalf("?oauth=: %d %s", st, body)
	}
	st, body = b.do("GET", b.url("/tasks")+"?oauth=wrong-token-0123456789", nil, "Authorization", "")
	wantErr(t, st, body, 401, "")
}

var id24 = regexp.MustCompile(`^[0-9a-f]{24}$`)

func TestCompatIDsAre24Chars(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	code := b.pushHello()
	taskID := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"p"}]}`)
	_, body := b.do("POST", b.url("/schedules"), strings.NewReader(`{"schedules":[{"code_name":"hello","payload":"","run_every":3600}]}`))
	schID := decode[wire.ScheduleResponse](t, body).Schedules[0].ID
	_, body = b.do("POST", b.url("/tasks/webhook?code_name=hello"), strings.NewReader("x"))
	hook := decode[wire.WebhookResponse](t, body).ID
	ids := map[string]string{"upload": code.ID, "task": taskID, "schedule": schID, "webhook": hook, "project": b.project}
	_, body = b.do("GET", b.url("/tasks/"+taskID), nil)
	tk := decode[wire.Task](t, body)
	ids["task.code_id"], ids["task.code_history_id"], ids["task.project_id"] = tk.CodeID, tk.CodeHistID, tk.ProjectID
	_, body = b.do("GET", b.url("/codes/"+code.ID+"/revisions"), nil)
	rev := decode[wire.RevisionList](t, body).Revisions[0]
	ids["revision"], ids["revision.code_id"] = rev.ID, rev.CodeID
	for what, v := range ids {
		if !id24.MatchString(v) {
			t.Errorf("%s id %q is not 24 hex characters", what, v)
		}
	}
}

func TestCompatEverySuccessIs200(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	st, body := b.upload(`{"name":"hello","runtime":"sh","file_name":"hello.sh"}`, makeZip(t, zentry{name: "hello.sh", data: "echo\n"}))
	if st != 200 {
		t.Fatalf("upload: %d", st)
	}
	code := decode[wire.UploadResponse](t, body).ID
	a := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"a"}]}`)
	c := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"c","delay":3600}]}`)
	b.runTask(a, "out\n", "complete")
	_, body = b.do("POST", b.url("/schedules"), strings.NewReader(`{"schedules":[{"code_name":"hello","payload":"","run_every":3600}]}`))
	sch := decode[wire.ScheduleResponse](t, body).Schedules[0].ID
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/tasks", `{"tasks":[{"code_name":"hello","payload":"x","delay":3600}]}`},
		{"POST", "/tasks/webhook?code_name=hello&delay=3600", "raw"},
		{"POST", "/tasks/" + c + "/progress", `{"percent":10,"msg":"m"}`},
		{"POST", "/tasks/" + c + "/cancel", `{}`},
		{"POST", "/tasks/" + a + "/retry", `{"delay":3600}`},
		{"GET", "/tasks/" + a + "/log", ``},
		{"POST", "/codes/" + code + "/pause_task_queue", `{}`},
		{"POST", "/codes/" + code + "/resume_task_queue", `{}`},
		{"GET", "/codes/" + code + "/stats", ``},
		{"POST", "/codes/" + code + "/cancel_all", `{}`},
		{"PUT", "/schedules/" + sch, `{"run_times":5}`},
		{"POST", "/schedules/" + sch + "/cancel", `{}`},
		{"DELETE", "/codes/" + code, `{}`},
	} {
		if st, out := b.do(r.method, b.url(r.path), strings.NewReader(r.body)); st != http.StatusOK {
			t.Errorf("%s %s: %d, want 200: %s", r.method, r.path, st, out)
		}
	}
}

// walkDates checks every *_at / *_time / next_start field of a JSON object.
func walkDates(t *testing.T, what string, m map[string]any) {
	t.Helper()
	for k, v := range m {
		if !strings.HasSuffix(k, "_at") && !strings.HasSuffix(k, "_time") && k != "next_start" && k != "latest_change" {
			continue
		}
		if strings.HasSuffix(k, "retry_at") {
			continue // a task id, named by IronWorker
		}
		if v == nil {
			continue
		}
		s, ok := v.(string)
		if !ok || s == "" {
			t.Errorf("%s.%s = %#v: want an RFC 3339 string or null", what, k, v)
			continue
		}
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			t.Errorf("%s.%s = %q: %v", what, k, s, err)
		}
	}
}

func TestCompatDatesRFC3339OrNullNeverEmpty(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	code := b.pushHello()
	queued := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"q","delay":3600}]}`)
	_, body := b.do("POST", b.url("/schedules"), strings.NewReader(`{"schedules":[{"code_name":"hello","payload":"","run_every":3600}]}`))
	sch := decode[wire.ScheduleResponse](t, body).Schedules[0].ID
	for what, path := range map[string]string{
		"project": "", "code": "/codes/" + code.ID, "task": "/tasks/" + queued, "schedule": "/schedules/" + sch,
	} {
		_, body := b.do("GET", b.url(path), nil)
		m := rawJSON(t, body)
		walkDates(t, what, m)
		if what == "task" && (m["start_time"] != nil || m["end_time"] != nil) {
			t.Errorf("unstarted task has times: %s", body)
		}
	}
	_, body = b.do("GET", b.url("/codes/"+code.ID+"/revisions"), nil)
	var revs struct{ Revisions []map[string]any }
	json.Unmarshal(body, &revs)
	walkDates(t, "revision", revs.Revisions[0])
}

func TestCompatCodeRevIsString(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	id := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"p"}]}`)
	_, body := b.do("GET", b.url("/tasks/"+id), nil)
	if v, ok := rawJSON(t, body)["code_rev"].(string); !ok || v != "1" {
		t.Fatalf("code_rev: %s", body)
	}
	_, body = b.do("GET", b.url("/tasks"), nil)
	var l struct{ Tasks []map[string]any }
	json.Unmarshal(body, &l)
	if _, ok := l.Tasks[0]["code_rev"].(string); !ok {
		t.Fatalf("code_rev in list: %s", body)
	}
}

func TestCompatDurationInMilliseconds(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	id := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"p"}]}`)
	b.runTask(id, "", "complete")
	_, body := b.do("GET", b.url("/tasks/"+id), nil)
	tk := decode[wire.Task](t, body)
	if tk.StartTime == nil || tk.EndTime == nil {
		t.Fatalf("finished task without times: %s", body)
	}
	if want := tk.EndTime.Sub(*tk.StartTime).Milliseconds(); tk.Duration != want {
		t.Fatalf("duration %d, want end-start in ms = %d", tk.Duration, want)
	}
}

func TestCompatTimeoutAlwaysPresent(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{DefaultTimeout: 3600})
	b.pushHello()
	id := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"p","timeout":0}]}`)
	_, body := b.do("GET", b.url("/tasks/"+id), nil)
	if v, ok := rawJSON(t, body)["timeout"].(float64); !ok || v != 3600 {
		t.Fatalf("timeout: %s", body)
	}
	_, body = b.do("GET", b.url("/tasks"), nil)
	var l struct{ Tasks []map[string]any }
	json.Unmarshal(body, &l)
	if _, ok := l.Tasks[0]["timeout"]; !ok {
		t.Fatalf("timeout missing in list: %s", body)
	}
}

func TestCompatLog404UntilLogExists(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	id := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"p"}]}`)
	// The Node client's tasksWaitForLog retries while the error mentions
	// "log".
	st, body := b.do("GET", b.url("/tasks/"+id+"/log"), nil)
	wantErr(t, st, body, 404, "log")
	b.runTask(id, "hello\n", "complete")
	if st, body := b.do("GET", b.url("/tasks/"+id+"/log"), nil); st != 200 || string(body) != "hello\n" {
		t.Fatalf("log: %d %q", st, body)
	}
}

func TestCompatOutlogIsTheLog(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	id := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"p"}]}`)
	st, body := b.do("GET", b.url("/tasks/"+id+"/outlog"), nil)
	wantErr(t, st, body, 404, "log")
	b.runTask(id, "out\n", "complete")
	if st, body := b.do("GET", b.url("/tasks/"+id+"/outlog"), nil); st != 200 || string(body) != "out\n" {
		t.Fatalf("outlog: %d %q", st, body)
	}
}

func TestCompatPageZeroBasedPerPageMax100(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	var tasks []string
	for i := range 105 {
		tasks = append(tasks, fmt.Sprintf(`{"code_name":"hello","payload":"%d"}`, i))
	}
	if st, body := b.queue(`{"tasks":[` + strings.Join(tasks, ",") + `]}`); st != 200 {
		t.Fatalf("queue: %d %s", st, body)
	}
	count := func(q string) int {
		_, body := b.do("GET", b.url("/tasks?"+q), nil)
		return len(decode[wire.TaskList](t, body).Tasks)
	}
	if n := count(""); n != 30 {
		t.Errorf("default per_page: %d, want 30", n)
	}
	if n := count("per_page=1000"); n != 100 {
		t.Errorf("per_page=1000: %d, want 100", n)
	}
	if n := count("per_page=100&page=1"); n != 5 {
		t.Errorf("page=1 (the second page): %d, want 5", n)
	}
	_, p0 := b.do("GET", b.url("/tasks?per_page=1&page=0"), nil)
	_, all := b.do("GET", b.url("/tasks?per_page=2"), nil)
	if decode[wire.TaskList](t, p0).Tasks[0].ID != decode[wire.TaskList](t, all).Tasks[0].ID {
		t.Errorf("page=0 is not the first page")
	}
}

func TestCompatListsNewestFirst(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	for _, name := range []string{"first", "second"} {
		if st, body := b.upload(`{"name":"`+name+`","runtime":"sh","file_name":"x.sh"}`, makeZip(t, zentry{name: "x.sh", data: "echo\n"})); st != 200 {
			t.Fatalf("upload: %d %s", st, body)
		}
	}
	_, body := b.do("GET", b.url("/codes"), nil)
	if c := decode[wire.CodeList](t, body).Codes; c[0].Name != "second" {
		t.Errorf("codes not newest first: %s", body)
	}
	older := b.queueOne(`{"tasks":[{"code_name":"first","payload":"1"}]}`)
	newer := b.queueOne(`{"tasks":[{"code_name":"first","payload":"2"}]}`)
	_, body = b.do("GET", b.url("/tasks"), nil)
	if l := decode[wire.TaskList](t, body).Tasks; l[0].ID != newer || l[1].ID != older {
		t.Errorf("tasks not newest first: %s", body)
	}
	var sch []string
	for range 2 {
		_, body := b.do("POST", b.url("/schedules"), strings.NewReader(`{"schedules":[{"code_name":"first","payload":"","run_every":3600}]}`))
		sch = append(sch, decode[wire.ScheduleResponse](t, body).Schedules[0].ID)
	}
	_, body = b.do("GET", b.url("/schedules"), nil)
	if l := decode[wire.ScheduleList](t, body).Schedules; l[0].ID != sch[1] {
		t.Errorf("schedules not newest first: %s", body)
	}
}

// setupStacks is setup with a runner that knows the given stacks.
func setupStacks(t *testing.T, stacks ...string) *bundle {
	t.Helper()
	return setupWith(t, service.Config{KnownStacks: stacks})
}

// The Node client uploads every worker as runtime "sh" with its
// __runner__.sh template ending in `node FILE`; such a package runs on the
// node stack. A __runner__.sh written by hand gets no such guess.
func TestCompatRunnerPackagePicksInterpreterStack(t *testing.T) {
	t.Parallel()
	b := setupStacks(t, "busybox", "node-18", "ruby-3.1")
	// The template of the Node package's upload_files/__runner__.sh, with
	// the line codesUpload appends.
	runner := "#!/bin/sh\ncd \"$(root \"$@\")\"\nLD_LIBRARY_PATH=.:./lib:./__debs__/usr/lib\nexport LD_LIBRARY_PATH\n" +
		"PATH=.:./bin:./__debs__/usr/bin:./__debs__/bin:$PATH\nexport PATH\n\nnode hello.js"
	const debs = "PATH=.:./bin:./__debs__/usr/bin:$PATH\n"
	for _, c := range []struct{ data, runner, want string }{
		{`{"name":"n","file_name":"__runner__.sh","runtime":"sh","content_type":"text/plain"}`, runner, "node-18"},
		{`{"name":"r","file_name":"__runner__.sh","runtime":"sh"}`, "#!/bin/sh\n" + debs + "exec ruby __runner__.rb \"$@\"\n", "ruby-3.1"},
		{`{"name":"s","file_name":"__runner__.sh","runtime":"sh"}`, "#!/bin/sh\n" + debs + "echo plain shell\n", "busybox"},
		{`{"name":"p","file_name":"__runner__.sh","runtime":"sh"}`, "#!/bin/sh\n" + debs + "python3 x.py\n", "busybox"}, // stack not on this runner
		{`{"name":"h","file_name":"__runner__.sh","runtime":"sh"}`, "#!/bin/sh\nnode hello.js\n", "busybox"},            // written by hand: names its stack
		{`{"name":"e","file_name":"__runner__.sh","runtime":"sh","stack":"busybox"}`, runner, "busybox"},                // named stack wins
	} {
		st, body := b.upload(c.data, makeZip(t, zentry{name: "__runner__.sh", data: c.runner}, zentry{name: "hello.js", data: "1"}))
		if st != 200 {
			t.Fatalf("upload %s: %d %s", c.data, st, body)
		}
		_, body = b.do("GET", b.url("/codes/"+decode[wire.UploadResponse](t, body).ID), nil)
		if got := decode[wire.Code](t, body).Stack; got != c.want {
			t.Errorf("%s: stack %q, want %q", c.data, got, c.want)
		}
	}
}

// The requests below are the official clients' own, byte for byte: ironcli
// and iron_go3 marshal a map (sorted keys, no newline) and send
// Content-Type: application/json and Accept-Encoding: gzip/deflate on every
// call; the Ruby gem posts options.to_json.

func goClientHeaders() []string {
	return []string{"Accept", "application/json", "Accept-Encoding", "gzip/deflate", "User-Agent", "iron_go3"}
}

func TestCompatScheduleWithNeitherStartAtNorRunEveryRunsOnceNow(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	for client, body := range map[string]string{
		"ironcli worker schedule hello": `{"schedules":[{"cluster":"","code_name":"hello","delay":0,"label":"","name":"","payload":"{}","run_times":0,"timeout":0}]}`,
		"iron_go3 Schedule":             `{"schedules":[{"cluster":"","code_name":"hello","label":"","name":"","payload":""}]}`,
		"ruby schedules.create":         `{"schedules":[{"code_name":"hello","payload":"{}"}]}`,
		"node README schedulesCreate":   `{"schedules":[{"code_name":"hello","payload":"{\"a\":1}","run_times":10}]}`,
	} {
		before := time.Now().UTC().Add(-time.Second)
		st, out := b.do("POST", b.url("/schedules"), strings.NewReader(body), goClientHeaders()...)
		if st != 200 {
			t.Fatalf("%s: %d %s", client, st, out)
		}
		id := decode[wire.ScheduleResponse](t, out).Schedules[0].ID
		_, out = b.do("GET", b.url("/schedules/"+id), nil)
		sc := decode[wire.Schedule](t, out)
		if sc.Status != "scheduled" || sc.NextStart == nil || sc.NextStart.Before(before) || sc.NextStart.After(time.Now().Add(time.Second)) || sc.RunEvery != 0 {
			t.Fatalf("%s: want one run due now: %s", client, out)
		}
	}
	// And it does run once: the scheduler fires it, and it is complete.
	if _, _, err := b.svc.FireDueSchedules(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, out := b.do("GET", b.url("/schedules"), nil)
	for _, sc := range decode[wire.ScheduleList](t, out).Schedules {
		if sc.RunCount != 1 || sc.Status != "complete" {
			t.Errorf("schedule %s: run_count %d status %s msg %q, want one run, complete", sc.ID, sc.RunCount, sc.Status, sc.Msg)
		}
	}
	_, out = b.do("GET", b.url("/tasks"), nil)
	if n := len(decode[wire.TaskList](t, out).Tasks); n != 4 {
		t.Fatalf("%d tasks from 4 one-time schedules: %s", n, out)
	}
}

func TestCompatRubyCodesRegisterJSONBody(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{AllowImages: []string{"iron/*"}})
	ruby := []string{"User-Agent", "iron_worker_ruby_-3.4.2 (iron_core_ruby-1.0.9)", "Accept", "*/*",
		"Accept-Encoding", "gzip;q=1.0,deflate;q=0.6,identity;q=0.3"}
	// codes.register('hello', name: 'hello', image: 'iron/hello')
	st, out := b.do("POST", b.url("/codes"), strings.NewReader(`{"name":"hello","image":"iron/hello"}`), ruby...)
	if st != 200 {
		t.Fatalf("register: %d %s", st, out)
	}
	up := decode[wire.UploadResponse](t, out)
	if !id24.MatchString(up.ID) || up.Msg != "Upload successful." {
		t.Fatalf("register answer: %s", out)
	}
	_, out = b.do("GET", b.url("/codes/"+up.ID), nil)
	if c := decode[wire.Code](t, out); c.Name != "hello" || c.Image != "iron/hello" {
		t.Fatalf("registered code: %s", out)
	}
	// codes.register('x', image: 'iron/worker:1.2') sends no name: the code
	// is named after the image, as ironcli's register names it.
	// Its config is the caller's Hash, sent as an object.
	st, out = b.do("POST", b.url("/codes"), strings.NewReader(`{"image":"iron/worker:1.2","config":{"k":"v"},"max_concurrency":2.0}`), ruby...)
	if st != 200 {
		t.Fatalf("register without name: %d %s", st, out)
	}
	_, out = b.do("GET", b.url("/codes/"+decode[wire.UploadResponse](t, out).ID), nil)
	if c := decode[wire.Code](t, out); c.Name != "iron/worker" || c.Image != "iron/worker:1.2" || c.MaxConcurrency != 2 || c.Config != `{"k":"v"}` {
		t.Fatalf("code registered without a name: %s", out)
	}

	// A JSON upload for an existing zip code changes its options and keeps
	// its package.
	pushed := b.pushHello()
	_, out = b.do("GET", b.url("/codes/"+pushed.ID), nil)
	zipped := decode[wire.Code](t, out)
	st, out = b.do("POST", b.url("/codes"), strings.NewReader(`{"name":"hello","max_concurrency":3,"env_vars":{"A":"1"}}`), ruby...)
	if st != 200 {
		t.Fatalf("options update: %d %s", st, out)
	}
	_, out = b.do("GET", b.url("/codes/"+zipped.ID), nil)
	c := decode[wire.Code](t, out)
	if c.Rev != zipped.Rev+1 || c.MaxConcurrency != 3 || c.EnvVars["A"] != "1" || c.LatestChecksum != zipped.LatestChecksum ||
		c.FileName != zipped.FileName || c.Stack != zipped.Stack {
		t.Fatalf("options update lost the package or the settings: was %+v, now %s", zipped, out)
	}
	st, out = b.do("GET", b.url("/codes/"+zipped.ID+"/download"), nil)
	if st != 200 || len(out) != int(zipped.PackageSize) {
		t.Fatalf("download after an options update: %d, %d bytes", st, len(out))
	}
	// A JSON body for a code that does not exist, without an image, has
	// nothing to run.
	st, out = b.do("POST", b.url("/codes"), strings.NewReader(`{"name":"ghost","max_concurrency":3}`), ruby...)
	wantErr(t, st, out, 400, "needs a zip")
	st, out = b.do("POST", b.url("/codes"), strings.NewReader(`{"name":"ghost","image":"x","config":5}`), ruby...)
	wantErr(t, st, out, 400, "config must be a string or a JSON object")
}

func TestCompatClusterDefaultIsTheDefaultCluster(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	for client, body := range map[string]string{
		"ironcli -cluster default": `{"tasks":[{"cluster":"default","code_name":"hello","delay":0,"label":"","payload":"","priority":-3,"timeout":0}]}`,
		"iron_go3 Cluster default": `{"tasks":[{"cluster":"default","code_name":"hello","label":"","payload":"","priority":0}]}`,
		"upper case":               `{"tasks":[{"cluster":"Default","code_name":"hello","payload":""}]}`,
	} {
		st, out := b.do("POST", b.url("/tasks"), strings.NewReader(body), goClientHeaders()...)
		if st != 200 {
			t.Fatalf("%s: %d %s", client, st, out)
		}
		// A runner of the default cluster (runTask leases with no
		// clusters) takes it.
		b.runTask(decode[wire.QueueResponse](t, out).Tasks[0].ID, "", "complete")
	}
	// Schedules: ironcli -cluster default -run-every 3600.
	st, out := b.do("POST", b.url("/schedules"), strings.NewReader(
		`{"schedules":[{"cluster":"default","code_name":"hello","delay":0,"label":"","name":"","payload":"{}","run_every":3600,"run_times":0,"timeout":0}]}`),
		goClientHeaders()...)
	if st != 200 {
		t.Fatalf("schedule: %d %s", st, out)
	}
	if _, _, err := b.svc.FireDueSchedules(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, out = b.do("GET", b.url("/tasks?queued=1"), nil)
	tasks := decode[wire.TaskList](t, out).Tasks
	if len(tasks) != 1 {
		t.Fatalf("want the schedule's task queued: %s", out)
	}
	b.runTask(tasks[0].ID, "", "complete")
	// A runner that names the cluster "default" serves it too.
	id := b.queueOne(`{"tasks":[{"code_name":"hello","payload":""}]}`)
	st, out = b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(`{"runner_id":"r2","max":1,"wait_ms":10,"clusters":["default"]}`))
	if l := decode[wire.LeaseResponse](t, out); st != 200 || len(l.Jobs) != 1 || l.Jobs[0].TaskID != id {
		t.Fatalf("lease as cluster default: %d %s", st, out)
	}
}

// iron_go3's WaitForTask and the Ruby gem's tasks.wait_for go on polling
// only while the status is queued or running.
func ironGo3Waits(status string) bool { return status == "queued" || status == "running" }

func TestCompatPreparingKeepsEveryWaitLoopWaiting(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	id := b.queueOne(`{"tasks":[{"code_name":"hello","payload":""}]}`)
	// Leased, not started: the task is preparing.
	st, out := b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(`{"runner_id":"r1","max":1,"wait_ms":10}`))
	if st != 200 || len(decode[wire.LeaseResponse](t, out).Jobs) != 1 {
		t.Fatalf("lease: %d %s", st, out)
	}
	_, out = b.do("GET", b.url("/tasks/"+id), strings.NewReader("{}"), goClientHeaders()...)
	tk := decode[wire.Task](t, out)
	if !ironGo3Waits(tk.Status) {
		t.Fatalf("iron_go3 WaitForTask would return a task that has not run: status %q", tk.Status)
	}
	// Python, Node and ironcli also wait on preparing; what they see is
	// one of the statuses they wait on too.
	if tk.Status != "running" || tk.Phase != "preparing" {
		t.Fatalf("status %q phase %q, want running / preparing", tk.Status, tk.Phase)
	}
	// A list of running tasks finds it, as the clients see it running;
	// the preparing flag finds it too.
	for _, q := range []string{"running=1", "preparing=1", "running=%25%21d%28bool%3Dtrue%29"} {
		_, out = b.do("GET", b.url("/tasks?"+q), nil)
		if l := decode[wire.TaskList](t, out).Tasks; len(l) != 1 || l[0].ID != id || l[0].Phase != "preparing" {
			t.Errorf("?%s: %s", q, out)
		}
	}
	_, out = b.do("GET", b.url("/tasks?queued=1"), nil)
	if l := decode[wire.TaskList](t, out).Tasks; len(l) != 0 {
		t.Errorf("?queued=1 lists the preparing task: %s", out)
	}
	// Once it ends, every client stops waiting.
	b.do("POST", b.srv.URL+"/runner/tasks/"+id+"/started", strings.NewReader(`{"runner_id":"r1","attempt":1}`))
	_, out = b.do("GET", b.url("/tasks/"+id), nil)
	if tk := decode[wire.Task](t, out); tk.Status != "running" || tk.Phase != "running" {
		t.Fatalf("started: %s", out)
	}
	b.do("POST", b.srv.URL+"/runner/tasks/"+id+"/finish", strings.NewReader(`{"runner_id":"r1","attempt":1,"status":"complete","exit_code":0}`))
	_, out = b.do("GET", b.url("/tasks/"+id), nil)
	if tk := decode[wire.Task](t, out); ironGo3Waits(tk.Status) || tk.Status != "complete" || tk.Phase != "complete" {
		t.Fatalf("ended: %s", out)
	}
}

func TestCompatPerPageZeroMeansTheDefault(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	for i := range 35 {
		b.upload(fmt.Sprintf(`{"name":"c%d","runtime":"sh","file_name":"hello.sh"}`, i), makeZip(t, zentry{name: "hello.sh", data: "echo\n"}))
	}
	// iron_go3 CodePackageList(0, 0).
	for _, q := range []string{"page=0&per_page=0", "per_page=-1", "per_page=0"} {
		st, out := b.do("GET", b.url("/codes?"+q), strings.NewReader("{}"), goClientHeaders()...)
		if n := len(decode[wire.CodeList](t, out).Codes); st != 200 || n != 30 {
			t.Errorf("?%s: %d, %d codes, want 200 and the default 30", q, st, n)
		}
	}
	st, out := b.do("GET", b.url("/codes?per_page=many"), nil)
	wantErr(t, st, out, 400, "per_page")
}

func TestCompatFractionalSecondsRoundUp(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	// iron_go3 TaskQueue with Timeout 1500 ms and Python's 30.0.
	for body, want := range map[string][2]int{
		`{"tasks":[{"cluster":"","code_name":"hello","label":"","payload":"","priority":0,"timeout":1.5}]}`:                                        {2, 0},
		`{"tasks":[{"code_name":"hello","payload":"","timeout":30.0,"delay":0.2,"priority":1.0}]}`:                                                 {30, 1},
		`{"tasks":[{"code_name":"hello","payload":"","timeout":"45","delay":"3"}]}`:                                                                {45, 3},
		`{"tasks":[{"code_name":"hello","payload":"","timeout":0.0000036,"delay":1e1}]}`:                                                           {1, 10},
		`{"tasks":[{"name":"x","code_name":"hello","payload":"","priority":0,"delay":0,"label":null,"cluster":null,"sync":false,"timeout":3600}]}`: {3600, 0},
	} {
		st, out := b.do("POST", b.url("/tasks"), strings.NewReader(body), goClientHeaders()...)
		if st != 200 {
			t.Fatalf("%s: %d %s", body, st, out)
		}
		_, out = b.do("GET", b.url("/tasks/"+decode[wire.QueueResponse](t, out).Tasks[0].ID), nil)
		tk := decode[wire.Task](t, out)
		if tk.Timeout != want[0] || tk.Delay != want[1] {
			t.Errorf("%s: timeout %d delay %d, want %v", body, tk.Timeout, tk.Delay, want)
		}
	}
	// iron_go3 Schedule sends delay and timeout as Seconds() too.
	st, out := b.do("POST", b.url("/schedules"), strings.NewReader(
		`{"schedules":[{"cluster":"","code_name":"hello","delay":1.5,"label":"","name":"","payload":"","run_every":3600.5,"timeout":2.25}]}`),
		goClientHeaders()...)
	if st != 200 {
		t.Fatalf("schedule: %d %s", st, out)
	}
	_, out = b.do("GET", b.url("/schedules/"+decode[wire.ScheduleResponse](t, out).Schedules[0].ID), nil)
	if sc := decode[wire.Schedule](t, out); sc.Delay != 2 || sc.Timeout != 3 || sc.RunEvery != 3601 {
		t.Fatalf("schedule numbers: %s", out)
	}
	// Python's set_progress with a float percent.
	id := b.queueOne(`{"tasks":[{"code_name":"hello","payload":""}]}`)
	if st, out := b.do("POST", b.url("/tasks/"+id+"/progress"), strings.NewReader(`{"percent":50.5,"msg":"half"}`)); st != 200 {
		t.Fatalf("progress: %d %s", st, out)
	}
	_, out = b.do("GET", b.url("/tasks/"+id), nil)
	if tk := decode[wire.Task](t, out); tk.Percent != 51 {
		t.Fatalf("percent %d, want 51: %s", tk.Percent, out)
	}
	// Not numbers, and the field is named as the client sent it.
	for body, part := range map[string]string{
		`{"tasks":[{"code_name":"hello","payload":"","timeout":"soon"}]}`:    "timeout must be a number",
		`{"tasks":[{"code_name":"hello","payload":"","delay":true}]}`:        "delay must be a number",
		`{"tasks":[{"code_name":"hello","payload":"","timeout":[1]}]}`:       "timeout must be a number",
		`{"schedules":[{"code_name":"hello","payload":5,"run_every":3600}]}`: "'schedules.payload'",
	} {
		path := "/tasks"
		if strings.HasPrefix(body, `{"schedules"`) {
			path = "/schedules"
		}
		st, out := b.do("POST", b.url(path), strings.NewReader(body))
		wantErr(t, st, out, 400, part)
	}
}

// Numbers a hostile client sends to overflow what is computed from them.
func TestCompatNumbersThatWouldOverflowAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	for _, c := range []struct{ method, path, body, part string }{
		// 9223372037 s is past what time.Duration holds: due_at would wrap
		// into 1734 and jump every other project's queue.
		{"POST", "/tasks", `{"tasks":[{"code_name":"hello","payload":"","delay":9223372037}]}`, "delay must be a whole number"},
		{"POST", "/tasks", `{"tasks":[{"code_name":"hello","payload":"","delay":1e300}]}`, "delay must be a whole number"},
		{"POST", "/tasks", `{"tasks":[{"code_name":"hello","payload":"","timeout":-1e300}]}`, "timeout must be a whole number"},
		{"POST", "/tasks", `{"tasks":[{"code_name":"hello","payload":"","priority":99999999999999999999}]}`, "priority must be a whole number"},
		{"POST", "/tasks/webhook?code_name=hello&delay=9223372037", "x", "delay must be a whole number"},
		{"POST", "/schedules", `{"schedules":[{"code_name":"hello","payload":"","run_every":9223372037}]}`, "run_every must be a whole number"},
		{"POST", "/schedules", `{"schedules":[{"code_name":"hello","payload":"","start_at":9223372036854775807}]}`, "start_at is out of range"},
		{"POST", "/schedules", `{"schedules":[{"code_name":"hello","payload":"","end_at":"-99999999999"}]}`, "end_at is out of range"},
		{"GET", "/tasks?page=9223372036854775807", "", "page must be a whole number from 0"},
		{"GET", "/tasks?page=99999999", "", "page must be a whole number from 0"},
		{"GET", "/tasks?from_time=9223372036854775807", "", "from_time is out of range"},
		{"GET", "/tasks?to_time=-9223372036854775808", "", "to_time is out of range"},
		{"GET", "/tasks?from_time=99999999999999999999999", "", "from_time is out of range"},
		{"GET", "/codes?per_page=1e30", "", "per_page"},
	} {
		st, out := b.do(c.method, b.url(c.path), strings.NewReader(c.body))
		wantErr(t, st, out, 400, c.part)
	}
	// Nothing was queued by the refused requests.
	_, out := b.do("GET", b.url("/tasks"), nil)
	if n := len(decode[wire.TaskList](t, out).Tasks); n != 0 {
		t.Fatalf("%d tasks queued by refused requests: %s", n, out)
	}
	// The largest delay that is taken gives a due time in the future.
	st, out := b.do("POST", b.url("/tasks"), strings.NewReader(`{"tasks":[{"code_name":"hello","payload":"","delay":2147483647}]}`))
	if st != 200 {
		t.Fatalf("largest delay: %d %s", st, out)
	}
	_, out = b.do("GET", b.url("/tasks/"+decode[wire.QueueResponse](t, out).Tasks[0].ID), nil)
	if tk := decode[wire.Task](t, out); !tk.DueAt.After(time.Now().AddDate(60, 0, 0)) {
		t.Fatalf("due_at %s of the largest delay is not 68 years ahead", tk.DueAt)
	}
}

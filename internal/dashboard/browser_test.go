package dashboard_test

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/assembly/assemblytest"
	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/stack"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// ScreenshotsEnv names a folder the browser test saves a PNG of each page
// to (docs/dashboard holds the committed ones).
const ScreenshotsEnv = "MAYFLY_SCREENSHOTS"

// hostile is HTML and script that must show as text wherever it is shown.
const hostile = `<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>`

// runSh is the code the test uploads: what it does depends on the payload.
const runSh = `p=$(cat "$PAYLOAD_FILE")
case "$p" in
stream) i=0; while [ $i -lt 20 ]; do echo "line $i"; i=$((i+1)); sleep 0.2; done ;;
fail) echo "about to fail" >&2; exit 3 ;;
long) trap 'echo stopping; exit 143' TERM; echo waiting; sleep 300 & wait ;;
*) echo "payload: $p" ;;
esac
`

// browser starts headless Chromium for the test: skipped without one,
// failed without one under MAYFLY_REQUIRE_INTEGRATION=1.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		path, err = exec.LookPath("chromium-browser")
	}
	testenv.Integration(t, "chromium (apt-get install chromium)", err)
	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		// Without these Chromium reaches out to the network at start.
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true), chromedp.Flag("disable-default-apps", true))
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		testenv.Integration(t, "chromium (start)", err)
	}
	return ctx
}

// session is one browser on one server.
type session struct {
	t    *testing.T
	ctx  context.Context
	base string
	shot string // screenshots folder, "" for none
}

func (s *session) do(steps ...chromedp.Action[chromedp.Void]) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		s.t.Fatalf("browser: %v\npage: %s", err, s.text("body"))
	}
}

func (s *session) eval(js string) any {
	s.t.Helper()
	v, err := chromedp.Run(s.ctx, chromedp.Evaluate[any](js))
	if err != nil {
		s.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// set sets the value of a form field as typing would leave it.
func (s *session) set(sel, value string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const el = document.querySelector(%q); el.value = %q;
			el.dispatchEvent(new Event("input", {bubbles: true})); el.dispatchEvent(new Event("change", {bubbles: true})); return true })()`,
			sel, value))(ctx, tg)
		return chromedp.Void{}, err
	}
}

// text is the text of the first element sel matches ("" for none).
func (s *session) text(sel string) string {
	v, err := chromedp.Run(s.ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent`, sel)))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return v
}

// waitText waits until the text of sel contains want.
func (s *session) waitText(sel, want string, within time.Duration) string {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := s.text(sel)
		if strings.Contains(got, want) {
			return got
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s never showed %q; it shows %q\npage: %s", sel, want, got, s.text("main"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *session) path() string {
	s.t.Helper()
	u, err := chromedp.Run(s.ctx, chromedp.Location())
	if err != nil {
		s.t.Fatal(err)
	}
	return strings.TrimPrefix(u, s.base)
}

// go follows an in-page link or opens a path afresh.
func (s *session) open(path string) {
	s.t.Helper()
	s.do(chromedp.Navigate(s.base + path))
}

// clean checks that nothing user-provided ran or became markup.
func (s *session) clean(where string) {
	s.t.Helper()
	if v := s.eval(`[typeof window.__pwned, document.querySelectorAll("main img, main script").length, window.__cspViolations || 0]`); fmt.Sprint(v) != "[undefined 0 0]" {
		s.t.Fatalf("%s: hostile text ran or became markup (typeof __pwned, img/script in main, CSP violations): %v", where, v)
	}
}

func (s *session) screenshot(name string) {
	s.t.Helper()
	if s.shot == "" {
		return
	}
	time.Sleep(300 * time.Millisecond) // let the page settle
	png, err := chromedp.Run(s.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		s.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(s.shot, name+".png"), png, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func zipOf(t *testing.T, name, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	zw.Close()
	return buf.Bytes()
}

// history records tasks of code that ran in the last 50 minutes, through
// the store (on a cluster no runner serves, so the embedded runner leaves
// them alone), so the overview has a past to draw. It returns how many
// ended complete.
func history(t *testing.T, st store.Store, code store.Code) int {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	const n = 60
	var tasks []store.Task
	for i := range n {
		due := now.Add(-50*time.Minute + time.Duration(i)*50*time.Minute/n)
		tasks = append(tasks, store.Task{ID: id.New(), ProjectID: code.ProjectID, CodeID: code.CodeID, CodeName: code.Name,
			CodeRevisionID: code.ID, CodeRev: code.Rev, Status: store.StatusQueued, Timeout: 60, Cluster: "history",
			CreatedAt: due, UpdatedAt: due, DueAt: due})
	}
	if err := st.InsertTasks(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	complete := 0
	for i, tk := range tasks {
		wait := time.Duration(200+(i*137)%900) * time.Millisecond
		// Leased in the past, with a lease that outlasts the backdating: one
		// already run out would be rescued by the server's maintenance
		// before the task is marked running.
		leased, err := st.LeaseTasks(ctx, store.LeaseParams{RunnerID: "history", Max: 1, Clusters: []string{"history"},
			LeaseDuration: 2 * time.Hour, Now: tk.DueAt.Add(wait)})
		if err != nil || len(leased) != 1 || leased[0].ID != tk.ID {
			t.Fatalf("lease history task %d: %v, %v", i, len(leased), err)
		}
		start := tk.DueAt.Add(wait)
		if err := st.MarkRunning(ctx, store.StartParams{TaskID: tk.ID, RunnerID: "history", Attempt: 1, Now: start}); err != nil {
			t.Fatal(err)
		}
		status := store.StatusComplete
		if i%7 == 3 {
			status = store.StatusError
		} else {
			complete++
		}
		if err := st.FinishTask(ctx, store.FinishParams{TaskID: tk.ID, RunnerID: "history", Attempt: 1, Status: status,
			Now: start.Add(time.Duration(1+i%4) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	return complete
}

// The dashboard in headless Chromium against a real server whose embedded
// runner runs tasks in Docker: sign in (a wrong token refused), upload a
// zip, queue tasks from the page, watch one complete while its log
// streams, cancel a long one, retry a failed one, create and cancel a
// schedule; another project's ids show 404; HTML in a log, payload, label
// and a refused code name stays text; a cross-site form POST and fetch are
// refused; sign out, and sign in as admin to see the runners.
func TestDashboardInBrowser(t *testing.T) {
	drv := testenv.Docker(t)
	testenv.StackImage(t, "busybox")
	ctx := browser(t)

	const project, adminToken = "5f00000000000000000d0a51", "dashboard-admin-token"
	srv := assemblytest.Start(t, assembly.Config{
		Service:          service.Config{KnownStacks: []string{"busybox"}},
		BootstrapProject: project, BootstrapToken: adminToken,
		Listen: "127.0.0.1:0", Limits: api.DefaultLimits(), Version: "test", Scheduler: true,
		MaintenanceInterval: time.Second,
		Runner: &runner.Config{Capacity: 3, StackImage: stack.Image, LeaseWait: time.Second, StopGrace: 2 * time.Second,
			Host: "dashboard-test", Version: "test", Driver: "docker", Stacks: stack.Installed},
		Driver: drv, DrainGrace: 5 * time.Second,
	})
	base := "http://" + srv.Addr
	admin := client.New(base, adminToken, project)
	bg := context.Background()
	pt, err := admin.CreateToken(bg, wire.NewToken{Kind: "project", ProjectID: project, Name: "dashboard"})
	if err != nil {
		t.Fatal(err)
	}

	// Another project, with a code and a task of its own.
	other := id.New()
	if err := srv.Store.CreateProject(bg, store.Project{ID: other, Name: "other", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	otherCode, err := srv.Service.UploadCode(bg, other, wire.CodeUpload{Name: "secret", Runtime: "sh", FileName: "run.sh"},
		bytes.NewReader(zipOf(t, "run.sh", "echo secret\n")))
	if err != nil {
		t.Fatal(err)
	}
	hour := 3600
	otherTasks, err := srv.Service.QueueTasks(bg, other, []wire.NewTask{{CodeName: "secret", Delay: &hour}})
	if err != nil {
		t.Fatal(err)
	}

	s := &session{t: t, ctx: ctx, base: base, shot: os.Getenv(ScreenshotsEnv)}
	if s.shot != "" {
		if err := os.MkdirAll(s.shot, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Sign in: a wrong token is refused on the page.
	s.open("/")
	s.waitText("main", "Sign in to Mayfly", 10*time.Second)
	s.screenshot("signin")
	s.do(chromedp.SendKeys(chromedp.CSS("#token"), "not-a-token"), chromedp.Click(chromedp.CSS("#signin button")))
	s.waitText("#signin-msg", "Invalid token", 10*time.Second)
	s.do(s.set("#token", ""), chromedp.SendKeys(chromedp.CSS("#token"), pt.Secret),
		chromedp.Click(chromedp.CSS("#signin button")))
	s.waitText("main h1", "Overview", 10*time.Second)
	if p := s.path(); p != "/" {
		t.Fatalf("after sign-in the page is %q", p)
	}
	if v := s.eval(`document.cookie`); v != "" {
		t.Fatalf("the session cookie is readable from script: %q", v)
	}
	// Every CSP violation on the dashboard's page is counted: none may
	// happen, neither from the dashboard's own code nor from data.
	s.eval(`document.addEventListener("securitypolicyviolation", () => { window.__cspViolations = (window.__cspViolations || 0) + 1 }); 1`)

	// Upload a zip from the page; a code name with markup is refused, and
	// the refusal shows as text.
	zipPath := filepath.Join(t.TempDir(), "hello.zip")
	if err := os.WriteFile(zipPath, zipOf(t, "run.sh", runSh), 0o644); err != nil {
		t.Fatal(err)
	}
	s.do(chromedp.Click(chromedp.CSS(`#nav a[href="/codes"]`)))
	s.waitText("main h1", "Codes", 10*time.Second)
	s.do(chromedp.SendKeys(chromedp.CSS("#up-name"), `<b id="bold">x</b>`), chromedp.SetUploadFiles(chromedp.CSS("#up-file"), []string{zipPath}),
		chromedp.Click(chromedp.CSS("#upload button")))
	s.waitText("#upload-msg", "Invalid code name", 10*time.Second)
	if got := s.text("#upload-msg"); !strings.Contains(got, `<b id=\"bold\">`) && !strings.Contains(got, `<b id="bold">`) {
		t.Fatalf("refused name not shown as text: %q", got)
	}
	s.clean("upload refused")
	s.do(s.set("#up-name", ""), chromedp.SendKeys(chromedp.CSS("#up-name"), "hello"),
		chromedp.Click(chromedp.CSS("#upload button")))
	s.waitText("#upload-msg", "Uploaded hello", 20*time.Second)
	s.waitText("#codes", "hello", 10*time.Second)
	s.screenshot("codes")
	codes, err := admin.ListCodes(bg, 0, 10)
	if err != nil || len(codes) != 1 || codes[0].Name != "hello" || codes[0].Stack != "busybox" {
		t.Fatalf("codes after the upload: %+v, %v", codes, err)
	}
	codeID := codes[0].ID

	// Edit the code's settings: a new revision with them.
	s.do(chromedp.Click(chromedp.CSS(`#codes a[href="/codes/` + codeID + `"]`)))
	s.waitText("#code-name", "hello", 10*time.Second)
	s.do(s.set("#ed-max", "2"), s.set("#ed-env", "GREETING=hi"),
		chromedp.Click(chromedp.CSS("#edit button")))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := admin.GetCode(bg, codeID)
		if err == nil && c.Rev == 2 && c.MaxConcurrency == 2 && c.EnvVars["GREETING"] == "hi" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("settings not saved: %+v, %v\npage: %s", c, err, s.text("main"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The page is drawn again for the new revision once it is saved: a
	// form filled before that would be replaced by an empty one.
	s.waitText("main dl.fields", "revision2", 10*time.Second)
	s.screenshot("code")

	// Queue a task from the page; its log streams while it runs.
	queue := func(payload string) string {
		t.Helper()
		s.waitText("#code-name", "hello", 10*time.Second)
		s.do(s.set("#q-payload", payload), chromedp.Click(chromedp.CSS("#queue-task")))
		deadline := time.Now().Add(10 * time.Second)
		for !strings.HasPrefix(s.path(), "/tasks/") {
			if time.Now().After(deadline) {
				t.Fatalf("queueing %q did not open the task page: %s", payload, s.text("main"))
			}
			time.Sleep(50 * time.Millisecond)
		}
		return strings.TrimPrefix(s.path(), "/tasks/")
	}
	// The page's poll of the task is stretched to 10 minutes, so only
	// what it does on output and at the log's end can change the status
	// it shows; and the code's queue is paused, so the page opens with the
	// task still queued whatever the runner's speed.
	s.eval(`localStorage.setItem("mayfly.pollMs", "600000"); 1`)
	if err := admin.PauseCode(bg, codeID); err != nil {
		t.Fatal(err)
	}
	streamed := queue("stream")
	s.waitText("#status", "queued", 10*time.Second)
	if err := admin.ResumeCode(bg, codeID); err != nil {
		t.Fatal(err)
	}
	s.waitText("#log", "line 2", 30*time.Second)
	// The page brings the task's status up to date as its output arrives
	// (one GET): it shows it running, not ended and not still queued.
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st := s.text("#status")
		if st == "running" || st == "preparing" {
			break
		}
		if st == "queued" && time.Now().After(deadline) {
			t.Fatalf("log lines showed, but 3 s later the page still shows the task queued: output did not refresh its status")
		}
		if st != "queued" {
			t.Fatalf("log lines showed, but the task is %q: the log did not stream", st)
		}
	}
	if tk, err := admin.GetTask(bg, streamed); err != nil || tk.EndTime != nil {
		t.Fatalf("log lines showed, but the task has ended (%v): the log did not stream", err)
	}
	if got := s.text("#log"); strings.Contains(got, "line 19") {
		t.Fatalf("the whole log arrived at once: %q", got)
	}
	s.waitText("#status", "complete", 30*time.Second)
	s.waitText("#log", "line 19", 10*time.Second)
	s.waitText("#log-state", "complete", 10*time.Second)
	s.waitText("#timeline", "run", 10*time.Second)
	s.screenshot("task")
	// The rest relies on the page's own poll: back to its 1 s.
	s.eval(`localStorage.removeItem("mayfly.pollMs"); 1`)

	// Cancel a long task.
	s.open("/codes/" + codeID)
	long := queue("long")
	s.waitText("#log", "waiting", 30*time.Second)
	s.do(chromedp.Click(chromedp.CSS("#cancel")))
	s.waitText("#status", "cancelled", 30*time.Second)
	if tk, err := admin.GetTask(bg, long); err != nil || tk.Status != "cancelled" {
		t.Fatalf("cancelled task: %+v, %v", tk, err)
	}

	// Retry a failed task: the page moves to the new one.
	s.open("/codes/" + codeID)
	failed := queue("fail")
	s.waitText("#status", "error", 30*time.Second)
	s.waitText("#task-fields", "about to fail", 10*time.Second)
	s.do(chromedp.Click(chromedp.CSS("#retry")))
	deadline = time.Now().Add(10 * time.Second)
	for s.path() == "/tasks/"+failed {
		if time.Now().After(deadline) {
			t.Fatalf("retry did not open the new task: %s", s.text("main"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	retry := strings.TrimPrefix(s.path(), "/tasks/")
	s.waitText("#task-fields", failed, 10*time.Second)
	if tk, err := admin.GetTask(bg, retry); err != nil || tk.RetryOf != failed {
		t.Fatalf("retry %s: %+v, %v", retry, tk, err)
	}

	// Hostile text in a payload, a label and a log shows as text.
	hostileIDs, err := admin.QueueTasks(bg, []wire.NewTask{{CodeName: "hello", Payload: hostile, Label: hostile}})
	if err != nil {
		t.Fatal(err)
	}
	if tk, err := admin.WaitTask(bg, hostileIDs[0], 100*time.Millisecond); err != nil || tk.Status != "complete" {
		t.Fatalf("hostile task: %+v, %v", tk, err)
	}
	s.open("/tasks/" + hostileIDs[0])
	s.waitText("#log", "payload: "+hostile, 20*time.Second)
	s.waitText("#payload", hostile, 5*time.Second)
	s.waitText("#task-fields", hostile, 5*time.Second)
	s.clean("task page")
	s.open("/tasks?label=" + strings.NewReplacer("<", "%3C", ">", "%3E", `"`, "%22", "=", "%3D", " ", "%20", ";", "%3B", "(", "%28", ")", "%29").Replace(hostile))
	s.waitText("#tasks", hostile, 10*time.Second)
	s.clean("task list")

	// The task list, filtered and live.
	s.open("/tasks")
	s.waitText("#tasks", streamed, 10*time.Second)
	s.screenshot("tasks")
	s.do(s.set("#f-status", "error"), chromedp.Click(chromedp.CSS("#filters button")))
	s.waitText("#tasks", failed, 10*time.Second)
	if got := s.text("#tasks"); strings.Contains(got, streamed) || !strings.Contains(s.path(), "status=error") {
		t.Fatalf("status filter: %s shows %q", s.path(), got)
	}
	// A task queued elsewhere shows up without a reload.
	late, err := admin.QueueTasks(bg, []wire.NewTask{{CodeName: "hello", Payload: "late", Label: "late"}})
	if err != nil {
		t.Fatal(err)
	}
	s.open("/tasks?label=late")
	s.waitText("#tasks", late[0], 10*time.Second)
	more, err := admin.QueueTasks(bg, []wire.NewTask{{CodeName: "hello", Payload: "later", Label: "late"}})
	if err != nil {
		t.Fatal(err)
	}
	s.waitText("#tasks", more[0], 10*time.Second)

	// Another project's ids answer 404, and show nothing of it.
	for _, p := range []string{"/tasks/" + otherTasks[0], "/codes/" + otherCode.CodeID} {
		s.open(p)
		s.waitText("#page-error", "404", 10*time.Second)
		if got := s.text("main"); strings.Contains(got, "secret") {
			t.Fatalf("%s shows another project's data: %q", p, got)
		}
	}

	// Schedules: create one from the page, see its next runs, cancel it.
	s.open("/schedules")
	s.waitText("main h1", "Schedules", 10*time.Second)
	s.do(chromedp.SendKeys(chromedp.CSS("#s-code"), "hello"), chromedp.SendKeys(chromedp.CSS("#s-every"), "3600"),
		chromedp.SendKeys(chromedp.CSS("#s-label"), "nightly"), chromedp.Click(chromedp.CSS("#new-schedule button")))
	s.waitText("#schedule-msg", "Scheduled", 10*time.Second)
	s.waitText("#schedules", "3600 s", 10*time.Second)
	if n := s.eval(`document.querySelectorAll("#schedules td:nth-child(6) div div").length`); n != float64(3) {
		t.Fatalf("next runs shown: %v, want 3", n)
	}
	s.screenshot("schedules")
	s.do(chromedp.Click(chromedp.CSS("#schedules button.danger")))
	s.waitText("#schedules", "cancelled", 10*time.Second)

	// The overview counts what ran, this past included.
	hello, err := srv.Store.GetCode(bg, project, codeID)
	if err != nil {
		t.Fatal(err)
	}
	history(t, srv.Store, hello)
	s.open("/")
	s.waitText("#overview", "hello", 10*time.Second)
	s.waitText("#overview", "complete", 10*time.Second)
	if n := s.eval(`document.querySelectorAll("#overview svg.chart rect").length`); n.(float64) < 40 {
		t.Fatalf("the throughput chart has %v bars; want one a minute for the history", n)
	}
	s.screenshot("overview")
	s.clean("overview")

	// A project token sees no runners.
	s.open("/runners")
	s.waitText("#runners", "only an admin token", 10*time.Second)

	// A page of another origin on the same host (so the browser does send
	// the SameSite cookie) posts a form and a fetch to the API: both are
	// refused, nothing is queued.
	before, err := admin.ListTasks(bg, client.TaskFilter{})
	if err != nil {
		t.Fatal(err)
	}
	target := base + "/2/projects/" + project + "/tasks"
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		switch r.URL.Path {
		case "/form":
			fmt.Fprintf(w, `<form id="f" method="POST" action="%s" enctype="text/plain">`+
				`<input name='{"tasks":[{"code_name":"hello","payload":"csrf","x":"' value='"}]}'></form>`+
				`<script>document.getElementById("f").submit()</script>`, target)
		case "/fetch":
			fmt.Fprintf(w, `<script>fetch(%q, {method: "POST", mode: "no-cors", credentials: "include",
				headers: {"Content-Type": "text/plain"}, body: '{"tasks":[{"code_name":"hello","payload":"csrf"}]}'})
				.then(() => document.title = "sent", () => document.title = "failed")</script>`, target)
		}
	}))
	defer evil.Close()
	if !strings.HasPrefix(evil.URL, "http://127.0.0.1:") {
		t.Fatalf("the other origin %s is not on the dashboard's host", evil.URL)
	}
	s.do(chromedp.Navigate(evil.URL + "/form"))
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(s.text("body"), "Refused") {
		if time.Now().After(deadline) {
			t.Fatalf("the cross-site form POST was not refused: %q", s.text("body"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.do(chromedp.Navigate(evil.URL + "/fetch"))
	deadline = time.Now().Add(10 * time.Second)
	for {
		title, _ := chromedp.Run(ctx, chromedp.Title())
		if title == "sent" || title == "failed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cross-site fetch never finished")
		}
		time.Sleep(100 * time.Millisecond)
	}
	after, err := admin.ListTasks(bg, client.TaskFilter{})
	if err != nil || len(after) != len(before) {
		t.Fatalf("cross-site requests queued tasks: %d before, %d after (%v)", len(before), len(after), err)
	}

	// Sign out: the cookie is gone, the API no longer answers the browser.
	s.open("/")
	s.waitText("main h1", "Overview", 10*time.Second)
	s.do(chromedp.Click(chromedp.CSS("#signout")))
	s.waitText("main", "Sign in to Mayfly", 10*time.Second)
	st, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/2/projects/`+project+`/tasks", {credentials: "same-origin"}).then(r => r.status)`,
		chromedp.EvalAwaitPromise))
	if err != nil || st != 401 {
		t.Fatalf("the API after sign-out: %d, %v; want 401", st, err)
	}

	// An admin signs in to the project and sees the runners.
	s.do(chromedp.SendKeys(chromedp.CSS("#token"), adminToken), chromedp.SendKeys(chromedp.CSS("#project_id"), project),
		chromedp.Click(chromedp.CSS("#signin button")))
	s.waitText("main h1", "Overview", 10*time.Second)
	s.open("/runners")
	s.waitText("#runners", "live runners", 10*time.Second)
	s.waitText("#runners", "of 3 slots", 10*time.Second)
	s.waitText("#runners", "dashboard-test", 10*time.Second)
	s.screenshot("runners")
}

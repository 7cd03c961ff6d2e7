package api_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/assembly/assemblytest"
	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// bundle is one test's server: a real SQLite store and blob directory
// behind the real handler.
type bundle struct {
	t       *testing.T
	srv     *httptest.Server
	svc     *service.Service
	st      store.Store
	project string
	token   string
	dataDir string
}

func setup(t *testing.T, cfg service.Config) *bundle {
	t.Helper()
	cfg.KnownStacks = []string{"busybox", "binary"}
	return setupWith(t, cfg)
}

// setupWith is the server's parts as `mayfly server` assembles them, with
// the API on a test listener.
func setupWith(t *testing.T, cfg service.Config) *bundle {
	t.Helper()
	a := assemblytest.Start(t, assembly.Config{Service: cfg})
	srv := httptest.NewServer(api.New(a.Service, api.Options{Version: "test"}))
	t.Cleanup(srv.Close)
	return &bundle{t: t, srv: srv, svc: a.Service, st: a.Store, project: a.Bootstrap.ProjectID, token: a.Bootstrap.Token,
		dataDir: a.DataDir}
}

func (b *bundle) url(path string) string {
	return b.srv.URL + "/2/projects/" + b.project + path
}

// do sends a request with the bundle's token and returns status and body.
func (b *bundle) do(method, url string, body io.Reader, hdr ...string) (int, []byte) {
	b.t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Authorization", "OAuth "+b.token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func decode[T any](t *testing.T, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, data, err)
	}
	return v
}

// wantErr checks status and that the body is {"msg": ...} containing part.
func wantErr(t *testing.T, status int, body []byte, wantStatus int, part string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d; body %s", status, wantStatus, body)
	}
	e := decode[wire.Error](t, body)
	if e.Msg == "" || !strings.Contains(strings.ToLower(e.Msg), strings.ToLower(part)) {
		t.Fatalf("msg %q does not mention %q", e.Msg, part)
	}
}

type zentry struct {
	name, data string
	mode       fs.FileMode
}

func makeZip(t *testing.T, entries ...zentry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.mode != 0 {
			h.SetMode(e.mode)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, e.data)
	}
	zw.Close()
	return buf.Bytes()
}

// upload posts a code; zipData nil sends no file field.
func (b *bundle) upload(data string, zipData []byte) (int, []byte) {
	b.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("data", data)
	if zipData != nil {
		fw, _ := mw.CreateFormFile("file", "code.zip")
		fw.Write(zipData)
	}
	mw.Close()
	return b.do("POST", b.url("/codes"), &body, "Content-Type", mw.FormDataContentType())
}

func (b *bundle) pushHello() wire.UploadResponse {
	b.t.Helper()
	return b.pushHelloNamed("hello")
}

func (b *bundle) pushHelloNamed(name string) wire.UploadResponse {
	b.t.Helper()
	st, body := b.upload(`{"name":"`+name+`","runtime":"sh","file_name":"hello.sh"}`,
		makeZip(b.t, zentry{name: "hello.sh", data: "echo hello\n", mode: 0o755}))
	if st != 200 {
		b.t.Fatalf("upload: %d %s", st, body)
	}
	return decode[wire.UploadResponse](b.t, body)
}

func (b *bundle) queue(tasks string) (int, []byte) {
	return b.do("POST", b.url("/tasks"), strings.NewReader(tasks))
}

func TestProjectAndAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	st, body := b.do("GET", b.url(""), strings.NewReader("{}"), "Accept-Encoding", "gzip/deflate")
	if st != 200 {
		t.Fatalf("GET project: %d %s", st, body)
	}
	if p := decode[wire.Project](t, body); p.ID != b.project || len(p.ID) != 24 {
		t.Fatalf("project = %+v", p)
	}

	st, body = b.do("GET", b.url("/codes"), nil, "Authorization", "")
	wantErr(t, st, body, 401, "token")
	st, body = b.do("GET", b.url("/codes"), nil, "Authorization", "OAuth not-a-real-token")
	wantErr(t, st, body, 401, "invalid token")

	// The same token as Bearer and as ?oauth= works.
	st, _ = b.do("GET", b.url("/codes"), nil, "Authorization", "Bearer "+b.token)
	if st != 200 {
		t.Fatalf("Bearer token: %d", st)
	}
	st, _ = b.do("GET", b.url("/codes")+"?oauth="+b.token, nil, "Authorization", "")
	if st != 200 {
		t.Fatalf("?oauth= token: %d", st)
	}

	// A project token cannot reach another project.
	ctx := context.Background()
	other := id.New()
	if err := b.st.CreateProject(ctx, store.Project{ID: other, Name: "other", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	secret := id.Secret(20)
	if err := b.st.CreateToken(ctx, store.Token{ID: id.New(), Hash: b.svc.HashToken(secret), Kind: store.TokenProject,
		ProjectID: other, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	st, body = b.do("GET", b.url("/tasks"), nil, "Authorization", "OAuth "+secret)
	wantErr(t, st, body, 403, "not valid for project")
	st, _ = b.do("GET", b.srv.URL+"/2/projects/"+other+"/tasks", nil, "Authorization", "OAuth "+secret)
	if st != 200 {
		t.Fatalf("project token on its own project: %d", st)
	}
	st, body = b.do("GET", b.srv.URL+"/2/projects/"+id.New(), nil)
	wantErr(t, st, body, 404, "project")
	st, body = b.do("GET", b.srv.URL+"/2/nothing-here", nil)
	wantErr(t, st, body, 404, "no route")
}

func TestCodes(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	up := b.pushHello()
	if len(up.ID) != 24 || up.Msg != "Upload successful." || up.Rev != 1 {
		t.Fatalf("upload answer = %+v", up)
	}
	// Same name: a new revision of the same code.
	up2 := b.pushHello()
	if up2.ID != up.ID || up2.Rev != 2 {
		t.Fatalf("second upload = %+v, want same id rev 2", up2)
	}
	st, body := b.do("GET", b.url("/codes/"+up.ID), nil)
	c := decode[wire.Code](t, body)
	if st != 200 || c.Name != "hello" || c.Rev != 2 || c.Stack != "busybox" || c.LatestChecksum == "" {
		t.Fatalf("GET code: %d %+v", st, c)
	}
	st, body = b.do("GET", b.url("/codes?per_page=10&page=0"), strings.NewReader("{}"))
	if l := decode[wire.CodeList](t, body); st != 200 || len(l.Codes) != 1 {
		t.Fatalf("list codes: %d %s", st, body)
	}
	st, body = b.do("GET", b.url("/codes/"+up.ID+"/revisions"), nil)
	if l := decode[wire.RevisionList](t, body); st != 200 || len(l.Revisions) != 2 || l.Revisions[0].Rev != 2 {
		t.Fatalf("revisions: %d %s", st, body)
	}
	st, body = b.do("GET", b.url("/codes/"+up.ID+"/download?revision=1"), nil)
	if st != 200 {
		t.Fatalf("download: %d %s", st, body)
	}
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil || len(zr.File) != 1 || zr.File[0].Name != "hello.sh" {
		t.Fatalf("downloaded zip: %v", err)
	}
	st, body = b.do("GET", b.url("/codes/"+up.ID+"/download?revision=9"), nil)
	wantErr(t, st, body, 404, "revision")

	st, body = b.do("DELETE", b.url("/codes/"+up.ID), strings.NewReader("{}"))
	if st != 200 {
		t.Fatalf("delete: %d %s", st, body)
	}
	st, body = b.do("GET", b.url("/codes/"+up.ID), nil)
	wantErr(t, st, body, 404, "code not found")
	st, body = b.do("GET", b.url("/codes/nonsense"), nil)
	wantErr(t, st, body, 404, "code not found")
}

func TestCodeUploadRefusesBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{MaxCodeBytes: 64 << 10})
	good := makeZip(t, zentry{name: "a.sh", data: "true"})
	cases := []struct {
		name   string
		data   string
		zip    []byte
		status int
		msg    string
	}{
		{"no name", `{"runtime":"sh"}`, good, 400, "name is required"},
		{"bad json", `{"name":`, good, 400, "not valid json"},
		{"unknown stack", `{"name":"x","stack":"cobol-85"}`, good, 400, "unknown stack"},
		{"unknown runtime", `{"name":"x","runtime":"brainfuck"}`, good, 400, "unknown runtime"},
		{"no file", `{"name":"x","runtime":"sh"}`, nil, 400, "zip"},
		{"not a zip", `{"name":"x"}`, []byte("plain text, not a zip"), 400, "not a readable zip"},
		{"traversal", `{"name":"x"}`, makeZip(t, zentry{name: "../../etc/cron.d/x", data: "x"}), 400, "climbs out"},
		{"absolute", `{"name":"x"}`, makeZip(t, zentry{name: "/etc/passwd", data: "x"}), 400, "absolute"},
		{"symlink", `{"name":"x"}`, makeZip(t, zentry{name: "l", data: "/etc/shadow", mode: fs.ModeSymlink | 0o777}), 400, "symlink"},
		{"too large", `{"name":"x"}`, bytes.Repeat([]byte("z"), 100<<10), 413, "larger"},
		{"bad priority", `{"name":"x","default_priority":7}`, good, 400, "default_priority"},
	}
	for _, c := range cases {
		st, body := b.upload(c.data, c.zip)
		t.Run(c.name, func(t *testing.T) { wantErr(t, st, body, c.status, c.msg) })
	}
	// Nothing was written: no code exists, and no blob either.
	st, body := b.do("GET", b.url("/codes"), nil)
	if l := decode[wire.CodeList](t, body); st != 200 || len(l.Codes) != 0 {
		t.Fatalf("codes after refused uploads: %s", body)
	}
	matches, _ := filepath.Glob(filepath.Join(b.dataDir, "blobs", "packages", "*"))
	if len(matches) != 0 {
		t.Fatalf("refused uploads left blobs: %v", matches)
	}
	// A JSON body names a new code without a package.
	st, body = b.do("POST", b.url("/codes"), strings.NewReader(`{"name":"x"}`), "Content-Type", "application/json")
	wantErr(t, st, body, 400, "needs a zip")
	// Neither multipart nor JSON.
	st, body = b.do("POST", b.url("/codes"), strings.NewReader(`{"name":"x"}`), "Content-Type", "text/plain")
	wantErr(t, st, body, 400, "multipart")
}

func TestQueueAndList(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{MaxPayloadBytes: 1024})
	b.pushHello()
	st, body := b.queue(`{"tasks":[{"code_name":"hello","payload":"{\"n\":1}","priority":-3,"timeout":0,"label":"a"},
		{"code_name":"hello","payload":"two","priority":2,"timeout":60,"delay":3600,"label":"b"}]}`)
	if st != 200 {
		t.Fatalf("queue: %d %s", st, body)
	}
	q := decode[wire.QueueResponse](t, body)
	if q.Msg != "Queued up" || len(q.Tasks) != 2 || len(q.Tasks[0].ID) != 24 {
		t.Fatalf("queue answer %+v", q)
	}
	st, body = b.do("GET", b.url("/tasks/"+q.Tasks[0].ID), strings.NewReader("{}"))
	task := decode[wire.Task](t, body)
	if st != 200 || task.Status != "queued" || task.Priority != 0 || task.Timeout != 3600 || task.Payload != `{"n":1}` ||
		task.CodeRev != "1" || task.StartTime != nil || task.CodeName != "hello" {
		t.Fatalf("task 0: %d %s", st, body)
	}
	var raw map[string]any
	json.Unmarshal(body, &raw)
	for _, k := range []string{"timeout", "start_time", "end_time", "duration", "code_rev", "retry_count"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("task JSON lacks %q: %s", k, body)
		}
	}
	if _, ok := raw["code_rev"].(string); !ok {
		t.Errorf("code_rev is not a string: %s", body)
	}

	// Newest first, filters, status flags counted when present whatever
	// their value, empty code_name = no filter.
	st, body = b.do("GET", b.url("/tasks?code_name=&queued=0&running=false"), nil)
	l := decode[wire.TaskList](t, body)
	if st != 200 || len(l.Tasks) != 2 || l.Tasks[0].ID != q.Tasks[1].ID {
		t.Fatalf("list newest first: %d %s", st, body)
	}
	st, body = b.do("GET", b.url("/tasks?label=a"), nil)
	if l := decode[wire.TaskList](t, body); st != 200 || len(l.Tasks) != 1 || l.Tasks[0].ID != q.Tasks[0].ID {
		t.Fatalf("label filter: %s", body)
	}
	st, body = b.do("GET", b.url("/tasks?complete=1"), nil)
	if l := decode[wire.TaskList](t, body); st != 200 || len(l.Tasks) != 0 {
		t.Fatalf("complete filter: %s", body)
	}
	st, body = b.do("GET", b.url("/tasks?per_page=1&page=1"), nil)
	if l := decode[wire.TaskList](t, body); st != 200 || len(l.Tasks) != 1 || l.Tasks[0].ID != q.Tasks[0].ID {
		t.Fatalf("paging: %s", body)
	}
	st, body = b.do("GET", b.url("/tasks?code_name=nope"), nil)
	if l := decode[wire.TaskList](t, body); st != 200 || len(l.Tasks) != 0 {
		t.Fatalf("code filter: %s", body)
	}

	// No log yet: 404.
	st, body = b.do("GET", b.url("/tasks/"+q.Tasks[0].ID+"/log"), nil)
	wantErr(t, st, body, 404, "log")

	// Cancel of a queued task ends it at once; a second cancel conflicts.
	st, body = b.do("POST", b.url("/tasks/"+q.Tasks[1].ID+"/cancel"), nil)
	if st != 200 {
		t.Fatalf("cancel: %d %s", st, body)
	}
	_, body = b.do("GET", b.url("/tasks/"+q.Tasks[1].ID), nil)
	if tk := decode[wire.Task](t, body); tk.Status != "cancelled" || tk.EndTime == nil {
		t.Fatalf("after cancel: %s", body)
	}
	st, body = b.do("POST", b.url("/tasks/"+q.Tasks[1].ID+"/cancel"), nil)
	wantErr(t, st, body, 409, "already finished")
}

func TestQueueRefusesBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{MaxPayloadBytes: 1024})
	b.pushHello()
	big := strings.Repeat("x", 2048)
	cases := []struct {
		name, body string
		status     int
		msg        string
	}{
		{"malformed", `{"tasks":[{"code_name":"hello",}]}`, 400, "malformed json"},
		{"empty body", ``, 400, "empty"},
		{"wrong type", `{"tasks":[{"code_name":"hello","payload":{"a":1}}]}`, 400, "payload"},
		{"no tasks", `{"tasks":[]}`, 400, "no tasks"},
		{"unknown code", `{"tasks":[{"code_name":"nope"}]}`, 404, "no code named"},
		{"no code name", `{"tasks":[{"payload":"x"}]}`, 400, "code_name"},
		{"payload too large", `{"tasks":[{"code_name":"hello","payload":"` + big + `"}]}`, 413, "payload"},
		{"negative delay", `{"tasks":[{"code_name":"hello","delay":-5}]}`, 400, "delay"},
		{"negative timeout", `{"tasks":[{"code_name":"hello","timeout":-5}]}`, 400, "timeout"},
		{"second task bad", `{"tasks":[{"code_name":"hello"},{"code_name":"nope"}]}`, 404, "task 1"},
	}
	for _, c := range cases {
		st, body := b.queue(c.body)
		t.Run(c.name, func(t *testing.T) { wantErr(t, st, body, c.status, c.msg) })
	}
	// All or nothing: the batch with a bad second task stored nothing.
	_, body := b.do("GET", b.url("/tasks"), nil)
	if l := decode[wire.TaskList](t, body); len(l.Tasks) != 0 {
		t.Fatalf("refused batches left tasks: %s", body)
	}
	st, body := b.do("GET", b.url("/tasks/"+id.New()), nil)
	wantErr(t, st, body, 404, "task not found")
	st, body = b.do("POST", b.url("/tasks/zzz/cancel"), nil)
	wantErr(t, st, body, 404, "task not found")
}

func TestWebhook(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{MaxPayloadBytes: 1024})
	b.pushHello()
	form := "a=1&b=two"
	st, body := b.do("POST", b.url("/tasks/webhook?code_name=hello&priority=1&label=hook"), strings.NewReader(form),
		"Content-Type", "application/x-www-form-urlencoded")
	if st != 200 {
		t.Fatalf("webhook: %d %s", st, body)
	}
	wh := decode[wire.WebhookResponse](t, body)
	_, body = b.do("GET", b.url("/tasks/"+wh.ID), nil)
	if tk := decode[wire.Task](t, body); tk.Payload != form || tk.Priority != 1 || tk.Label != "hook" {
		t.Fatalf("webhook task: %s", body)
	}
	st, body = b.do("POST", b.url("/tasks/webhook?code_name=hello"), strings.NewReader(strings.Repeat("y", 4096)))
	wantErr(t, st, body, 413, "payload limit")
	st, body = b.do("POST", b.url("/tasks/webhook"), strings.NewReader("x"))
	wantErr(t, st, body, 400, "code_name")
	st, body = b.do("POST", b.url("/tasks/webhook?code_name=ghost"), strings.NewReader("x"))
	wantErr(t, st, body, 404, "ghost")
}

func TestStacksAndVersion(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	// No runner yet: no stacks. Then the stacks the live runners report.
	st, body := b.do("GET", b.srv.URL+"/2/stacks", nil)
	if st != 200 || strings.TrimSpace(string(body)) != `[]` {
		t.Fatalf("stacks without runners: %d %s", st, body)
	}
	for _, lease := range []string{
		`{"runner_id":"r1","max":0,"stacks":["busybox","python-3.11"]}`,
		`{"runner_id":"r2","max":0,"stacks":["busybox","node-18"],"clusters":["gpu"]}`,
	} {
		if st, body := b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(lease)); st != 200 {
			t.Fatalf("lease: %d %s", st, body)
		}
	}
	st, body = b.do("GET", b.srv.URL+"/2/stacks", nil)
	if st != 200 || strings.TrimSpace(string(body)) != `["busybox","node-18","python-3.11"]` {
		t.Fatalf("stacks: %d %s", st, body)
	}
	st, body = b.do("GET", b.srv.URL+"/version", nil, "Authorization", "")
	if v := decode[wire.Version](t, body); st != 200 || v.Version != "test" {
		t.Fatalf("version: %d %s", st, body)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if st, body := b.do("GET", b.srv.URL+p, nil); st != 200 {
			t.Fatalf("%s: %d %s", p, st, body)
		}
	}
}

func TestRunnerProtocol(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	_, body := b.queue(`{"tasks":[{"code_name":"hello","payload":"p"}]}`)
	taskID := decode[wire.QueueResponse](t, body).Tasks[0].ID
	st, body := b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(`{"runner_id":"r1","max":5,"wait_ms":10}`))
	lease := decode[wire.LeaseResponse](t, body)
	if st != 200 || len(lease.Jobs) != 1 || lease.Jobs[0].TaskID != taskID || lease.Jobs[0].Code.PackageSHA256 == "" {
		t.Fatalf("lease: %d %s", st, body)
	}
	post := func(path, body string) (int, []byte) {
		return b.do("POST", b.srv.URL+"/runner/tasks/"+taskID+path, strings.NewReader(body))
	}
	if st, body := post("/started", `{"runner_id":"r1","attempt":1}`); st != 200 {
		t.Fatalf("started: %d %s", st, body)
	}
	if st, body := post("/log?runner_id=r1&attempt=1", "line one\n"); st != 200 {
		t.Fatalf("log: %d %s", st, body)
	}
	// Reports under a lease that is not current get one distinct answer,
	// 410, and change nothing: another runner, another attempt.
	st, body = post("/heartbeat", `{"runner_id":"r2","attempt":1}`)
	wantErr(t, st, body, 410, "lease lost")
	st, body = post("/heartbeat", `{"runner_id":"r1","attempt":2}`)
	wantErr(t, st, body, 410, "lease lost")
	st, body = post("/log?runner_id=r1&attempt=3", "not mine\n")
	wantErr(t, st, body, 410, "lease lost")
	st, body = post("/finish", `{"runner_id":"r1","status":"error","exit_code":1}`)
	wantErr(t, st, body, 410, "lease lost")
	if st, body := post("/heartbeat", `{"runner_id":"r1","attempt":1}`); st != 200 || decode[wire.HeartbeatResponse](t, body).Cancel {
		t.Fatalf("heartbeat: %d %s", st, body)
	}
	if st, body := post("/finish", `{"runner_id":"r1","attempt":1,"status":"complete","exit_code":0}`); st != 200 {
		t.Fatalf("finish: %d %s", st, body)
	}
	st, body = b.do("GET", b.url("/tasks/"+taskID), nil)
	tk := decode[wire.Task](t, body)
	if st != 200 || tk.Status != "complete" || tk.LogSize != 9 || tk.ExitCode == nil || *tk.ExitCode != 0 {
		t.Fatalf("finished task: %s", body)
	}
	if st, body := b.do("GET", b.url("/tasks/"+taskID+"/log"), nil); st != 200 || string(body) != "line one\n" {
		t.Fatalf("log: %d %q", st, body)
	}
	// Once the task has ended, even its own lease writes nothing more.
	st, body = post("/log?runner_id=r1&attempt=1", "after the end\n")
	wantErr(t, st, body, 410, "lease lost")
	st, body = post("/finish", `{"runner_id":"r1","attempt":1,"status":"error","exit_code":1}`)
	wantErr(t, st, body, 410, "lease lost")
	if _, body := b.do("GET", b.url("/tasks/"+taskID+"/log"), nil); string(body) != "line one\n" {
		t.Fatalf("log after the end: %q", body)
	}
	st, body = b.do("GET", b.srv.URL+"/runner/packages/"+lease.Jobs[0].Code.RevisionID, nil)
	if st != 200 || !bytes.HasPrefix(body, []byte("PK")) {
		t.Fatalf("package: %d", st)
	}
	// A project token is not a runner token.
	ctx := context.Background()
	secret := id.Secret(20)
	b.st.CreateToken(ctx, store.Token{ID: id.New(), Hash: b.svc.HashToken(secret), Kind: store.TokenProject, ProjectID: b.project, CreatedAt: time.Now()})
	st, body = b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(`{"runner_id":"r1","max":1}`), "Authorization", "OAuth "+secret)
	wantErr(t, st, body, 403, "runner")
}

func TestQueueControlRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	up := b.pushHello()
	_, body := b.queue(`{"tasks":[{"code_name":"hello","payload":"p"},{"code_name":"hello"}]}`)
	q := decode[wire.QueueResponse](t, body)
	first, second := q.Tasks[0].ID, q.Tasks[1].ID

	st, body := b.do("POST", b.url("/tasks/"+first+"/retry"), strings.NewReader(`{"delay":5}`))
	wantErr(t, st, body, 409, "still queued")

	// A runner takes the first task and gets its task token.
	_, body = b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(`{"runner_id":"r1","max":1}`))
	job := decode[wire.LeaseResponse](t, body).Jobs[0]
	if job.TaskID != first || !strings.HasPrefix(job.TaskToken, "mtt.") {
		t.Fatalf("job %+v", job)
	}
	asTask := func(method, url, body string) (int, []byte) {
		return b.do(method, url, strings.NewReader(body), "Authorization", "OAuth "+job.TaskToken)
	}
	if st, body := asTask("POST", b.url("/tasks/"+first+"/progress"), `{"percent":30,"msg":"a third"}`); st != 200 {
		t.Fatalf("progress with the task token: %d %s", st, body)
	}
	st, body = asTask("POST", b.url("/tasks/"+second+"/progress"), `{"percent":1}`)
	wantErr(t, st, body, 403, "another task")
	st, body = asTask("GET", b.url("/tasks/"+first), "")
	wantErr(t, st, body, 403, "task token")
	st, body = b.do("POST", b.url("/tasks/"+first+"/progress"), strings.NewReader(`{"percent":130}`))
	wantErr(t, st, body, 400, "between 0 and 100")
	if st, body := b.do("POST", b.url("/tasks/"+first+"/progress"), strings.NewReader(`{"percent":60,"msg":"more"}`)); st != 200 {
		t.Fatalf("progress with the project token: %d %s", st, body)
	}
	_, body = b.do("GET", b.url("/tasks/"+first), nil)
	if tk := decode[wire.Task](t, body); tk.Percent != 60 || tk.Msg != "more" {
		t.Fatalf("progress read back: %s", body)
	}

	// Finished with an error, it can be retried by hand, once.
	b.do("POST", b.srv.URL+"/runner/tasks/"+first+"/finish", strings.NewReader(`{"runner_id":"r1","attempt":1,"status":"error","exit_code":2}`))
	st, body = b.do("POST", b.url("/tasks/"+first+"/retry"), strings.NewReader(`{"delay":60}`))
	if st != 200 {
		t.Fatalf("retry: %d %s", st, body)
	}
	retryID := decode[wire.RetryResponse](t, body).Tasks[0].ID
	_, body = b.do("GET", b.url("/tasks/"+retryID), nil)
	if tk := decode[wire.Task](t, body); tk.RetryOf != first || tk.RetryCount != 1 || tk.Payload != "p" || tk.Status != "queued" {
		t.Fatalf("retry task: %s", body)
	}
	st, body = b.do("POST", b.url("/tasks/"+first+"/retry"), nil)
	wantErr(t, st, body, 409, "already retried")

	// The code's queue: pause, stats, cancel_all, resume.
	for _, p := range []string{"/pause_task_queue", "/resume_task_queue", "/pause_task_queue"} {
		if st, body := b.do("POST", b.url("/codes/"+up.ID+p), strings.NewReader("{}")); st != 200 {
			t.Fatalf("%s: %d %s", p, st, body)
		}
	}
	_, body = b.do("GET", b.url("/codes/"+up.ID), nil)
	if c := decode[wire.Code](t, body); !c.Paused {
		t.Fatalf("code not paused: %s", body)
	}
	st, body = b.do("POST", b.url("/codes/"+up.ID+"/cancel_all"), nil)
	if st != 200 || !strings.Contains(string(body), "Cancelled 2 tasks") {
		t.Fatalf("cancel_all: %d %s", st, body)
	}
	_, body = b.do("GET", b.url("/codes/"+up.ID+"/stats"), nil)
	if s := decode[wire.CodeStats](t, body); s.Cancelled != 2 || s.Error != 1 || s.Queued != 0 {
		t.Fatalf("stats: %s", body)
	}
	st, body = b.do("GET", b.url("/codes/"+id.New()+"/stats"), nil)
	wantErr(t, st, body, 404, "code not found")
}

func TestRequestTooLarge(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	small := httptest.NewServer(api.New(b.svc, api.Options{MaxRequestBytes: 1024}))
	t.Cleanup(small.Close)
	big := `{"tasks":[{"code_name":"hello","payload":"` + strings.Repeat("x", 4096) + `"}]}`
	st, body := b.do("POST", small.URL+"/2/projects/"+b.project+"/tasks", strings.NewReader(big))
	wantErr(t, st, body, 413, "larger than the limit")
}

package main

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/wire"
)

const (
	cliToken   = "cli-token"
	cliProject = "aaaaaaaaaaaaaaaaaaaaaaaa"
	cliCodeID  = "bbbbbbbbbbbbbbbbbbbbbbbb"
	cliTaskID  = "cccccccccccccccccccccccc"
)

// cliRequest is what the fake API saw of one request.
type cliRequest struct {
	Method, Path string
	Query        url.Values
	Auth         string
	ContentType  string
	Body         []byte
}

// cliAPI is a fake Mayfly API: handlers per route, and a record of every
// request for the test to check.
type cliAPI struct {
	t    *testing.T
	srv  *httptest.Server
	mux  *http.ServeMux
	mu   sync.Mutex
	seen []cliRequest
}

func newCLIAPI(t *testing.T) *cliAPI {
	t.Helper()
	api := &cliAPI{t: t, mux: http.NewServeMux()}
	api.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		api.mu.Lock()
		api.seen = append(api.seen, cliRequest{
			Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(),
			Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type"),
			Body: body,
		})
		api.mu.Unlock()
		api.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(api.srv.Close)
	return api
}

// handle answers pattern (a ServeMux pattern relative to the project) with v
// as JSON, or with v's bytes when v is a []byte or string.
func (api *cliAPI) handle(pattern string, status int, v any) {
	method, path, _ := strings.Cut(pattern, " ")
	path = strings.TrimPrefix(path, "/")
	full := method + " /2/projects/" + cliProject + "/" + path
	if strings.HasPrefix(path, "!") { // outside the project
		full = method + " " + path[1:]
	}
	api.mux.HandleFunc(full, func(w http.ResponseWriter, r *http.Request) {
		switch b := v.(type) {
		case []byte:
			w.WriteHeader(status)
			w.Write(b)
		case string:
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(status)
			io.WriteString(w, b)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(v)
		}
	})
}

func (api *cliAPI) requests() []cliRequest {
	api.mu.Lock()
	defer api.mu.Unlock()
	return slices.Clone(api.seen)
}

// last returns the last request to path, failing the test if there is none.
func (api *cliAPI) last(method, path string) cliRequest {
	api.t.Helper()
	full := "/2/projects/" + cliProject + path
	reqs := api.requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Method == method && reqs[i].Path == full {
			return reqs[i]
		}
	}
	api.t.Fatalf("no %s %s among %d requests", method, full, len(reqs))
	return cliRequest{}
}

type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the mayfly command line in-process against api, with an
// environment of just MAYFLY_URL, MAYFLY_TOKEN and MAYFLY_PROJECT, plus env,
// and no config files.
func runCLI(t *testing.T, api *cliAPI, env map[string]string, stdin string, args ...string) cliResult {
	t.Helper()
	vars := map[string]string{"MAYFLY_TOKEN": cliToken, "MAYFLY_PROJECT": cliProject}
	if api != nil {
		vars["MAYFLY_URL"] = api.srv.URL
	}
	for k, v := range env {
		vars[k] = v
	}
	var stdout, stderr bytes.Buffer
	a := &app{
		stdin:  strings.NewReader(stdin),
		stdout: &stdout,
		stderr: &stderr,
		src: client.ConfigSource{
			Dir:  t.TempDir(),
			Home: t.TempDir(),
			LookupEnv: func(k string) (string, bool) {
				v, ok := vars[k]
				return v, ok
			},
		},
	}
	code := run(t.Context(), args, a)
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func (r cliResult) ok(t *testing.T) cliResult {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	return r
}

// readUpload splits a POST codes body into its data JSON and zip.
func readUpload(t *testing.T, req cliRequest) (wire.CodeUpload, []byte) {
	t.Helper()
	r, _ := http.NewRequest(http.MethodPost, "/", bytes.NewReader(req.Body))
	r.Header.Set("Content-Type", req.ContentType)
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		t.Fatalf("parse upload: %v", err)
	}
	var up wire.CodeUpload
	if err := json.Unmarshal([]byte(r.MultipartForm.Value["data"][0]), &up); err != nil {
		t.Fatalf("parse data: %v", err)
	}
	files := r.MultipartForm.File["file"]
	if len(files) == 0 {
		return up, nil
	}
	f, err := files[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	return up, b
}

func writeTestFile(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func TestCodePushDirectory(t *testing.T) {
	t.Parallel()
	api := newCLIAPI(t)
	api.handle("POST codes", 200, wire.UploadResponse{ID: cliCodeID, Msg: "Upload successful.", Rev: 3})

	dir := filepath.Join(t.TempDir(), "hello")
	writeTestFile(t, filepath.Join(dir, "run.sh"), "#!/bin/sh\necho hi\n", 0o755)
	writeTestFile(t, filepath.Join(dir, "lib", "data.txt"), "data", 0o640)
	writeTestFile(t, filepath.Join(dir, ".git", "HEAD"), "ref: refs/heads/main", 0o644)
	writeTestFile(t, filepath.Join(dir, ".env"), "A=1", 0o600) // dotfiles other than .git go along
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("lib/data.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "run.sh"), filepath.Join(dir, "lib", "abs")); err != nil {
		t.Fatal(err)
	}

	res := runCLI(t, api, nil, "", "code", "push", dir,
		"--stack", "busybox", "--runtime", "sh", "--file-name", "run.sh",
		"--env", "A=1", "--env", "B=x=y,z", "--config", `{"k":"v"}`,
		"--max-concurrency", "2", "--retries", "0", "--retries-delay", "1m").ok(t)
	if want := "Pushed code hello (id " + cliCodeID + ", revision 3)\n"; res.stdout != want {
		t.Errorf("stdout = %q, want %q", res.stdout, want)
	}

	req := api.last("POST", "/codes")
	if req.Auth != "OAuth "+cliToken {
		t.Errorf("Authorization = %q", req.Auth)
	}
	up, zipBytes := readUpload(t, req)
	two, zero, sixty := 2, 0, 60
	want := wire.CodeUpload{
		Name: "hello", Runtime: "sh", FileName: "run.sh", Stack: "busybox",
		Config:         `{"k":"v"}`,
		EnvVars:        map[string]string{"A": "1", "B": "x=y,z"},
		MaxConcurrency: &two, Retries: &zero, RetriesDelay: &sixty,
	}
	if !reflect.DeepEqual(up, want) {
		t.Errorf("data = %+v, want %+v", up, want)
	}

	zr, err := zip.NewReader(bytes.NewReader(zipBytes), int64(len(zipBytes)))
	if err != nil {
		t.Fatalf("uploaded package is no zip: %v", err)
	}
	entries := map[string]*zip.File{}
	for _, f := range zr.File {
		entries[f.Name] = f
	}
	wantModes := map[string]fs.FileMode{
		"run.sh":       0o755,
		"lib/":         fs.ModeDir | 0o755,
		"lib/data.txt": 0o640,
		"lib/abs":      fs.ModeSymlink | 0o777,
		".env":         0o600,
		"empty/":       fs.ModeDir | 0o700,
		"link":         fs.ModeSymlink | 0o777,
	}
	if len(entries) != len(wantModes) {
		var names []string
		for n := range entries {
			names = append(names, n)
		}
		t.Errorf("entries = %v, want %d of them and no .git", names, len(wantModes))
	}
	for name, mode := range wantModes {
		f := entries[name]
		if f == nil {
			t.Errorf("%s missing from the package", name)
			continue
		}
		if f.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", name, f.Mode(), mode)
		}
	}
	for name, target := range map[string]string{"link": "lib/data.txt", "lib/abs": "../run.sh", "run.sh": "#!/bin/sh\necho hi\n"} {
		if f := entries[name]; f != nil {
			rc, _ := f.Open()
			b, _ := io.ReadAll(rc)
			rc.Close()
			if string(b) != target {
				t.Errorf("%s holds %q, want %q", name, b, target)
			}
		}
	}
}

func TestCodePushRefusesEscapingSymlink(t *testing.T) {
	t.Parallel()
	outside := filepath.Join(t.TempDir(), "secret")
	writeTestFile(t, outside, "s3cr3t", 0o600)
	for name, target := range map[string]string{
		"absolute": outside,
		"relative": "../../" + filepath.Base(filepath.Dir(outside)) + "/secret",
		"dangling": "../nowhere",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			api := newCLIAPI(t)
			dir := filepath.Join(t.TempDir(), "pkg")
			writeTestFile(t, filepath.Join(dir, "main.py"), "print(1)", 0o644)
			if err := os.Symlink(target, filepath.Join(dir, "leak")); err != nil {
				t.Fatal(err)
			}
			res := runCLI(t, api, nil, "", "code", "push", dir)
			if res.code != 1 || !strings.Contains(res.stderr, "points outside") {
				t.Errorf("exit %d, stderr %q; want a refusal", res.code, res.stderr)
			}
			if n := len(api.requests()); n != 0 {
				t.Errorf("%d requests sent", n)
			}
		})
	}
}

func TestCodePushZip(t *testing.T) {
	t.Parallel()
	api := newCLIAPI(t)
	api.handle("POST codes", 200, wire.UploadResponse{ID: cliCodeID, Msg: "Upload successful.", Rev: 1})

	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("main.py")
	io.WriteString(w, "print('hi')")
	zw.Close()
	path := filepath.Join(t.TempDir(), "worker.zip")
	writeTestFile(t, path, buf.String(), 0o644)

	res := runCLI(t, api, nil, "", "code", "push", path, "--stack", "python-3.11").ok(t)
	if !strings.HasPrefix(res.stdout, "Pushed code worker (") {
		t.Errorf("stdout = %q", res.stdout)
	}
	up, got := readUpload(t, api.last("POST", "/codes"))
	if up.Name != "worker" || !bytes.Equal(got, buf.Bytes()) {
		t.Errorf("uploaded %q with %d bytes, want worker with the zip as is", up.Name, len(got))
	}

	notZip := filepath.Join(t.TempDir(), "main.py")
	writeTestFile(t, notZip, "print(1)", 0o644)
	res = runCLI(t, api, nil, "", "code", "push", notZip)
	if res.code != 1 || !strings.Contains(res.stderr, "neither a directory nor a zip") {
		t.Errorf("exit %d, stderr %q", res.code, res.stderr)
	}
}

func TestCodePushImage(t *testing.T) {
	t.Parallel()
	api := newCLIAPI(t)
	api.handle("POST codes", 200, wire.UploadResponse{ID: cliCodeID, Msg: "Upload successful.", Rev: 1})

	runCLI(t, api, nil, "", "code", "push", "--name", "resize", "--image", "alpine:3", "--command", "echo hi").ok(t)
	up, zipBytes := readUpload(t, api.last("POST", "/codes"))
	if up.Name != "resize" || up.Image != "alpine:3" || up.Command != "echo hi" || zipBytes != nil {
		t.Errorf("upload = %+v with %d package bytes", up, len(zipBytes))
	}

	for _, args := range [][]string{
		{"code", "push", "--name", "x"},  // nothing to push
		{"code", "push", "--image", "x"}, // no name
		{"code", "push", "--image", "x", "--name", "x", "--config", "{nope"},
		{"code", "push", "--image", "x", "--name", "x", "--env", "NOEQUALS"},
	} {
		if res := runCLI(t, api, nil, "", args...); res.code != 1 || !strings.HasPrefix(res.stderr, "mayfly: ") {
			t.Errorf("%v: exit %d, stderr %q", args, res.code, res.stderr)
		}
	}
}

func TestCodeCommands(t *testing.T) {
	t.Parallel()
	api := newCLIAPI(t)
	created := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	code := wire.Code{ID: cliCodeID, Name: "hello", Stack: "busybox", Rev: 2, MaxConcurrency: -1, CreatedAt: created, UpdatedAt: created,
		EnvVars: map[string]string{"B": "2", "A": "1"}}
	api.handle("GET codes", 200, wire.CodeList{Codes: []wire.Code{{ID: "dddddddddddddddddddddddd", Name: "other"}, code}})
	api.handle("GET codes/"+cliCodeID, 200, code)
	api.handle("DELETE codes/"+cliCodeID, 200, wire.Msg{Msg: "Deleted"})
	api.handle("GET codes/"+cliCodeID+"/revisions", 200, wire.RevisionList{Revisions: []wire.Revision{
		{ID: "r2", Rev: 2, Size: 120, Checksum: "abc", CreatedAt: created},
		{ID: "r1", Rev: 1, Size: 100, Checksum: "def", CreatedAt: created},
	}})
	api.handle("GET codes/"+cliCodeID+"/download", 200, []byte("PK zip bytes"))

	res := runCLI(t, api, nil, "", "code", "ls").ok(t)
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[2], "hello") || !strings.Contains(lines[2], "busybox") {
		t.Errorf("code ls:\n%s", res.stdout)
	}
	if q := api.last("GET", "/codes").Query; q.Get("per_page") != "100" {
		t.Errorf("code ls asked for %v, want pages of 100", q)
	}

	res = runCLI(t, api, nil, "", "code", "show", "hello").ok(t)
	for _, want := range []string{"id:", cliCodeID, "rev:", "env_vars:", "A=1 B=2", "max_concurrency:", "unset"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("code show lacks %q:\n%s", want, res.stdout)
		}
	}
	res = runCLI(t, api, nil, "", "code", "show", cliCodeID, "-o", "json").ok(t)
	var got wire.Code
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || got.ID != cliCodeID {
		t.Errorf("code show -o json: %v\n%s", err, res.stdout)
	}

	res = runCLI(t, api, nil, "", "code", "revisions", "hello").ok(t)
	if lines := strings.Split(strings.TrimSpace(res.stdout), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[1], "2 ") {
		t.Errorf("code revisions:\n%s", res.stdout)
	}

	out := filepath.Join(t.TempDir(), "hello.zip")
	res = runCLI(t, api, nil, "", "code", "download", "hello", "--revision", "1", "-o", out).ok(t)
	if b, err := os.ReadFile(out); err != nil || string(b) != "PK zip bytes" {
		t.Errorf("downloaded %q, %v", b, err)
	}
	if rev := api.last("GET", "/codes/"+cliCodeID+"/download").Query.Get("revision"); rev != "1" {
		t.Errorf("revision = %q", rev)
	}
	if !strings.Contains(res.stdout, "revision 1 to "+out) {
		t.Errorf("stdout = %q", res.stdout)
	}
	res = runCLI(t, api, nil, "", "code", "download", cliCodeID, "-o", "-").ok(t)
	if res.stdout != "PK zip bytes" {
		t.Errorf("download to stdout = %q", res.stdout)
	}

	res = runCLI(t, api, nil, "", "code", "rm", "hello").ok(t)
	if res.stdout != "Deleted code hello (id "+cliCodeID+")\n" {
		t.Errorf("stdout = %q", res.stdout)
	}
	api.last("DELETE", "/codes/"+cliCodeID)

	res = runCLI(t, api, nil, "", "code", "rm", "nosuch")
	if res.code != 1 || res.stderr != "mayfly: no code with id or name \"nosuch\"\n" {
		t.Errorf("exit %d, stderr %q", res.code, res.stderr)
	}
}

func TestTaskQueue(t *testing.T) {
	t.Parallel()
	api := newCLIAPI(t)
	api.handle("POST tasks", 200, wire.QueueResponse{Msg: "Queued up", Tasks: []wire.QueuedTask{{ID: cliTaskID}}})

	res := runCLI(t, api, nil, "", "task", "queue", "hello", "--payload", `{"n":1}`,
		"--priority", "2", "--delay", "90s", "--timeout", "600", "--label", "nightly", "--cluster", "gpu").ok(t)
	if res.stdout != cliTaskID+"\n" {
		t.Errorf("stdout = %q", res.stdout)
	}
	var req wire.QueueRequest
	if err := json.Unmarshal(api.last("POST", "/tasks").Body, &req); err != nil {
		t.Fatal(err)
	}
	two, ninety, sixHundred := 2, 90, 600
	want := wire.NewTask{CodeName: "hello", Payload: `{"n":1}`, Priority: &two, Delay: &ninety, Timeout: &sixHundred, Label: "nightly", Cluster: "gpu"}
	if len(req.Tasks) != 1 || !reflect.DeepEqual(req.Tasks[0], want) {
		t.Errorf("tasks = %+v, want [%+v]", req.Tasks, want)
	}

	// Unset flags stay unset, so the server applies the code's defaults.
	runCLI(t, api, nil, `{"from":"stdin"}`, "task", "queue", "hello", "--payload-file", "-").ok(t)
	var raw map[string][]map[string]any
	json.Unmarshal(api.last("POST", "/tasks").Body, &raw)
	task := raw["tasks"][0]
	if task["payload"] != `{"from":"stdin"}` {
		t.Errorf("payload = %v", task["payload"])
	}
	for _, k := range []string{"priority", "timeout", "delay"} {
		if _, ok := task[k]; ok {
			t.Errorf("%s sent though not given", k)
		}
	}

	for _, args := range [][]string{
		{"task", "queue", "hello", "--priority", "3"},
		{"task", "queue", "hello", "--delay", "1.5s"},
		{"task", "queue", "hello", "--payload", "a", "--payload-file", "b"},
		{"task", "queue"},
	} {
		if res := runCLI(t, api, nil, "", args...); res.code != 1 {
			t.Errorf("%v: exit %d", args, res.code)
		}
	}
}

func TestTaskQueueWait(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		status, msg string
		code        int
		stderr      string
	}{
		{status: "complete", code: 0},
		{status: "error", msg: "exit status 3: boom", code: 1, stderr: "mayfly: task " + cliTaskID + " ended error: exit status 3: boom\n"},
		{status: "cancelled", code: 1, stderr: "mayfly: task " + cliTaskID + " ended cancelled\n"},
	} {
		t.Run(tt.status, func(t *testing.T) {
			t.Parallel()
			api := newCLIAPI(t)
			api.handle("POST tasks", 200, wire.QueueResponse{Msg: "Queued up", Tasks: []wire.QueuedTask{{ID: cliTaskID}}})
			api.handle("GET tasks/"+cliTaskID, 200, wire.Task{ID: cliTaskID, Status: tt.status, Msg: tt.msg})
			api.handle("GET tasks/"+cliTaskID+"/log", 200, "hello from the task\n")

			res := runCLI(t, api, nil, "", "task", "queue", "hello", "--wait", "--poll", "1ms")
			if res.code != tt.code || res.stderr != tt.stderr {
				t.Errorf("exit %d, stderr %q; want %d, %q", res.code, res.stderr, tt.code, tt.stderr)
			}
			if want := cliTaskID + "\nhello from the task\n"; res.stdout != want {
				t.Errorf("stdout = %q, want %q", res.stdout, want)
			}
		})
	}
}

func TestTaskLs(t *testing.T) {
	t.Parallel()
	api := newCLIAPI(t)
	start := time.Now().Add(-time.Minute)
	api.handle("GET tasks", 200, wire.TaskList{Tasks: []wire.Task{
		{ID: "t2", CodeName: "hello", Status: "running", CreatedAt: start, StartTime: &start},
		{ID: "t1", CodeName: "hello", Status: "complete", Duration: 1234, CreatedAt: start, StartTime: &start},
		{ID: "t0", CodeName: "hello", Status: "queued", CreatedAt: start},
	}})

	res := runCLI(t, api, nil, "", "task", "ls", "--status", "error,timeout", "--status", "complete",
		"--code", "hello", "--label", "nightly", "--per-page", "50").ok(t)
	q := api.last("GET", "/tasks").Query
	want := url.Values{"error": {"1"}, "timeout": {"1"}, "complete": {"1"}, "code_name": {"hello"}, "label": {"nightly"}, "per_page": {"50"}}
	if !reflect.DeepEqual(q, want) {
		t.Errorf("query = %v, want %v", q, want)
	}
	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("task ls:\n%s", res.stdout)
	}
	header := strings.Fields(lines[0])
	if !reflect.DeepEqual(header, []string{"ID", "CODE", "STATUS", "CREATED", "DURATION"}) {
		t.Errorf("header = %q", lines[0])
	}
	// Columns are aligned: STATUS starts at the same offset in every line.
	col := strings.Index(lines[0], "STATUS")
	for _, l := range lines[1:] {
		if len(l) <= col || l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("misaligned line %q", l)
		}
	}
	if !strings.HasSuffix(lines[2], " 1.2s") || !strings.HasSuffix(lines[3], " -") || !strings.HasSuffix(lines[1], "+") {
		t.Errorf("durations:\n%s", res.stdout)
	}

	res = runCLI(t, api, nil, "", "task", "ls", "-o", "json").ok(t)
	var tasks []wire.Task
	if err := json.Unmarshal([]byte(res.stdout), &tasks); err != nil || len(tasks) != 3 {
		t.Errorf("task ls -o json: %v\n%s", err, res.stdout)
	}

	if res := runCLI(t, api, nil, "", "task", "ls", "--status", "finished"); res.code != 1 || !strings.Contains(res.stderr, "unknown status") {
		t.Errorf("exit %d, stderr %q", res.code, res.stderr)
	}
}

func TestTaskShowLogCancel(t *testing.T) {
	t.Parallel()
	api := newCLIAPI(t)
	exit := 3
	api.handle("GET tasks/"+cliTaskID, 200, wire.Task{ID: cliTaskID, CodeName: "hello", Status: "error", Msg: "boom", ExitCode: &exit, Timeout: 3600, Payload: `{"n":1}`})
	api.handle("GET tasks/"+cliTaskID+"/log", 200, "line 1\nline 2\n")
	api.handle("POST tasks/"+cliTaskID+"/cancel", 200, wire.Msg{Msg: "Cancelled"})

	res := runCLI(t, api, nil, "", "task", "show", cliTaskID).ok(t)
	for _, want := range []string{"status:", "error", "msg:", "boom", "exit_code:", "3", "timeout:", "3600s", `{"n":1}`} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("task show lacks %q:\n%s", want, res.stdout)
		}
	}
	res = runCLI(t, api, nil, "", "task", "show", cliTaskID, "-o", "json").ok(t)
	var task wire.Task
	if err := json.Unmarshal([]byte(res.stdout), &task); err != nil || task.Msg != "boom" {
		t.Errorf("task show -o json: %v\n%s", err, res.stdout)
	}

	for _, cmd := range []string{"log", "logs"} {
		if res := runCLI(t, api, nil, "", "task", cmd, cliTaskID).ok(t); res.stdout != "line 1\nline 2\n" {
			t.Errorf("task %s = %q", cmd, res.stdout)
		}
	}
	if res := runCLI(t, api, nil, "", "task", "logs", "-f", "--poll", "1ms", cliTaskID).ok(t); res.stdout != "line 1\nline 2\n" {
		t.Errorf("task logs -f = %q", res.stdout)
	}

	res = runCLI(t, api, nil, "", "task", "cancel", cliTaskID).ok(t)
	if res.stdout != "Cancelled task "+cliTaskID+"\n" {
		t.Errorf("stdout = %q", res.stdout)
	}
	api.last("POST", "/tasks/"+cliTaskID+"/cancel")
}

func TestServerErrors(t *testing.T) {
	t.Parallel()
	api := newCLIAPI(t)
	api.handle("GET tasks/"+cliTaskID, 404, wire.Error{Msg: "Task not found"})
	api.handle("GET tasks/"+cliTaskID+"/log", 404, wire.Error{Msg: "Log not found"})

	for _, args := range [][]string{{"task", "show", cliTaskID}, {"task", "log", cliTaskID}} {
		res := runCLI(t, api, nil, "", args...)
		want := "mayfly: " + map[string]string{"show": "Task not found", "log": "Log not found"}[args[1]] + "\n"
		if res.code != 1 || res.stderr != want || res.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want stderr %q", args, res.code, res.stdout, res.stderr, want)
		}
	}
}

func TestConfigSources(t *testing.T) {
	t.Parallel()
	api := newCLIAPI(t)
	api.handle("GET tasks", 200, wire.TaskList{})

	// iron.json alone is enough, as for IronWorker's own clients.
	dir := t.TempDir()
	u, _ := url.Parse(api.srv.URL)
	writeTestFile(t, filepath.Join(dir, "iron.json"),
		`{"token":"file-token","project_id":"`+cliProject+`","host":"`+u.Hostname()+`","port":`+u.Port()+`}`, 0o600)
	var stdout, stderr bytes.Buffer
	a := &app{stdout: &stdout, stderr: &stderr, src: client.ConfigSource{
		Dir: dir, Home: t.TempDir(),
		LookupEnv: func(string) (string, bool) { return "", false },
	}}
	if code := run(t.Context(), []string{"task", "ls"}, a); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if auth := api.last("GET", "/tasks").Auth; auth != "OAuth file-token" {
		t.Errorf("Authorization = %q", auth)
	}

	// Flags beat the environment.
	runCLI(t, api, map[string]string{"MAYFLY_URL": "http://127.0.0.1:1"}, "",
		"task", "ls", "--url", api.srv.URL, "--token", "flag-token").ok(t)
	if auth := api.last("GET", "/tasks").Auth; auth != "OAuth flag-token" {
		t.Errorf("Authorization = %q", auth)
	}

	res := runCLI(t, api, map[string]string{"MAYFLY_TOKEN": ""}, "", "task", "ls")
	if res.code != 1 || !strings.HasPrefix(res.stderr, "mayfly: no token") {
		t.Errorf("exit %d, stderr %q", res.code, res.stderr)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	api := newCLIAPI(t)
	api.handle("GET !/version", 200, wire.Version{Version: "1.2.3"})

	res := runCLI(t, nil, nil, "", "version").ok(t)
	if res.stdout != "mayfly "+version+"\n" {
		t.Errorf("stdout = %q", res.stdout)
	}
	res = runCLI(t, api, nil, "", "version", "--server").ok(t)
	if !strings.Contains(res.stdout, "server 1.2.3 at "+api.srv.URL) {
		t.Errorf("stdout = %q", res.stdout)
	}
}

func TestCommandTree(t *testing.T) {
	t.Parallel()
	root := newRootCmd(&app{})
	for _, path := range [][]string{
		{"server"}, {"runner"}, {"stack"}, {"version"},
		{"code", "push"}, {"code", "ls"}, {"code", "show"}, {"code", "rm"}, {"code", "revisions"}, {"code", "download"},
		{"task", "queue"}, {"task", "ls"}, {"task", "show"}, {"task", "log"}, {"task", "logs"}, {"task", "cancel"},
	} {
		cmd, _, err := root.Find(path)
		if err != nil || cmd == root {
			t.Errorf("mayfly %s: not found (%v)", strings.Join(path, " "), err)
			continue
		}
		if cmd.Short == "" {
			t.Errorf("mayfly %s has no Short", strings.Join(path, " "))
		}
		if cmd.Name() != "server" && cmd.Name() != "stack" && cmd.Long == "" && cmd.Example == "" {
			t.Errorf("mayfly %s has neither Long nor Example", strings.Join(path, " "))
		}
	}
}

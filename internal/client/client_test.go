package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/wire"
)

const (
	testToken   = "tok3n"
	testProject = "0123456789abcdef01234567"
)

// setup starts a fake server that checks the auth header of every request
// and hands it to h, and returns a client of it.
func setup(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("Authorization"); got != "OAuth "+testToken {
			t.Errorf("%s %s: Authorization = %q, want %q", r.Method, r.URL.Path, got, "OAuth "+testToken)
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return New(srv.URL, testToken, testProject, WithHTTPClient(srv.Client()))
}

func writeJSON(t *testing.T, w http.ResponseWriter, status int, v any) {
	t.Helper()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		t.Errorf("encode answer: %v", err)
	}
}

func expect(t *testing.T, r *http.Request, method, path string) {
	t.Helper()
	if r.Method != method || r.URL.EscapedPath() != path {
		t.Errorf("request = %s %s, want %s %s", r.Method, r.URL.EscapedPath(), method, path)
	}
}

func projectPath(rest string) string { return "/2/projects/" + testProject + rest }

func TestProject(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		expect(t, r, http.MethodGet, projectPath(""))
		if ua := r.Header.Get("User-Agent"); ua != "mayfly-test" {
			t.Errorf("User-Agent = %q", ua)
		}
		writeJSON(t, w, 200, wire.Project{ID: testProject, Name: "default"})
	})
	c = New(c.base, testToken, testProject, WithHTTPClient(c.hc), WithUserAgent("mayfly-test"))
	p, err := c.Project(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != testProject || p.Name != "default" {
		t.Errorf("project = %+v", p)
	}
}

func TestAPIError(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case projectPath("/tasks/missing"):
			writeJSON(t, w, 404, wire.Error{Msg: "Task not found"})
		default:
			// A proxy in front of the server answers in its own words.
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
		}
	})

	_, err := c.GetTask(t.Context(), "missing")
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want an *APIError", err)
	}
	if ae.Status != 404 || ae.Msg != "Task not found" {
		t.Errorf("APIError = %+v", ae)
	}
	if ae.Error() != "HTTP 404: Task not found" {
		t.Errorf("Error() = %q", ae.Error())
	}
	if !IsNotFound(err) {
		t.Error("IsNotFound = false")
	}
	if !strings.Contains(err.Error(), "get task missing") {
		t.Errorf("error %q does not say what failed", err)
	}

	_, err = c.GetCode(t.Context(), "x")
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Msg != "Bad Gateway" {
		t.Errorf("err = %v, want HTTP 502: Bad Gateway", err)
	}
	if IsNotFound(err) {
		t.Error("IsNotFound(502) = true")
	}
}

func TestTransportError(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens any more
	c := New(srv.URL, testToken, testProject)
	_, err := c.Version(t.Context())
	var ae *APIError
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("err = %v, want a transport error", err)
	}
	if !strings.Contains(err.Error(), srv.URL+"/version") {
		t.Errorf("error %q does not name the URL", err)
	}
}

func TestNoProject(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	t.Cleanup(srv.Close)
	c := New(srv.URL, testToken, "")
	if _, err := c.ListTasks(t.Context(), TaskFilter{}); err == nil {
		t.Error("ListTasks without a project succeeded")
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d requests sent without a project", n)
	}
}

func TestBasePathAndEscaping(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		expect(t, r, http.MethodGet, "/mayfly/2/projects/"+testProject+"/codes/a%2Fb")
		writeJSON(t, w, 200, wire.Code{ID: "a/b"})
	}))
	t.Cleanup(srv.Close)
	c := New(srv.URL+"/mayfly/", testToken, testProject)
	if _, err := c.GetCode(t.Context(), "a/b"); err != nil {
		t.Fatal(err)
	}
}

func TestUploadCode(t *testing.T) {
	t.Parallel()
	zipBytes := []byte("PK\x03\x04 not really a zip, the server checks that")
	five, two := 5, 2
	up := wire.CodeUpload{
		Name:           "hello",
		Runtime:        "sh",
		FileName:       "hello.sh",
		Stack:          "busybox",
		EnvVars:        map[string]string{"A": "1"},
		MaxConcurrency: &five,
		Retries:        &two,
	}
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		expect(t, r, http.MethodPost, projectPath("/codes"))
		// Streamed, so the length is not known in advance.
		if r.ContentLength != -1 {
			t.Errorf("ContentLength = %d, want -1 (streamed)", r.ContentLength)
		}
		mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/form-data" {
			t.Fatalf("Content-Type = %q", r.Header.Get("Content-Type"))
		}
		mr := multipart.NewReader(r.Body, params["boundary"])

		p, err := mr.NextPart()
		if err != nil || p.FormName() != "data" {
			t.Fatalf("first part: %v, %v", p, err)
		}
		var got wire.CodeUpload
		if err := json.NewDecoder(p).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, up) {
			t.Errorf("data = %+v, want %+v", got, up)
		}

		p, err = mr.NextPart()
		if err != nil || p.FormName() != "file" || p.FileName() != "package.zip" {
			t.Fatalf("second part: %v, %v", p, err)
		}
		if ct := p.Header.Get("Content-Type"); ct != "application/zip" {
			t.Errorf("file Content-Type = %q", ct)
		}
		b, _ := io.ReadAll(p)
		if !bytes.Equal(b, zipBytes) {
			t.Errorf("file = %q", b)
		}
		if _, err := mr.NextPart(); err != io.EOF {
			t.Errorf("extra part: %v", err)
		}
		writeJSON(t, w, 200, wire.UploadResponse{ID: "c1", Msg: "Upload successful.", Rev: 3})
	})
	res, err := c.UploadCode(t.Context(), up, bytes.NewReader(zipBytes))
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "c1" || res.Rev != 3 {
		t.Errorf("answer = %+v", res)
	}
}

func TestUploadImageCodeWithoutFile(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			t.Fatal(err)
		}
		if got := r.MultipartForm.Value["data"]; len(got) != 1 || !strings.Contains(got[0], `"image":"alpine:3"`) {
			t.Errorf("data = %q", got)
		}
		if len(r.MultipartForm.File) != 0 {
			t.Errorf("files = %v, want none", r.MultipartForm.File)
		}
		writeJSON(t, w, 200, wire.UploadResponse{ID: "c2", Msg: "Upload successful.", Rev: 1})
	})
	if _, err := c.UploadCode(t.Context(), wire.CodeUpload{Name: "img", Image: "alpine:3"}, nil); err != nil {
		t.Fatal(err)
	}
}

// An upload the server refuses before reading it all must return, and must
// stop reading the package.
func TestUploadCodeRefused(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(t, w, http.StatusRequestEntityTooLarge, wire.Error{Msg: "Package too large"})
	})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	big := io.LimitReader(zeros{}, 64<<20)
	_, err := c.UploadCode(ctx, wire.CodeUpload{Name: "big"}, big)
	if err == nil {
		t.Fatal("upload succeeded")
	}
	if ctx.Err() != nil {
		t.Fatalf("upload hung: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A package that cannot be read fails the upload with the reader's error.
func TestUploadCodeReadError(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		writeJSON(t, w, 400, wire.Error{Msg: "bad upload"})
	})
	broken := io.MultiReader(strings.NewReader("PK"), errReader{errors.New("disk on fire")})
	_, err := c.UploadCode(t.Context(), wire.CodeUpload{Name: "x"}, broken)
	if err == nil {
		t.Fatal("upload succeeded")
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestListCodes(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		expect(t, r, http.MethodGet, projectPath("/codes"))
		want := url.Values{"page": {"2"}, "per_page": {"50"}}
		if r.URL.Query().Get("page") == "" {
			want = url.Values{} // page 0 and the default size are not sent
		}
		if !reflect.DeepEqual(r.URL.Query(), want) {
			t.Errorf("query = %v, want %v", r.URL.Query(), want)
		}
		writeJSON(t, w, 200, wire.CodeList{Codes: []wire.Code{{ID: "c1", Name: "a"}, {ID: "c2", Name: "b"}}})
	})
	codes, err := c.ListCodes(t.Context(), 2, 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 2 || codes[1].Name != "b" {
		t.Errorf("codes = %+v", codes)
	}
	if _, err := c.ListCodes(t.Context(), 0, 0); err != nil {
		t.Fatal(err)
	}
}

func TestCodeCalls(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method + " " + r.URL.Path {
		case "GET " + projectPath("/codes/c1"):
			writeJSON(t, w, 200, wire.Code{ID: "c1", Name: "hello", Rev: 2})
		case "DELETE " + projectPath("/codes/c1"):
			writeJSON(t, w, 200, wire.Msg{Msg: "Deleted"})
		case "GET " + projectPath("/codes/c1/revisions"):
			writeJSON(t, w, 200, wire.RevisionList{Revisions: []wire.Revision{{Rev: 2}, {Rev: 1}}})
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
			w.WriteHeader(500)
		}
	})
	ctx := t.Context()
	code, err := c.GetCode(ctx, "c1")
	if err != nil || code.Name != "hello" || code.Rev != 2 {
		t.Errorf("GetCode = %+v, %v", code, err)
	}
	revs, err := c.CodeRevisions(ctx, "c1")
	if err != nil || len(revs) != 2 || revs[0].Rev != 2 {
		t.Errorf("CodeRevisions = %+v, %v", revs, err)
	}
	if err := c.DeleteCode(ctx, "c1"); err != nil {
		t.Errorf("DeleteCode: %v", err)
	}
}

func TestDownloadCode(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		expect(t, r, http.MethodGet, projectPath("/codes/c1/download"))
		w.Header().Set("Content-Type", "application/zip")
		io.WriteString(w, "zip of rev "+r.URL.Query().Get("revision"))
	})
	var buf bytes.Buffer
	if err := c.DownloadCode(t.Context(), "c1", 3, &buf); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "zip of rev 3" {
		t.Errorf("got %q", buf.String())
	}
	buf.Reset()
	if err := c.DownloadCode(t.Context(), "c1", 0, &buf); err != nil {
		t.Fatal(err)
	}
	if buf.String() != "zip of rev " {
		t.Errorf("latest: got %q, want no revision parameter", buf.String())
	}
}

func TestQueueTasks(t *testing.T) {
	t.Parallel()
	prio := 2
	tasks := []wire.NewTask{
		{CodeName: "hello", Payload: `{"n":1}`, Priority: &prio, Label: "l"},
		{CodeName: "hello", Payload: ""},
	}
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		expect(t, r, http.MethodPost, projectPath("/tasks"))
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var req wire.QueueRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(req.Tasks, tasks[:len(req.Tasks)]) {
			t.Errorf("tasks = %+v", req.Tasks)
		}
		// Always two ids, so that a miscounting server shows.
		writeJSON(t, w, 200, wire.QueueResponse{Msg: "Queued up", Tasks: []wire.QueuedTask{{ID: "t1"}, {ID: "t2"}}})
	})
	ids, err := c.QueueTasks(t.Context(), tasks)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ids, []string{"t1", "t2"}) {
		t.Errorf("ids = %v", ids)
	}
	if _, err := c.QueueTasks(t.Context(), tasks[:1]); err == nil {
		t.Error("two ids for one task accepted")
	}
}

func TestListTasks(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		expect(t, r, http.MethodGet, projectPath("/tasks"))
		want := url.Values{
			"code_name": {"hello"}, "label": {"nightly"},
			"error": {"1"}, "timeout": {"1"},
			"page": {"1"}, "per_page": {"100"},
		}
		if !reflect.DeepEqual(r.URL.Query(), want) {
			t.Errorf("query = %v, want %v", r.URL.Query(), want)
		}
		writeJSON(t, w, 200, wire.TaskList{Tasks: []wire.Task{{ID: "t2"}, {ID: "t1"}}})
	})
	tasks, err := c.ListTasks(t.Context(), TaskFilter{
		CodeName: "hello", Label: "nightly",
		Statuses: []string{"error", "timeout"},
		Page:     1, PerPage: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 2 || tasks[0].ID != "t2" {
		t.Errorf("tasks = %+v", tasks)
	}
}

func TestTaskCalls(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method + " " + r.URL.Path {
		case "GET " + projectPath("/tasks/t1"):
			writeJSON(t, w, 200, wire.Task{ID: "t1", Status: "complete"})
		case "GET " + projectPath("/tasks/t1/log"):
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "hello\nworld\n")
		case "GET " + projectPath("/tasks/t2/log"):
			writeJSON(t, w, 404, wire.Error{Msg: "Log not found"})
		case "POST " + projectPath("/tasks/t1/cancel"):
			writeJSON(t, w, 200, wire.Msg{Msg: "Cancelled"})
		default:
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
			w.WriteHeader(500)
		}
	})
	ctx := t.Context()
	task, err := c.GetTask(ctx, "t1")
	if err != nil || task.Status != "complete" {
		t.Errorf("GetTask = %+v, %v", task, err)
	}
	log, err := c.TaskLog(ctx, "t1")
	if err != nil || string(log) != "hello\nworld\n" {
		t.Errorf("TaskLog = %q, %v", log, err)
	}
	if _, err := c.TaskLog(ctx, "t2"); !IsNotFound(err) {
		t.Errorf("TaskLog without a log: %v, want a 404", err)
	}
	if err := c.CancelTask(ctx, "t1"); err != nil {
		t.Errorf("CancelTask: %v", err)
	}
}

func TestWebhook(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		expect(t, r, http.MethodPost, projectPath("/tasks/webhook"))
		if got := r.URL.Query().Get("code_name"); got != "hook me" {
			t.Errorf("code_name = %q", got)
		}
		if ct := r.Header.Get("Content-Type"); ct != "text/csv" {
			t.Errorf("Content-Type = %q", ct)
		}
		if b, _ := io.ReadAll(r.Body); string(b) != "a,b\n1,2\n" {
			t.Errorf("body = %q", b)
		}
		writeJSON(t, w, 200, wire.WebhookResponse{ID: "t9", Msg: "Queued up"})
	})
	id, err := c.Webhook(t.Context(), "hook me", strings.NewReader("a,b\n1,2\n"), "text/csv")
	if err != nil || id != "t9" {
		t.Errorf("Webhook = %q, %v", id, err)
	}
}

func TestStacksAndVersion(t *testing.T) {
	t.Parallel()
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/2/stacks":
			writeJSON(t, w, 200, []string{"busybox", "python-3.11"})
		case "/version":
			writeJSON(t, w, 200, wire.Version{Version: "1.2.3", Commit: "abc"})
		default:
			t.Errorf("unexpected %s", r.URL.Path)
		}
	})
	stacks, err := c.Stacks(t.Context())
	if err != nil || !reflect.DeepEqual(stacks, []string{"busybox", "python-3.11"}) {
		t.Errorf("Stacks = %v, %v", stacks, err)
	}
	v, err := c.Version(t.Context())
	if err != nil || v.Version != "1.2.3" {
		t.Errorf("Version = %+v, %v", v, err)
	}
}

func TestWaitTask(t *testing.T) {
	t.Parallel()
	statuses := []string{"queued", "preparing", "running", "error"}
	var polls atomic.Int32
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		expect(t, r, http.MethodGet, projectPath("/tasks/t1"))
		n := int(polls.Add(1)) - 1
		writeJSON(t, w, 200, wire.Task{ID: "t1", Status: statuses[min(n, len(statuses)-1)], Msg: "exit 3"})
	})
	task, err := c.WaitTask(t.Context(), "t1", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if task.Status != "error" || task.Msg != "exit 3" {
		t.Errorf("task = %+v", task)
	}
	if n := polls.Load(); n != 4 {
		t.Errorf("%d polls, want 4", n)
	}
}

func TestWaitTaskCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	c := setup(t, func(w http.ResponseWriter, r *http.Request) {
		cancel() // the user gives up while the task still runs
		writeJSON(t, w, 200, wire.Task{ID: "t1", Status: "running"})
	})
	_, err := c.WaitTask(ctx, "t1", time.Hour)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestTerminal(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"queued": false, "preparing": false, "running": false,
		"complete": true, "error": true, "timeout": true, "killed": true, "cancelled": true,
		"something-new": true,
	} {
		if got := Terminal(s); got != want {
			t.Errorf("Terminal(%q) = %v, want %v", s, got, want)
		}
	}
}

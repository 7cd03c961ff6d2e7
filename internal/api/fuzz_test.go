package api_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/assembly/assemblytest"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// The fuzz targets here send what any client may send, through the real
// handler on a real store, and hold the API to its promise for bad input:
// a refusal with a fitting 4xx status and a {"msg": ...} body, never a
// panic, never a 5xx, and nothing the server cannot show again.

// fuzzAPI is one server for every input of a fuzz target, called in
// process (a panic in a handler reaches the fuzzer).
type fuzzAPI struct {
	h       http.Handler
	project string
	token   string
	// A task leased to runner fuzzRunner (attempt 1), a queued one, and a
	// schedule: inputs name them as $TASK, $QUEUED and $SCHEDULE.
	leased, queued, schedule string
}

const fuzzRunner = "6b0c0f3678b97ac0ae3d1a99"

func newFuzzAPI(f *testing.F) *fuzzAPI {
	f.Helper()
	a := assemblytest.Start(f, assembly.Config{Service: service.Config{KnownStacks: []string{"busybox"}}})
	fa := &fuzzAPI{h: api.New(a.Service, api.Options{Version: "fuzz", MaxRequestBytes: 1 << 20}),
		project: a.Bootstrap.ProjectID, token: a.Bootstrap.Token}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("data", `{"name":"hello","runtime":"sh","file_name":"hello.sh","stack":"busybox"}`)
	fw, _ := mw.CreateFormFile("file", "code.zip")
	fw.Write(fuzzZip())
	mw.Close()
	if st, out := fa.do("POST", fa.path("/codes"), mw.FormDataContentType(), body.Bytes()); st != 200 {
		f.Fatalf("upload: %d %s", st, out)
	}
	_, out := fa.do("POST", fa.path("/tasks"), "application/json",
		[]byte(`{"tasks":[{"code_name":"hello","payload":"a"},{"code_name":"hello","payload":"b","delay":3600}]}`))
	var q wire.QueueResponse
	if err := json.Unmarshal(out, &q); err != nil || len(q.Tasks) != 2 {
		f.Fatalf("queue: %s", out)
	}
	fa.queued = q.Tasks[1].ID
	st, out := fa.do("POST", "/runner/lease", "application/json", []byte(`{"runner_id":"`+fuzzRunner+`","max":1,"wait_ms":10}`))
	var lr wire.LeaseResponse
	if err := json.Unmarshal(out, &lr); st != 200 || err != nil || len(lr.Jobs) != 1 {
		f.Fatalf("lease: %d %s", st, out)
	}
	fa.leased = lr.Jobs[0].TaskID
	_, out = fa.do("POST", fa.path("/schedules"), "application/json",
		[]byte(`{"schedules":[{"code_name":"hello","run_every":3600,"start_at":"2030-01-01T00:00:00Z"}]}`))
	var sr wire.ScheduleResponse
	if err := json.Unmarshal(out, &sr); err != nil || len(sr.Schedules) != 1 {
		f.Fatalf("schedule: %s", out)
	}
	fa.schedule = sr.Schedules[0].ID
	return fa
}

func fuzzZip() []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("hello.sh")
	w.Write([]byte("echo hello\n"))
	zw.Close()
	return buf.Bytes()
}

func (fa *fuzzAPI) path(p string) string { return "/2/projects/" + fa.project + p }

// fill puts the fixture's ids where an input names them.
func (fa *fuzzAPI) fill(s string) string {
	return strings.NewReplacer("$TASK", fa.leased, "$QUEUED", fa.queued, "$SCHEDULE", fa.schedule,
		"$RUNNER", fuzzRunner, "$PROJECT", fa.project).Replace(s)
}

// do sends one request with the fixture's token and returns the answer.
func (fa *fuzzAPI) do(method, target, contentType string, body []byte) (int, []byte) {
	return fa.send(method, target, http.Header{"Content-Type": {contentType}, "Authorization": {"OAuth " + fa.token}}, body)
}

func (fa *fuzzAPI) send(method, target string, hdr http.Header, body []byte) (int, []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, method, "/", bytes.NewReader(body))
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return 0, nil
	}
	req.URL, req.RequestURI = u, target
	req.Header = hdr
	rec := httptest.NewRecorder()
	fa.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// check holds an answer to the promise for bad input.
func check(t *testing.T, what string, st int, out []byte) {
	t.Helper()
	switch {
	case st == 0:
		return // not a request a client could send
	case st >= 500:
		t.Fatalf("%s: server error %d: %s", what, st, out)
	case st >= 400:
		var e wire.Error
		if err := json.Unmarshal(out, &e); err != nil || e.Msg == "" {
			t.Fatalf("%s: refusal %d without a {\"msg\"}: %s", what, st, out)
		}
	case st != 200:
		t.Fatalf("%s: status %d (clients take only 200 as success): %s", what, st, out)
	}
}

func seedMultipart(fields map[string]string, zipData []byte) (string, []byte) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.SetBoundary("fuzzboundary")
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	if zipData != nil {
		fw, _ := mw.CreateFormFile("file", "code.zip")
		fw.Write(zipData)
	}
	mw.Close()
	return mw.FormDataContentType(), body.Bytes()
}

// FuzzUploadCode posts any multipart body (and content type) to POST
// codes; what was accepted must show again through GET codes/{id}.
func FuzzUploadCode(f *testing.F) {
	ct, body := seedMultipart(map[string]string{"data": `{"name":"a","runtime":"sh","file_name":"hello.sh"}`}, fuzzZip())
	f.Add(ct, body)
	ct, body = seedMultipart(map[string]string{"data": `{"name":"img","image":"mayfly/stack:busybox","command":"true","config":{"k":1},"env_vars":{"A":"b"}}`}, nil)
	f.Add(ct, body)
	ct, body = seedMultipart(map[string]string{"data": `{"name":"z","runtime":"python","file_name":"x.py","max_concurrency":-1000,"retries":"3","retries_delay":1e9}`}, []byte("PK\x05\x06"))
	f.Add(ct, body)
	f.Add("multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n{}\r\n--x--\r\n"))
	f.Add("multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.zip\"\r\n\r\nPK\r\n--x\r\n"))
	f.Add("multipart/form-data", []byte("--\r\n"))
	f.Add("application/json", []byte(`{"name":"img2","image":"busybox:latest"}`))
	fa := newFuzzAPI(f)
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		st, out := fa.send("POST", fa.path("/codes"), http.Header{"Content-Type": {contentType},
			"Authorization": {"OAuth " + fa.token}}, body)
		check(t, "upload", st, out)
		if st != 200 {
			return
		}
		var up wire.UploadResponse
		if err := json.Unmarshal(out, &up); err != nil || up.ID == "" {
			t.Fatalf("upload answered %s", out)
		}
		st, out = fa.do("GET", fa.path("/codes/"+up.ID), "", nil)
		if st != 200 || !json.Valid(out) {
			t.Fatalf("uploaded code %s does not show: %d %s", up.ID, st, out)
		}
	})
}

// FuzzUploadParts builds a well-formed upload around any data field and
// any file, so that the code JSON and the zip checks behind the multipart
// reader are reached on every input.
func FuzzUploadParts(f *testing.F) {
	f.Add(`{"name":"a","runtime":"sh","file_name":"hello.sh"}`, fuzzZip())
	f.Add(`{"name":"b","stack":"busybox","command":"true","env_vars":{"":"x"},"config":"{}"}`, fuzzZip())
	f.Add(`{"name":"c","runtime":"binary","file_name":"../x"}`, []byte("PK\x03\x04"))
	f.Add(`{"name":"d","image":"mayfly/stack:busybox","retries":11,"retries_delay":-1}`, []byte{})
	f.Add(`{"name":"","runtime":"sh"}`, fuzzZip())
	fa := newFuzzAPI(f)
	f.Fuzz(func(t *testing.T, data string, file []byte) {
		ct, body := seedMultipart(map[string]string{"data": data}, file)
		st, out := fa.do("POST", fa.path("/codes"), ct, body)
		check(t, "upload", st, out)
		if st != 200 {
			return
		}
		var up wire.UploadResponse
		if err := json.Unmarshal(out, &up); err != nil || up.ID == "" {
			t.Fatalf("upload answered %s", out)
		}
		for _, p := range []string{"/codes/" + up.ID, "/codes/" + up.ID + "/revisions", "/codes?per_page=100"} {
			if st, out := fa.do("GET", fa.path(p), "", nil); st != 200 || !json.Valid(out) {
				t.Fatalf("upload of %q accepted, but GET %s answers %d %q", data, p, st, out)
			}
		}
	})
}

// FuzzJSONBodies posts any body to the routes that read task, code and
// schedule JSON; what a route accepted must show again.
func FuzzJSONBodies(f *testing.F) {
	routes := []struct{ method, path string }{
		{"POST", "/tasks"},
		{"POST", "/tasks/webhook?code_name=hello"},
		{"POST", "/tasks/$QUEUED/retry"},
		{"POST", "/tasks/$TASK/progress"},
		{"POST", "/schedules"},
		{"PUT", "/schedules/$SCHEDULE"},
		{"POST", "/codes"},
		{"POST", "/tasks/$QUEUED/cancel"},
	}
	for i, seed := range []string{
		`{"tasks":[{"code_name":"hello","payload":"{}","priority":2,"timeout":1.5,"delay":"30","cluster":"default","label":"l"}]}`,
		`{"anything":"goes"}`,
		`{"delay":9223372037}`,
		`{"percent":50,"msg":"half"}`,
		`{"schedules":[{"code_name":"hello","cron":"*/5 * * * *","timezone":"Europe/Paris","start_at":"9999-12-31T23:59:59-23:59"}]}`,
		`{"run_every":60,"end_at":1774751400,"payload":"p","run_times":"3"}`,
		`{"name":"img","image":"busybox:1","command":"true","max_concurrency":2,"default_priority":-1000}`,
		`{}`,
	} {
		f.Add(uint8(i), []byte(seed))
	}
	f.Add(uint8(0), []byte(`{"tasks":[{"code_name":"hello","priority":-3,"timeout":0,"delay":-1}]}`))
	f.Add(uint8(4), []byte(`{"schedules":[{"code_name":"hello","run_every":59,"start_at":"0000-01-01T00:00:00Z"}]}`))
	f.Add(uint8(5), []byte(`{"cron":"0 0 31 2 *","timezone":"../../etc/passwd"}`))
	// Found by this target: an offset carried 9999-12-31 into the year
	// 10000, stored, and every schedule list after it answered 200 with
	// an empty body.
	f.Add(uint8(4), []byte(`{"schedules":[{"code_name":"hello","run_every":3600,"start_at":"9999-12-31T23:59:59-23:59"}]}`))
	f.Add(uint8(5), []byte(`{"end_at":"9999-12-31T23:59:59-23:59"}`))
	fa := newFuzzAPI(f)
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := routes[int(route)%len(routes)]
		path := fa.path(fa.fill(r.path))
		st, out := fa.do(r.method, path, "application/json", body)
		check(t, r.method+" "+r.path, st, out)
		if st != 200 {
			return
		}
		// What was made must be readable: ids in the answer show.
		var made struct {
			ID        string             `json:"id"`
			Tasks     []wire.QueuedTask  `json:"tasks"`
			Schedules []wire.ScheduledID `json:"schedules"`
		}
		json.Unmarshal(out, &made)
		var show []string
		for _, tk := range made.Tasks {
			show = append(show, "/tasks/"+tk.ID)
		}
		for _, s := range made.Schedules {
			show = append(show, "/schedules/"+s.ID)
		}
		if r.path == "/codes" && made.ID != "" {
			show = append(show, "/codes/"+made.ID)
		}
		if r.method == "PUT" {
			show = append(show, fa.fill("/schedules/$SCHEDULE"))
		}
		show = append(show, "/schedules?per_page=100", "/tasks?per_page=100", "/codes?per_page=100")
		for _, p := range show {
			if st, out := fa.do("GET", fa.path(p), "", nil); st != 200 || !json.Valid(out) {
				t.Fatalf("%s accepted %q, but GET %s answers %d %q", r.path, body, p, st, out)
			}
		}
	})
}

// FuzzToken sends any Authorization header and oauth query: only the
// project's token, in one of the accepted forms, may pass.
func FuzzToken(f *testing.F) {
	for _, seed := range [][2]string{
		{"OAuth $TOKEN", ""}, {"Bearer $TOKEN", ""}, {"Token $TOKEN", ""}, {"", "$TOKEN"},
		{"oauth   $TOKEN  ", ""}, {"OAuth", ""}, {"OAuth ", "$TOKEN"}, {"Basic $TOKEN", ""},
		{"OAuth $TOKEN\x00", ""}, {"OAuth x", "$TOKEN"}, {"", "$TOKEN&oauth=x"}, {"Bearer\t$TOKEN", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	fa := newFuzzAPI(f)
	f.Fuzz(func(t *testing.T, authorization, oauth string) {
		authorization = strings.ReplaceAll(authorization, "$TOKEN", fa.token)
		oauth = strings.ReplaceAll(oauth, "$TOKEN", fa.token)
		hdr := http.Header{}
		if authorization != "" {
			hdr.Set("Authorization", authorization)
		}
		target := fa.path("") + "?oauth=" + url.QueryEscape(oauth)
		st, out := fa.send("GET", target, hdr, nil)
		check(t, "auth", st, out)
		if st != 200 {
			return
		}
		// Passed: the token given must be the project's, whole.
		var given string
		if authorization != "" {
			scheme, rest, _ := strings.Cut(authorization, " ")
			if s := strings.ToLower(scheme); s != "oauth" && s != "bearer" && s != "token" {
				t.Fatalf("authorization %q passed with scheme %q", authorization, scheme)
			}
			given = strings.TrimSpace(rest)
		} else {
			given = oauth
		}
		if given != fa.token {
			t.Fatalf("authorization %q, oauth %q passed with token %q", authorization, oauth, given)
		}
	})
}

// FuzzRunnerProtocol sends any body (and query) to the runner routes,
// about a task leased to a runner, a queued one, or any id: only the
// current lease may change a task, and it must still show.
func FuzzRunnerProtocol(f *testing.F) {
	routes := []string{"/runner/lease", "/runner/tasks/$TASK/started", "/runner/tasks/$TASK/heartbeat",
		"/runner/tasks/$TASK/log", "/runner/tasks/$TASK/finish", "/runner/tasks/$QUEUED/finish",
		"/2/projects/$PROJECT/tasks/$TASK/progress"}
	for i, seed := range []struct{ query, body string }{
		{"", `{"runner_id":"$RUNNER","max":0,"wait_ms":1,"clusters":["","gpu"]}`},
		{"", `{"runner_id":"$RUNNER","attempt":1}`},
		{"", `{"runner_id":"$RUNNER","attempt":1}`},
		{"runner_id=$RUNNER&attempt=1", "line\n"},
		{"", `{"runner_id":"$RUNNER","attempt":1,"status":"complete","exit_code":0,"timings":{"run":1.5,"logs":-1e308}}`},
		{"", `{"runner_id":"$RUNNER","attempt":1,"status":"error","exit_code":3,"msg":"x"}`},
		{"", `{"runner_id":"$RUNNER","attempt":1,"percent":50,"msg":"half"}`},
	} {
		f.Add(uint8(i), seed.query, []byte(seed.body))
	}
	f.Add(uint8(4), "", []byte(`{"runner_id":"$RUNNER","attempt":9223372036854775807,"status":"running"}`))
	f.Add(uint8(3), "runner_id=$RUNNER&attempt=1e3", []byte("\x00\xff"))
	fa := newFuzzAPI(f)
	f.Fuzz(func(t *testing.T, route uint8, query string, body []byte) {
		path := fa.fill(routes[int(route)%len(routes)])
		target := path
		if q := fa.fill(query); q != "" {
			target += "?" + q
		}
		// A long poll for tasks would hold each input for its wait.
		if strings.HasSuffix(path, "/lease") {
			var lr map[string]any
			if json.Unmarshal(body, &lr) == nil && lr != nil {
				lr["wait_ms"] = 0
				body, _ = json.Marshal(lr)
			}
		}
		st, out := fa.do("POST", target, "application/json", []byte(fa.fill(string(body))))
		if st == http.StatusGone && !bytes.Contains(out, []byte("msg")) {
			t.Fatalf("%s: lease lost without a msg: %s", target, out)
		}
		check(t, "POST "+path, st, out)
		for _, id := range []string{fa.leased, fa.queued} {
			if st, out := fa.do("GET", fa.path("/tasks/"+id), "", nil); st != 200 || !json.Valid(out) {
				t.Fatalf("after POST %s with %q: task %s answers %d %s", target, body, id, st, out)
			}
		}
		if st, out := fa.do("GET", fa.path("/tasks?per_page=100"), "", nil); st != 200 || !json.Valid(out) {
			t.Fatalf("after POST %s with %q: the task list answers %d %s", target, body, st, out)
		}
	})
}

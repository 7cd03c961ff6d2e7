package api_test

import (
	"strings"
	"testing"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

func (b *bundle) createToken(body string) wire.CreatedToken {
	b.t.Helper()
	st, out := b.do("POST", b.srv.URL+"/2/tokens", strings.NewReader(body))
	if st != 200 {
		b.t.Fatalf("create token %s: %d %s", body, st, out)
	}
	return decode[wire.CreatedToken](b.t, out)
}

// A runner token leases and reports as one runner, for its clusters only,
// and is good for nothing else; revoked, it fails at once.
func TestRunnerTokens(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	rt := b.createToken(`{"kind":"runner","name":"box a","clusters":["a"]}`)
	if rt.Secret == "" || rt.Kind != "runner" || len(rt.Clusters) != 1 || rt.Clusters[0] != "a" || !id24.MatchString(rt.ID) {
		t.Fatalf("created: %+v", rt)
	}
	asRunner := []string{"Authorization", "OAuth " + rt.Secret}
	aTask := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"","cluster":"a"}]}`)
	b.queueOne(`{"tasks":[{"code_name":"hello","payload":"","cluster":"b"}]}`)

	// A runner of cluster a never gets cluster b's task: asking for b is
	// refused, whatever the body says.
	st, out := b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(`{"runner_id":"x","max":5,"clusters":["b"]}`), asRunner...)
	wantErr(t, st, out, 403, `cluster "b"`)
	st, out = b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(`{"runner_id":"x","max":5}`), asRunner...)
	wantErr(t, st, out, 403, "default cluster")
	st, out = b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(`{"runner_id":"pretends-to-be-r1","max":5,"clusters":["a"],"wait_ms":10}`), asRunner...)
	jobs := decode[wire.LeaseResponse](t, out).Jobs
	if st != 200 || len(jobs) != 1 || jobs[0].TaskID != aTask {
		t.Fatalf("lease as runner a: %d %s", st, out)
	}
	// Its identity is its token: the task records the token's id, and the
	// runner id in a body counts for nothing.
	_, out = b.do("GET", b.url("/tasks/"+aTask), nil)
	if tk := decode[wire.Task](t, out); tk.RunnerID != rt.ID {
		t.Fatalf("runner of the task %q, want the token's id %s", tk.RunnerID, rt.ID)
	}
	post := func(path, body string) (int, []byte) {
		return b.do("POST", b.srv.URL+"/runner/tasks/"+aTask+path, strings.NewReader(body), asRunner...)
	}
	if st, out := post("/started", `{"runner_id":"anything","attempt":1}`); st != 200 {
		t.Fatalf("started: %d %s", st, out)
	}
	// Packages: only those of tasks it holds.
	st, out = b.do("GET", b.srv.URL+"/runner/packages/"+jobs[0].Code.RevisionID, nil, asRunner...)
	if st != 200 || !strings.HasPrefix(string(out), "PK") {
		t.Fatalf("package of a held task: %d", st)
	}
	other := b.pushHelloNamed("other-code")
	_, out = b.do("GET", b.url("/codes/"+other.ID), nil)
	otherRev := decode[wire.Code](t, out).LatestHistoryID
	st, out = b.do("GET", b.srv.URL+"/runner/packages/"+otherRev, nil, asRunner...)
	wantErr(t, st, out, 404, "")
	// No /2/ route, nor token management.
	for _, r := range []struct{ method, url string }{
		{"GET", b.url("/tasks")}, {"GET", b.url("/codes")}, {"GET", b.srv.URL + "/2/tokens"}, {"GET", b.srv.URL + "/2/runners"},
	} {
		st, out := b.do(r.method, r.url, nil, asRunner...)
		wantErr(t, st, out, 403, "")
	}
	// Revoked: 401 at once, for every call.
	_, out = b.do("GET", b.srv.URL+"/2/tokens", nil)
	if l := decode[wire.TokenList](t, out); len(l.Tokens) < 2 || strings.Contains(string(out), rt.Secret) {
		t.Fatalf("token list: %s", out)
	}
	if st, out := b.do("DELETE", b.srv.URL+"/2/tokens/"+rt.ID, nil); st != 200 {
		t.Fatalf("revoke: %d %s", st, out)
	}
	st, out = post("/finish", `{"runner_id":"x","attempt":1,"status":"complete","exit_code":0}`)
	wantErr(t, st, out, 401, "")
	st, out = b.do("POST", b.srv.URL+"/runner/lease", strings.NewReader(`{"runner_id":"x","max":1,"clusters":["a"]}`), asRunner...)
	wantErr(t, st, out, 401, "")
	st, out = b.do("DELETE", b.srv.URL+"/2/tokens/"+rt.ID, nil)
	wantErr(t, st, out, 404, "")
}

func TestTokenManagementRefusesBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	for body, part := range map[string]string{
		`{"kind":"root","name":"x"}`:    "kind must be",
		`{"kind":"runner"}`:             "name",
		`{"kind":"project","name":"x"}`: "project_id",
		`{"kind":"project","name":"x","project_id":"ffffffffffffffffffffffff"}`: "project_id",
		`{"kind":"admin","name":"x","clusters":["a"]}`:                          "Only a runner token",
		`{"kind":"runner","name":"x","project_id":"` + b.project + `"}`:         "Only a project token",
		`{"kind":`: "Malformed JSON",
	} {
		st, out := b.do("POST", b.srv.URL+"/2/tokens", strings.NewReader(body))
		wantErr(t, st, out, 400, part)
	}
	// A project token made here works for its project and no other route.
	pt := b.createToken(`{"kind":"project","name":"ci","project_id":"` + b.project + `"}`)
	if st, out := b.do("GET", b.url("/codes"), nil, "Authorization", "OAuth "+pt.Secret); st != 200 {
		t.Fatalf("project token on its project: %d %s", st, out)
	}
	st, out := b.do("POST", b.srv.URL+"/2/tokens", strings.NewReader(`{"kind":"admin","name":"escalate"}`), "Authorization", "OAuth "+pt.Secret)
	wantErr(t, st, out, 403, "admin")
}

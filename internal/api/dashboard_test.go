package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mayfly-run/mayfly/internal/dashboard"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// browser sends requests as a dashboard page would: no Authorization
// header, the session cookie, and the headers given.
func (b *bundle) browser(method, url, body, cookie string, hdr ...string) (int, []byte, *http.Response) {
	b.t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: dashboard.CookieName, Value: cookie})
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data, resp
}

// signIn signs in with token from the dashboard's own page and returns
// the cookie's value and the session.
func (b *bundle) signIn(token, projectID string) (string, dashboard.Session) {
	b.t.Helper()
	st, body, resp := b.browser("POST", b.srv.URL+"/dashboard/session", `{"token":"`+token+`","project_id":"`+projectID+`"}`, "",
		"Content-Type", "application/json", "Origin", b.srv.URL, "Sec-Fetch-Site", "same-origin")
	if st != 200 {
		b.t.Fatalf("sign in: %d %s", st, body)
	}
	var c *http.Cookie
	for _, x := range resp.Cookies() {
		if x.Name == dashboard.CookieName {
			c = x
		}
	}
	if c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge <= 0 {
		b.t.Fatalf("session cookie %+v: want Secure, HttpOnly, SameSite=Strict, Path=/", c)
	}
	if strings.Contains(c.Value, token) {
		b.t.Fatalf("the cookie holds the token in the clear: %q", c.Value)
	}
	return c.Value, decode[dashboard.Session](b.t, body)
}

// The dashboard is at /, with its policy; unknown paths under /2/ and
// /runner/ are still the API's JSON 404.
func TestDashboardPagesAndAPI404s(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	for _, p := range []string{"/", "/tasks", "/tasks/5f0000000000000000000000", "/codes", "/schedules", "/runners", "/signin"} {
		st, body, resp := b.browser("GET", b.srv.URL+p, "", "")
		if st != 200 || !strings.Contains(string(body), `<script type="module" src="/assets/app.js">`) {
			t.Fatalf("GET %s: %d %.200s", p, st, body)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Fatalf("GET %s: CSP %q", p, csp)
		}
	}
	st, _, resp := b.browser("GET", b.srv.URL+"/assets/app.js", "", "")
	if st != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") || resp.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("app.js: %d %v", st, resp.Header)
	}
	for _, p := range []string{"/2/nope", "/2/projects/" + b.project + "/nope", "/runner/nope", "/nope", "/assets/", "/assets/../dashboard.go"} {
		st, body, _ := b.browser("GET", b.srv.URL+p, "", "")
		if st != 404 {
			t.Fatalf("GET %s: %d %s, want 404", p, st, body)
		}
	}
	st, body, _ := b.browser("GET", b.srv.URL+"/2/nope", "", "")
	wantErr(t, st, body, 404, "No route")
}

// Signing in: a wrong token is refused, a project token signs in to its
// project, an admin token to the project it names; the cookie then
// stands in for the token on the API, for reads.
func TestDashboardSignIn(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	same := []string{"Content-Type", "application/json", "Origin", b.srv.URL, "Sec-Fetch-Site", "same-origin"}
	st, body, resp := b.browser("POST", b.srv.URL+"/dashboard/session", `{"token":"wrong"}`, "", same...)
	wantErr(t, st, body, 401, "Invalid token")
	if len(resp.Cookies()) != 0 {
		t.Fatalf("a refused sign-in set cookies: %v", resp.Cookies())
	}
	// Neither from another site, nor as a form.
	st, body, _ = b.browser("POST", b.srv.URL+"/dashboard/session", `{"token":"`+b.token+`","project_id":"`+b.project+`"}`, "",
		"Content-Type", "application/json", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	wantErr(t, st, body, 403, "cross-site")
	st, body, _ = b.browser("POST", b.srv.URL+"/dashboard/session", `{"token":"`+b.token+`","project_id":"`+b.project+`"}`, "",
		"Content-Type", "text/plain", "Origin", b.srv.URL)
	wantErr(t, st, body, 400, "JSON body")
	st, body, _ = b.browser("POST", b.srv.URL+"/dashboard/session", `{"token":"`+b.token+`"}`, "", same...)
	wantErr(t, st, body, 400, "admin token")

	pt := b.createToken(`{"kind":"project","name":"web","project_id":"` + b.project + `"}`)
	cookie, sess := b.signIn(pt.Secret, "")
	if sess.ProjectID != b.project || sess.Kind != "project" || sess.CSRF == "" {
		t.Fatalf("session %+v", sess)
	}
	st, body, _ = b.browser("GET", b.srv.URL+"/dashboard/session", "", cookie, "Sec-Fetch-Site", "same-origin")
	if got := decode[dashboard.Session](t, body); st != 200 || got != sess {
		t.Fatalf("current session: %d %+v, want %+v", st, got, sess)
	}
	st, body, _ = b.browser("GET", b.url("/tasks"), "", cookie, "Sec-Fetch-Site", "same-origin")
	if st != 200 {
		t.Fatalf("tasks with the cookie: %d %s", st, body)
	}
	// A project token's session is no admin's: /2/runners stays closed.
	st, body, _ = b.browser("GET", b.srv.URL+"/2/runners", "", cookie)
	wantErr(t, st, body, 403, "admin")

	admin, sess := b.signIn(b.token, b.project)
	if sess.Kind != "admin" {
		t.Fatalf("admin session %+v", sess)
	}
	if st, body, _ := b.browser("GET", b.srv.URL+"/2/runners", "", admin); st != 200 {
		t.Fatalf("runners as admin: %d %s", st, body)
	}

	// Revoking the token ends its sessions.
	st, body = b.do("DELETE", b.srv.URL+"/2/tokens/"+pt.ID, nil)
	if st != 200 {
		t.Fatalf("revoke: %d %s", st, body)
	}
	st, body, _ = b.browser("GET", b.url("/tasks"), "", cookie)
	wantErr(t, st, body, 401, "Invalid token")
}

// A change made with the cookie needs the session's CSRF header and an
// Origin of this host: a cross-site form POST, a cross-site fetch, a
// request with the header but from another origin, all are refused and
// nothing is queued. Sign-out clears the cookie.
func TestDashboardCSRF(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	cookie, sess := b.signIn(b.token, b.project)
	task := `{"tasks":[{"code_name":"hello","payload":"x"}]}`
	for name, hdr := range map[string][]string{
		"a cross-site form POST": {"Content-Type", "application/x-www-form-urlencoded", "Origin", "https://evil.example",
			"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate"},
		"a cross-site form POST without fetch metadata": {"Content-Type", "text/plain", "Origin", "https://evil.example"},
		"a same-site sibling's fetch":                   {"Content-Type", "application/json", "Origin", "https://other.localhost", "Sec-Fetch-Site", "same-site", dashboard.CSRFHeader, sess.CSRF},
		"no CSRF header":                                {"Content-Type", "application/json", "Origin", b.srv.URL, "Sec-Fetch-Site", "same-origin"},
		"a wrong CSRF header":                           {"Content-Type", "application/json", "Origin", b.srv.URL, dashboard.CSRFHeader, "x" + sess.CSRF},
		"the CSRF header from another origin":           {"Content-Type", "application/json", "Origin", "https://evil.example", dashboard.CSRFHeader, sess.CSRF},
		"the CSRF header and no origin at all":          {"Content-Type", "application/json", dashboard.CSRFHeader, sess.CSRF},
	} {
		st, body, _ := b.browser("POST", b.url("/tasks"), task, cookie, hdr...)
		if st != 403 {
			t.Errorf("%s: %d %s, want 403", name, st, body)
		}
	}
	st, body := b.do("GET", b.url("/tasks"), nil)
	if got := decode[wire.TaskList](t, body); st != 200 || len(got.Tasks) != 0 {
		t.Fatalf("refused posts queued tasks: %s", body)
	}
	st, body, _ = b.browser("POST", b.url("/tasks"), task, cookie,
		"Content-Type", "application/json", "Origin", b.srv.URL, "Sec-Fetch-Site", "same-origin", dashboard.CSRFHeader, sess.CSRF)
	if st != 200 {
		t.Fatalf("the dashboard's own post: %d %s", st, body)
	}

	// Sign-out is a change too.
	st, body, _ = b.browser("DELETE", b.srv.URL+"/dashboard/session", "", cookie, "Origin", "https://evil.example")
	wantErr(t, st, body, 403, "Refused")
	st, body, resp := b.browser("DELETE", b.srv.URL+"/dashboard/session", "", cookie, "Origin", b.srv.URL, dashboard.CSRFHeader, sess.CSRF)
	if st != 200 || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 || resp.Cookies()[0].Value != "" {
		t.Fatalf("sign out: %d %s %v", st, body, resp.Cookies())
	}
}

// The overview counts per code what is queued now and what ended in the
// window, and refuses windows it does not know.
func TestDashboardOverview(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	done := b.queueOne(`{"tasks":[{"code_name":"hello","payload":""}]}`)
	b.runTask(done, "hi\n", "complete")
	b.queueOne(`{"tasks":[{"code_name":"hello","payload":""}]}`)
	for _, w := range []string{"", "?window=day"} {
		st, body := b.do("GET", b.url("/overview"+w), nil)
		o := decode[wire.Overview](t, body)
		if st != 200 || len(o.Codes) != 1 || o.Codes[0].CodeName != "hello" || o.Codes[0].Counts["queued"] != 1 ||
			o.Codes[0].Counts["complete"] != 1 || len(o.Series) != 1 || o.Series[0].Ended["complete"] != 1 {
			t.Fatalf("overview%s: %d %s", w, st, body)
		}
	}
	st, body := b.do("GET", b.url("/overview?window=week"), nil)
	wantErr(t, st, body, 400, "window")
}

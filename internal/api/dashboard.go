package api

import (
	"net/http"
	"slices"
	"time"

	"github.com/mayfly-run/mayfly/internal/dashboard"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// dashboardRoutes serve the dashboard's page, its assets, its session and
// the overview it draws. Unknown paths under /2/ and /runner/ still get
// the API's JSON 404 from the catch-all.
func (a *API) dashboardRoutes() {
	m := a.mux
	for _, p := range dashboard.Pages {
		m.HandleFunc("GET "+p, dashboard.Page)
	}
	m.Handle("GET /assets/", dashboard.Assets())
	m.HandleFunc("POST /dashboard/session", a.serve(a.signIn))
	m.HandleFunc("GET /dashboard/session", a.serve(a.currentSession))
	m.HandleFunc("DELETE /dashboard/session", a.serve(a.signOut))
	m.HandleFunc("GET /2/projects/{project}/overview", a.project(a.overview))
}

// credential is the caller's token: from the Authorization header or
// ?oauth= when either is there (API clients), else from the dashboard's
// session cookie, once the request has shown that it comes from a
// dashboard page (see dashboard.Sessions.Token).
func (a *API) credential(w http.ResponseWriter, r *http.Request) (string, error) {
	if r.Header.Get("Authorization") != "" || r.URL.Query().Has("oauth") {
		return token(r), nil
	}
	secret, err := a.sessions.Token(r)
	if err == nil && secret != "" {
		// Whatever a browser fetches with the cookie is data, never a
		// document: a log opened in a tab stays text.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; sandbox")
		w.Header().Set("X-Content-Type-Options", "nosniff")
	}
	return secret, err
}

func (a *API) signIn(w http.ResponseWriter, r *http.Request) error {
	dashboard.SecureHeaders(w.Header())
	w.Header().Set("Cache-Control", "no-store")
	var req dashboard.SignInRequest
	if err := a.readJSON(w, r, &req); err != nil {
		return err
	}
	s, err := a.sessions.SignIn(w, r, req)
	if err != nil {
		return err
	}
	return writeJSON(w, s)
}

func (a *API) currentSession(w http.ResponseWriter, r *http.Request) error {
	dashboard.SecureHeaders(w.Header())
	w.Header().Set("Cache-Control", "no-store")
	s, err := a.sessions.Current(r)
	if err != nil {
		return err
	}
	return writeJSON(w, s)
}

func (a *API) signOut(w http.ResponseWriter, r *http.Request) error {
	dashboard.SecureHeaders(w.Header())
	w.Header().Set("Cache-Control", "no-store")
	if err := a.sessions.SignOut(w, r); err != nil {
		return err
	}
	return writeJSON(w, wire.Msg{Msg: "Signed out"})
}

// overview answers the dashboard's first page: ?window=hour (default) or
// day.
func (a *API) overview(w http.ResponseWriter, r *http.Request) error {
	window := time.Hour
	switch v := r.URL.Query().Get("window"); v {
	case "", "hour":
	case "day":
		window = 24 * time.Hour
	default:
		return errStatus(http.StatusBadRequest, "window must be hour or day")
	}
	o, p, err := a.svc.Overview(r.Context(), projectOf(r).ID, window)
	if err != nil {
		return err
	}
	out := wire.Overview{Window: int(window / time.Second), Bucket: int(p.Bucket / time.Second), Since: p.Since,
		Codes: []wire.CodeCounts{}, Series: []wire.Point{}}
	byCode := map[string]map[string]int64{}
	for _, c := range append(o.Active, o.Ended...) {
		m := byCode[c.CodeName]
		if m == nil {
			m = map[string]int64{}
			byCode[c.CodeName] = m
			out.Codes = append(out.Codes, wire.CodeCounts{CodeName: c.CodeName, Counts: m})
		}
		m[string(c.Status)] += c.N
	}
	slices.SortFunc(out.Codes, func(x, y wire.CodeCounts) int {
		switch {
		case x.CodeName < y.CodeName:
			return -1
		case x.CodeName > y.CodeName:
			return 1
		}
		return 0
	})
	for _, b := range o.Series {
		pt := wire.Point{Time: b.Start, Ended: map[string]int64{}, Started: b.Waited, WaitMaxMs: ms(b.WaitMax)}
		for st, n := range b.Ended {
			pt.Ended[string(st)] = n
		}
		if b.Waited > 0 {
			pt.WaitAvgMs = ms(b.WaitSum) / float64(b.Waited)
		}
		out.Series = append(out.Series, pt)
	}
	return writeJSON(w, out)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

package api

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mayfly-run/mayfly/internal/mayfly"
	"github.com/mayfly-run/mayfly/internal/wire"
)

func (a *API) routes() {
	m := a.mux
	const p = "/2/projects/{project}"
	m.HandleFunc("GET "+p, a.project(a.getProject))
	m.HandleFunc("GET /2/projects", a.admin(a.listProjects))
	m.HandleFunc("POST /2/projects", a.admin(a.createProject))
	m.HandleFunc("PATCH "+p, a.admin(a.updateProject))
	m.HandleFunc("DELETE "+p, a.admin(a.deleteProject))
	m.HandleFunc("GET /2/audit", a.authed(a.listAudit))
	m.HandleFunc("POST "+p+"/codes", a.project(a.uploadCode))
	m.HandleFunc("GET "+p+"/codes", a.project(a.listCodes))
	m.HandleFunc("GET "+p+"/codes/{id}", a.project(a.getCode))
	m.HandleFunc("DELETE "+p+"/codes/{id}", a.project(a.deleteCode))
	m.HandleFunc("GET "+p+"/codes/{id}/revisions", a.project(a.codeRevisions))
	m.HandleFunc("GET "+p+"/codes/{id}/download", a.project(a.downloadCode))
	m.HandleFunc("POST "+p+"/tasks", a.project(a.queueTasks))
	m.HandleFunc("GET "+p+"/tasks", a.project(a.listTasks))
	m.HandleFunc("POST "+p+"/tasks/webhook", a.project(a.webhook))
	m.HandleFunc("GET "+p+"/tasks/{id}", a.project(a.getTask))
	m.HandleFunc("GET "+p+"/tasks/{id}/log", a.project(a.taskLog))
	// outlog is what the Node client's tasksRun reads; Mayfly keeps one
	// log per task, stdout and stderr together.
	m.HandleFunc("GET "+p+"/tasks/{id}/outlog", a.project(a.taskLog))
	m.HandleFunc("POST "+p+"/tasks/{id}/cancel", a.project(a.cancelTask))
	a.queueRoutes()
	a.scheduleRoutes()
	m.HandleFunc("GET /2/stacks", a.serve(a.stacks))
	m.HandleFunc("GET /2/runners", a.admin(a.runners))
	m.HandleFunc("POST /2/tokens", a.admin(a.createToken))
	m.HandleFunc("GET /2/tokens", a.admin(a.listTokens))
	m.HandleFunc("DELETE /2/tokens/{id}", a.admin(a.revokeToken))
	m.HandleFunc("GET /version", a.serve(a.version))
	if a.opts.Metrics != nil {
		// Code names and volumes of every project: for operators only.
		// Prometheus presents the admin token as a bearer token.
		m.HandleFunc("GET /metrics", a.admin(func(w http.ResponseWriter, r *http.Request) error {
			a.opts.Metrics.Handler().ServeHTTP(w, r)
			return nil
		}))
	}
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	m.HandleFunc("GET /readyz", a.serve(a.ready))

	m.HandleFunc("POST /runner/lease", a.runner(a.lease))
	m.HandleFunc("POST /runner/tasks/{id}/started", a.runner(a.started))
	m.HandleFunc("POST /runner/tasks/{id}/heartbeat", a.runner(a.heartbeat))
	m.HandleFunc("POST /runner/tasks/{id}/log", a.runner(a.appendLog))
	m.HandleFunc("POST /runner/tasks/{id}/finish", a.runner(a.finish))
	m.HandleFunc("GET /runner/packages/{revision}", a.runner(a.pkg))

	a.dashboardRoutes()
	m.HandleFunc("/", a.serve(func(w http.ResponseWriter, r *http.Request) error {
		return errStatus(http.StatusNotFound, "No route for "+r.Method+" "+r.URL.Path)
	}))
}

func itoa[T ~int | ~int64](v T) string { return strconv.FormatInt(int64(v), 10) }

// maxPage bounds page, so that page * per_page stays far from overflow.
const maxPage = 10_000_000

// page reads IronWorker's 0-based page and per_page (default 30, max 100;
// below 1 means the default, as iron_go3 documents).
func page(r *http.Request) (mayfly.Page, error) {
	q := r.URL.Query()
	p := mayfly.Page{PerPage: 30}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > maxPage {
			return p, errStatus(http.StatusBadRequest, "page must be a whole number from 0 to "+itoa(maxPage))
		}
		p.Page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := wire.ParseInt("per_page", v)
		if err != nil {
			return p, errStatus(http.StatusBadRequest, "per_page must be a whole number from 1 to 100 (0 means the default, 30)")
		}
		if n >= 1 {
			p.PerPage = min(n, 100)
		}
	}
	return p, nil
}

// stacks lists the stacks the live runners have: a bare JSON array, as
// IronWorker's GET /2/stacks.
func (a *API) stacks(w http.ResponseWriter, r *http.Request) error {
	names, err := a.svc.Stacks(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, names)
}

// runners lists the live runners, for operators.
func (a *API) runners(w http.ResponseWriter, r *http.Request) error {
	rs, err := a.svc.Runners(r.Context())
	if err != nil {
		return err
	}
	out := wire.RunnerList{Runners: make([]wire.Runner, 0, len(rs))}
	for _, x := range rs {
		out.Runners = append(out.Runners, wire.Runner{ID: x.ID, Host: x.Host, Clusters: nonNil(x.Clusters),
			Capacity: x.Capacity, Busy: x.Busy, Version: x.Version, Driver: x.Driver, Stacks: nonNil(x.Stacks),
			LastSeen: x.LastSeen})
	}
	return writeJSON(w, out)
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

func (a *API) version(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, wire.Version{Version: a.opts.Version})
}

func (a *API) ready(w http.ResponseWriter, r *http.Request) error {
	// The store and the disk are asked every time (a full disk must show
	// at once); what lies beyond, at most once a second.
	err := a.svc.Ready(r.Context())
	if err == nil {
		err = a.readiness.check(r.Context(), a.readyDeps)
	}
	if err != nil {
		return errStatus(http.StatusServiceUnavailable, "Not ready: "+err.Error())
	}
	_, err = io.WriteString(w, "ok\n")
	return err
}

func (a *API) readyDeps(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.svc.ReadyDeps(ctx); err != nil {
		return err
	}
	if a.opts.Ready != nil {
		return a.opts.Ready(ctx)
	}
	return nil
}

// readyCache answers from a check at most a second old: the check asks
// the database, the bucket and the engine, and /readyz is exempt from
// rate limits, so a flood of it must not become a flood of them.
type readyCache struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

func (c *readyCache) check(ctx context.Context, now func(context.Context) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < time.Second {
		return c.err
	}
	c.err = now(ctx)
	c.at = time.Now()
	return c.err
}

// parseTime accepts unix seconds (IronWorker's from_time/to_time) or RFC
// 3339.
func parseTime(name, v string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	if t, isNum, err := wire.UnixTime(name, v); isNum {
		if err != nil {
			return nil, errStatus(http.StatusBadRequest, err.Error())
		}
		return t, nil
	}
	t, isTime, err := wire.RFC3339Time(name, v)
	switch {
	case !isTime:
		return nil, errStatus(http.StatusBadRequest, name+" must be unix seconds or an RFC 3339 time")
	case err != nil:
		return nil, errStatus(http.StatusBadRequest, err.Error())
	}
	return t, nil
}

// taskFilter reads GET tasks' query. A status flag counts when present,
// whatever its value, as the official clients send them.
func taskFilter(r *http.Request, projectID string) (mayfly.TaskFilter, error) {
	q := r.URL.Query()
	pg, err := page(r)
	if err != nil {
		return mayfly.TaskFilter{}, err
	}
	f := mayfly.TaskFilter{ProjectID: projectID, CodeName: q.Get("code_name"), Label: q.Get("label"), Page: pg}
	for _, s := range mayfly.Statuses {
		if q.Has(string(s)) {
			f.Statuses = append(f.Statuses, s)
		}
	}
	// A preparing task shows as running to clients (see wire.ClientStatus),
	// so running=1 finds it too.
	if q.Has(string(mayfly.StatusRunning)) && !q.Has(string(mayfly.StatusPreparing)) {
		f.Statuses = append(f.Statuses, mayfly.StatusPreparing)
	}
	if f.FromTime, err = parseTime("from_time", q.Get("from_time")); err != nil {
		return f, err
	}
	if f.ToTime, err = parseTime("to_time", q.Get("to_time")); err != nil {
		return f, err
	}
	return f, nil
}

func intParam(r *http.Request, name string) (*int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return nil, nil
	}
	n, err := wire.ParseInt(name, v)
	if err != nil {
		return nil, errStatus(http.StatusBadRequest, err.Error())
	}
	return &n, nil
}

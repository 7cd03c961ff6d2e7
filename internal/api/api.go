// Package api serves Mayfly's HTTP interface: the IronWorker v2 REST API
// under /2/, the runner protocol under /runner/, /version, /healthz and
// /readyz, and the web dashboard's pages and session (package dashboard)
// at /. Handlers return errors; one function turns them into the
// {"msg": ...} body and status IronWorker clients expect.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mayfly-run/mayfly/internal/dashboard"
	"github.com/mayfly-run/mayfly/internal/mayfly"
	"github.com/mayfly-run/mayfly/internal/metrics"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// Options configure the API beyond the service.
type Options struct {
	Version string
	// Metrics, when set, counts requests and is served at GET /metrics
	// to admin tokens.
	Metrics *metrics.Metrics
	// Ready, when set, is checked by /readyz besides the service (the
	// container engine of an embedded runner).
	Ready func(ctx context.Context) error
	// MaxRequestBytes bounds JSON request bodies.
	MaxRequestBytes int64
	Log             *slog.Logger

	// MaxBodyBytesInFlight bounds the request bodies all handlers may be
	// decoding at once; a body that does not fit waits a little, then is
	// answered 503 with Retry-After. Zero means twice MaxRequestBytes.
	MaxBodyBytesInFlight int64
}

// API is the HTTP handler.
type API struct {
	svc     *service.Service
	opts    Options
	mux     *http.ServeMux
	handler http.Handler // mux, instrumented
	log     *slog.Logger

	bodies    *bodyBudget // request bodies being decoded
	readiness readyCache
	// progress limits progress reports per task: each is a synced write,
	// and a task that posts in a tight loop must not slow everyone's
	// enqueues.
	progressRates *clientRates
	// sessions vouches for requests made with the dashboard's cookie.
	sessions *dashboard.Sessions
	// tokenRates holds each project token to its project's request_rate.
	tokenRates tokenRates
}

// A task may report progress progressRate times a second, in bursts of
// progressBurst; past that it gets 429. The task socket already coalesces
// to one write a second; this bounds tasks that post over the network.
const (
	progressRate  = 2
	progressBurst = 10
)

// New returns the handler.
func New(svc *service.Service, opts Options) *API {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.MaxRequestBytes <= 0 {
		// A batch of tasks may each carry a full payload.
		opts.MaxRequestBytes = 64 << 20
	}
	if opts.MaxBodyBytesInFlight <= 0 {
		opts.MaxBodyBytesInFlight = 2 * opts.MaxRequestBytes
	}
	a := &API{svc: svc, opts: opts, mux: http.NewServeMux(), log: opts.Log,
		bodies:        newBodyBudget(max(opts.MaxBodyBytesInFlight, opts.MaxRequestBytes)),
		progressRates: newClientRates(progressRate, progressBurst), sessions: dashboard.NewSessions(svc)}
	a.routes()
	a.handler = opts.Metrics.Instrument(a.mux)
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

// httpError carries a status chosen by the API itself.
type httpError struct {
	status int
	msg    string

	retryAfter int // seconds; 0 sends no Retry-After
}

func (e *httpError) Error() string { return e.msg }

func errStatus(status int, msg string) error { return &httpError{status: status, msg: msg} }

// errEmptyBody is what readJSON returns for a request without a body, so a
// route whose body is optional can tell it apart.
var errEmptyBody = errStatus(http.StatusBadRequest, "Request body is empty; JSON expected")

// handler is an HTTP handler that reports failure by returning an error.
type handler func(w http.ResponseWriter, r *http.Request) error

// serve wraps a handler with error writing, and gives back the body
// budget its request took once it is done.
func (a *API) serve(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var done afterRequest
		defer done.run()
		r = r.WithContext(context.WithValue(r.Context(), afterKey, &done))
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	}
}

// afterRequest collects what must run once a handler has returned.
type afterRequest struct{ fns []func() }

func (d *afterRequest) run() {
	for _, f := range d.fns {
		f()
	}
}

// after runs f once the handler of r has returned.
func after(r *http.Request, f func()) {
	if d, ok := r.Context().Value(afterKey).(*afterRequest); ok {
		d.fns = append(d.fns, f)
		return
	}
	f()
}

func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusInternalServerError, "Internal error"
	var he *httpError
	var se *service.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		status, msg = he.status, he.msg
		if he.retryAfter > 0 {
			w.Header().Set("Retry-After", itoa(he.retryAfter))
		}
	case errors.Is(err, errSlowBody):
		status, msg = http.StatusRequestTimeout, "Request body arrived too slowly: "+err.Error()
	case errors.As(err, &mbe):
		status, msg = http.StatusRequestEntityTooLarge, "Request body is larger than the limit of "+itoa(mbe.Limit)+" bytes"
	case service.NoSpace(err):
		// The write was refused whole (the store's transaction rolled
		// back, the blob's temporary file removed): the client may retry.
		a.svc.NoteNoSpace()
		status, msg = http.StatusInsufficientStorage, "Insufficient storage: the server's disk is full, so nothing was stored; try again once space is freed"
	case errors.As(err, &se):
		msg = se.Msg
		switch {
		case errors.Is(se.Kind, service.ErrInvalid):
			status = http.StatusBadRequest
		case errors.Is(se.Kind, service.ErrUnauthorized):
			status = http.StatusUnauthorized
		case errors.Is(se.Kind, service.ErrForbidden), errors.Is(se.Kind, service.ErrQuota):
			status = http.StatusForbidden
		case errors.Is(se.Kind, service.ErrNotFound):
			status = http.StatusNotFound
		case errors.Is(se.Kind, service.ErrConflict):
			status = http.StatusConflict
		case errors.Is(se.Kind, service.ErrTooLarge):
			status = http.StatusRequestEntityTooLarge
		case errors.Is(se.Kind, service.ErrCorrupt):
			status = http.StatusInternalServerError
		}
	case errors.Is(err, service.ErrLeaseLost):
		// One distinct answer for a report whose lease is no longer
		// current, so a runner never takes another conflict for it.
		status, msg = http.StatusGone, "Lease lost: "+err.Error()
	case errors.Is(err, context.Canceled):
		status, msg = 499, "Request cancelled"
	}
	if he != nil && he.retryAfter > 0 {
		a.log.Warn("request turned away", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	} else if status >= 500 {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSONStatus(w, status, wire.Error{Msg: msg})
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeJSON answers 200: the official clients treat any other success
// status as an error.
func writeJSON(w http.ResponseWriter, v any) error {
	writeJSONStatus(w, http.StatusOK, v)
	return nil
}

// readJSON decodes a bounded JSON body into v, with errors a user can act
// on. The body counts against the body budget until the handler returns.
func (a *API) readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, release, err := a.admit(w, r, a.opts.MaxRequestBytes)
	after(r, release)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	return nil
}

// jsonError turns a decoding error into one a user can act on.
func jsonError(err error) error {
	var mbe *http.MaxBytesError
	var he *httpError
	if errors.As(err, &mbe) || errors.As(err, &he) || errors.Is(err, errSlowBody) {
		return err
	}
	if errors.Is(err, io.EOF) {
		return errEmptyBody
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var fe *wire.FieldError
	switch {
	case errors.As(err, &se):
		return errStatus(http.StatusBadRequest, "Malformed JSON at byte "+itoa(se.Offset)+": "+se.Error())
	case errors.As(err, &te):
		// Fields of wire types with their own UnmarshalJSON sit in
		// embedded "deep" and "plain" structs; the client knows them
		// without.
		field := strings.ReplaceAll(strings.ReplaceAll(te.Field, "deep.", ""), "plain.", "")
		return errStatus(http.StatusBadRequest, "Wrong JSON type for field '"+field+"': expected "+te.Type.String())
	case errors.As(err, &fe):
		return errStatus(http.StatusBadRequest, fe.Error())
	}
	return errStatus(http.StatusBadRequest, "Malformed JSON: "+err.Error())
}

// token finds the caller's token: "OAuth X", "Bearer X" or ?oauth=X.
func token(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, ok := strings.Cut(h, " ")
		if ok && (strings.EqualFold(scheme, "OAuth") || strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "Token")) {
			return strings.TrimSpace(rest)
		}
		return ""
	}
	return r.URL.Query().Get("oauth")
}

type ctxKey int

const (
	projectKey ctxKey = iota
	afterKey
	runnerTokenKey
	tokenKey
)

// project authenticates the caller and checks its right to the project in
// the path, then runs h.
func (a *API) project(h handler) http.HandlerFunc {
	return a.serve(func(w http.ResponseWriter, r *http.Request) error {
		secret, err := a.credential(w, r)
		if err != nil {
			return err
		}
		tok, err := a.svc.Authenticate(r.Context(), secret)
		if err != nil {
			return err
		}
		p, err := a.svc.Authorize(r.Context(), tok, r.PathValue("project"))
		if err != nil {
			return err
		}
		vouched(r)
		if tok.Kind == mayfly.TokenProject {
			if wait := a.tokenRates.take(tok.ID, a.svc.EffectiveQuotas(p).RequestRate, time.Now()); wait > 0 {
				return tooFast(wait)
			}
		}
		ctx := context.WithValue(service.WithActor(r.Context(), tok), projectKey, p)
		return h(w, r.WithContext(context.WithValue(ctx, tokenKey, tok)))
	})
}

// authed authenticates a call any stored token may make; h checks what
// the token's kind allows.
func (a *API) authed(h handler) http.HandlerFunc {
	return a.serve(func(w http.ResponseWriter, r *http.Request) error {
		tok, err := a.svc.Authenticate(r.Context(), token(r))
		if err != nil {
			return err
		}
		vouched(r)
		rps, err := a.svc.RequestRate(r.Context(), tok)
		if err != nil {
			return err
		}
		if wait := a.tokenRates.take(tok.ID, rps, time.Now()); wait > 0 {
			return tooFast(wait)
		}
		ctx := context.WithValue(service.WithActor(r.Context(), tok), tokenKey, tok)
		return h(w, r.WithContext(ctx))
	})
}

// tokenOf is the token a project, admin or authed call was made with.
func tokenOf(r *http.Request) mayfly.Token {
	t, _ := r.Context().Value(tokenKey).(mayfly.Token)
	return t
}

// admin authenticates a call only an admin token may make.
func (a *API) admin(h handler) http.HandlerFunc {
	return a.serve(func(w http.ResponseWriter, r *http.Request) error {
		secret, err := a.credential(w, r)
		if err != nil {
			return err
		}
		tok, err := a.svc.Authenticate(r.Context(), secret)
		if err != nil {
			return err
		}
		if tok.Kind != mayfly.TokenAdmin {
			return errStatus(http.StatusForbidden, "Only an admin token may do this")
		}
		vouched(r)
		ctx := context.WithValue(service.WithActor(r.Context(), tok), tokenKey, tok)
		return h(w, r.WithContext(ctx))
	})
}

// runner authenticates a runner-protocol call.
func (a *API) runner(h handler) http.HandlerFunc {
	return a.serve(func(w http.ResponseWriter, r *http.Request) error {
		tok, err := a.svc.Authenticate(r.Context(), token(r))
		if err != nil {
			return err
		}
		if err := a.svc.AuthorizeRunner(tok); err != nil {
			return err
		}
		vouched(r)
		return h(w, r.WithContext(context.WithValue(service.WithActor(r.Context(), tok), runnerTokenKey, tok)))
	})
}

// runnerToken is the token a runner-protocol call was made with.
func runnerToken(r *http.Request) mayfly.Token {
	t, _ := r.Context().Value(runnerTokenKey).(mayfly.Token)
	return t
}

func projectOf(r *http.Request) mayfly.Project {
	p, _ := r.Context().Value(projectKey).(mayfly.Project)
	return p
}

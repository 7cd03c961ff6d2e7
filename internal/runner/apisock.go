package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// The task's API socket: a unix socket the runner serves in a directory
// bind-mounted into the container, so a task can report progress even
// with no network at all. It forwards only the task's own progress.
//
// The task on the other end may be hostile, and the runner serves many
// tasks, so each socket holds only a few connections, cuts off slow or idle
// ones, and writes progress to the queue at most once per ProgressEvery:
// later reports within that time replace each other and the newest is
// written when it is up, or when the task ends.
const (
	apiSocketPath = TaskFilesDir + "/api.sock"
	apiSocketURL  = "http://mayfly"
)

// sockLimits bound one task's API socket.
type sockLimits struct {
	MaxConns          int // open at once; more are closed at accept
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration // whole request; bodies are 64 KiB at most
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	ProgressEvery     time.Duration // at most one progress write per task this often
}

var defaultSockLimits = sockLimits{
	// 16, not fewer: a client pooling fewer idle connections than it runs
	// requests at once closes and redials one per request, and the closed
	// ones count until the server reads their EOF; a tight cap then resets
	// a well-behaved task's requests.
	MaxConns:          16,
	ReadHeaderTimeout: 5 * time.Second,
	ReadTimeout:       10 * time.Second,
	WriteTimeout:      10 * time.Second,
	IdleTimeout:       10 * time.Second,
	ProgressEvery:     time.Second,
}

// sockTask is the task a home's socket serves now; each task gets its
// own, with its own progress gate, so nothing of one task's reports can
// reach another's.
type sockTask struct {
	job   wire.Job
	route string
	gate  *progressGate

	mu      sync.Mutex
	ended   bool
	active  int           // requests under way
	drained chan struct{} // made by an end that waits for them
}

// enter admits a request of the task, unless it has ended.
func (t *sockTask) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return false
	}
	t.active++
	return true
}

func (t *sockTask) leave() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.active--; t.active == 0 && t.drained != nil {
		close(t.drained)
	}
}

// stop admits no more requests, and returns a channel closed once those
// under way are done, or nil when there are none.
func (t *sockTask) stop() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ended = true
	if t.active > 0 && t.drained == nil {
		t.drained = make(chan struct{})
	}
	return t.drained
}

func (h *taskHome) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || !progressPath(req.URL.Path) {
		sockError(w, http.StatusNotFound, "From inside a task only POST /2/projects/{project}/tasks/{id}/progress is served")
		return
	}
	t := h.task.Load()
	if t == nil || !t.enter() {
		sockError(w, http.StatusServiceUnavailable, "No task runs on this socket now")
		return
	}
	defer t.leave()
	if req.URL.Path != t.route {
		sockError(w, http.StatusForbidden, "From inside a task only that task's own progress can be reported")
		return
	}
	var p wire.Progress
	if err := json.NewDecoder(io.LimitReader(req.Body, 64<<10)).Decode(&p); err != nil {
		sockError(w, http.StatusBadRequest, "Malformed JSON: "+err.Error())
		return
	}
	// The socket is private to this task's container, so it is
	// credential enough; a token, when sent, must still be the task's
	// own, which is the only one the server takes for its progress.
	if tok := bearer(req); tok != "" && tok != t.job.TaskToken {
		sockError(w, http.StatusUnauthorized, "Invalid task token")
		return
	}
	// Checked here, as the server would, so that a bad report is told
	// so at once and never replaces a good one waiting its turn.
	if err := checkProgress(p); err != nil {
		sockError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := t.gate.report(req.Context(), p); err != nil {
		sockError(w, http.StatusBadRequest, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"msg":"Progress set"}`+"\n")
}

// progressPath reports whether path has the shape
// /2/projects/{project}/tasks/{id}/progress, whatever the two names.
func progressPath(path string) bool {
	parts := strings.Split(path, "/")
	return len(parts) == 7 && parts[0] == "" && parts[1] == "2" && parts[2] == "projects" && parts[3] != "" &&
		parts[4] == "tasks" && parts[5] != "" && parts[6] == "progress"
}

// progressGate lets one progress write through per interval; reports in
// between replace each other and the newest is written at the end of the
// interval, or by flush. Writes go out in the order reports came in.
type progressGate struct {
	send  func(ctx context.Context, p wire.Progress) error
	every time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	last    time.Time // when the last write was let through
	pending *queuedProgress
	timer   *time.Timer
	ticks   sync.WaitGroup // timer writes under way or due
	seq     uint64
	closed  bool

	sendMu sync.Mutex
	sent   uint64 // seq of the newest report written
}

type queuedProgress struct {
	p   wire.Progress
	seq uint64
}

// report writes p now, if the interval allows, with the write's error for
// the task; else it keeps p for later and answers nil.
func (g *progressGate) report(ctx context.Context, p wire.Progress) error {
	g.mu.Lock()
	g.seq++
	q := queuedProgress{p: p, seq: g.seq}
	now := time.Now()
	if g.closed || (g.pending == nil && now.Sub(g.last) >= g.every) {
		g.last = now
		g.mu.Unlock()
		return g.write(ctx, q)
	}
	g.pending = &q
	if g.timer == nil {
		g.ticks.Add(1)
		g.timer = time.AfterFunc(max(g.every-now.Sub(g.last), 0), g.tick)
	}
	g.mu.Unlock()
	return nil
}

func (g *progressGate) tick() {
	defer g.ticks.Done()
	g.mu.Lock()
	q := g.pending
	g.pending, g.timer = nil, nil
	if q != nil {
		g.last = time.Now()
	}
	g.mu.Unlock()
	if q == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.write(ctx, *q); err != nil {
		g.log.Warn("could not write the task's progress", "err", err)
	}
}

func (g *progressGate) write(ctx context.Context, q queuedProgress) error {
	g.sendMu.Lock()
	defer g.sendMu.Unlock()
	if q.seq <= g.sent {
		return nil // a newer report is already written
	}
	g.sent = q.seq
	return g.send(ctx, q.p)
}

// flush writes the report still waiting, if any, within timeout, and
// waits for a timer write under way; reports after it are written at
// once. With nothing waiting (most tasks) it costs two locks.
func (g *progressGate) flush(timeout time.Duration) error {
	g.mu.Lock()
	g.closed = true
	if g.timer != nil && g.timer.Stop() {
		g.ticks.Done()
	}
	g.timer = nil
	q := g.pending
	g.pending = nil
	g.mu.Unlock()
	g.ticks.Wait()
	if q == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return g.write(ctx, *q)
}

func checkProgress(p wire.Progress) error {
	switch {
	case p.Percent == nil:
		return fmt.Errorf("percent is required (0-100)")
	case *p.Percent < 0 || *p.Percent > 100:
		return fmt.Errorf("percent must be between 0 and 100 (got %d)", *p.Percent)
	case len(p.Msg) > 4096:
		return fmt.Errorf("msg is limited to 4096 bytes")
	}
	return nil
}

func bearer(req *http.Request) string {
	if h := req.Header.Get("Authorization"); h != "" {
		if _, tok, ok := strings.Cut(h, " "); ok {
			return strings.TrimSpace(tok)
		}
	}
	return req.URL.Query().Get("oauth")
}

func sockError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(wire.Error{Msg: msg})
}

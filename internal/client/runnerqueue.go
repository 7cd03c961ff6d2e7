package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// ErrLeaseLost is what every report of a remote runner wraps when the
// server refused it because the lease is no longer the runner's: it ran
// out and the task was handed on, or the task ended. The runner abandons
// the task on it; every other error is passing and worth a retry.
var ErrLeaseLost = errors.New("lease lost")

// IsLeaseLost is the runner's test for ErrLeaseLost.
func IsLeaseLost(err error) bool { return errors.Is(err, ErrLeaseLost) }

// Time limits of the runner protocol. A report is small, so one that takes
// longer than reportTimeout is stuck behind a dead connection and is better
// retried; a lease may wait up to its wait_ms on the server first.
const (
	reportTimeout   = 20 * time.Second
	leaseMargin     = 20 * time.Second
	packageStallFor = time.Minute
)

// RunnerQueue is the runner protocol (/runner/...) over HTTP: what a
// remote runner uses as its queue. It is safe for concurrent use.
type RunnerQueue struct {
	c *Client
}

// NewRunnerQueue returns the queue of the server at baseURL, for a runner
// authenticating with token (a runner or admin token).
func NewRunnerQueue(baseURL, token string, opts ...Option) *RunnerQueue {
	// A runner talks to one server with a few requests per running task
	// (heartbeat, log, progress) at once; keeping that many connections
	// idle avoids a new connection per heartbeat.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	// What a burst of reports opened is let go once idle a while, so a
	// quiet runner holds the connections it uses, not its busiest
	// minute's (the chaos run's leak check counts them).
	tr.IdleConnTimeout = 20 * time.Second
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	opts = append([]Option{WithHTTPClient(&http.Client{Transport: tr}), WithUserAgent("mayfly-runner")}, opts...)
	return &RunnerQueue{c: New(baseURL, token, "", opts...)}
}

// leaseLostError keeps the server's answer while matching ErrLeaseLost.
type leaseLostError struct{ *APIError }

func (e leaseLostError) Error() string        { return "lease lost: " + e.APIError.Error() }
func (e leaseLostError) Is(target error) bool { return target == ErrLeaseLost }
func (e leaseLostError) Unwrap() error        { return e.APIError }

// mapLeaseLost turns the server's lease-lost answer into ErrLeaseLost: 410
// Gone, or 409 naming a lost lease from servers that predate fencing.
func mapLeaseLost(err error) error {
	var ae *APIError
	if !errors.As(err, &ae) {
		return err
	}
	if ae.Status == http.StatusGone ||
		(ae.Status == http.StatusConflict && strings.Contains(strings.ToLower(ae.Msg), "lease lost")) {
		return leaseLostError{ae}
	}
	return err
}

// report posts a small runner report about one task.
func (q *RunnerQueue) report(ctx context.Context, taskID, action string, query url.Values, body io.Reader, contentType string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	err := q.c.call(ctx, request{method: http.MethodPost, path: "/runner/tasks/" + url.PathEscape(taskID) + "/" + action,
		query: query, body: body, contentType: contentType}, out)
	if err != nil {
		return fmt.Errorf("%s of task %s: %w", action, taskID, mapLeaseLost(err))
	}
	return nil
}

func (q *RunnerQueue) reportJSON(ctx context.Context, taskID, action string, in, out any) error {
	body, err := jsonBody(in)
	if err != nil {
		return err
	}
	return q.report(ctx, taskID, action, nil, body, "application/json", out)
}

// Lease asks for up to req.Max tasks, waiting on the server up to
// req.WaitMs for one.
func (q *RunnerQueue) Lease(ctx context.Context, req wire.LeaseRequest) ([]wire.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(max(req.WaitMs, 0))*time.Millisecond+leaseMargin)
	defer cancel()
	body, err := jsonBody(req)
	if err != nil {
		return nil, err
	}
	var out wire.LeaseResponse
	if err := q.c.call(ctx, request{method: http.MethodPost, path: "/runner/lease", body: body, contentType: "application/json"}, &out); err != nil {
		return nil, fmt.Errorf("lease for runner %s: %w", req.RunnerID, err)
	}
	return out.Jobs, nil
}

// Started says the task's container runs.
func (q *RunnerQueue) Started(ctx context.Context, lease wire.LeaseRef) error {
	return q.reportJSON(ctx, lease.TaskID, "started", lease, &wire.Msg{})
}

// Heartbeat renews the lease and says whether a user cancelled the task.
func (q *RunnerQueue) Heartbeat(ctx context.Context, lease wire.LeaseRef) (bool, error) {
	var out wire.HeartbeatResponse
	err := q.reportJSON(ctx, lease.TaskID, "heartbeat", lease, &out)
	return out.Cancel, err
}

// AppendLog sends a chunk of the task's output; the body is the raw chunk,
// so the lease rides in the query.
func (q *RunnerQueue) AppendLog(ctx context.Context, lease wire.LeaseRef, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	query := url.Values{"runner_id": {lease.RunnerID}, "attempt": {strconv.Itoa(lease.Attempt)}}
	return q.report(ctx, lease.TaskID, "log", query, bytes.NewReader(data), "application/octet-stream", &wire.Msg{})
}

// Finish reports how the task ended, under the lease it names.
func (q *RunnerQueue) Finish(ctx context.Context, lease wire.LeaseRef, req wire.FinishRequest) error {
	req.RunnerID, req.Attempt = lease.RunnerID, lease.Attempt
	return q.reportJSON(ctx, lease.TaskID, "finish", req, &wire.Msg{})
}

// OpenPackage streams the zip of a code revision; the caller closes it.
// The download has no overall limit, since packages may be large and
// links slow, but one that stalls for packageStallFor is cut.
func (q *RunnerQueue) OpenPackage(ctx context.Context, revisionID string) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	stall := time.AfterFunc(packageStallFor, cancel)
	resp, err := q.c.send(ctx, request{method: http.MethodGet, path: "/runner/packages/" + url.PathEscape(revisionID),
		accept: "application/zip"})
	if err != nil {
		stall.Stop()
		cancel()
		return nil, fmt.Errorf("package of revision %s: %w", revisionID, err)
	}
	return &stallGuard{body: resp.Body, stall: stall, cancel: cancel}, nil
}

// stallGuard cuts a download that makes no progress.
type stallGuard struct {
	body   io.ReadCloser
	stall  *time.Timer
	cancel context.CancelFunc
	once   sync.Once
}

func (s *stallGuard) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	if n > 0 {
		s.stall.Reset(packageStallFor)
	}
	return n, err
}

func (s *stallGuard) Close() error {
	err := s.body.Close()
	s.once.Do(func() { s.stall.Stop(); s.cancel() })
	return err
}

// ReportProgress forwards progress a task sent with its own token, which
// is the credential of this call (never the runner's token). The project
// is the one the token names.
func (q *RunnerQueue) ReportProgress(ctx context.Context, token, taskID string, p wire.Progress) error {
	project, ok := taskTokenProject(token)
	if !ok {
		// Any other token would reach the route's project-token branch,
		// which is not what a task may use.
		return fmt.Errorf("progress of task %s: %w", taskID, &APIError{Status: http.StatusUnauthorized, Msg: "Invalid task token"})
	}
	ctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	body, err := jsonBody(p)
	if err != nil {
		return err
	}
	path := "/2/projects/" + url.PathEscape(project) + "/tasks/" + url.PathEscape(taskID) + "/progress"
	err = q.c.call(ctx, request{method: http.MethodPost, path: path, body: body, contentType: "application/json", token: token}, &wire.Msg{})
	if err != nil {
		return fmt.Errorf("progress of task %s: %w", taskID, err)
	}
	return nil
}

// taskTokenProject reads the project out of a task token
// ("mtt.PROJECT.TASK.EXPIRY.MAC"); the server checks the whole token.
func taskTokenProject(token string) (string, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 5 || parts[0] != "mtt" || parts[1] == "" {
		return "", false
	}
	return parts[1], true
}

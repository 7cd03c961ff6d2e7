// Package client is a Go client of Mayfly's REST API, the IronWorker v2 API.
// The CLI and remote runners use it, so it speaks only what the server
// documents and reads the server's own JSON shapes from package wire, so that
// both sides cannot drift apart.
package client

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// Client talks to one Mayfly server on behalf of one project. It is safe for
// concurrent use.
type Client struct {
	base      string // without a trailing slash, so paths can be appended
	token     string
	project   string
	hc        *http.Client
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests through hc, e.g. one with
// a custom transport, TLS setup or timeout. Long uploads and downloads are
// bounded by the context of each call, so hc needs no timeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithUserAgent sets the User-Agent header, so server logs tell clients apart.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// New returns a client of the server at baseURL (e.g.
// "http://127.0.0.1:8080"), authenticating with token on the project
// projectID. baseURL may carry a path prefix when the server sits behind a
// proxy.
func New(baseURL, token, projectID string, opts ...Option) *Client {
	c := &Client{
		base:      strings.TrimRight(baseURL, "/"),
		token:     token,
		project:   projectID,
		hc:        http.DefaultClient,
		userAgent: "mayfly-client",
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// APIError is an answer of the server other than success: its HTTP status
// and the msg of its {"msg": "..."} body.
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.Msg)
}

// IsNotFound reports whether err is, or wraps, an APIError with status 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// IsStatus reports whether err is, or wraps, an APIError with that status.
func IsStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status
}

// Terminal reports whether a task in status will not change any more. Only
// queued, preparing and running are unfinished; every other status, also
// one this client does not know yet, is final, as the IronWorker clients
// treat it.
func Terminal(status string) bool {
	switch status {
	case "queued", "preparing", "running":
		return false
	}
	return true
}

// projectPath returns the path of a project resource; segments are escaped
// because ids and names come from users.
func (c *Client) projectPath(segments ...string) (string, error) {
	if c.project == "" {
		return "", errors.New("no project id configured")
	}
	var b strings.Builder
	b.WriteString("/2/projects/")
	b.WriteString(url.PathEscape(c.project))
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String(), nil
}

// request is one API call.
type request struct {
	method      string
	path        string
	query       url.Values
	body        io.Reader
	contentType string
	accept      string
	token       string // instead of the client's token, e.g. a task's own
}

// send performs r and returns the response of a successful call, whose body
// the caller must close. Other answers become an *APIError.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	u := c.base + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, r.body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	if tok := cmp.Or(r.token, c.token); tok != "" {
		req.Header.Set("Authorization", "OAuth "+tok)
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	accept := r.accept
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", c.userAgent)

	resp, err := c.hc.Do(req)
	if err != nil {
		// The *url.Error repeats method and URL; keep only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s %s: %w", r.method, u, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, readAPIError(resp))
	}
	return resp, nil
}

// readAPIError turns a failed response into an APIError. A body that is not
// the server's JSON (e.g. from a proxy in between) still gives a message.
func readAPIError(resp *http.Response) *APIError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e wire.Error
	if json.Unmarshal(body, &e) == nil && e.Msg != "" {
		return &APIError{Status: resp.StatusCode, Msg: e.Msg}
	}
	msg := strings.TrimSpace(string(body))
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &APIError{Status: resp.StatusCode, Msg: msg}
}

// call performs r and decodes the JSON answer into out.
func (c *Client) call(ctx context.Context, r request, out any) error {
	resp, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", r.method, r.path, err)
	}
	return nil
}

// jsonBody encodes v as a request body.
func jsonBody(v any) (io.Reader, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return bytes.NewReader(b), nil
}

// Project returns the client's project.
func (c *Client) Project(ctx context.Context) (wire.Project, error) {
	var p wire.Project
	path, err := c.projectPath()
	if err != nil {
		return p, err
	}
	err = c.call(ctx, request{method: http.MethodGet, path: path}, &p)
	return p, err
}

// UploadCode uploads a code package; a code of the same name gets a new
// revision. zip may be nil for image codes. The zip is streamed, never held
// in memory, so packages can be as large as the server allows.
func (c *Client) UploadCode(ctx context.Context, code wire.CodeUpload, zip io.Reader) (wire.UploadResponse, error) {
	var out wire.UploadResponse
	path, err := c.projectPath("codes")
	if err != nil {
		return out, err
	}
	data, err := json.Marshal(code)
	if err != nil {
		return out, fmt.Errorf("encode code %q: %w", code.Name, err)
	}

	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writeUpload(mw, data, zip))
	}()
	// Whatever happens to the request, the writer must stop before we return,
	// so it never outlives the caller's zip reader.
	defer func() {
		pr.CloseWithError(errors.New("upload ended"))
		<-done
	}()

	err = c.call(ctx, request{
		method:      http.MethodPost,
		path:        path,
		body:        pr,
		contentType: mw.FormDataContentType(),
	}, &out)
	if err != nil {
		return out, fmt.Errorf("upload code %q: %w", code.Name, err)
	}
	return out, nil
}

// writeUpload writes the multipart body of POST codes: the JSON in field
// "data", then the zip in field "file", as the IronWorker clients send it.
func writeUpload(mw *multipart.Writer, data []byte, zip io.Reader) error {
	if err := mw.WriteField("data", string(data)); err != nil {
		return err
	}
	if zip != nil {
		h := make(textproto.MIMEHeader)
		h.Set("Content-Disposition", `form-data; name="file"; filename="package.zip"`)
		h.Set("Content-Type", "application/zip")
		part, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		if _, err := io.Copy(part, zip); err != nil {
			return fmt.Errorf("read package: %w", err)
		}
	}
	return mw.Close()
}

// ListCodes returns one page (0-based) of the project's codes. perPage 0
// means the server's default (30); the server allows at most 100.
func (c *Client) ListCodes(ctx context.Context, page, perPage int) ([]wire.Code, error) {
	path, err := c.projectPath("codes")
	if err != nil {
		return nil, err
	}
	var out wire.CodeList
	if err := c.call(ctx, request{method: http.MethodGet, path: path, query: pageQuery(nil, page, perPage)}, &out); err != nil {
		return nil, fmt.Errorf("list codes: %w", err)
	}
	return out.Codes, nil
}

func pageQuery(q url.Values, page, perPage int) url.Values {
	if q == nil {
		q = url.Values{}
	}
	if page > 0 {
		q.Set("page", strconv.Itoa(page))
	}
	if perPage > 0 {
		q.Set("per_page", strconv.Itoa(perPage))
	}
	return q
}

// GetCode returns the code with the given id.
func (c *Client) GetCode(ctx context.Context, id string) (wire.Code, error) {
	var out wire.Code
	path, err := c.projectPath("codes", id)
	if err != nil {
		return out, err
	}
	if err := c.call(ctx, request{method: http.MethodGet, path: path}, &out); err != nil {
		return out, fmt.Errorf("get code %s: %w", id, err)
	}
	return out, nil
}

// DeleteCode deletes the code with the given id and all its revisions.
func (c *Client) DeleteCode(ctx context.Context, id string) error {
	path, err := c.projectPath("codes", id)
	if err != nil {
		return err
	}
	var out wire.Msg
	if err := c.call(ctx, request{method: http.MethodDelete, path: path}, &out); err != nil {
		return fmt.Errorf("delete code %s: %w", id, err)
	}
	return nil
}

// CodeRevisions returns the upload history of a code.
func (c *Client) CodeRevisions(ctx context.Context, id string) ([]wire.Revision, error) {
	path, err := c.projectPath("codes", id, "revisions")
	if err != nil {
		return nil, err
	}
	var out wire.RevisionList
	if err := c.call(ctx, request{method: http.MethodGet, path: path}, &out); err != nil {
		return nil, fmt.Errorf("list revisions of code %s: %w", id, err)
	}
	return out.Revisions, nil
}

// DownloadCode writes the zip of a code to w: revision rev, or the latest
// when rev is 0 or less.
func (c *Client) DownloadCode(ctx context.Context, id string, rev int, w io.Writer) error {
	path, err := c.projectPath("codes", id, "download")
	if err != nil {
		return err
	}
	var q url.Values
	if rev > 0 {
		q = url.Values{"revision": {strconv.Itoa(rev)}}
	}
	resp, err := c.send(ctx, request{method: http.MethodGet, path: path, query: q, accept: "application/zip"})
	if err != nil {
		return fmt.Errorf("download code %s: %w", id, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("download code %s: %w", id, err)
	}
	return nil
}

// QueueTasks queues tasks and returns their ids, in the order given.
func (c *Client) QueueTasks(ctx context.Context, tasks []wire.NewTask) ([]string, error) {
	path, err := c.projectPath("tasks")
	if err != nil {
		return nil, err
	}
	body, err := jsonBody(wire.QueueRequest{Tasks: tasks})
	if err != nil {
		return nil, err
	}
	var out wire.QueueResponse
	if err := c.call(ctx, request{method: http.MethodPost, path: path, body: body, contentType: "application/json"}, &out); err != nil {
		return nil, fmt.Errorf("queue tasks: %w", err)
	}
	if len(out.Tasks) != len(tasks) {
		return nil, fmt.Errorf("queue tasks: server answered %d ids for %d tasks", len(out.Tasks), len(tasks))
	}
	ids := make([]string, len(out.Tasks))
	for i, t := range out.Tasks {
		ids[i] = t.ID
	}
	return ids, nil
}

// GetTask returns the task with the given id. Its Status is the exact one,
// preparing told apart from running (see wire.Task.Exact).
func (c *Client) GetTask(ctx context.Context, id string) (wire.Task, error) {
	var out wire.Task
	path, err := c.projectPath("tasks", id)
	if err != nil {
		return out, err
	}
	if err := c.call(ctx, request{method: http.MethodGet, path: path}, &out); err != nil {
		return out, fmt.Errorf("get task %s: %w", id, err)
	}
	return out.Exact(), nil
}

// TaskFilter selects tasks for ListTasks. Zero fields do not filter;
// Statuses holds task statuses ("queued", "complete", ...), any of which
// matches.
type TaskFilter struct {
	CodeName string
	Label    string
	Statuses []string
	Page     int // 0-based
	PerPage  int // 0 means the server's default (30); at most 100
}

// ListTasks returns one page of the project's tasks, newest first.
func (c *Client) ListTasks(ctx context.Context, f TaskFilter) ([]wire.Task, error) {
	path, err := c.projectPath("tasks")
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if f.CodeName != "" {
		q.Set("code_name", f.CodeName)
	}
	if f.Label != "" {
		q.Set("label", f.Label)
	}
	// The server counts a status flag when present, whatever its value.
	for _, s := range f.Statuses {
		q.Set(s, "1")
	}
	var out wire.TaskList
	if err := c.call(ctx, request{method: http.MethodGet, path: path, query: pageQuery(q, f.Page, f.PerPage)}, &out); err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	for i := range out.Tasks {
		out.Tasks[i] = out.Tasks[i].Exact()
	}
	return out.Tasks, nil
}

// TaskLog returns the log of a task: its stdout and stderr, interleaved.
// The server answers 404 until the task has a log; see IsNotFound.
func (c *Client) TaskLog(ctx context.Context, id string) ([]byte, error) {
	path, err := c.projectPath("tasks", id, "log")
	if err != nil {
		return nil, err
	}
	resp, err := c.send(ctx, request{method: http.MethodGet, path: path, accept: "text/plain"})
	if err != nil {
		return nil, fmt.Errorf("get log of task %s: %w", id, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("get log of task %s: %w", id, err)
	}
	return b, nil
}

// FollowLog copies a task's log to w as it is written, and returns once
// the task has ended and its whole log was copied (GET .../log?follow=1).
// A connection cut before the end is an error: the log may be short.
func (c *Client) FollowLog(ctx context.Context, id string, w io.Writer) error {
	path, err := c.projectPath("tasks", id, "log")
	if err != nil {
		return err
	}
	resp, err := c.send(ctx, request{method: http.MethodGet, path: path, query: url.Values{"follow": {"1"}}, accept: "text/plain"})
	if err != nil {
		return fmt.Errorf("follow log of task %s: %w", id, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("follow log of task %s: %w", id, err)
	}
	return nil
}

// CancelTask cancels a task: a queued one ends at once, a running one is
// stopped by its runner.
func (c *Client) CancelTask(ctx context.Context, id string) error {
	path, err := c.projectPath("tasks", id, "cancel")
	if err != nil {
		return err
	}
	var out wire.Msg
	if err := c.call(ctx, request{method: http.MethodPost, path: path, body: strings.NewReader("{}"), contentType: "application/json"}, &out); err != nil {
		return fmt.Errorf("cancel task %s: %w", id, err)
	}
	return nil
}

// Webhook queues a task of codeName whose payload is body, as a webhook
// sender would, and returns the task's id. contentType may be empty.
func (c *Client) Webhook(ctx context.Context, codeName string, body io.Reader, contentType string) (string, error) {
	path, err := c.projectPath("tasks", "webhook")
	if err != nil {
		return "", err
	}
	if body == nil {
		body = http.NoBody
	}
	var out wire.WebhookResponse
	q := url.Values{"code_name": {codeName}}
	if err := c.call(ctx, request{method: http.MethodPost, path: path, query: q, body: body, contentType: contentType}, &out); err != nil {
		return "", fmt.Errorf("webhook of code %q: %w", codeName, err)
	}
	return out.ID, nil
}

// Stacks returns the names of the stacks the server offers.
func (c *Client) Stacks(ctx context.Context) ([]string, error) {
	var out []string
	if err := c.call(ctx, request{method: http.MethodGet, path: "/2/stacks"}, &out); err != nil {
		return nil, fmt.Errorf("list stacks: %w", err)
	}
	return out, nil
}

// Runners lists the live runners (an admin token's call).
func (c *Client) Runners(ctx context.Context) ([]wire.Runner, error) {
	var out wire.RunnerList
	if err := c.call(ctx, request{method: http.MethodGet, path: "/2/runners"}, &out); err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	return out.Runners, nil
}

// CreateToken makes a token (an admin token's call); the answer carries
// the secret, shown this once.
func (c *Client) CreateToken(ctx context.Context, t wire.NewToken) (wire.CreatedToken, error) {
	var out wire.CreatedToken
	body, err := jsonBody(t)
	if err != nil {
		return out, err
	}
	if err := c.call(ctx, request{method: http.MethodPost, path: "/2/tokens", body: body}, &out); err != nil {
		return out, fmt.Errorf("create %s token: %w", t.Kind, err)
	}
	return out, nil
}

// Tokens lists the tokens of a project, or all when projectID is "".
func (c *Client) Tokens(ctx context.Context, projectID string) ([]wire.Token, error) {
	var out wire.TokenList
	q := url.Values{}
	if projectID != "" {
		q.Set("project_id", projectID)
	}
	if err := c.call(ctx, request{method: http.MethodGet, path: "/2/tokens", query: q}, &out); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out.Tokens, nil
}

// RevokeToken deletes a token; it stops working at once.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	var out wire.Msg
	if err := c.call(ctx, request{method: http.MethodDelete, path: "/2/tokens/" + url.PathEscape(id)}, &out); err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

// Version returns the server's version.
func (c *Client) Version(ctx context.Context) (wire.Version, error) {
	var out wire.Version
	if err := c.call(ctx, request{method: http.MethodGet, path: "/version"}, &out); err != nil {
		return out, fmt.Errorf("get server version: %w", err)
	}
	return out, nil
}

// WaitTask polls a task every poll (1s when poll <= 0) until its status is
// terminal, and returns it then. It gives up on the first failed poll or
// when ctx ends.
func (c *Client) WaitTask(ctx context.Context, id string, poll time.Duration) (wire.Task, error) {
	if poll <= 0 {
		poll = time.Second
	}
	t := time.NewTimer(poll)
	defer t.Stop()
	for {
		task, err := c.GetTask(ctx, id)
		if err != nil {
			return task, fmt.Errorf("wait for task %s: %w", id, err)
		}
		if Terminal(task.Status) {
			return task, nil
		}
		t.Reset(poll)
		select {
		case <-ctx.Done():
			return task, fmt.Errorf("wait for task %s: %w", id, context.Cause(ctx))
		case <-t.C:
		}
	}
}

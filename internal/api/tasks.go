package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/mayfly-run/mayfly/internal/mayfly"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

func taskJSON(t mayfly.Task, withPayload bool) wire.Task {
	out := wire.Task{
		ID: t.ID, ProjectID: t.ProjectID, CodeID: t.CodeID, CodeName: t.CodeName,
		CodeRev: strconv.Itoa(t.CodeRev), CodeHistID: t.CodeRevisionID, Status: wire.ClientStatus(string(t.Status)), Phase: string(t.Status), Msg: t.Msg,
		Priority: t.Priority, Timeout: t.Timeout, Delay: t.Delay, Cluster: t.Cluster, Label: t.Label,
		Percent: t.Percent, RunTimes: max(t.Attempt, 1), RetryCount: t.RetryCount, RetryOf: t.RetryOf,
		RetryAt: t.RetryAt, ScheduleID: t.ScheduleID, LogSize: t.LogSize, CreatedAt: t.CreatedAt,
		UpdatedAt: t.UpdatedAt, StartTime: t.StartTime, EndTime: t.EndTime, ExitCode: t.ExitCode,
		Attempt: t.Attempt, RunnerID: t.RunnerID, DueAt: t.DueAt, Timings: t.Timings,
	}
	if withPayload {
		out.Payload, out.PayloadBase64 = wire.EncodePayload(t.Payload)
	}
	if t.StartTime != nil && t.EndTime != nil {
		out.Duration = t.EndTime.Sub(*t.StartTime).Milliseconds()
	}
	return out
}

func (a *API) queueTasks(w http.ResponseWriter, r *http.Request) error {
	body, release, err := a.admit(w, r, a.opts.MaxRequestBytes)
	after(r, release)
	if err != nil {
		return err
	}
	cfg := a.svc.Config()
	tasks, err := decodeTasks(body, cfg.MaxPayloadBytes, cfg.MaxTasksPerPost)
	if err != nil {
		return err
	}
	ids, err := a.svc.QueueTasks(r.Context(), projectOf(r).ID, tasks)
	if err != nil {
		return err
	}
	out := wire.QueueResponse{Msg: "Queued up", Tasks: make([]wire.QueuedTask, len(ids))}
	for i, id := range ids {
		out.Tasks[i].ID = id
	}
	return writeJSON(w, out)
}

// decodeTasks reads {"tasks":[...]} one task at a time, so that the decoder
// holds one task rather than the whole body, and a payload over the limit
// or one task too many stops the read there.
func decodeTasks(body io.Reader, maxPayload int64, maxTasks int) ([]wire.NewTask, error) {
	dec := json.NewDecoder(body)
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonError(err)
	}
	if tok != json.Delim('{') {
		return nil, errStatus(http.StatusBadRequest, `Request body must be a JSON object: {"tasks":[...]}`)
	}
	// Past the first token, the end of the body is a truncated request.
	jsonError := func(err error) error {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return jsonError(err)
	}
	var tasks []wire.NewTask
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonError(err)
		}
		if key, _ := tok.(string); key != "tasks" {
			if err := skipValue(dec); err != nil {
				return nil, jsonError(err)
			}
			continue
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, jsonError(err)
		}
		if tok == nil {
			tasks = nil
			continue
		}
		if tok != json.Delim('[') {
			return nil, errStatus(http.StatusBadRequest, "Wrong JSON type for field 'tasks': expected an array of tasks")
		}
		tasks = tasks[:0]
		for dec.More() {
			if maxTasks > 0 && len(tasks) >= maxTasks {
				return nil, errStatus(http.StatusRequestEntityTooLarge, "At most "+itoa(maxTasks)+" tasks per request")
			}
			var t wire.NewTask
			if err := dec.Decode(&t); err != nil {
				return nil, jsonError(err)
			}
			if int64(len(t.Payload)) > maxPayload {
				return nil, errStatus(http.StatusRequestEntityTooLarge, "Task "+itoa(len(tasks))+": Payload is "+
					itoa(len(t.Payload))+" bytes; the limit is "+itoa(maxPayload))
			}
			tasks = append(tasks, t)
		}
		if _, err := dec.Token(); err != nil { // ]
			return nil, jsonError(err)
		}
	}
	if _, err := dec.Token(); err != nil { // }
		return nil, jsonError(err)
	}
	return tasks, nil
}

// skipValue reads past one JSON value.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// webhook turns the raw request body, whatever its type, into the payload
// of one task.
func (a *API) webhook(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	t := wire.NewTask{CodeName: q.Get("code_name"), Cluster: q.Get("cluster"), Label: q.Get("label")}
	var err error
	if t.Priority, err = intParam(r, "priority"); err != nil {
		return err
	}
	if t.Timeout, err = intParam(r, "timeout"); err != nil {
		return err
	}
	if t.Delay, err = intParam(r, "delay"); err != nil {
		return err
	}
	if t.CodeName == "" {
		return errStatus(http.StatusBadRequest, "code_name is required in the query string")
	}
	maxPayload := a.svc.Config().MaxPayloadBytes
	tooLarge := errStatus(http.StatusRequestEntityTooLarge, "Webhook body is larger than the payload limit of "+itoa(maxPayload)+" bytes")
	if r.ContentLength > maxPayload {
		return tooLarge
	}
	in, release, err := a.admit(w, r, maxPayload+1)
	after(r, release)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(in, maxPayload+1))
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			return err
		}
		return errStatus(http.StatusBadRequest, "Could not read the request body: "+err.Error())
	}
	if int64(len(body)) > maxPayload {
		return tooLarge
	}
	t.Payload = string(body)
	ids, err := a.svc.QueueTasks(r.Context(), projectOf(r).ID, []wire.NewTask{t})
	if err != nil {
		return err
	}
	return writeJSON(w, wire.WebhookResponse{ID: ids[0], Msg: "Queued up"})
}

func (a *API) listTasks(w http.ResponseWriter, r *http.Request) error {
	f, err := taskFilter(r, projectOf(r).ID)
	if err != nil {
		return err
	}
	tasks, err := a.svc.ListTasks(r.Context(), f)
	if err != nil {
		return err
	}
	out := wire.TaskList{Tasks: make([]wire.Task, 0, len(tasks))}
	for _, t := range tasks {
		out.Tasks = append(out.Tasks, taskJSON(t, false))
	}
	return writeJSON(w, out)
}

func (a *API) getTask(w http.ResponseWriter, r *http.Request) error {
	t, err := a.svc.GetTask(r.Context(), projectOf(r).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, taskJSON(t, true))
}

// taskLog streams the log as the store reads it: a long log is never held
// whole, so many readers of a big log cost little memory. The status is
// sent with the first chunk, which keeps the 404 of a task without output.
// Following a running task (?follow=1) would call StreamTaskLog again from
// the seq it returns.
func (a *API) taskLog(w http.ResponseWriter, r *http.Request) error {
	if f := r.URL.Query().Get("follow"); f == "1" || f == "true" {
		return a.followLog(w, r)
	}
	started, writeFailed := false, false
	_, err := a.svc.StreamTaskLog(r.Context(), projectOf(r).ID, r.PathValue("id"), 0, func(chunk []byte) error {
		if !started {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			started = true
		}
		if _, err := w.Write(chunk); err != nil {
			writeFailed = true
			return err
		}
		return nil
	})
	switch {
	case err == nil:
		return nil
	case !started:
		return err
	case writeFailed:
		return nil // the client went away
	}
	// Part of the log is sent with a 200: end the connection without the
	// final chunk so the client sees a broken response, not a short log.
	a.log.Error("log read failed mid-stream", "path", r.URL.Path, "err", err)
	panic(http.ErrAbortHandler)
}

func (a *API) cancelTask(w http.ResponseWriter, r *http.Request) error {
	t, err := a.svc.CancelTask(r.Context(), projectOf(r).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	msg := "Cancelled"
	if !t.Status.Terminal() {
		msg = "Cancellation requested; the task will stop shortly"
	}
	return writeJSON(w, wire.Msg{Msg: msg})
}

// The runner protocol.

func (a *API) lease(w http.ResponseWriter, r *http.Request) error {
	var req wire.LeaseRequest
	if err := a.readJSON(w, r, &req); err != nil {
		return err
	}
	tok := runnerToken(r)
	req.RunnerID = service.RunnerID(tok, req.RunnerID)
	if err := service.CheckRunnerClusters(tok, req.Clusters); err != nil {
		return err
	}
	req.WaitMs = min(max(req.WaitMs, 0), 60_000)
	// A long-poll answers only after the wait; the write deadline must not
	// cut it off first.
	allowLonger(r, time.Duration(req.WaitMs)*time.Millisecond)
	jobs, err := a.svc.Lease(r.Context(), req)
	if err != nil {
		return err
	}
	if jobs == nil {
		jobs = []wire.Job{}
	}
	for i := range jobs {
		jobs[i].Payload, jobs[i].PayloadBase64 = wire.EncodePayload(jobs[i].Payload)
	}
	return writeJSON(w, wire.LeaseResponse{Jobs: jobs})
}

// leaseRef reads the lease a runner's report names: runner_id and attempt
// in the JSON body.
func (a *API) leaseRef(w http.ResponseWriter, r *http.Request) (wire.LeaseRef, error) {
	var ref wire.LeaseRef
	if err := a.readJSON(w, r, &ref); err != nil {
		return ref, err
	}
	ref.TaskID = r.PathValue("id")
	ref.RunnerID = service.RunnerID(runnerToken(r), ref.RunnerID)
	return ref, nil
}

func (a *API) started(w http.ResponseWriter, r *http.Request) error {
	ref, err := a.leaseRef(w, r)
	if err != nil {
		return err
	}
	if err := a.svc.Started(r.Context(), ref); err != nil {
		return err
	}
	return writeJSON(w, wire.Msg{Msg: "OK"})
}

func (a *API) heartbeat(w http.ResponseWriter, r *http.Request) error {
	ref, err := a.leaseRef(w, r)
	if err != nil {
		return err
	}
	cancel, err := a.svc.Heartbeat(r.Context(), ref)
	if err != nil {
		return err
	}
	return writeJSON(w, wire.HeartbeatResponse{Cancel: cancel})
}

// appendLog takes a raw chunk; the lease (runner_id, attempt) rides in the
// query.
func (a *API) appendLog(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	ref := wire.LeaseRef{TaskID: r.PathValue("id"), RunnerID: service.RunnerID(runnerToken(r), q.Get("runner_id"))}
	if v := q.Get("attempt"); v != "" {
		n, err := wire.ParseInt("attempt", v)
		if err != nil {
			return errStatus(http.StatusBadRequest, err.Error())
		}
		ref.Attempt = n
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.opts.MaxRequestBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return errStatus(http.StatusBadRequest, "Could not read the log chunk: "+err.Error())
	}
	if err := a.svc.AppendLog(r.Context(), ref, data); err != nil {
		return err
	}
	return writeJSON(w, wire.Msg{Msg: "OK"})
}

func (a *API) finish(w http.ResponseWriter, r *http.Request) error {
	var req wire.FinishRequest
	if err := a.readJSON(w, r, &req); err != nil {
		return err
	}
	ref := wire.LeaseRef{TaskID: r.PathValue("id"), RunnerID: service.RunnerID(runnerToken(r), req.RunnerID), Attempt: req.Attempt}
	if err := a.svc.Finish(r.Context(), ref, req); err != nil {
		return err
	}
	return writeJSON(w, wire.Msg{Msg: "OK"})
}

func (a *API) pkg(w http.ResponseWriter, r *http.Request) error {
	tok := runnerToken(r)
	rc, err := a.svc.OpenPackageFor(r.Context(), tok, service.RunnerID(tok, ""), r.PathValue("revision"))
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/zip")
	_, _ = io.Copy(w, rc)
	return nil
}

// followEvery is how often a follower looks at a log by itself: the log
// may grow through another server, whose appends wake nobody here.
const followEvery = time.Second

// followLog streams a task's log as it is written (GET .../log?follow=1),
// chunk by chunk from the store, and ends when the task has ended and its
// whole log was sent. Before the task ends there may be no log yet: the
// answer is then a 200 that waits.
func (a *API) followLog(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	projectID, taskID := projectOf(r).ID, r.PathValue("id")
	if _, err := a.svc.GetTask(ctx, projectID, taskID); err != nil {
		return err
	}
	next, done := a.svc.WatchLog(taskID)
	defer done()
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Proxies must pass chunks on as they come.
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	var seq int64
	for {
		changed := next()
		var ended bool
		var err error
		seq, ended, err = a.svc.FollowTaskLog(ctx, projectID, taskID, seq, func(chunk []byte) error {
			_, err := w.Write(chunk)
			return err
		})
		if err != nil {
			return a.abortStream(ctx, r, err)
		}
		rc.Flush()
		if ended {
			return nil
		}
		keepWriting(r)
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-time.After(followEvery):
		}
	}
}

// abortStream ends a streamed answer that failed after its 200 went out:
// the connection is cut without the final chunk, so the client sees a
// broken response rather than a log that looks whole.
func (a *API) abortStream(ctx context.Context, r *http.Request, err error) error {
	if ctx.Err() != nil {
		return nil // the client went away
	}
	a.log.Error("log stream failed", "path", r.URL.Path, "err", err)
	panic(http.ErrAbortHandler)
}

package api

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

func taskJSON(t store.Task, withPayload bool) wire.Task {
	out := wire.Task{
		ID: t.ID, ProjectID: t.ProjectID, CodeID: t.CodeID, CodeName: t.CodeName,
		CodeRev: strconv.Itoa(t.CodeRev), CodeHistID: t.CodeRevisionID, Status: t.Status, Msg: t.Msg,
		Priority: t.Priority, Timeout: t.Timeout, Delay: t.Delay, Cluster: t.Cluster, Label: t.Label,
		Percent: t.Percent, RunTimes: max(t.Attempt, 1), RetryCount: t.RetryCount, RetryOf: t.RetryOf,
		RetryAt: t.RetryAt, ScheduleID: t.ScheduleID, LogSize: t.LogSize, CreatedAt: t.CreatedAt,
		UpdatedAt: t.UpdatedAt, StartTime: t.StartTime, EndTime: t.EndTime, ExitCode: t.ExitCode,
		Attempt: t.Attempt, RunnerID: t.RunnerID, DueAt: t.DueAt, Timings: t.Timings,
	}
	if withPayload {
		out.Payload = t.Payload
	}
	if t.StartTime != nil && t.EndTime != nil {
		out.Duration = t.EndTime.Sub(*t.StartTime).Milliseconds()
	}
	return out
}

func (a *API) queueTasks(w http.ResponseWriter, r *http.Request) error {
	var req wire.QueueRequest
	if err := a.readJSON(w, r, &req); err != nil {
		return err
	}
	ids, err := a.svc.QueueTasks(r.Context(), projectOf(r).ID, req.Tasks)
	if err != nil {
		return err
	}
	out := wire.QueueResponse{Msg: "Queued up", Tasks: make([]wire.QueuedTask, len(ids))}
	for i, id := range ids {
		out.Tasks[i].ID = id
	}
	return writeJSON(w, out)
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
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	if err != nil {
		return errStatus(http.StatusBadRequest, "Could not read the request body: "+err.Error())
	}
	if int64(len(body)) > maxPayload {
		return errStatus(http.StatusRequestEntityTooLarge, "Webhook body is larger than the payload limit of "+itoa(maxPayload)+" bytes")
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

func (a *API) taskLog(w http.ResponseWriter, r *http.Request) error {
	b, err := a.svc.TaskLog(r.Context(), projectOf(r).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(b)
	return nil
}

func (a *API) cancelTask(w http.ResponseWriter, r *http.Request) error {
	t, err := a.svc.CancelTask(r.Context(), projectOf(r).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	msg := "Cancelled"
	if !store.Terminal(t.Status) {
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
	return writeJSON(w, wire.LeaseResponse{Jobs: jobs})
}

type runnerRef struct {
	RunnerID string `json:"runner_id"`
}

func (a *API) started(w http.ResponseWriter, r *http.Request) error {
	var ref runnerRef
	if err := a.readJSON(w, r, &ref); err != nil {
		return err
	}
	if err := a.svc.Started(r.Context(), r.PathValue("id"), ref.RunnerID); err != nil {
		return err
	}
	return writeJSON(w, wire.Msg{Msg: "OK"})
}

func (a *API) heartbeat(w http.ResponseWriter, r *http.Request) error {
	var ref runnerRef
	if err := a.readJSON(w, r, &ref); err != nil {
		return err
	}
	cancel, err := a.svc.Heartbeat(r.Context(), r.PathValue("id"), ref.RunnerID)
	if err != nil {
		return err
	}
	return writeJSON(w, wire.HeartbeatResponse{Cancel: cancel})
}

// appendLog takes a raw chunk; the runner id rides in the query.
func (a *API) appendLog(w http.ResponseWriter, r *http.Request) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.opts.MaxRequestBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return errStatus(http.StatusBadRequest, "Could not read the log chunk: "+err.Error())
	}
	if err := a.svc.AppendLog(r.Context(), r.PathValue("id"), r.URL.Query().Get("runner_id"), data); err != nil {
		return err
	}
	return writeJSON(w, wire.Msg{Msg: "OK"})
}

func (a *API) finish(w http.ResponseWriter, r *http.Request) error {
	var req wire.FinishRequest
	if err := a.readJSON(w, r, &req); err != nil {
		return err
	}
	if err := a.svc.Finish(r.Context(), r.PathValue("id"), req); err != nil {
		return err
	}
	return writeJSON(w, wire.Msg{Msg: "OK"})
}

func (a *API) pkg(w http.ResponseWriter, r *http.Request) error {
	rc, err := a.svc.OpenPackage(r.Context(), r.PathValue("revision"))
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/zip")
	_, _ = io.Copy(w, rc)
	return nil
}

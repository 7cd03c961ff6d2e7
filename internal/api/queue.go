package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// queueRoutes are the routes that steer the queue: retries, progress and a
// code's whole queue.
func (a *API) queueRoutes() {
	const p = "/2/projects/{project}"
	a.mux.HandleFunc("POST "+p+"/tasks/{id}/retry", a.project(a.retryTask))
	a.mux.HandleFunc("POST "+p+"/tasks/{id}/progress", a.serve(a.progress))
	a.mux.HandleFunc("GET "+p+"/codes/{id}/stats", a.project(a.codeStats))
	a.mux.HandleFunc("POST "+p+"/codes/{id}/cancel_all", a.project(a.cancelAll))
	a.mux.HandleFunc("POST "+p+"/codes/{id}/pause_task_queue", a.project(a.pauseCode(true)))
	a.mux.HandleFunc("POST "+p+"/codes/{id}/resume_task_queue", a.project(a.pauseCode(false)))
}

func (a *API) retryTask(w http.ResponseWriter, r *http.Request) error {
	var req wire.RetryRequest
	// The body is optional: IronWorker clients send {} or nothing.
	if err := a.readJSON(w, r, &req); err != nil && !errors.Is(err, errEmptyBody) {
		return err
	}
	id, err := a.svc.RetryTask(r.Context(), projectOf(r).ID, r.PathValue("id"), req.Delay)
	if err != nil {
		return err
	}
	return writeJSON(w, wire.RetryResponse{Msg: "Queued up", Tasks: []wire.QueuedTask{{ID: id}}})
}

// progress takes the project's token, or the task's own token (which is
// good for nothing else).
func (a *API) progress(w http.ResponseWriter, r *http.Request) error {
	tok, err := a.svc.Authenticate(r.Context(), token(r))
	if err != nil {
		return err
	}
	var p wire.Progress
	if err := a.readJSON(w, r, &p); err != nil {
		return err
	}
	taskID := r.PathValue("id")
	if tok.Kind == store.TokenTask {
		if tok.ProjectID != r.PathValue("project") {
			return errStatus(http.StatusForbidden, "This task token is for another project")
		}
		vouched(r)
		if err := a.svc.ReportProgress(r.Context(), token(r), taskID, p); err != nil {
			return err
		}
		return writeJSON(w, wire.Msg{Msg: "Progress set"})
	}
	proj, err := a.svc.Authorize(r.Context(), tok, r.PathValue("project"))
	if err != nil {
		return err
	}
	vouched(r)
	if err := a.svc.SetProgress(r.Context(), proj.ID, taskID, p); err != nil {
		return err
	}
	return writeJSON(w, wire.Msg{Msg: "Progress set"})
}

func (a *API) codeStats(w http.ResponseWriter, r *http.Request) error {
	st, err := a.svc.CodeStats(r.Context(), projectOf(r).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, st)
}

func (a *API) cancelAll(w http.ResponseWriter, r *http.Request) error {
	n, err := a.svc.CancelAll(r.Context(), projectOf(r).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, wire.Msg{Msg: "Cancelled " + strconv.Itoa(n) + " tasks"})
}

func (a *API) pauseCode(paused bool) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := a.svc.PauseCode(r.Context(), projectOf(r).ID, r.PathValue("id"), paused); err != nil {
			return err
		}
		if paused {
			return writeJSON(w, wire.Msg{Msg: "Paused"})
		}
		return writeJSON(w, wire.Msg{Msg: "Resumed"})
	}
}

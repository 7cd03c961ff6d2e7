package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/mayfly-run/mayfly/internal/mayfly"
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
	projectID := r.PathValue("project")
	if tok.Kind == mayfly.TokenTask {
		if tok.ProjectID != projectID {
			return errStatus(http.StatusForbidden, "This task token is for another project")
		}
	} else {
		proj, err := a.svc.Authorize(r.Context(), tok, projectID)
		if err != nil {
			return err
		}
		projectID = proj.ID
	}
	vouched(r)
	// Counted only once the caller is known, so that nobody can spend a
	// task's share for it.
	if _, wait := a.progressRates.take(taskID, time.Now()); wait > 0 {
		return &httpError{status: http.StatusTooManyRequests, retryAfter: max(1, int(wait.Seconds()+0.999)),
			msg: "Too many progress reports for this task: at most " + itoa(progressRate) + " a second (bursts of " +
				itoa(progressBurst) + "); the latest one counts, so report less often"}
	}
	if tok.Kind == mayfly.TokenTask {
		err = a.svc.ReportProgress(r.Context(), token(r), taskID, p)
	} else {
		err = a.svc.SetProgress(r.Context(), projectID, taskID, p)
	}
	if err != nil {
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

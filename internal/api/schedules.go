package api

import (
	"encoding/json"
	"net/http"

	"github.com/mayfly-run/mayfly/internal/mayfly"
	"github.com/mayfly-run/mayfly/internal/wire"
)

func (a *API) scheduleRoutes() {
	m := a.mux
	const p = "/2/projects/{project}"
	m.HandleFunc("POST "+p+"/schedules", a.project(a.createSchedules))
	m.HandleFunc("GET "+p+"/schedules", a.project(a.listSchedules))
	m.HandleFunc("GET "+p+"/schedules/{id}", a.project(a.getSchedule))
	m.HandleFunc("PUT "+p+"/schedules/{id}", a.project(a.updateSchedule))
	m.HandleFunc("POST "+p+"/schedules/{id}/cancel", a.project(a.cancelSchedule))
}

func scheduleJSON(s mayfly.Schedule) wire.Schedule {
	return wire.Schedule{
		ID: s.ID, ProjectID: s.ProjectID, CodeName: s.CodeName, Name: s.Name, Status: s.Status, Msg: s.Msg,
		Payload: s.Payload, StartAt: s.StartAt, EndAt: s.EndAt, RunEvery: s.RunEvery, RunTimes: s.RunTimes,
		RunCount: s.RunCount, LastRunTime: s.LastRunTime, NextStart: s.NextStart, Priority: s.Priority,
		Timeout: s.Timeout, Delay: s.Delay, Cluster: s.Cluster, Label: s.Label,
		MaxConcurrency: s.MaxConcurrency, Cron: s.Cron, Timezone: s.Timezone,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
	}
}

// readScheduleJSON reads a bounded JSON body into v. The body is read as
// raw JSON first so that a bad date gets its own message rather than a
// generic "malformed JSON".
func (a *API) readScheduleJSON(w http.ResponseWriter, r *http.Request, v any) error {
	var raw json.RawMessage
	if err := a.readJSON(w, r, &raw); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return jsonError(err)
	}
	return nil
}

func (a *API) createSchedules(w http.ResponseWriter, r *http.Request) error {
	var req wire.ScheduleRequest
	if err := a.readScheduleJSON(w, r, &req); err != nil {
		return err
	}
	ids, err := a.svc.CreateSchedules(r.Context(), projectOf(r).ID, req.Schedules)
	if err != nil {
		return err
	}
	out := wire.ScheduleResponse{Msg: "Scheduled", Schedules: make([]wire.ScheduledID, len(ids))}
	for i, id := range ids {
		out.Schedules[i].ID = id
	}
	return writeJSON(w, out)
}

func (a *API) listSchedules(w http.ResponseWriter, r *http.Request) error {
	pg, err := page(r)
	if err != nil {
		return err
	}
	scs, err := a.svc.ListSchedules(r.Context(), projectOf(r).ID, pg)
	if err != nil {
		return err
	}
	out := wire.ScheduleList{Schedules: make([]wire.Schedule, 0, len(scs))}
	for _, s := range scs {
		out.Schedules = append(out.Schedules, scheduleJSON(s))
	}
	return writeJSON(w, out)
}

func (a *API) getSchedule(w http.ResponseWriter, r *http.Request) error {
	s, err := a.svc.GetSchedule(r.Context(), projectOf(r).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, scheduleJSON(s))
}

func (a *API) updateSchedule(w http.ResponseWriter, r *http.Request) error {
	var upd wire.ScheduleUpdate
	if err := a.readScheduleJSON(w, r, &upd); err != nil {
		return err
	}
	if _, err := a.svc.UpdateSchedule(r.Context(), projectOf(r).ID, r.PathValue("id"), upd); err != nil {
		return err
	}
	return writeJSON(w, wire.Msg{Msg: "Updated"})
}

func (a *API) cancelSchedule(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.svc.CancelSchedule(r.Context(), projectOf(r).ID, r.PathValue("id")); err != nil {
		return err
	}
	return writeJSON(w, wire.Msg{Msg: "Cancelled"})
}

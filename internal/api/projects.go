package api

import (
	"net/http"

	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/mayfly"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// Projects: listed, made, changed and deleted by admin tokens; GET of one
// is a project route (IronWorker's), open to the project's own tokens.

func (a *API) projectJSON(p mayfly.Project) wire.Project {
	own, lim := quotasJSON(p.Quotas), quotasJSON(a.svc.EffectiveQuotas(p))
	return wire.Project{ID: p.ID, Name: p.Name, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, Quotas: &own, Limits: &lim}
}

func quotasJSON(q mayfly.Quotas) wire.Quotas {
	return wire.Quotas{QueuedTasks: q.QueuedTasks, RunningTasks: q.RunningTasks, Schedules: q.Schedules,
		CodeBytes: q.CodeBytes, RequestRate: q.RequestRate}
}

func projectChange(c wire.ProjectChange) service.ProjectChange {
	out := service.ProjectChange{Name: c.Name}
	if q := c.Quotas; q != nil {
		out.Quotas = service.QuotaChange{QueuedTasks: q.QueuedTasks, RunningTasks: q.RunningTasks,
			Schedules: q.Schedules, CodeBytes: q.CodeBytes, RequestRate: q.RequestRate}
	}
	return out
}

func (a *API) getProject(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, a.projectJSON(projectOf(r)))
}

func (a *API) listProjects(w http.ResponseWriter, r *http.Request) error {
	pg, err := page(r)
	if err != nil {
		return err
	}
	ps, err := a.svc.ListProjects(r.Context(), pg)
	if err != nil {
		return err
	}
	out := wire.ProjectList{Projects: make([]wire.Project, 0, len(ps))}
	for _, p := range ps {
		out.Projects = append(out.Projects, a.projectJSON(p))
	}
	return writeJSON(w, out)
}

func (a *API) createProject(w http.ResponseWriter, r *http.Request) error {
	var req wire.ProjectChange
	if err := a.readJSON(w, r, &req); err != nil {
		return err
	}
	p, err := a.svc.CreateProject(r.Context(), projectChange(req))
	if err != nil {
		return err
	}
	return writeJSON(w, a.projectJSON(p))
}

func (a *API) updateProject(w http.ResponseWriter, r *http.Request) error {
	var req wire.ProjectChange
	if err := a.readJSON(w, r, &req); err != nil {
		return err
	}
	p, err := a.svc.UpdateProject(r.Context(), r.PathValue("project"), projectChange(req))
	if err != nil {
		return err
	}
	return writeJSON(w, a.projectJSON(p))
}

func (a *API) deleteProject(w http.ResponseWriter, r *http.Request) error {
	force, err := boolParam(r, "force")
	if err != nil {
		return err
	}
	if err := a.svc.DeleteProject(r.Context(), r.PathValue("project"), force); err != nil {
		return err
	}
	return writeJSON(w, wire.Msg{Msg: "Deleted"})
}

// boolParam reads a 1/0/true/false query flag.
func boolParam(r *http.Request, name string) (bool, error) {
	switch r.URL.Query().Get(name) {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	}
	return false, errStatus(http.StatusBadRequest, name+" must be 1 or 0")
}

// listAudit shows who changed what: every record to an admin token (or
// one project's with project_id), the project's own to a project token.
func (a *API) listAudit(w http.ResponseWriter, r *http.Request) error {
	tok := tokenOf(r)
	project := r.URL.Query().Get("project_id")
	switch tok.Kind {
	case mayfly.TokenAdmin:
		if project != "" && !id.Valid(project) {
			return errStatus(http.StatusBadRequest, "project_id must be a project id (24 hex characters)")
		}
	case mayfly.TokenProject:
		if project != "" && project != tok.ProjectID {
			return errStatus(http.StatusForbidden, "A project token sees its own project's audit records only")
		}
		project = tok.ProjectID
	default:
		return errStatus(http.StatusForbidden, "A "+tok.Kind+" token cannot read audit records")
	}
	pg, err := page(r)
	if err != nil {
		return err
	}
	es, err := a.svc.ListAudit(r.Context(), project, pg)
	if err != nil {
		return err
	}
	out := wire.AuditList{Audit: make([]wire.AuditEntry, 0, len(es))}
	for _, e := range es {
		out.Audit = append(out.Audit, wire.AuditEntry{ID: e.ID, ProjectID: e.ProjectID, TokenID: e.TokenID,
			TokenName: e.TokenName, TokenKind: e.TokenKind, Action: e.Action, Target: e.Target, Detail: e.Detail,
			CreatedAt: e.CreatedAt})
	}
	return writeJSON(w, out)
}

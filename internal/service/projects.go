package service

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/mayfly-run/mayfly/internal/blob"
	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/store"
)

// ProjectChange is what POST /2/projects sets and PATCH changes: nil
// fields are left as they are (or take the server's default).
type ProjectChange struct {
	Name   *string
	Quotas QuotaChange
}

// QuotaChange changes a project's quotas field by field; 0 is the server's
// default, -1 no limit.
type QuotaChange struct {
	QueuedTasks  *int64
	RunningTasks *int64
	Schedules    *int64
	CodeBytes    *int64
	RequestRate  *float64
}

func (c QuotaChange) apply(q *store.Quotas) error {
	ints := []struct {
		name string
		v    *int64
		to   *int64
	}{
		{"queued_tasks", c.QueuedTasks, &q.QueuedTasks},
		{"running_tasks", c.RunningTasks, &q.RunningTasks},
		{"schedules", c.Schedules, &q.Schedules},
		{"code_bytes", c.CodeBytes, &q.CodeBytes},
	}
	for _, f := range ints {
		if f.v == nil {
			continue
		}
		if *f.v < -1 {
			return errorf(ErrInvalid, "quota %s must be a count, 0 for the server's default or -1 for no limit (got %d)", f.name, *f.v)
		}
		*f.to = *f.v
	}
	if v := c.RequestRate; v != nil {
		if math.IsNaN(*v) || math.IsInf(*v, 0) || (*v < 0 && *v != -1) || *v > 1e6 {
			return errorf(ErrInvalid, "quota request_rate must be requests a second up to 1000000, 0 for the server's default or -1 for no limit")
		}
		q.RequestRate = *v
	}
	return nil
}

func projectName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 128 || strings.ContainsRune(name, 0) {
		return "", errorf(ErrInvalid, "A project needs a name of 1 to 128 characters")
	}
	return name, nil
}

// CreateProject makes a project.
func (s *Service) CreateProject(ctx context.Context, c ProjectChange) (store.Project, error) {
	if c.Name == nil {
		return store.Project{}, errorf(ErrInvalid, "A project needs a name of 1 to 128 characters")
	}
	name, err := projectName(*c.Name)
	if err != nil {
		return store.Project{}, err
	}
	now := s.now()
	p := store.Project{ID: id.New(), Name: name, CreatedAt: now, UpdatedAt: now}
	if err := c.Quotas.apply(&p.Quotas); err != nil {
		return store.Project{}, err
	}
	if err := s.store.CreateProject(ctx, p); err != nil {
		return store.Project{}, fmt.Errorf("create project %q: %w", name, err)
	}
	s.audit(ctx, p.ID, "project.create", p.ID, "name="+quoteDetail(p.Name)+" "+quotaDetail(p.Quotas))
	return p, nil
}

// ListProjects lists projects, oldest first.
func (s *Service) ListProjects(ctx context.Context, page store.Page) ([]store.Project, error) {
	return s.store.ListProjects(ctx, page)
}

// UpdateProject renames a project or changes its quotas.
func (s *Service) UpdateProject(ctx context.Context, projectID string, c ProjectChange) (store.Project, error) {
	p, err := s.project(ctx, projectID)
	if err != nil {
		return store.Project{}, err
	}
	if c.Name != nil {
		if p.Name, err = projectName(*c.Name); err != nil {
			return store.Project{}, err
		}
	}
	if err := c.Quotas.apply(&p.Quotas); err != nil {
		return store.Project{}, err
	}
	p.UpdatedAt = s.now()
	if err := s.store.UpdateProject(ctx, p); err != nil {
		return store.Project{}, mapStoreErr(err, "Project")
	}
	s.forgetUsage(p.ID)
	s.audit(ctx, p.ID, "project.update", p.ID, "name="+quoteDetail(p.Name)+" "+quotaDetail(p.Quotas))
	return p, nil
}

// DeleteProject removes a project with everything it holds. While it has
// tasks queued or running it is refused, unless force: then its queued
// tasks go with it and its running ones are stopped, since their runners
// find their lease gone at the next heartbeat.
func (s *Service) DeleteProject(ctx context.Context, projectID string, force bool) error {
	if _, err := s.project(ctx, projectID); err != nil {
		return err
	}
	u, err := s.store.ProjectUsage(ctx, projectID, 1)
	if err != nil {
		return err
	}
	if (u.Queued > 0 || u.Active > 0) && !force {
		return errorf(ErrConflict, "Project has tasks queued or running; cancel them first, or delete with force=1 to cancel them")
	}
	revs, err := s.store.DeleteProject(ctx, projectID)
	if err != nil {
		return mapStoreErr(err, "Project")
	}
	for _, r := range revs {
		if r.PackageKey == "" {
			continue
		}
		if err := s.blobs.Delete(ctx, r.PackageKey); err != nil && !errors.Is(err, blob.ErrNotFound) {
			s.log.Warn("could not remove code package", "key", r.PackageKey, "err", err)
		}
	}
	s.forgetUsage(projectID)
	detail := ""
	if force {
		detail = "force"
	}
	s.audit(ctx, projectID, "project.delete", projectID, detail)
	return nil
}

// project finds a project by an id from a user.
func (s *Service) project(ctx context.Context, projectID string) (store.Project, error) {
	if !id.Valid(projectID) {
		return store.Project{}, errorf(ErrNotFound, "Project not found")
	}
	p, err := s.store.GetProject(ctx, projectID)
	return p, mapStoreErr(err, "Project")
}

// EffectiveQuotas returns the limits that hold for a project: its own,
// or the server's defaults. 0 means no limit.
func (s *Service) EffectiveQuotas(p store.Project) store.Quotas {
	return p.Quotas.Resolve(s.cfg.Quotas)
}

func quotaDetail(q store.Quotas) string {
	return fmt.Sprintf("queued_tasks=%d running_tasks=%d schedules=%d code_bytes=%d request_rate=%g",
		q.QueuedTasks, q.RunningTasks, q.Schedules, q.CodeBytes, q.RequestRate)
}

// quoteDetail quotes a user's text for an audit detail, cut short.
func quoteDetail(v string) string {
	if len(v) > 64 {
		v = v[:64]
	}
	return fmt.Sprintf("%q", v)
}

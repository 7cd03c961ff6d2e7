package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// Projects lists projects, oldest first (an admin token's call).
func (c *Client) Projects(ctx context.Context, page, perPage int) ([]wire.Project, error) {
	var out wire.ProjectList
	q := pageQuery(url.Values{}, page, perPage)
	if err := c.call(ctx, request{method: http.MethodGet, path: "/2/projects", query: q}, &out); err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	return out.Projects, nil
}

// CreateProject makes a project (an admin token's call).
func (c *Client) CreateProject(ctx context.Context, p wire.ProjectChange) (wire.Project, error) {
	var out wire.Project
	body, err := jsonBody(p)
	if err != nil {
		return out, err
	}
	if err := c.call(ctx, request{method: http.MethodPost, path: "/2/projects", body: body}, &out); err != nil {
		return out, fmt.Errorf("create project: %w", err)
	}
	return out, nil
}

// GetProject returns a project by id.
func (c *Client) GetProject(ctx context.Context, id string) (wire.Project, error) {
	var out wire.Project
	if err := c.call(ctx, request{method: http.MethodGet, path: "/2/projects/" + url.PathEscape(id)}, &out); err != nil {
		return out, fmt.Errorf("get project %s: %w", id, err)
	}
	return out, nil
}

// UpdateProject renames a project or changes its quotas (an admin token's
// call).
func (c *Client) UpdateProject(ctx context.Context, id string, p wire.ProjectChange) (wire.Project, error) {
	var out wire.Project
	body, err := jsonBody(p)
	if err != nil {
		return out, err
	}
	if err := c.call(ctx, request{method: http.MethodPatch, path: "/2/projects/" + url.PathEscape(id), body: body}, &out); err != nil {
		return out, fmt.Errorf("update project %s: %w", id, err)
	}
	return out, nil
}

// DeleteProject deletes a project and all it holds (an admin token's
// call); with force, its queued and running tasks are cancelled, without
// it a project with such tasks is refused.
func (c *Client) DeleteProject(ctx context.Context, id string, force bool) error {
	var out wire.Msg
	q := url.Values{}
	if force {
		q.Set("force", "1")
	}
	if err := c.call(ctx, request{method: http.MethodDelete, path: "/2/projects/" + url.PathEscape(id), query: q}, &out); err != nil {
		return fmt.Errorf("delete project %s: %w", id, err)
	}
	return nil
}

// Audit lists who changed what, newest first: an admin token sees every
// record (or projectID's), a project token its project's.
func (c *Client) Audit(ctx context.Context, projectID string, page, perPage int) ([]wire.AuditEntry, error) {
	var out wire.AuditList
	q := pageQuery(url.Values{}, page, perPage)
	if projectID != "" {
		q.Set("project_id", projectID)
	}
	if err := c.call(ctx, request{method: http.MethodGet, path: "/2/audit", query: q}, &out); err != nil {
		return nil, fmt.Errorf("list audit records: %w", err)
	}
	return out.Audit, nil
}

package client

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// CreateSchedules creates schedules, all or none, and returns their ids in
// the order given.
func (c *Client) CreateSchedules(ctx context.Context, schedules []wire.NewSchedule) ([]string, error) {
	path, err := c.projectPath("schedules")
	if err != nil {
		return nil, err
	}
	body, err := jsonBody(wire.ScheduleRequest{Schedules: schedules})
	if err != nil {
		return nil, err
	}
	var out wire.ScheduleResponse
	if err := c.call(ctx, request{method: http.MethodPost, path: path, body: body, contentType: "application/json"}, &out); err != nil {
		return nil, fmt.Errorf("create schedules: %w", err)
	}
	if len(out.Schedules) != len(schedules) {
		return nil, fmt.Errorf("create schedules: server answered %d ids for %d schedules", len(out.Schedules), len(schedules))
	}
	ids := make([]string, len(out.Schedules))
	for i, s := range out.Schedules {
		ids[i] = s.ID
	}
	return ids, nil
}

// ListSchedules returns one page (0-based) of the project's schedules,
// newest first. perPage 0 means the server's default (30); at most 100.
func (c *Client) ListSchedules(ctx context.Context, page, perPage int) ([]wire.Schedule, error) {
	path, err := c.projectPath("schedules")
	if err != nil {
		return nil, err
	}
	var out wire.ScheduleList
	if err := c.call(ctx, request{method: http.MethodGet, path: path, query: pageQuery(nil, page, perPage)}, &out); err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	return out.Schedules, nil
}

// GetSchedule returns the schedule with the given id.
func (c *Client) GetSchedule(ctx context.Context, id string) (wire.Schedule, error) {
	var out wire.Schedule
	path, err := c.projectPath("schedules", id)
	if err != nil {
		return out, err
	}
	if err := c.call(ctx, request{method: http.MethodGet, path: path}, &out); err != nil {
		return out, fmt.Errorf("get schedule %s: %w", id, err)
	}
	return out, nil
}

// UpdateSchedule changes the fields of a schedule that upd sets.
func (c *Client) UpdateSchedule(ctx context.Context, id string, upd wire.ScheduleUpdate) error {
	path, err := c.projectPath("schedules", id)
	if err != nil {
		return err
	}
	body, err := jsonBody(upd)
	if err != nil {
		return err
	}
	var out wire.Msg
	if err := c.call(ctx, request{method: http.MethodPut, path: path, body: body, contentType: "application/json"}, &out); err != nil {
		return fmt.Errorf("update schedule %s: %w", id, err)
	}
	return nil
}

// CancelSchedule stops a schedule; the tasks it made are left alone.
func (c *Client) CancelSchedule(ctx context.Context, id string) error {
	path, err := c.projectPath("schedules", id, "cancel")
	if err != nil {
		return err
	}
	var out wire.Msg
	if err := c.call(ctx, request{method: http.MethodPost, path: path, body: strings.NewReader("{}"), contentType: "application/json"}, &out); err != nil {
		return fmt.Errorf("cancel schedule %s: %w", id, err)
	}
	return nil
}

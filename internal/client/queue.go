package client

import (
	"context"
	"fmt"
	"net/http"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// CodeStats counts a code's tasks by status.
func (c *Client) CodeStats(ctx context.Context, codeID string) (wire.CodeStats, error) {
	var out wire.CodeStats
	path, err := c.projectPath("codes", codeID, "stats")
	if err != nil {
		return out, err
	}
	if err := c.call(ctx, request{method: http.MethodGet, path: path}, &out); err != nil {
		return out, fmt.Errorf("stats of code %s: %w", codeID, err)
	}
	return out, nil
}

// codeAction posts to one of a code's queue routes and returns the msg.
func (c *Client) codeAction(ctx context.Context, codeID, action string) (string, error) {
	path, err := c.projectPath("codes", codeID, action)
	if err != nil {
		return "", err
	}
	var out wire.Msg
	if err := c.call(ctx, request{method: http.MethodPost, path: path}, &out); err != nil {
		return "", fmt.Errorf("%s of code %s: %w", action, codeID, err)
	}
	return out.Msg, nil
}

// PauseCode stops the hand-out of a code's tasks; ResumeCode restarts it.
func (c *Client) PauseCode(ctx context.Context, codeID string) error {
	_, err := c.codeAction(ctx, codeID, "pause_task_queue")
	return err
}

func (c *Client) ResumeCode(ctx context.Context, codeID string) error {
	_, err := c.codeAction(ctx, codeID, "resume_task_queue")
	return err
}

// CancelAll cancels every unfinished task of a code; the server's msg says
// how many.
func (c *Client) CancelAll(ctx context.Context, codeID string) (string, error) {
	return c.codeAction(ctx, codeID, "cancel_all")
}

// SetProgress records a task's progress.
func (c *Client) SetProgress(ctx context.Context, taskID string, percent int, msg string) error {
	path, err := c.projectPath("tasks", taskID, "progress")
	if err != nil {
		return err
	}
	body, err := jsonBody(wire.Progress{Percent: &percent, Msg: msg})
	if err != nil {
		return err
	}
	var out wire.Msg
	if err := c.call(ctx, request{method: http.MethodPost, path: path, body: body, contentType: "application/json"}, &out); err != nil {
		return fmt.Errorf("progress of task %s: %w", taskID, err)
	}
	return nil
}

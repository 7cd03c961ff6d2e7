package client

import (
	"context"
	"fmt"
	"net/http"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// RetryTask queues a finished task again as a new task, due after delay
// seconds, and returns the new task's id.
func (c *Client) RetryTask(ctx context.Context, id string, delay int) (string, error) {
	path, err := c.projectPath("tasks", id, "retry")
	if err != nil {
		return "", err
	}
	body, err := jsonBody(wire.RetryRequest{Delay: delay})
	if err != nil {
		return "", err
	}
	var out wire.RetryResponse
	if err := c.call(ctx, request{method: http.MethodPost, path: path, body: body, contentType: "application/json"}, &out); err != nil {
		return "", fmt.Errorf("retry task %s: %w", id, err)
	}
	if len(out.Tasks) != 1 {
		return "", fmt.Errorf("retry task %s: server answered %d tasks, want 1", id, len(out.Tasks))
	}
	return out.Tasks[0].ID, nil
}

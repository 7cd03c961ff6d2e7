package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mayfly-run/mayfly/internal/wire"
)

func TestTaskRetry(t *testing.T) {
	t.Parallel()
	api := newCLIAPI(t)
	const newID = "eeeeeeeeeeeeeeeeeeeeeeee"
	api.handle("POST tasks/"+cliTaskID+"/retry", 200, wire.RetryResponse{Msg: "Queued up", Tasks: []wire.QueuedTask{{ID: newID}}})
	res := runCLI(t, api, nil, "", "task", "retry", cliTaskID, "--delay", "5m").ok(t)
	if strings.TrimSpace(res.stdout) != newID {
		t.Fatalf("stdout %q", res.stdout)
	}
	var req wire.RetryRequest
	if err := json.Unmarshal(api.last("POST", "/tasks/"+cliTaskID+"/retry").Body, &req); err != nil || req.Delay != 300 {
		t.Fatalf("retry request: %+v, %v", req, err)
	}
	api.handle("POST tasks/"+newID+"/retry", 409, wire.Error{Msg: "Task is still running; only a finished task can be retried"})
	r := runCLI(t, api, nil, "", "task", "retry", newID)
	if r.code != 1 || !strings.Contains(r.stderr, "only a finished task can be retried") {
		t.Fatalf("refused retry: exit %d, %q", r.code, r.stderr)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/wire"
)

const cliScheduleID = "dddddddddddddddddddddddd"

func TestScheduleCreateRequest(t *testing.T) {
	t.Parallel()
	api := newCLIAPI(t)
	api.handle("POST schedules", 200, wire.ScheduleResponse{Msg: "Scheduled", Schedules: []wire.ScheduledID{{ID: cliScheduleID}}})
	before := time.Now().UTC().Truncate(time.Second)
	res := runCLI(t, api, nil, "", "schedule", "create", "hello", "--run-every", "15m", "--start-at", "10m",
		"--end-at", "2030-01-02T03:04:05Z", "--run-times", "4", "--priority", "2", "--timeout", "90s",
		"--label", "nightly", "--cluster", "gpu", "--max-concurrency", "1", "--payload", `{"a":1}`, "--name", "n").ok(t)
	if strings.TrimSpace(res.stdout) != cliScheduleID {
		t.Fatalf("stdout %q", res.stdout)
	}
	var req wire.ScheduleRequest
	if err := json.Unmarshal(api.last("POST", "/schedules").Body, &req); err != nil || len(req.Schedules) != 1 {
		t.Fatalf("request: %v %s", err, api.last("POST", "/schedules").Body)
	}
	s := req.Schedules[0]
	if s.CodeName != "hello" || *s.RunEvery != 900 || *s.RunTimes != 4 || *s.Priority != 2 || *s.Timeout != 90 ||
		s.Label != "nightly" || s.Cluster != "gpu" || *s.MaxConcurrency != 1 || s.Payload != `{"a":1}` || s.Name != "n" ||
		s.Cron != "" || s.Delay != nil {
		t.Fatalf("schedule sent: %+v", s)
	}
	if s.StartAt == nil || s.StartAt.Before(before.Add(10*time.Minute)) || s.StartAt.After(time.Now().Add(10*time.Minute)) {
		t.Fatalf("--start-at 10m sent %v", s.StartAt)
	}
	if !s.EndAt.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("--end-at sent %v", s.EndAt)
	}

	runCLI(t, api, nil, `{"from":"stdin"}`, "schedule", "create", "hello", "--cron", "30 2 * * *", "--timezone", "Europe/Berlin", "--payload-file", "-").ok(t)
	if err := json.Unmarshal(api.last("POST", "/schedules").Body, &req); err != nil {
		t.Fatal(err)
	}
	if s := req.Schedules[0]; s.Cron != "30 2 * * *" || s.Timezone != "Europe/Berlin" || s.RunEvery != nil || s.Payload != `{"from":"stdin"}` {
		t.Fatalf("cron schedule sent: %+v", s)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"schedule", "create", "hello", "--run-every", "60", "--cron", "* * * * *"}, "none of the others"},
		{[]string{"schedule", "create", "hello", "--cron", "0 3 * * *", "--timezone", "Mars/Base"}, "IANA"},
		{[]string{"schedule", "create", "hello", "--start-at", "tomorrow"}, "RFC 3339"},
		{[]string{"schedule", "create", "hello", "--run-every", "60", "--priority", "5"}, "--priority"},
	} {
		if r := runCLI(t, api, nil, "", c.args...); r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("mayfly %v: exit %d, stderr %q; want it to mention %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

func TestScheduleUpdateSendsOnlyChanges(t *testing.T) {
	t.Parallel()
	api := newCLIAPI(t)
	api.handle("PUT schedules/"+cliScheduleID, 200, wire.Msg{Msg: "Updated"})
	runCLI(t, api, nil, "", "schedule", "update", cliScheduleID, "--payload", "", "--run-every", "2m").ok(t)
	var body map[string]any
	if err := json.Unmarshal(api.last("PUT", "/schedules/"+cliScheduleID).Body, &body); err != nil {
		t.Fatal(err)
	}
	if len(body) != 2 || body["payload"] != "" || body["run_every"] != float64(120) {
		t.Fatalf("update sent %v; want only payload and run_every", body)
	}
	if r := runCLI(t, api, nil, "", "schedule", "update", cliScheduleID); r.code == 0 || !strings.Contains(r.stderr, "nothing to change") {
		t.Fatalf("update without flags: exit %d, %q", r.code, r.stderr)
	}
}

func TestScheduleServerErrors(t *testing.T) {
	t.Parallel()
	api := newCLIAPI(t)
	api.handle("POST schedules/"+cliScheduleID+"/cancel", 409, wire.Error{Msg: "Schedule is already cancelled; nothing to cancel"})
	api.handle("GET schedules", 200, wire.ScheduleList{Schedules: []wire.Schedule{
		{ID: cliScheduleID, CodeName: "hello", Status: "scheduled", Cron: "30 2 * * *", Timezone: "Europe/Berlin", RunCount: 3},
	}})
	r := runCLI(t, api, nil, "", "schedule", "cancel", cliScheduleID)
	if r.code != 1 || strings.TrimSpace(r.stderr) != "mayfly: Schedule is already cancelled; nothing to cancel" {
		t.Fatalf("cancel refused: exit %d, stderr %q", r.code, r.stderr)
	}
	ls := runCLI(t, api, nil, "", "schedule", "ls").ok(t)
	if !strings.Contains(ls.stdout, "cron 30 2 * * * Europe/Berlin") || !strings.Contains(ls.stdout, cliScheduleID) {
		t.Fatalf("schedule ls:\n%s", ls.stdout)
	}
	// Shell completion of a schedule id asks the server.
	comp := runCLI(t, api, nil, "", "__complete", "schedule", "show", "").ok(t)
	if !strings.Contains(comp.stdout, cliScheduleID+"\thello scheduled cron") {
		t.Fatalf("completion:\n%s", comp.stdout)
	}
}

func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := runCLI(t, nil, nil, "", "completion", shell).ok(t)
		if !strings.Contains(r.stdout, "mayfly") || len(r.stdout) < 500 {
			t.Fatalf("completion %s: %q", shell, r.stdout)
		}
	}
}

func TestProgressOnlyOnTerminals(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "big.zip")
	if err := os.WriteFile(path, bytes.Repeat([]byte{1}, progressMin+1), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	r, done := withProgress(&out, f)
	done()
	if r != f || out.Len() != 0 {
		t.Fatalf("progress drawn on a buffer: %q", out.String())
	}
	pipeR, pipeW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pipeR.Close()
	defer pipeW.Close()
	if r, done := withProgress(pipeW, f); r != f {
		t.Fatal("progress drawn on a pipe")
	} else {
		done()
	}
	if r, _ := withProgress(pipeW, nil); r != nil {
		t.Fatal("no package became one")
	}
}

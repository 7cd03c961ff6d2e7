package api_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

func TestSchedules(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	start := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	// As IronWorker clients send it: run_every in seconds, start_at RFC 3339.
	st, body := b.do("POST", b.url("/schedules"), strings.NewReader(`{"schedules":[
		{"code_name":"hello","payload":"{\"a\":1}","run_every":3600,"run_times":3,"start_at":"`+start.Format(time.RFC3339)+`","priority":-3,"max_concurrency":-1000,"label":"l"},
		{"code_name":"hello","name":"nightly","cron":"30 2 * * *","timezone":"Europe/Berlin","start_at":`+strconv.FormatInt(start.Unix(), 10)+`}]}`))
	if st != 200 {
		t.Fatalf("create schedules: %d %s", st, body)
	}
	res := decode[wire.ScheduleResponse](t, body)
	if res.Msg != "Scheduled" || len(res.Schedules) != 2 || len(res.Schedules[0].ID) != 24 {
		t.Fatalf("create answer: %s", body)
	}
	every, cron := res.Schedules[0].ID, res.Schedules[1].ID

	st, body = b.do("GET", b.url("/schedules/"+every), nil)
	if st != 200 {
		t.Fatalf("get schedule: %d %s", st, body)
	}
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "project_id", "code_name", "status", "run_count", "last_run_time", "next_start",
		"start_at", "end_at", "created_at", "updated_at", "run_every", "run_times", "payload"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("schedule lacks %q: %s", k, body)
		}
	}
	for k, v := range raw {
		if v == "" {
			t.Errorf("field %q is the empty string: dates are RFC 3339 or null", k)
		}
	}
	if raw["last_run_time"] != nil || raw["end_at"] != nil || raw["status"] != "scheduled" || raw["next_start"] != start.Format(time.RFC3339) {
		t.Fatalf("new schedule: %s", body)
	}
	sc := decode[wire.Schedule](t, body)
	if sc.RunEvery != 3600 || sc.RunTimes != 3 || sc.Payload != `{"a":1}` || sc.Label != "l" || sc.Priority != nil || sc.MaxConcurrency != 0 {
		t.Fatalf("schedule fields: %s", body)
	}
	_, body = b.do("GET", b.url("/schedules/"+cron), nil)
	if sc := decode[wire.Schedule](t, body); sc.Cron != "30 2 * * *" || sc.Timezone != "Europe/Berlin" || sc.Name != "nightly" ||
		sc.NextStart == nil || sc.NextStart.Before(start) {
		t.Fatalf("cron schedule: %s", body)
	}

	st, body = b.do("GET", b.url("/schedules?per_page=1&page=1"), nil)
	if l := decode[wire.ScheduleList](t, body); st != 200 || len(l.Schedules) != 1 || l.Schedules[0].ID != every {
		t.Fatalf("list page 1: %d %s", st, body)
	}

	st, body = b.do("PUT", b.url("/schedules/"+every), strings.NewReader(`{"payload":"new","run_every":7200}`))
	if st != 200 || decode[wire.Msg](t, body).Msg != "Updated" {
		t.Fatalf("update: %d %s", st, body)
	}
	_, body = b.do("GET", b.url("/schedules/"+every), nil)
	if sc := decode[wire.Schedule](t, body); sc.Payload != "new" || sc.RunEvery != 7200 || sc.RunTimes != 3 {
		t.Fatalf("updated schedule: %s", body)
	}
	st, body = b.do("PUT", b.url("/schedules/"+every), strings.NewReader(`{"run_every":5}`))
	wantErr(t, st, body, 400, "at least 60 seconds")

	st, body = b.do("POST", b.url("/schedules/"+every+"/cancel"), nil)
	if st != 200 || decode[wire.Msg](t, body).Msg != "Cancelled" {
		t.Fatalf("cancel: %d %s", st, body)
	}
	_, body = b.do("GET", b.url("/schedules/"+every), nil)
	if sc := decode[wire.Schedule](t, body); sc.Status != "cancelled" || sc.NextStart != nil {
		t.Fatalf("cancelled schedule: %s", body)
	}
	st, body = b.do("POST", b.url("/schedules/"+every+"/cancel"), nil)
	wantErr(t, st, body, 409, "already cancelled")
	st, body = b.do("PUT", b.url("/schedules/"+every), strings.NewReader(`{"payload":"x"}`))
	wantErr(t, st, body, 409, "cancelled")
	st, body = b.do("GET", b.url("/schedules/ffffffffffffffffffffffff"), nil)
	wantErr(t, st, body, 404, "schedule not found")
}

func TestSchedulesRefuseBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	for _, c := range []struct {
		body   string
		status int
		part   string
	}{
		{`{"schedules":[{"code_name":"hello","run_every":30}]}`, 400, "run_every must be at least 60 seconds"},
		{`{"schedules":[{"code_name":"ghost","run_every":60}]}`, 404, `no code named "ghost"`},
		{`{"schedules":[{"code_name":"hello","cron":"61 * * * *"}]}`, 400, "invalid cron"},
		{`{"schedules":[{"code_name":"hello","cron":"* * *"}]}`, 400, "5 fields"},
		{`{"schedules":[{"code_name":"hello","cron":"0 3 * * *","timezone":"Mars/Base"}]}`, 400, "time zone"},
		{`{"schedules":[{"code_name":"hello","run_every":60,"cron":"0 3 * * *"}]}`, 400, "not both"},
		{`{"schedules":[{"code_name":"hello","start_at":"tomorrow"}]}`, 400, "RFC 3339"},
		{`{"schedules":[{"code_name":"hello","run_every":"often"}]}`, 400, "run_every"},
		{`{"schedules":[]}`, 400, "no schedules"},
		{`{"schedules":[{"code_name":"hello","run_every":60},{"code_name":"hello","run_every":1}]}`, 400, "schedule 1"},
	} {
		st, body := b.do("POST", b.url("/schedules"), strings.NewReader(c.body))
		wantErr(t, st, body, c.status, c.part)
	}
	st, body := b.do("GET", b.url("/schedules"), nil)
	if l := decode[wire.ScheduleList](t, body); st != 200 || len(l.Schedules) != 0 || !strings.Contains(string(body), `"schedules":[]`) {
		t.Fatalf("a refused batch left schedules: %s", body)
	}
}

// TestWebhookRawBody: whatever the webhook sender posts is the payload,
// byte for byte, JSON or not.
func TestWebhookRawBody(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{MaxPayloadBytes: 1024})
	b.pushHello()
	for _, c := range []struct{ body, contentType string }{
		{"plain text, not JSON {\n", "text/plain"},
		{`<event type="push"><ref>main</ref></event>`, "application/xml"},
		{"", "text/plain"},
		{`{"json": "also fine"}`, ""},
	} {
		st, body := b.do("POST", b.url("/tasks/webhook?code_name=hello"), strings.NewReader(c.body), "Content-Type", c.contentType)
		if st != 200 {
			t.Fatalf("webhook %q: %d %s", c.contentType, st, body)
		}
		wh := decode[wire.WebhookResponse](t, body)
		if len(wh.ID) != 24 || wh.Msg == "" {
			t.Fatalf("webhook answer: %s", body)
		}
		_, body = b.do("GET", b.url("/tasks/"+wh.ID), nil)
		if tk := decode[wire.Task](t, body); tk.Payload != c.body || tk.CodeName != "hello" {
			t.Fatalf("webhook task payload %q; want %q", tk.Payload, c.body)
		}
	}
	st, body := b.do("POST", b.url("/tasks/webhook?code_name=hello"), strings.NewReader(strings.Repeat("z", 1025)), "Content-Type", "text/plain")
	wantErr(t, st, body, 413, "payload limit")
}

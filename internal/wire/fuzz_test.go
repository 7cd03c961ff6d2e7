package wire

import (
	"encoding/json"
	"testing"
	"time"
)

// Every request body the API and the runner protocol decode comes from the
// network: any bytes must decode or fail with an error, never panic, and
// what decoded must encode again.
func FuzzDecodeBodies(f *testing.F) {
	for _, seed := range []string{
		`{"tasks":[{"code_name":"hello","payload":"{}","priority":2,"timeout":1.5,"delay":"30"}]}`,
		`{"code_name":"hello","payload":"x","cluster":"default","label":"l"}`,
		`{"schedules":[{"code_name":"c","run_every":60,"start_at":"2026-01-01T00:00:00Z","run_times":3}]}`,
		`{"code_name":"c","cron":"*/5 * * * *","timezone":"Europe/Paris"}`,
		`{"name":"x","image":"repo/img","config":{"a":1},"max_concurrency":-1000,"retries":"3"}`,
		`{"runner_id":"r","max":4,"wait_ms":60000,"clusters":["","gpu"]}`,
		`{"runner_id":"r","attempt":2,"status":"complete","exit_code":0,"timings":{"run":1.5}}`,
		`{"percent":50,"msg":"half"}`, `{"delay":9223372037}`, `{"timeout":1e309}`, `[]`, `null`, `{"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		targets := []any{&NewTask{}, &NewSchedule{}, &ScheduleUpdate{}, &CodeUpload{}, &RetryRequest{},
			&Progress{}, &LeaseRequest{}, &FinishRequest{}, &Task{}, &Job{}}
		for _, v := range targets {
			if err := json.Unmarshal(b, v); err != nil {
				continue
			}
			if _, err := json.Marshal(v); err != nil {
				t.Fatalf("%T decoded from %q does not encode: %v", v, b, err)
			}
		}
	})
}

// Times and whole numbers in bodies and query strings come in every form
// IronWorker clients send (RFC 3339, unix seconds as number or string,
// numbers as strings): whatever is read must be a time the API can write
// back out (RFC 3339, years 0001 to 9999) and a number in range.
func FuzzTimeAndNumberArgs(f *testing.F) {
	for _, seed := range []string{
		`"2026-03-29T02:30:00Z"`, `"2026-03-29T02:30:00+02:00"`, `1774751400`, `"1774751400.5"`, `-1`,
		`"9999-12-31T23:59:59Z"`, `"0001-01-01T00:00:00Z"`, `253402300799`, `1e300`, `"NaN"`, `null`, `""`,
		`"9999-12-31T23:59:59-23:59"`, `"0000-01-01T00:00:00Z"`, `"0001-01-01T00:00:00+01:00"`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if tm, err := parseTimeArg("start_at", json.RawMessage(raw)); err == nil && tm != nil {
			if y := tm.Year(); y < 1 || y > 9999 {
				t.Fatalf("start_at %s read as %v, outside the years 0001 to 9999", raw, tm)
			}
			out, err := json.Marshal(tm)
			if err != nil {
				t.Fatalf("start_at %s read as %v, which does not encode: %v", raw, tm, err)
			}
			var back time.Time
			if err := json.Unmarshal(out, &back); err != nil || !back.Equal(*tm) {
				t.Fatalf("start_at %s read as %v, encoded %s, read back %v: %v", raw, tm, out, back, err)
			}
		}
		if n, err := ParseIntJSON("delay", json.RawMessage(raw)); err == nil && n != nil && (*n < MinInt || *n > MaxInt) {
			t.Fatalf("delay %s read as %d, out of range", raw, *n)
		}
		if n, err := ParseInt("page", raw); err == nil && (n < MinInt || n > MaxInt) {
			t.Fatalf("page %q read as %d, out of range", raw, n)
		}
	})
}

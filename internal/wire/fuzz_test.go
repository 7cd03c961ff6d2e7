package wire

import (
	"encoding/json"
	"testing"
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

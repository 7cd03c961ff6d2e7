package service

import (
	"testing"
	"time"
)

// Cron expressions and time zones come from users: parsing any of them
// must end with a spec or an error, and a parsed spec's next run must come
// after the time asked about (or be zero: never).
func FuzzParseCron(f *testing.F) {
	for _, seed := range [][2]string{
		{"*/5 * * * *", ""}, {"0 9 * * 1-5", "Europe/Paris"}, {"@hourly", "UTC"}, {"0 0 31 2 *", ""},
		{"* * * * * *", ""}, {"60 * * * *", ""}, {"0 0 * * *", "../../etc/passwd"}, {"", ""},
		{"30 2 * * *", "America/New_York"}, {"0 0 1 1 *", "Local"},
	} {
		f.Add(seed[0], seed[1])
	}
	at := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC) // a daylight-saving change in Europe
	f.Fuzz(func(t *testing.T, expr, tz string) {
		spec, err := parseCron(expr, tz)
		if err != nil {
			return
		}
		next := spec.next(at)
		if !next.IsZero() && !next.After(at) {
			t.Fatalf("cron %q in %q: next after %v is %v", expr, tz, at, next)
		}
	})
}

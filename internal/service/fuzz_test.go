package service

import (
	"testing"
	"time"
)

// Cron expressions and time zones come from users: parsing any of them
// must end with a spec or an error, and a parsed spec's next run, from any
// time in the years a schedule may name, must come after that time (or be
// zero: never) and be a time the API can write out.
func FuzzParseCron(f *testing.F) {
	dst := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC).Unix() // a daylight-saving change in Europe
	for _, seed := range []struct {
		expr, tz string
		at       int64
	}{
		{"*/5 * * * *", "", dst}, {"0 9 * * 1-5", "Europe/Paris", dst}, {"@hourly", "UTC", dst}, {"0 0 31 2 *", "", dst},
		{"* * * * * *", "", dst}, {"60 * * * *", "", dst}, {"0 0 * * *", "../../etc/passwd", dst}, {"", "", dst},
		{"30 2 * * *", "America/New_York", dst}, {"0 0 1 1 *", "Local", dst},
		{"30 2 * * *", "Europe/Berlin", time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC).Unix()},
		{"59 23 31 12 *", "Pacific/Kiritimati", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC).Unix()},
		{"0 0 * * *", "Australia/Lord_Howe", 0}, {"0 0 29 2 *", "", -62135596800},
	} {
		f.Add(seed.expr, seed.tz, seed.at)
	}
	f.Fuzz(func(t *testing.T, expr, tz string, unix int64) {
		spec, err := parseCron(expr, tz)
		if err != nil {
			return
		}
		// The years 0001 to 9999: what the API reads and writes.
		const minUnix, maxUnix = -62135596800, 253402300799
		at := time.Unix(min(max(unix, minUnix), maxUnix), 0).UTC()
		next := spec.next(at)
		if next.IsZero() {
			return
		}
		if !next.After(at) {
			t.Fatalf("cron %q in %q: next after %v is %v", expr, tz, at, next)
		}
		if _, err := next.MarshalJSON(); err != nil && at.Year() < 9999 {
			t.Fatalf("cron %q in %q: next after %v is %v, which does not encode: %v", expr, tz, at, next, err)
		}
	})
}

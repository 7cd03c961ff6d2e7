package service

import (
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// runs returns the first n runs of expr in tz after from.
func runs(t *testing.T, expr, tz string, from time.Time, n int) []string {
	t.Helper()
	spec, err := parseCron(expr, tz)
	if err != nil {
		t.Fatalf("parse %q in %s: %v", expr, tz, err)
	}
	var out []string
	at := from
	for range n {
		at = spec.next(at)
		if at.IsZero() {
			t.Fatalf("%q in %s: no run after %s", expr, tz, out)
		}
		if at.Location() != time.UTC {
			t.Fatalf("next run not in UTC: %v", at)
		}
		out = append(out, at.Format(time.RFC3339))
	}
	return out
}

func sameRuns(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%s:\n got %v\nwant %v", what, got, want)
	}
}

func TestCronAcrossDST(t *testing.T) {
	t.Parallel()
	// Berlin: CET (+01) until 2026-03-29 02:00, when clocks jump to 03:00
	// CEST (+02); back to CET on 2026-10-25 at 03:00 CEST = 02:00 CET.
	sameRuns(t, "30 2 * * * over the spring change",
		runs(t, "30 2 * * *", "Europe/Berlin", utc("2026-03-27T12:00:00Z"), 3),
		[]string{
			"2026-03-28T01:30:00Z", // 02:30 CET
			"2026-03-29T01:00:00Z", // 02:30 does not exist: runs as the clocks jump, 03:00 CEST
			"2026-03-30T00:30:00Z", // 02:30 CEST
		})
	sameRuns(t, "30 2 * * * over the autumn change",
		runs(t, "30 2 * * *", "Europe/Berlin", utc("2026-10-24T12:00:00Z"), 2),
		[]string{
			"2026-10-25T00:30:00Z", // 02:30 CEST, the first of two 02:30s: once only
			"2026-10-26T01:30:00Z", // 02:30 CET
		})
	// Started within the repeated hour, after its first 02:30: that time
	// has been, so the next is the day after.
	sameRuns(t, "30 2 * * * from the repeated hour",
		runs(t, "30 2 * * *", "Europe/Berlin", utc("2026-10-25T01:10:00Z"), 1),
		[]string{"2026-10-26T01:30:00Z"})
	// Several skipped times run once, at the jump.
	sameRuns(t, "0,30 2 * * * over the spring change",
		runs(t, "0,30 2 * * *", "Europe/Berlin", utc("2026-03-28T23:00:00Z"), 2),
		[]string{"2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z"})
	// Wildcard hours follow real time: every hour, also the repeated one.
	sameRuns(t, "0 * * * * over the autumn change",
		runs(t, "0 * * * *", "Europe/Berlin", utc("2026-10-24T23:30:00Z"), 4),
		[]string{"2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"})
	sameRuns(t, "*/30 * * * * over the spring change",
		runs(t, "*/30 * * * *", "Europe/Berlin", utc("2026-03-29T00:15:00Z"), 3),
		[]string{"2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z"})
	// New York changes on other dates (2026-03-08, 02:00 -> 03:00).
	sameRuns(t, "30 2 * * * in New York",
		runs(t, "30 2 * * *", "America/New_York", utc("2026-03-07T12:00:00Z"), 2),
		[]string{"2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"})
	sameRuns(t, "UTC by default",
		runs(t, "15 9 * * 1", "", utc("2026-03-27T12:00:00Z"), 2),
		[]string{"2026-03-30T09:15:00Z", "2026-04-06T09:15:00Z"})
	sameRuns(t, "@daily in Tokyo",
		runs(t, "@daily", "Asia/Tokyo", utc("2026-03-27T12:00:00Z"), 1),
		[]string{"2026-03-27T15:00:00Z"})
}

func TestParseCronRefuses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ expr, tz, want string }{
		{"30 2 * *", "", "5 fields"},
		{"61 * * * *", "", "above maximum"},
		{"* * * * * *", "", "5 fields"},
		{"x * * * *", "", "invalid cron"},
		{"30 2 * * *", "Mars/Olympus", "time zone"},
		{"30 2 * * *", "Local", "IANA"},
		{"CRON_TZ=Europe/Berlin 30 2 * * *", "", "timezone field"},
		{"@every 5m", "", "run_every"},
	} {
		_, err := parseCron(c.expr, c.tz)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseCron(%q, %q) = %v; want an error mentioning %q", c.expr, c.tz, err, c.want)
		}
	}
}

func TestNextStartMissedRuns(t *testing.T) {
	t.Parallel()
	due := utc("2026-05-01T10:00:00Z")
	sc := scheduleOf(60)
	// On time: the rhythm holds.
	if n, _ := nextStart(sc, nil, due, due.Add(300*time.Millisecond)); !n.Equal(due.Add(time.Minute)) {
		t.Fatalf("next after an on-time run: %v", n)
	}
	// Ten minutes of downtime: one run now, the next a full interval on.
	late := due.Add(10 * time.Minute)
	if n, _ := nextStart(sc, nil, due, late); !n.Equal(late.Add(time.Minute)) {
		t.Fatalf("next after a late run: %v", n)
	}
	end := due.Add(30 * time.Second)
	sc.EndAt = &end
	if n, why := nextStart(sc, nil, due, due); n != nil || why != msgPastEnd {
		t.Fatalf("next past end_at: %v %q", n, why)
	}
}

func scheduleOf(every int) store.Schedule {
	return store.Schedule{RunEvery: every, Status: store.ScheduleScheduled}
}

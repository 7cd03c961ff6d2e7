package service

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// cronSpec is a cron expression read in its time zone.
//
// Expressions that name fixed times ("30 2 * * *") follow the wall clock as
// classic cron does across daylight-saving changes: a time that the clocks
// skip runs when they jump (02:30 runs at 03:00 on the spring change), and
// a time that happens twice runs only the first time. Expressions with a
// wildcard in the minute or hour field ("*/15 * * * *", "0 * * * *",
// @hourly) follow real time instead, so they keep their rhythm through the
// change.
type cronSpec struct {
	sched *cron.SpecSchedule
	loc   *time.Location
	wall  bool
}

// parseCron reads a 5-field expression (or @daily and its kin) in the IANA
// time zone tz, UTC when empty. The error says what is wrong, for users.
func parseCron(expr, tz string) (*cronSpec, error) {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fmt.Errorf("invalid cron %q: give the time zone in the timezone field, not in the expression", expr)
	}
	if strings.HasPrefix(expr, "@every") {
		return nil, fmt.Errorf("invalid cron %q: use run_every for fixed intervals", expr)
	}
	parsed, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, fmt.Errorf("invalid cron %q: %v (want 5 fields: minute hour day-of-month month day-of-week, e.g. \"30 2 * * *\")", expr, err)
	}
	sched, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("invalid cron %q: not a calendar expression", expr)
	}
	loc := time.UTC
	if tz != "" {
		if tz == "Local" {
			return nil, fmt.Errorf("invalid timezone %q: give an IANA name such as Europe/Berlin", tz)
		}
		if loc, err = time.LoadLocation(tz); err != nil {
			return nil, fmt.Errorf("invalid timezone %q: not a known IANA time zone name such as Europe/Berlin or America/New_York", tz)
		}
	}
	spec := &cronSpec{sched: sched, loc: loc, wall: true}
	if f := strings.Fields(expr); expr == "@hourly" || len(f) == 5 && (strings.Contains(f[0], "*") || strings.Contains(f[1], "*")) {
		spec.wall = false
	}
	if spec.wall {
		// Matched against wall clocks written as UTC times, which have no
		// daylight-saving changes; wallInstant maps them back.
		sched.Location = time.UTC
	} else {
		sched.Location = loc
	}
	return spec, nil
}

// next returns the first run strictly after after, in UTC, or the zero
// time when the expression never matches again.
func (c *cronSpec) next(after time.Time) time.Time {
	if !c.wall {
		t := c.sched.Next(after)
		if t.IsZero() {
			return t
		}
		return t.UTC()
	}
	a := wallClock(after.In(c.loc))
	// A few rounds at most: a candidate is passed over only when its wall
	// time already went by (the second pass through a repeated hour).
	for range 8 {
		w := c.sched.Next(a)
		if w.IsZero() {
			return w
		}
		if t := wallInstant(w, c.loc); t.After(after) {
			return t.UTC()
		}
		a = w
	}
	return time.Time{}
}

// wallClock returns the wall-clock reading of t as a UTC time.
func wallClock(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// wallInstant returns the earliest instant whose wall clock in loc reads w
// or later: w itself when it exists, its first occurrence when the clocks
// go back over it, and the moment of the jump when they skip it.
func wallInstant(w time.Time, loc *time.Location) time.Time {
	t := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), loc)
	if got := wallClock(t); !got.Equal(w) {
		// w falls in a gap; time.Date read it with the offset of one side,
		// and the jump is the edge of the zone period t landed in.
		start, end := t.ZoneBounds()
		if got.After(w) {
			return start
		}
		return end
	}
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return t
	}
	_, prevOff := start.Add(-time.Nanosecond).Zone()
	_, off := t.Zone()
	if prevOff > off {
		// The clocks went back at start: w may have happened before it too.
		if u := t.Add(-time.Duration(prevOff-off) * time.Second); u.Before(start) && wallClock(u.In(loc)).Equal(w) {
			return u
		}
	}
	return t
}

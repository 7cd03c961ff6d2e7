package wire

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// NewSchedule is one element of POST schedules. Pointer fields tell "not
// given" from zero. start_at and end_at take RFC 3339 or unix seconds; ""
// and null mean not given. run_every is in seconds; cron (with timezone,
// an IANA name, UTC by default) is Mayfly's extension; with neither, the
// schedule runs once at start_at.
type NewSchedule struct {
	CodeName       string     `json:"code_name"`
	Name           string     `json:"name,omitempty"`
	Payload        string     `json:"payload"`
	StartAt        *time.Time `json:"start_at,omitempty"`
	EndAt          *time.Time `json:"end_at,omitempty"`
	RunEvery       *int       `json:"run_every,omitempty"`
	RunTimes       *int       `json:"run_times,omitempty"`
	Priority       *int       `json:"priority,omitempty"`
	Timeout        *int       `json:"timeout,omitempty"`
	Delay          *int       `json:"delay,omitempty"`
	Cluster        string     `json:"cluster,omitempty"`
	Label          string     `json:"label,omitempty"`
	MaxConcurrency *int       `json:"max_concurrency,omitempty"`
	Cron           string     `json:"cron,omitempty"`
	Timezone       string     `json:"timezone,omitempty"`
}

func (n *NewSchedule) UnmarshalJSON(b []byte) error {
	type plain NewSchedule
	// plain's fields sit one level deeper than scheduleRaw's, so the raw
	// ones win where both have a name.
	type deep struct{ plain }
	var v struct {
		deep
		scheduleRaw
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*n = NewSchedule(v.plain)
	return v.scheduleRaw.decode(&n.StartAt, &n.EndAt, &n.RunEvery, &n.RunTimes, &n.Priority, &n.Timeout, &n.Delay, &n.MaxConcurrency)
}

// ScheduleUpdate is the body of PUT schedules/{id}: only the fields given
// change. Giving run_every drops cron and the other way round; run_every 0
// or cron "" turns the schedule into a one-time run at start_at.
type ScheduleUpdate struct {
	CodeName       *string    `json:"code_name,omitempty"`
	Name           *string    `json:"name,omitempty"`
	Payload        *string    `json:"payload,omitempty"`
	StartAt        *time.Time `json:"start_at,omitempty"`
	EndAt          *time.Time `json:"end_at,omitempty"`
	RunEvery       *int       `json:"run_every,omitempty"`
	RunTimes       *int       `json:"run_times,omitempty"`
	Priority       *int       `json:"priority,omitempty"`
	Timeout        *int       `json:"timeout,omitempty"`
	Delay          *int       `json:"delay,omitempty"`
	Cluster        *string    `json:"cluster,omitempty"`
	Label          *string    `json:"label,omitempty"`
	MaxConcurrency *int       `json:"max_concurrency,omitempty"`
	Cron           *string    `json:"cron,omitempty"`
	Timezone       *string    `json:"timezone,omitempty"`
}

func (u *ScheduleUpdate) UnmarshalJSON(b []byte) error {
	type plain ScheduleUpdate
	// plain's fields sit one level deeper than scheduleRaw's, so the raw
	// ones win where both have a name.
	type deep struct{ plain }
	var v struct {
		deep
		scheduleRaw
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*u = ScheduleUpdate(v.plain)
	return v.scheduleRaw.decode(&u.StartAt, &u.EndAt, &u.RunEvery, &u.RunTimes, &u.Priority, &u.Timeout, &u.Delay, &u.MaxConcurrency)
}

// scheduleRaw holds the fields of a schedule request that are read by
// hand: times in either of two forms, and lenient whole numbers.
type scheduleRaw struct {
	StartAt        json.RawMessage `json:"start_at"`
	EndAt          json.RawMessage `json:"end_at"`
	RunEvery       json.RawMessage `json:"run_every"`
	RunTimes       json.RawMessage `json:"run_times"`
	Priority       json.RawMessage `json:"priority"`
	Timeout        json.RawMessage `json:"timeout"`
	Delay          json.RawMessage `json:"delay"`
	MaxConcurrency json.RawMessage `json:"max_concurrency"`
}

func (r scheduleRaw) decode(startAt, endAt **time.Time, runEvery, runTimes, priority, timeout, delay, maxConc **int) error {
	err := decodeInts(intField{"run_every", r.RunEvery, runEvery}, intField{"run_times", r.RunTimes, runTimes},
		intField{"priority", r.Priority, priority}, intField{"timeout", r.Timeout, timeout},
		intField{"delay", r.Delay, delay}, intField{"max_concurrency", r.MaxConcurrency, maxConc})
	if err != nil {
		return err
	}
	if *startAt, err = parseTimeArg("start_at", r.StartAt); err != nil {
		return err
	}
	*endAt, err = parseTimeArg("end_at", r.EndAt)
	return err
}

// parseTimeArg reads a time the way IronWorker clients send one: an RFC
// 3339 string, or unix seconds as a number or string.
func parseTimeArg(field string, raw json.RawMessage) (*time.Time, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" || s == `""` {
		return nil, nil
	}
	if s[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, &FieldError{Field: field, Msg: "must be an RFC 3339 time or unix seconds"}
		}
	}
	if t, isNum, err := UnixTime(field, s); isNum {
		return t, err
	}
	if t, isTime, err := RFC3339Time(field, s); isTime {
		return t, err
	}
	return nil, &FieldError{Field: field, Msg: fmt.Sprintf("%q must be an RFC 3339 time (e.g. 2026-03-29T02:30:00Z) or unix seconds", truncate(s))}
}

type ScheduleRequest struct {
	Schedules []NewSchedule `json:"schedules"`
}

type ScheduledID struct {
	ID string `json:"id"`
}

// ScheduleResponse answers POST schedules.
type ScheduleResponse struct {
	Msg       string        `json:"msg"`
	Schedules []ScheduledID `json:"schedules"`
}

// Schedule is a schedule as GET schedules/{id} shows it. Dates are RFC
// 3339 or null.
type Schedule struct {
	ID             string     `json:"id"`
	ProjectID      string     `json:"project_id"`
	CodeName       string     `json:"code_name"`
	Name           string     `json:"name,omitempty"`
	Status         string     `json:"status"`
	Msg            string     `json:"msg,omitempty"`
	Payload        string     `json:"payload,omitempty"`
	StartAt        *time.Time `json:"start_at"`
	EndAt          *time.Time `json:"end_at"`
	RunEvery       int        `json:"run_every,omitempty"`
	RunTimes       int        `json:"run_times,omitempty"`
	RunCount       int        `json:"run_count"`
	LastRunTime    *time.Time `json:"last_run_time"`
	NextStart      *time.Time `json:"next_start"`
	Priority       *int       `json:"priority,omitempty"`
	Timeout        int        `json:"timeout,omitempty"`
	Delay          int        `json:"delay,omitempty"`
	Cluster        string     `json:"cluster,omitempty"`
	Label          string     `json:"label,omitempty"`
	MaxConcurrency int        `json:"max_concurrency,omitempty"`
	Cron           string     `json:"cron,omitempty"`
	Timezone       string     `json:"timezone,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

type ScheduleList struct {
	Schedules []Schedule `json:"schedules"`
}

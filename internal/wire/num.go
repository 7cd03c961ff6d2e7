package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Whole-number fields of requests (seconds, counts, priorities) accept what
// the official clients send: integers, numbers with a fraction (iron_go3
// sends time.Duration.Seconds(), so a timeout of 1.5 is real) and numbers
// in strings. A fraction is rounded up, so that a timeout, delay or
// interval is never shorter than asked. Every value is bounded to
// [MinInt, MaxInt], so no later arithmetic (due times, offsets) can wrap.
const (
	MaxInt = math.MaxInt32
	MinInt = math.MinInt32
)

// FieldError is a request field that could not be read; its message says
// which and why, for the API to answer 400 with.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + " " + e.Msg }

// ParseInt reads a whole number as ParseIntJSON does, from text (a query
// parameter).
func ParseInt(field, s string) (int, error) {
	s = strings.TrimSpace(s)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, &FieldError{Field: field, Msg: fmt.Sprintf("must be a number (got %q)", truncate(s))}
	}
	// Integers are read exactly; ParseFloat would round 2^53+1.
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < MinInt || n > MaxInt {
			return 0, outOfRange(field, s)
		}
		return int(n), nil
	}
	f = math.Ceil(f)
	if f < MinInt || f > MaxInt {
		return 0, outOfRange(field, s)
	}
	return int(f), nil
}

// ParseIntJSON reads a whole-number field of a JSON body; absent, null
// and "" are nil.
func ParseIntJSON(field string, raw json.RawMessage) (*int, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" || s == `""` {
		return nil, nil
	}
	if s[0] == '"' {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return nil, &FieldError{Field: field, Msg: "must be a number"}
		}
		s = str
	} else if s[0] != '-' && (s[0] < '0' || s[0] > '9') {
		return nil, &FieldError{Field: field, Msg: fmt.Sprintf("must be a number (got %s)", truncate(s))}
	}
	n, err := ParseInt(field, s)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

func outOfRange(field, s string) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf("must be a whole number from %d to %d (got %s)", MinInt, MaxInt, truncate(s))}
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Unix seconds are bounded to the years 0001 to 9999: the range RFC 3339
// can write, and far from where time arithmetic overflows.
const (
	minUnix = -62135596800 // 0001-01-01T00:00:00Z
	maxUnix = 253402300799 // 9999-12-31T23:59:59Z
)

// UnixTime reads unix seconds (a fraction is kept), refusing times outside
// the years 0001 to 9999. isNum is false when s is not a number at all, for
// the caller to try another form.
func UnixTime(field string, s string) (t *time.Time, isNum bool, err error) {
	s = strings.TrimSpace(s)
	f, perr := strconv.ParseFloat(s, 64)
	if perr != nil && !errors.Is(perr, strconv.ErrRange) || math.IsNaN(f) || s == "" || !(s[0] == '-' || s[0] >= '0' && s[0] <= '9') {
		return nil, false, nil
	}
	if perr != nil || f < minUnix || f > maxUnix {
		return nil, true, &FieldError{Field: field, Msg: "is out of range: give a time in the years 0001 to 9999"}
	}
	sec, frac := math.Modf(f)
	u := time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return &u, true, nil
}

// RFC3339Time reads an RFC 3339 time as UTC, refusing what falls outside
// the years 0001 to 9999 once in UTC (an offset can carry 9999-12-31 into
// the year 10000): such a time could be stored but never written back out
// as JSON. isTime is false when s is not RFC 3339 at all.
func RFC3339Time(field, s string) (t *time.Time, isTime bool, err error) {
	p, perr := time.Parse(time.RFC3339, strings.TrimSpace(s))
	if perr != nil {
		return nil, false, nil
	}
	u := p.UTC()
	if u.Year() < 1 || u.Year() > 9999 {
		return nil, true, &FieldError{Field: field, Msg: "is out of range: give a time in the years 0001 to 9999"}
	}
	return &u, true, nil
}

// intFields decodes the raw number fields of a request into their
// destinations.
type intField struct {
	name string
	raw  json.RawMessage
	dst  **int
}

func decodeInts(fields ...intField) error {
	for _, f := range fields {
		v, err := ParseIntJSON(f.name, f.raw)
		if err != nil {
			return err
		}
		*f.dst = v
	}
	return nil
}

package wire

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseIntJSON(t *testing.T) {
	for raw, want := range map[string]any{
		`1`: 1, `-3`: -3, `1.5`: 2, `0.0000036`: 1, `-1.5`: -1, `30.0`: 30, `1e1`: 10, `"45"`: 45, `" 7 "`: 7,
		`2147483647`: 2147483647, `-2147483648`: -2147483648, `null`: nil, `""`: nil,
		`2147483648`: "from", `9223372037`: "from", `1e300`: "from", `-1e300`: "from", `99999999999999999999`: "from",
		`"soon"`: "must be a number", `true`: "must be a number", `[1]`: "must be a number", `{}`: "must be a number",
		`"NaN"`: "must be a number", `"Inf"`: "must be a number",
	} {
		got, err := ParseIntJSON("f", json.RawMessage(raw))
		switch w := want.(type) {
		case nil:
			if got != nil || err != nil {
				t.Errorf("%s: %v %v, want nil", raw, got, err)
			}
		case int:
			if err != nil || got == nil || *got != w {
				t.Errorf("%s: %v %v, want %d", raw, got, err, w)
			}
		case string:
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "f" || !strings.Contains(fe.Msg, w) {
				t.Errorf("%s: %v, want an error about %q", raw, err, w)
			}
		}
	}
}

func TestUnixTimeBounds(t *testing.T) {
	for s, want := range map[string]string{
		"0": "1970-01-01T00:00:00Z", "1700000000.5": "2023-11-14T22:13:20.5Z", "-62135596800": "0001-01-01T00:00:00Z",
		"253402300799": "9999-12-31T23:59:59Z", "253402300800": "range", "9223372036854775807": "range",
		"-9223372036854775808": "range", "1e400": "range", "2026-01-01T00:00:00Z": "not a number", "soon": "not a number",
	} {
		tm, isNum, err := UnixTime("t", s)
		switch want {
		case "range":
			if !isNum || err == nil || !strings.Contains(err.Error(), "out of range") {
				t.Errorf("%s: %v %v %v, want out of range", s, tm, isNum, err)
			}
		case "not a number":
			if isNum || err != nil {
				t.Errorf("%s: %v %v %v, want not a number", s, tm, isNum, err)
			}
		default:
			if err != nil || tm == nil || tm.Format("2006-01-02T15:04:05.999999999Z07:00") != want {
				t.Errorf("%s: %v %v, want %s", s, tm, err, want)
			}
		}
	}
}

func TestClusterDefault(t *testing.T) {
	for in, want := range map[string]string{"default": "", "Default": "", " default ": "", "": "", "gpu": "gpu"} {
		if got := Cluster(in); got != want {
			t.Errorf("Cluster(%q) = %q, want %q", in, got, want)
		}
	}
}

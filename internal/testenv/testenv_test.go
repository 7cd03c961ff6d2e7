package testenv

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// recorder is a testing.TB that records instead of failing or skipping.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skip = fmt.Sprintf(format, args...)
}

func TestIntegration(t *testing.T) {
	cause := errors.New("no socket")
	for _, tc := range []struct {
		env       string
		err       error
		wantFatal bool
		wantSkip  bool
	}{
		{env: "", err: nil},
		{env: "1", err: nil},
		{env: "", err: cause, wantSkip: true},
		{env: "0", err: cause, wantSkip: true},
		{env: "1", err: cause, wantFatal: true},
	} {
		t.Run(fmt.Sprintf("env=%q,err=%v", tc.env, tc.err), func(t *testing.T) {
			t.Setenv(RequireEnv, tc.env)
			r := &recorder{TB: t}
			Integration(r, "docker engine", tc.err)
			if (r.fatal != "") != tc.wantFatal || (r.skip != "") != tc.wantSkip {
				t.Fatalf("fatal %q, skip %q; want fatal %v, skip %v", r.fatal, r.skip, tc.wantFatal, tc.wantSkip)
			}
			if msg := r.fatal + r.skip; msg != "" && (!strings.Contains(msg, "docker engine") || !strings.Contains(msg, "no socket")) {
				t.Errorf("message %q does not say what is missing and why", msg)
			}
			if tc.wantSkip && (!strings.HasPrefix(r.skip, "SKIPPING") || !strings.Contains(r.skip, RequireEnv+"=1")) {
				t.Errorf("skip message %q is not loud enough", r.skip)
			}
		})
	}
}

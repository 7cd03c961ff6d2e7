package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// The S3 server binary is looked for where scripts/setup-s3.sh puts it,
// unless MAYFLY_VERSITYGW names another; a name that is not there says so
// instead of falling back to some other binary.
func TestVersitygwBinary(t *testing.T) {
	t.Setenv(VersitygwEnv, "/nonexistent/versitygw")
	if _, err := versitygwBinary(); err == nil || !strings.Contains(err.Error(), VersitygwEnv) {
		t.Fatalf("versitygwBinary with a missing %s = %v, want an error naming it", VersitygwEnv, err)
	}
	t.Setenv(VersitygwEnv, "")
	t.Setenv("PATH", t.TempDir())
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(root, "bin", "tools", "versitygw")
	got, err := versitygwBinary()
	if _, serr := os.Stat(want); serr == nil {
		if got != want {
			t.Fatalf("versitygwBinary = %q, %v; want %q", got, err, want)
		}
	} else if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("versitygwBinary without a binary = %q, %v; want an error naming %s", got, err, want)
	}
}

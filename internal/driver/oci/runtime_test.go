package oci

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"testing"
)

func TestTooOld(t *testing.T) {
	for _, c := range []struct {
		ver string
		old bool
	}{
		{"runc version 1.1.5+ds1", true},
		{"runc version 1.1.12", true}, // never got the 2025 fixes
		{"runc version 1.2.7", true},
		{"runc version 1.2.8", false},
		{"runc version 1.3.2", true},
		{"runc version 1.3.3", false},
		{"runc version 1.4.0", false},
		{"runc version 1.5.1", false},
		{"crun version 1.4.3", true},
		{"crun version 1.8.1", false},
		{"youki version 0.3.0", false},
	} {
		if old, why := tooOld(c.ver); old != c.old {
			t.Errorf("tooOld(%q) = %v (%s), want %v", c.ver, old, why, c.old)
		}
	}
}

// TestChooseRuntime: a runtime named is taken as named; none named gives
// crun when its trial container works here, else runc.
func TestChooseRuntime(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the trial container needs root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("no runc")
	}
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/tmp", 0o700); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	if _, err := chooseRuntime(ctx, "no-such-runtime", dir, log); err == nil {
		t.Error("a missing runtime named was accepted")
	}
	got, err := chooseRuntime(ctx, "", dir, log)
	if err != nil {
		t.Fatal(err)
	}
	crun, lerr := exec.LookPath("crun")
	want, _ := exec.LookPath("runc")
	if lerr == nil {
		if perr := probeRuntime(ctx, crun, dir); perr == nil {
			want = crun
		} else {
			t.Logf("crun does not work here: %v", perr)
		}
	}
	if got != want {
		t.Errorf("chose %s, want %s", got, want)
	}
	// runc works on every cgroup set-up this driver supports.
	runc, _ := exec.LookPath("runc")
	if err := probeRuntime(ctx, runc, dir); err != nil {
		t.Errorf("runc's trial container: %v", err)
	}
	ents, _ := os.ReadDir(dir + "/tmp")
	if len(ents) != 0 {
		t.Errorf("the trial left %d entries in tmp", len(ents))
	}
}

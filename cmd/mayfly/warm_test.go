package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWarmOptions(t *testing.T) {
	run := filepath.Join(t.TempDir(), "run")
	if o, err := (warmConfig{}).options("", "docker", run, nil); err != nil || o.WarmContainers != 0 {
		t.Errorf("off: %+v, %v", o, err)
	}
	if _, err := (warmConfig{N: -1}).options("runner-", "docker", run, nil); err == nil || !strings.Contains(err.Error(), "--runner-warm-containers") {
		t.Errorf("negative: %v", err)
	}
	if _, err := (warmConfig{N: maxWarm + 1}).options("", "docker", run, nil); err == nil {
		t.Errorf("%d warm containers per shape taken", maxWarm+1)
	}
	if _, err := (warmConfig{N: 1}).options("", "oci", run, nil); err == nil || !strings.Contains(err.Error(), "docker driver") {
		t.Errorf("oci: %v", err)
	}
	// A launcher that is not a static executable is refused at start,
	// not when the first warm container fails.
	script := filepath.Join(t.TempDir(), "mayfly-launch")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := (warmConfig{N: 1, Launcher: script}).options("", "docker", run, nil); err == nil {
		t.Errorf("a shell script taken as the launcher")
	}
	if _, err := (warmConfig{N: 1, Launcher: "/no/such/launcher"}).options("", "docker", run, nil); err == nil {
		t.Errorf("a missing launcher taken")
	}
}

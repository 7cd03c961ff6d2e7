package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The depth scenario needs neither Docker nor River, so it runs the whole
// command: flags, the run, and the files written.
func TestBenchDepthWritesResults(t *testing.T) {
	out := filepath.Join(t.TempDir(), "results")
	r := runCLI(t, nil, nil, "", "bench", "depth", "--depth-small", "500", "--depth-large", "2000",
		"--depth-sample", "10", "--out", out, "--work-dir", t.TempDir()).ok(t)
	if !strings.Contains(r.stdout, "| lease+finish with 2k queued") {
		t.Errorf("stdout lacks the depth row:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "mayfly bench depth --depth-large=2000") {
		t.Errorf("stdout lacks the command that reproduces the run:\n%s", r.stdout)
	}
	for _, name := range []string{"results.json", "bench.png", "results.md"} {
		if st, err := os.Stat(filepath.Join(out, name)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", name, err)
		}
	}
}

func TestBenchRefusesUnknownScenario(t *testing.T) {
	r := runCLI(t, nil, nil, "", "bench", "warp-speed")
	if r.code == 0 || !strings.Contains(r.stderr, "warp-speed") {
		t.Fatalf("exit %d, stderr %q: want a refusal naming the scenario", r.code, r.stderr)
	}
}

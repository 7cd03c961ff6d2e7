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

// Without --postgres-url the PostgreSQL scenarios are skipped, and the
// report says how to run them.
func TestBenchPostgresSkippedWithoutURL(t *testing.T) {
	t.Setenv("MAYFLY_BENCH_POSTGRES_URL", "")
	out := filepath.Join(t.TempDir(), "results")
	r := runCLI(t, nil, nil, "", "bench", "queue-pg", "scale-pg", "--out", out, "--work-dir", t.TempDir()).ok(t)
	for _, want := range []string{"Skipped queue-pg", "Skipped scale-pg", "--postgres-url", "MAYFLY_BENCH_POSTGRES_URL"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "results.md")); err != nil {
		t.Errorf("results.md not written: %v", err)
	}
}

// The command written into a report names the PostgreSQL server but not
// its password: reports are shared.
func TestBenchCommandLineHidesPostgresPassword(t *testing.T) {
	cmd := newBenchCmd()
	if err := cmd.ParseFlags([]string{"--postgres-url", "postgres://admin:hunter2@db.internal:5432/postgres", "--queue-tasks", "10"}); err != nil {
		t.Fatal(err)
	}
	line := commandLine(cmd, []string{"queue-pg"})
	if strings.Contains(line, "hunter2") || !strings.Contains(line, "admin:xxxxx@db.internal:5432") || !strings.Contains(line, "--queue-tasks=10") {
		t.Errorf("command line %q: want the URL with its password hidden", line)
	}
}

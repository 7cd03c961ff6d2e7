package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/bench"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

// These tests run every scenario at a tiny size so the harness itself is
// tested; they check the shape of the results, never the timings.

func tiny(t *testing.T) bench.Config {
	return bench.Config{
		LatencyN:    2,
		ThroughputM: 4, ThroughputC: 2,
		QueueTasks: 200, QueueC: 4, QueueBatch: 50,
		DepthSmall: 1000, DepthLarge: 5000, DepthSample: 20,
		RiverDir: filepath.Join("..", "..", "bench", "river"),
		WorkDir:  t.TempDir(),
	}
}

func checkStats(t *testing.T, name string, s bench.Stats, n int) {
	t.Helper()
	if s.N != n {
		t.Errorf("%s: N = %d, want %d", name, s.N, n)
	}
	if !(s.Min > 0 && s.Min <= s.P50 && s.P50 <= s.P90 && s.P90 <= s.P99 && s.P99 <= s.Max) {
		t.Errorf("%s: percentiles out of order or not positive: %+v", name, s)
	}
}

func checkTarget(t *testing.T, tg bench.Target) {
	t.Helper()
	if tg.Name == "" || tg.Bound <= 0 || (tg.Op != "<=" && tg.Op != ">=") {
		t.Errorf("target badly formed: %+v", tg)
	}
	if tg.Ratio <= 0 || math.IsInf(tg.Ratio, 0) || math.IsNaN(tg.Ratio) {
		t.Errorf("target %s: ratio %v is not a positive number", tg.Name, tg.Ratio)
	}
}

// docker skips (or fails under MAYFLY_REQUIRE_INTEGRATION=1) when there is
// no engine, and makes sure the stack image exists.
func docker(t *testing.T, cfg *bench.Config) {
	testenv.Docker(t)
	cfg.Image = testenv.StackImage(t, "busybox")
}

func TestLatencyTiny(t *testing.T) {
	cfg := tiny(t)
	docker(t, &cfg)
	r, err := bench.RunLatency(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkStats(t, "mayfly", r.Mayfly, 2)
	checkStats(t, "docker run", r.Docker, 2)
	if len(r.MayflySamples) != 2 || len(r.DockerSamples) != 2 {
		t.Errorf("samples: %d and %d, want 2 each", len(r.MayflySamples), len(r.DockerSamples))
	}
	for name, s := range map[string]bench.Stats{"enqueue": r.Phases.Enqueue, "to start": r.Phases.ToStart, "run": r.Phases.Run,
		"driver start": r.Driver.Start, "driver wait": r.Driver.Wait, "driver destroy": r.Driver.Destroy, "driver total": r.Driver.Total,
		"copy driver start": r.DriverCopy.Start, "copy driver total": r.DriverCopy.Total,
		"bare driver start": r.DriverBare.Start, "bare driver total": r.DriverBare.Total} {
		checkStats(t, name, s, 2)
	}
	// The phases are parts of the whole, measured on one clock.
	if sum := r.Phases.Enqueue.Min + r.Phases.ToStart.Min + r.Phases.Run.Min; sum > r.Mayfly.Max+1 {
		t.Errorf("phases add up to more than the whole: %.1f ms > %.1f ms", sum, r.Mayfly.Max)
	}
	checkTarget(t, r.Target)
	// The same run with the docker driver's warm containers.
	if r.MayflyWarm == nil || r.DriverWarm == nil || r.WarmTarget == nil {
		t.Fatalf("warm containers not measured: %s", r.WarmSkipped)
	}
	checkStats(t, "mayfly warm", *r.MayflyWarm, 2)
	checkStats(t, "warm driver start", r.DriverWarm.Start, 2)
	checkTarget(t, *r.WarmTarget)
	if r.WarmHits != 4 {
		t.Errorf("%d of 4 warm runs found a warm container", r.WarmHits)
	}
}

func TestThroughputTiny(t *testing.T) {
	cfg := tiny(t)
	docker(t, &cfg)
	r, err := bench.RunThroughput(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.M != 4 || r.C != 2 || r.MayflyRate <= 0 || r.DockerRate <= 0 || r.MayflySecs <= 0 || r.DockerSecs <= 0 {
		t.Errorf("result not sane: %+v", r)
	}
	checkTarget(t, r.Target)
}

func TestQueueTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the River baseline")
	}
	cfg := tiny(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := bench.RunQueue(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Tasks != 200 || r.MayflyRate <= 0 || r.River.TasksPerSec <= 0 || r.River.Tasks != 200 || r.River.Workers != 4 {
		t.Errorf("result not sane: %+v", r)
	}
	if !strings.HasPrefix(r.River.Version, "v") {
		t.Errorf("River version %q, want a module version", r.River.Version)
	}
	checkTarget(t, r.Target)
}

func TestDepthTiny(t *testing.T) {
	cfg := tiny(t)
	r, err := bench.RunDepth(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Small.Queued != 1000 || r.Large.Queued != 5000 {
		t.Errorf("queued %d and %d, want 1000 and 5000", r.Small.Queued, r.Large.Queued)
	}
	for name, s := range map[string]bench.DepthSide{"small": r.Small, "large": r.Large} {
		checkStats(t, name+" lease", s.Lease, 20)
		checkStats(t, name+" finish", s.Finish, 20)
		checkStats(t, name+" total", s.Total, 20)
	}
	checkTarget(t, r.Target)
}

func TestDepthSampleLargerThanQueue(t *testing.T) {
	cfg := tiny(t)
	cfg.DepthSmall, cfg.DepthSample = 10, 20
	if _, err := bench.RunDepth(context.Background(), cfg); err == nil {
		t.Fatal("a sample larger than the small queue was accepted")
	}
}

func TestRunRejectsUnknownScenario(t *testing.T) {
	_, err := bench.Run(context.Background(), tiny(t), "nope")
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("err = %v, want one naming the scenario", err)
	}
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	s := bench.Summarize(d)
	want := bench.Stats{N: 100, Min: 1, P50: 50, P90: 90, P99: 99, Max: 100, Mean: 50.5}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if got := bench.Summarize(nil); got != (bench.Stats{}) {
		t.Errorf("Summarize(nil) = %+v", got)
	}
}

// TestWriteAll draws and writes a made-up result, so the chart and the
// tables are checked without running anything.
func TestWriteAll(t *testing.T) {
	st := bench.Stats{N: 3, Min: 1, P50: 2, P90: 3, P99: 3, Max: 3, Mean: 2}
	r := &bench.Results{
		Started: time.Now(), Seconds: 1, Command: "mayfly bench",
		Machine: bench.DescribeMachine(context.Background(), ""),
		Latency: &bench.LatencyResult{N: 3, Mayfly: st, Docker: st, MayflySamples: []float64{1, 2, 3}, DockerSamples: []float64{1, 2, 3},
			Target: bench.Target{Name: "latency p50", Ratio: 1.2, Op: "<=", Bound: 1.1}},
		Throughput: &bench.ThroughputResult{M: 4, C: 2, MayflyRate: 2, DockerRate: 1,
			Target: bench.Target{Name: "throughput", Ratio: 2, Op: ">=", Bound: 1, Met: true}},
		Depth: &bench.DepthResult{Small: bench.DepthSide{Queued: 1000, Total: st}, Large: bench.DepthSide{Queued: 1_000_000, Total: st},
			Target: bench.Target{Name: "lease+finish p50", Ratio: 1, Op: "<=", Bound: 1.2, Met: true}},
	}
	dir := t.TempDir()
	paths, err := bench.WriteAll(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("wrote %v, want three files", paths)
	}
	b, err := os.ReadFile(filepath.Join(dir, bench.ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	var back bench.Results
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("results.json does not read back: %v", err)
	}
	if back.Latency == nil || back.Latency.Target.Ratio != 1.2 || back.Queue != nil {
		t.Errorf("results.json read back as %+v", back)
	}
	img, err := os.ReadFile(filepath.Join(dir, bench.ChartFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("chart is not a PNG: %v", err)
	}
	if cfg.Width < 500 || cfg.Height < 300 {
		t.Errorf("chart is %dx%d, too small to read", cfg.Width, cfg.Height)
	}
	md, err := os.ReadFile(filepath.Join(dir, bench.MarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| latency", "| throughput", "1M queued", "**no**", "mayfly bench"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
}

func TestOCITiny(t *testing.T) {
	cfg := tiny(t)
	docker(t, &cfg)
	testenv.OCI(t) // skips, or fails under MAYFLY_REQUIRE_INTEGRATION=1, where the driver cannot start
	r, err := bench.RunOCI(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]bench.Stats{"oci": r.MayflyOCI, "docker": r.MayflyDocker, "docker run": r.DockerRun,
		"runtime run": r.RuntimeRun, "sandbox run": r.SandboxRun} {
		checkStats(t, name, s, 2)
	}
	if len(r.Breakdown) < 10 {
		t.Fatalf("breakdown has %d phases", len(r.Breakdown))
	}
	var sum float64
	for _, p := range r.Breakdown {
		if p.Stats.N != 2 {
			t.Errorf("phase %q: N = %d, want 2", p.Phase, p.Stats.N)
		}
		if strings.HasPrefix(p.Phase, "whole") {
			break
		}
		sum += p.Stats.Min
	}
	// The phases are parts of the whole, measured on one clock.
	if sum > r.MayflyOCI.Max+1 {
		t.Errorf("phases add up to more than the whole: %.1f ms > %.1f ms", sum, r.MayflyOCI.Max)
	}
	if r.OCIRate <= 0 || r.RuntimeRate <= 0 || r.StartsPerCore <= 0 || r.StartsPerCPUSec <= 0 || r.RuntimePerCPUSec <= 0 ||
		r.OCICPUSecs <= 0 || r.ThroughputM != 4 || r.ThroughputC != 2 {
		t.Errorf("throughput not sane: %+v", r)
	}
	if len(r.Targets) != 3 {
		t.Fatalf("targets: %+v", r.Targets)
	}
	for _, tg := range r.Targets {
		checkTarget(t, tg)
	}
	var md bytes.Buffer
	if err := bench.WriteMarkdown(&md, &bench.Results{OCI: r}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| oci: latency", "bare runtime run", "runtime run --detach"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md.String())
		}
	}
}

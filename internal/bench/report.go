package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Files a run writes into its output directory.
const (
	ResultsFile  = "results.json"
	ChartFile    = "bench.png"
	MarkdownFile = "results.md"
)

// WriteAll writes results.json, bench.png (when any scenario ran) and
// results.md into dir and returns their paths.
func WriteAll(dir string, r *Results) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	var paths []string
	write := func(name string, fn func(io.Writer) error) error {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		if err := fn(f); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", p, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		paths = append(paths, p)
		return nil
	}
	if err := write(ResultsFile, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}); err != nil {
		return paths, err
	}
	// A run whose every scenario was skipped has nothing to draw; its
	// tables still say why.
	if len(r.Targets()) > 0 || r.Latency != nil {
		if err := write(ChartFile, func(w io.Writer) error { return WriteChart(w, r) }); err != nil {
			return paths, err
		}
	}
	if err := write(MarkdownFile, func(w io.Writer) error { return WriteMarkdown(w, r) }); err != nil {
		return paths, err
	}
	return paths, nil
}

// WriteMarkdown writes the tables BENCHMARKS.md is made of.
func WriteMarkdown(w io.Writer, r *Results) error {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Measured %s in %.0f s on %d CPUs (%s), %d MiB memory, kernel %s, Docker %s (API %s, storage %s), %s.\n\n",
		r.Started.Format("2006-01-02 15:04 MST"), r.Seconds, m.CPUs, orDash(m.CPUModel), m.MemoryMiB, orDash(m.Kernel),
		orDash(m.DockerVersion), orDash(m.DockerAPI), orDash(m.StorageDriver), m.Go)
	if r.LoadAvg[0] != "" {
		fmt.Fprintf(&b, "Load average (1, 5, 15 min) at start: %s; at end: %s.\n\n", r.LoadAvg[0], r.LoadAvg[1])
	}
	if r.Command != "" {
		fmt.Fprintf(&b, "Command: `%s`\n\n", r.Command)
	}
	b.WriteString("| scenario | Mayfly | baseline | ratio | target | met |\n|---|---|---|---|---|---|\n")
	yes := func(t Target) string {
		if t.Met {
			return "yes"
		}
		return "**no**"
	}
	if l := r.Latency; l != nil {
		fmt.Fprintf(&b, "| latency, %d sequential tasks, %s driver (p50 / p90 / p99 ms) | %.0f / %.0f / %.0f | docker run --rm: %.0f / %.0f / %.0f | %.2f | %s %g | %s |\n",
			l.N, driverLabel(l.DriverName), l.Mayfly.P50, l.Mayfly.P90, l.Mayfly.P99, l.Docker.P50, l.Docker.P90, l.Docker.P99,
			l.Target.Ratio, l.Target.Op, l.Target.Bound, yes(l.Target))
		if w, t := l.MayflyWarm, l.WarmTarget; w != nil && t != nil {
			fmt.Fprintf(&b, "| latency, same run, docker driver with warm containers (p50 / p90 / p99 ms; %d of %d runs warm) | %.0f / %.0f / %.0f | docker run --rm: %.0f / %.0f / %.0f | %.2f | %s %g | %s |\n",
				l.WarmHits, 2*l.N, w.P50, w.P90, w.P99, l.Docker.P50, l.Docker.P90, l.Docker.P99, t.Ratio, t.Op, t.Bound, yes(*t))
		}
	}
	if t := r.Throughput; t != nil {
		fmt.Fprintf(&b, "| throughput, %d tasks at capacity %d, %s driver (tasks/s, wall s) | %.2f/s, %.1f s | docker run --rm x%d: %.2f/s, %.1f s | %.2f | %s %g | %s |\n",
			t.M, t.C, driverLabel(t.DriverName), t.MayflyRate, t.MayflySecs, t.C, t.DockerRate, t.DockerSecs, t.Target.Ratio, t.Target.Op, t.Target.Bound, yes(t.Target))
	}
	if q := r.Queue; q != nil {
		fmt.Fprintf(&b, "| queue only, %d no-op tasks, %d workers (tasks/s) | %.0f/s | River %s on SQLite: %.0f/s | %.2f | %s %g | %s |\n",
			q.Tasks, q.C, q.MayflyRate, q.River.Version, q.River.TasksPerSec, q.Target.Ratio, q.Target.Op, q.Target.Bound, yes(q.Target))
	}
	if q := r.QueuePG; q != nil {
		fmt.Fprintf(&b, "| queue only on PostgreSQL, %d no-op tasks, %d workers (tasks/s) | %.0f/s | River %s on PostgreSQL: %.0f/s | %.2f | %s %g | %s |\n",
			q.Tasks, q.C, q.MayflyRate, q.River.Version, q.River.TasksPerSec, q.Target.Ratio, q.Target.Op, q.Target.Bound, yes(q.Target))
	}
	if s := r.ScalePG; s != nil {
		where := "two stores, services and runners in one process"
		if !s.InProcess {
			where = "two processes"
		}
		fmt.Fprintf(&b, "| two servers on one PostgreSQL, %d no-op tasks, capacity %d each, %d rounds each interleaved (tasks/s; %s; %d + %d tasks) | %.0f/s | one server: %.0f/s | %.2f | %s %g | %s |\n",
			s.Tasks, s.C, s.Rounds, where, s.TwoShare[0], s.TwoShare[1], s.TwoRate, s.OneRate, s.Target.Ratio, s.Target.Op, s.Target.Bound, yes(s.Target))
	}
	if d := r.Depth; d != nil {
		fmt.Fprintf(&b, "| lease+finish with %s queued (p50 / p99 ms) | %.2f / %.2f | with %s queued: %.2f / %.2f | %.2f | %s %g | %s |\n",
			count(d.Large.Queued), d.Large.Total.P50, d.Large.Total.P99, count(d.Small.Queued), d.Small.Total.P50, d.Small.Total.P99,
			d.Target.Ratio, d.Target.Op, d.Target.Bound, yes(d.Target))
	}
	if o := r.OCI; o != nil {
		fmt.Fprintf(&b, "| oci: latency, %d sequential tasks each way, interleaved (p50 ms) | oci %.0f | docker run --rm %.0f | %.2f | %s %g | %s |\n",
			o.N, o.MayflyOCI.P50, o.DockerRun.P50, o.Targets[0].Ratio, o.Targets[0].Op, o.Targets[0].Bound, yes(o.Targets[0]))
		fmt.Fprintf(&b, "| oci: latency, same run (p50 ms) | oci %.0f | bare %s run %.0f | %.2f | %s %g | %s |\n",
			o.MayflyOCI.P50, filepath.Base(strings.Fields(o.Runtime)[0]), o.RuntimeRun.P50, o.Targets[1].Ratio, o.Targets[1].Op, o.Targets[1].Bound, yes(o.Targets[1]))
		fmt.Fprintf(&b, "| oci: %d tasks at capacity %d (starts per CPU-second: tasks over the CPU time of Mayfly, the runtime and the containers) | %.1f (%.2f tasks/s, %.1f s wall, %.1f s CPU; %.1f per core by the wall clock) | bare runtime x%d: %.1f (%.2f/s) | %.2f | %s %g | %s |\n",
			o.ThroughputM, o.ThroughputC, o.StartsPerCPUSec, o.OCIRate, o.OCISecs, o.OCICPUSecs, o.StartsPerCore,
			o.ThroughputC, o.RuntimePerCPUSec, o.RuntimeRate, o.Targets[2].Ratio, o.Targets[2].Op, o.Targets[2].Bound, yes(o.Targets[2]))
	}
	if l := r.Latency; l != nil && l.WarmSkipped != "" {
		fmt.Fprintf(&b, "\nWarm containers not measured: %s.\n", l.WarmSkipped)
	}
	for _, sk := range r.Skipped {
		fmt.Fprintf(&b, "\nSkipped %s: %s.\n", sk.Scenario, sk.Reason)
	}
	if l := r.Latency; l != nil {
		p := l.Phases
		drv := driverLabel(l.DriverName)
		b.WriteString("\nWhere a Mayfly task's time goes, as seen from outside the runner (ms):\n\n")
		b.WriteString("| phase | p50 | p90 | p99 |\n|---|---|---|---|\n")
		rows := []struct {
			name string
			s    Stats
		}{
			{"POST tasks, until answered (durable enqueue)", p.Enqueue},
			{"created_at to start_time (wake, lease, image and package look-ups, task files, create, start, mark running)", p.ToStart},
			{"start_time to end_time (run, exit, log flush, remove, finish)", p.Run},
			{"end_time until the client's poll saw it", p.Observe},
			{"whole, queue to observed complete", l.Mayfly},
			{"docker run --rm (baseline)", l.Docker},
			{drv + " driver alone, files bind-mounted as the runner does: Start (create, attach, start)", l.Driver.Start},
			{drv + " driver alone, files bind-mounted: Wait (run and exit)", l.Driver.Wait},
			{drv + " driver alone, files bind-mounted: Destroy (remove)", l.Driver.Destroy},
			{drv + " driver alone, files bind-mounted: all three", l.Driver.Total},
			{drv + " driver alone, files copied in: Start (create, copy, attach, start)", l.DriverCopy.Start},
			{drv + " driver alone, files copied in: all three", l.DriverCopy.Total},
			{drv + " driver alone, no files: Start", l.DriverBare.Start},
			{drv + " driver alone, no files: all three", l.DriverBare.Total},
		}
		if l.MayflyWarm != nil && l.DriverWarm != nil {
			rows = append(rows, []struct {
				name string
				s    Stats
			}{
				{"whole, with warm containers", *l.MayflyWarm},
				{"docker driver with warm containers alone, files bind-mounted: Start (link the files in, hand the command line to the waiting launcher)", l.DriverWarm.Start},
				{"docker driver with warm containers alone, files bind-mounted: all three", l.DriverWarm.Total},
			}...)
		}
		for _, row := range rows {
			fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f |\n", row.name, row.s.P50, row.s.P90, row.s.P99)
		}
	}
	if o := r.OCI; o != nil {
		fmt.Fprintf(&b, "\nThe oci scenario, interleaved (runtime %s, cgroup %s), p50 / p90 ms:\n\n", o.Runtime, o.Cgroup)
		b.WriteString("| way | p50 | p90 | ratio of p50 to docker run --rm |\n|---|---|---|---|\n")
		for _, row := range []struct {
			name string
			s    Stats
		}{{"Mayfly, oci driver", o.MayflyOCI}, {"Mayfly, docker driver", o.MayflyDocker}, {"docker run --rm", o.DockerRun}, {"bare runtime run, the runtime's default spec", o.RuntimeRun},
			{"bare runtime run, the driver's sandbox config (no overlay, driver or runner)", o.SandboxRun}} {
			fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.2f |\n", row.name, row.s.P50, row.s.P90, ratio(row.s.P50, o.DockerRun.P50))
		}
		b.WriteString("\nWhere an oci task's time goes (ms):\n\n| phase | p50 | p90 | mean |\n|---|---|---|---|\n")
		for _, p := range o.Breakdown {
			fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f |\n", p.Phase, p.Stats.P50, p.Stats.P90, p.Stats.Mean)
		}
	}
	if d := r.Depth; d != nil {
		b.WriteString("\nLease and finish by queue depth (ms):\n\n")
		b.WriteString("| queued | fill time s | lease p50 | lease p99 | finish p50 | finish p99 |\n|---|---|---|---|---|---|\n")
		for _, s := range []DepthSide{d.Small, d.Large} {
			fmt.Fprintf(&b, "| %s | %.1f | %.2f | %.2f | %.2f | %.2f |\n", count(s.Queued), s.InsertSecs,
				s.Lease.P50, s.Lease.P99, s.Finish.P50, s.Finish.P99)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// driverLabel names the driver of a result; results from before the
// driver was recorded were Docker's.
func driverLabel(name string) string {
	if name == "" {
		return "docker"
	}
	return name
}

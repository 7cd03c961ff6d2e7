package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/driver/docker"
	"github.com/mayfly-run/mayfly/internal/driver/oci"
	"github.com/mayfly-run/mayfly/internal/stack"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// OCIResult is the oci scenario: one trivial task queue to observed
// complete on the oci driver, on the docker driver, a bare `docker run
// --rm`, a bare run of the OCI runtime on the same root file system and
// one with the driver's sandbox config, the five interleaved; the oci path split into its phases; and the oci
// driver's throughput at capacity C with M tasks queued.
type OCIResult struct {
	N       int    `json:"n"`
	Image   string `json:"image"`
	Runtime string `json:"runtime"` // path and version line of the OCI runtime
	Cgroup  string `json:"cgroup"`  // "v1" or "v2"

	MayflyOCI    Stats `json:"mayfly_oci"`
	MayflyDocker Stats `json:"mayfly_docker"`
	DockerRun    Stats `json:"docker_run"`
	// RuntimeRun is `<runtime> run` of a bundle on the stack's root file
	// system with the runtime's own default spec (`<runtime> spec`),
	// running true: what the runtime costs without Mayfly.
	RuntimeRun Stats `json:"runtime_run"`
	// SandboxRun is the same with the config the oci driver gives a
	// runner's task (seccomp, limits, mounts, user), without overlay,
	// driver or runner: what the sandbox itself costs.
	SandboxRun Stats `json:"sandbox_run"`
	// Breakdown splits the oci tasks' latency, in order along a task's
	// path; the last rows are off the path.
	Breakdown []PhaseStats `json:"breakdown"`

	ThroughputM int     `json:"throughput_m"`
	ThroughputC int     `json:"throughput_c"`
	CPUs        int     `json:"cpus"`
	OCIRate     float64 `json:"oci_tasks_per_sec"`
	OCISecs     float64 `json:"oci_wall_seconds"`
	RuntimeRate float64 `json:"runtime_runs_per_sec"`
	RuntimeSecs float64 `json:"runtime_wall_seconds"`
	// StartsPerCore is OCIRate per CPU of the machine: wall clock, so
	// it counts against Mayfly whatever else ran on the machine.
	StartsPerCore float64 `json:"oci_starts_per_core_sec"`
	// OCICPUSecs and RuntimeCPUSecs are the CPU time (user and system)
	// this process and its children (the runtime, the containers) spent
	// on each side; StartsPerCPUSec is M over OCICPUSecs: the starts one
	// core sustains when nothing else needs it, which a shared machine's
	// wall clock cannot show.
	OCICPUSecs       float64 `json:"oci_cpu_seconds"`
	RuntimeCPUSecs   float64 `json:"runtime_cpu_seconds"`
	StartsPerCPUSec  float64 `json:"oci_starts_per_cpu_sec"`
	RuntimePerCPUSec float64 `json:"runtime_runs_per_cpu_sec"`

	Targets []Target `json:"targets"`
}

// PhaseStats is one phase of the breakdown.
type PhaseStats struct {
	Phase string `json:"phase"`
	Stats Stats  `json:"stats"`
}

// skipError is a scenario that cannot run on this machine; Run reports it
// as skipped rather than failing the run.
type skipError struct{ reason string }

func (e *skipError) Error() string { return e.reason }

// traces collects the oci driver's phases by task.
type traces struct {
	mu sync.Mutex
	m  map[string]oci.Phases
}

func (t *traces) add(id string, p oci.Phases) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m[id] = p
}

// wait returns the phases of task id's container once it has been
// destroyed (the runner does that after reporting the end).
func (t *traces) wait(ctx context.Context, id string) (oci.Phases, error) {
	for deadline := time.Now().Add(30 * time.Second); ; {
		t.mu.Lock()
		p, ok := t.m[id]
		t.mu.Unlock()
		if ok {
			return p, nil
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("container of task %s: not destroyed within 30 s", id)
		}
		select {
		case <-ctx.Done():
			return p, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// runOneNotified queues one task through the API and waits for the
// runner's report of its end (the queue's finish returning) rather than
// polling: a client polling every few milliseconds takes CPU from the
// container start it measures, on a small machine a share that the bare
// runs beside it do not pay. One GET then reads the task as a client sees
// it.
func (s *server) runOneNotified(ctx context.Context) (task wire.Task, t0, queued, seen time.Time, err error) {
	base := s.queue.finished.Load()
	t0 = time.Now()
	ids, err := s.client.QueueTasks(ctx, []wire.NewTask{{CodeName: codeName}})
	if err != nil {
		return task, t0, queued, seen, err
	}
	queued = time.Now()
	if err := s.queue.waitFinished(ctx, base+1); err != nil {
		return task, t0, queued, seen, err
	}
	if task, err = s.client.GetTask(ctx, ids[0]); err != nil {
		return task, t0, queued, seen, err
	}
	seen = time.Now()
	if task.Status != "complete" {
		return task, t0, queued, seen, fmt.Errorf("task %s ended %s: %s", task.ID, task.Status, task.Msg)
	}
	if task.StartTime == nil || task.EndTime == nil {
		return task, t0, queued, seen, fmt.Errorf("task %s is complete but has no start_time or end_time", task.ID)
	}
	return task, t0, queued, seen, nil
}

// RunOCI runs the oci scenario.
func RunOCI(ctx context.Context, cfg Config) (*OCIResult, error) {
	cfg = cfg.withDefaults()
	cli, err := dockerCLI(cfg)
	if err != nil {
		return nil, err
	}
	image := cfg.Image
	if image == "" {
		image = stack.Image("busybox")
	}
	tr := &traces{m: map[string]oci.Phases{}}
	od, err := oci.New(ctx, oci.Options{Dir: filepath.Join(cfg.WorkDir, "oci"), Runtime: cfg.OCIRuntime, Log: cfg.Log, Trace: tr.add})
	if err != nil {
		return nil, &skipError{reason: "the oci driver cannot start here (it needs root, overlayfs, runc or crun and the Docker engine): " + err.Error()}
	}
	defer od.Close()
	dd, err := docker.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to the Docker engine: %w", err)
	}
	defer dd.Close()
	if ok, err := dd.ImageExists(ctx, image); err != nil || !ok {
		return nil, fmt.Errorf("image %s is missing (%v): build it first with `mayfly stack build busybox`", image, err)
	}
	sOCI, err := startServer(ctx, serverOptions{dir: filepath.Join(cfg.WorkDir, "oci-latency"), driver: od, image: image, capacity: 1, http: true})
	if err != nil {
		return nil, err
	}
	defer sOCI.stop()
	sDocker, err := startServer(ctx, serverOptions{dir: filepath.Join(cfg.WorkDir, "docker-latency"), driver: dd, image: image, capacity: 1, http: true})
	if err != nil {
		return nil, err
	}
	defer sDocker.stop()
	raw, err := newRuntimeBundle(ctx, od, image, filepath.Join(cfg.WorkDir, "oci-raw"))
	if err != nil {
		return nil, err
	}
	sandbox, err := newSandboxBundle(ctx, od, image, filepath.Join(cfg.WorkDir, "oci-sandbox"))
	if err != nil {
		return nil, err
	}
	res := &OCIResult{N: cfg.LatencyN, Image: image, Runtime: od.Runtime(), Cgroup: cgroupMode(),
		ThroughputM: cfg.ThroughputM, ThroughputC: cfg.ThroughputC, CPUs: runtime.NumCPU()}
	if out, err := exec.CommandContext(ctx, od.Runtime(), "--version").Output(); err == nil {
		line, _, _ := strings.Cut(string(out), "\n")
		res.Runtime += " (" + strings.TrimSpace(line) + ")"
	}

	// One of each first, unmeasured: the first oci task exports the
	// stack and bakes the code, the first docker one bakes an image.
	for _, s := range []*server{sOCI, sDocker} {
		if _, _, err := s.runOne(ctx); err != nil {
			return nil, fmt.Errorf("warm-up task: %w", err)
		}
	}
	if _, err := dockerRun(ctx, cli, image); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	for _, b := range []*runtimeBundle{raw, sandbox} {
		if _, err := b.run(ctx, "warm"); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}

	var mOCI, mDocker, dRun, rRun, sRun []time.Duration
	type ociSample struct {
		task             wire.Task
		t0, queued, seen time.Time
		taskID           string
	}
	var samples []ociSample
	const ways = 5
	for i := range cfg.LatencyN {
		// Rotate which goes first, so that none always runs right after
		// another's container removal.
		for k := range ways {
			switch (i + k) % ways {
			case 0:
				task, t0, queued, seen, err := sOCI.runOneNotified(ctx)
				if err != nil {
					return nil, fmt.Errorf("oci task: %w", err)
				}
				mOCI = append(mOCI, seen.Sub(t0))
				samples = append(samples, ociSample{task: task, t0: t0, queued: queued, seen: seen, taskID: task.ID})
			case 1:
				_, t0, _, seen, err := sDocker.runOneNotified(ctx)
				if err != nil {
					return nil, fmt.Errorf("docker task: %w", err)
				}
				mDocker = append(mDocker, seen.Sub(t0))
			case 2:
				d, err := dockerRun(ctx, cli, image)
				if err != nil {
					return nil, err
				}
				dRun = append(dRun, d)
			case 3:
				d, err := raw.run(ctx, fmt.Sprint(i))
				if err != nil {
					return nil, err
				}
				rRun = append(rRun, d)
			case 4:
				d, err := sandbox.run(ctx, fmt.Sprint("s", i))
				if err != nil {
					return nil, err
				}
				sRun = append(sRun, d)
			}
		}
		cfg.Log.Debug("oci latency sample", "i", i, "oci_ms", ms(mOCI[i]), "docker_ms", ms(mDocker[i]),
			"docker_run_ms", ms(dRun[i]), "runtime_run_ms", ms(rRun[i]), "sandbox_run_ms", ms(sRun[i]))
	}
	res.MayflyOCI, res.MayflyDocker, res.DockerRun, res.RuntimeRun = Summarize(mOCI), Summarize(mDocker), Summarize(dRun), Summarize(rRun)
	res.SandboxRun = Summarize(sRun)

	// The breakdown, from the API's timestamps, the runner's timings
	// (wire.Task.Timings) and the driver's trace, all on one clock.
	names := []string{
		"POST tasks, until answered (durable enqueue)",
		"queued to leased (runner wake-up and lease)",
		"runner prepare (code layer look-up, API socket, payload files)",
		"driver: resolve layers",
		"driver: bundle, overlay mount, files",
		"driver: spec generation, config.json",
		"runtime run --detach (namespaces, cgroup, mounts, seccomp, exec)",
		"run, until the init's exit was reaped",
		"output drained",
		"log flush",
		"finish reported, until end_time recorded",
		"end_time until the harness saw it (the runner's finish returned, then one GET)",
		"whole, queue to observed complete",
		"off the path: delete (runtime delete, unmount, remove bundle)",
	}
	cols := make([][]time.Duration, len(names))
	msd := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	for _, s := range samples {
		p, err := tr.wait(ctx, s.taskID)
		if err != nil {
			return nil, err
		}
		tm := s.task.Timings
		leased := s.task.CreatedAt.Add(msd(tm["queue"]))
		pathEnd := leased.Add(msd(tm["prepare"] + tm["start"] + tm["run"] + tm["logs"]))
		finish := max(s.task.EndTime.Sub(pathEnd), 0)
		vals := []time.Duration{
			s.queued.Sub(s.t0), msd(tm["queue"]), msd(tm["prepare"]),
			p.Resolve, p.Prepare, p.Spec, p.Runtime, p.Run, p.Drain, msd(tm["logs"]),
			finish, s.seen.Sub(*s.task.EndTime), s.seen.Sub(s.t0), p.Delete,
		}
		for j, v := range vals {
			cols[j] = append(cols[j], v)
		}
	}
	for j, n := range names {
		res.Breakdown = append(res.Breakdown, PhaseStats{Phase: n, Stats: Summarize(cols[j])})
	}

	if err := ociThroughput(ctx, cfg, od, tr, image, raw, res); err != nil {
		return nil, err
	}
	res.Targets = []Target{
		target("latency p50, Mayfly on oci / docker run --rm", ratio(res.MayflyOCI.P50, res.DockerRun.P50), "<=", 0.2),
		target("latency p50, Mayfly on oci / bare runtime run", ratio(res.MayflyOCI.P50, res.RuntimeRun.P50), "<=", 1.7),
		target(fmt.Sprintf("container starts per CPU-second, oci at capacity %d", cfg.ThroughputC), res.StartsPerCPUSec, ">=", 5),
	}
	return res, nil
}

// ociThroughput queues M tasks at once on an oci runner of capacity C,
// then runs the bare runtime M times at parallelism C.
func ociThroughput(ctx context.Context, cfg Config, od *oci.Driver, tr *traces, image string, raw *runtimeBundle, res *OCIResult) error {
	s, err := startServer(ctx, serverOptions{dir: filepath.Join(cfg.WorkDir, "oci-throughput"), driver: od, image: image,
		capacity: cfg.ThroughputC, http: true})
	if err != nil {
		return err
	}
	defer s.stop()
	if _, _, err := s.runOne(ctx); err != nil {
		return fmt.Errorf("warm-up task: %w", err)
	}
	base := s.queue.finished.Load()
	cpu0 := cpuTime()
	t0 := time.Now()
	var ids []string
	for i := 0; i < cfg.ThroughputM; i += maxPerPost {
		batch := make([]wire.NewTask, min(maxPerPost, cfg.ThroughputM-i))
		for j := range batch {
			batch[j] = wire.NewTask{CodeName: codeName}
		}
		got, err := s.client.QueueTasks(ctx, batch)
		if err != nil {
			return err
		}
		ids = append(ids, got...)
	}
	if err := s.queue.waitFinished(ctx, base+int64(cfg.ThroughputM)); err != nil {
		return err
	}
	wall := time.Since(t0)
	// The last containers' removal is part of what a start costs; the
	// runner does it past the task's end.
	if err := waitDestroyed(ctx, tr, ids); err != nil {
		return err
	}
	res.OCICPUSecs = (cpuTime() - cpu0).Seconds()
	res.OCISecs, res.OCIRate = wall.Seconds(), float64(cfg.ThroughputM)/wall.Seconds()
	res.StartsPerCore = res.OCIRate / float64(res.CPUs)
	res.StartsPerCPUSec = float64(cfg.ThroughputM) / res.OCICPUSecs
	for _, id := range ids {
		t, err := s.client.GetTask(ctx, id)
		if err != nil {
			return err
		}
		if t.Status != "complete" {
			return fmt.Errorf("task %s ended %s: %s", id, t.Status, t.Msg)
		}
	}
	cpu0 = cpuTime()
	t0 = time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.ThroughputC)
	for i := range cfg.ThroughputM {
		g.Go(func() error {
			_, err := raw.run(gctx, fmt.Sprint("t", i))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	wall = time.Since(t0)
	res.RuntimeCPUSecs = (cpuTime() - cpu0).Seconds()
	res.RuntimeSecs, res.RuntimeRate = wall.Seconds(), float64(cfg.ThroughputM)/wall.Seconds()
	res.RuntimePerCPUSec = float64(cfg.ThroughputM) / res.RuntimeCPUSecs
	return nil
}

// waitDestroyed waits until the containers of tasks ids were removed.
func waitDestroyed(ctx context.Context, tr *traces, ids []string) error {
	for _, id := range ids {
		if _, err := tr.wait(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// cpuTime is the user and system time of this process and of its waited
// children so far.
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// runtimeBundle is a bundle for the bare runtime: the runtime's default
// spec on the stack's root file system, read-only, running true.
type runtimeBundle struct {
	runtime, dir, state string
}

func newRuntimeBundle(ctx context.Context, od *oci.Driver, image, dir string) (*runtimeBundle, error) {
	rootfs, err := od.StackRootFS(ctx, image)
	if err != nil {
		return nil, fmt.Errorf("stack root file system: %w", err)
	}
	b := &runtimeBundle{runtime: od.Runtime(), dir: filepath.Join(dir, "bundle"), state: filepath.Join(dir, "state")}
	for _, d := range []string{b.dir, b.state} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("bare runtime bundle: %w", err)
		}
	}
	if out, err := exec.CommandContext(ctx, b.runtime, "spec", "--bundle", b.dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s spec: %w: %s", b.runtime, err, out)
	}
	p := filepath.Join(b.dir, "config.json")
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("bare runtime bundle: %w", err)
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("bare runtime bundle: %w", err)
	}
	spec["root"] = map[string]any{"path": rootfs, "readonly": true}
	proc, _ := spec["process"].(map[string]any)
	if proc == nil {
		return nil, errors.New("bare runtime bundle: the runtime's default spec has no process")
	}
	proc["terminal"] = false
	proc["args"] = []string{"true"}
	if data, err = json.Marshal(spec); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return nil, fmt.Errorf("bare runtime bundle: %w", err)
	}
	return b, nil
}

// newSandboxBundle is a bundle for the bare runtime with the config the
// oci driver gives a runner's task (user, read-only root, tmpfs, the task
// files' bind mount, limits, seccomp, masked paths), on the stack's root
// file system without an overlay, running true: the sandbox's own cost.
func newSandboxBundle(ctx context.Context, od *oci.Driver, image, dir string) (*runtimeBundle, error) {
	rootfs, err := od.StackRootFS(ctx, image)
	if err != nil {
		return nil, fmt.Errorf("stack root file system: %w", err)
	}
	b := &runtimeBundle{runtime: od.Runtime(), dir: filepath.Join(dir, "bundle"), state: filepath.Join(dir, "state")}
	files := filepath.Join(dir, "files")
	for _, d := range []string{b.dir, b.state, files} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("sandbox bundle: %w", err)
		}
	}
	spec, err := od.SandboxConfig(ctx, driver.Spec{
		TaskID: "bench-sandbox", Image: image, Entrypoint: []string{}, Cmd: []string{"true"},
		User: "65534:65534", MemoryBytes: 512 << 20, PidsLimit: 512, ReadOnlyRoot: true,
		Mounts: []driver.Mount{{Source: files, Target: "/mnt/mayfly", ReadOnly: true}},
		Tmpfs:  []driver.Tmpfs{{Path: "/tmp", SizeBytes: 64 << 20}, {Path: "/mnt/task", SizeBytes: 256 << 20, Owned: true}},
	}, rootfs)
	if err != nil {
		return nil, fmt.Errorf("sandbox bundle: %w", err)
	}
	spec.Linux.CgroupsPath = "" // the runtime's own, one per container
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(b.dir, "config.json"), data, 0o600); err != nil {
		return nil, fmt.Errorf("sandbox bundle: %w", err)
	}
	return b, nil
}

// run is one `<runtime> run` in the foreground: create, start, wait and
// delete, as `docker run --rm` is for the engine.
func (b *runtimeBundle) run(ctx context.Context, name string) (time.Duration, error) {
	id := "mayfly-bench-raw-" + name + "-" + fmt.Sprint(time.Now().UnixNano())
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, b.runtime, "--root", b.state, "run", "--bundle", b.dir, id).CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("%s run: %w: %s", filepath.Base(b.runtime), err, strings.TrimSpace(string(out)))
	}
	return d, nil
}

func cgroupMode() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "v2"
	}
	return "v1"
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/driver/docker"
	"github.com/mayfly-run/mayfly/internal/driver/oci"
	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/stack"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// pollEvery is how often the latency scenario asks the API whether its task
// has ended; it bounds what polling adds to a measured latency.
const pollEvery = 2 * time.Millisecond

// LatencyResult compares one task, queue to complete through the API, with
// one `docker run --rm`.
type LatencyResult struct {
	N          int    `json:"n"`
	Image      string `json:"image"`
	DriverName string `json:"driver_name"` // Mayfly's runner's
	Mayfly     Stats  `json:"mayfly"`
	Docker     Stats  `json:"docker_run"`
	// Phases splits Mayfly's latency as far as it can be seen from
	// outside the runner; see Phases.
	Phases Phases `json:"phases"`
	// Driver is the docker driver alone, called by the harness with a
	// spec like the runner's (task files in a read-only bind mount),
	// interleaved with the others: the engine's share of Mayfly's
	// latency.
	Driver DriverPhases `json:"driver"`
	// DriverCopy gets the same files copied into the container instead
	// (CopyToContainer), as runners did before code was baked into
	// per-revision images.
	DriverCopy DriverPhases `json:"driver_copy"`
	// DriverBare has no task files at all.
	DriverBare DriverPhases `json:"driver_bare"`
	// MayflyWarm is Mayfly with the docker driver's warm containers
	// (--warm-containers 1: created and started ahead, waiting for a
	// task), and DriverWarm that driver alone with the files
	// bind-mounted, both interleaved with the others. Each warm container
	// taken is replaced before the next measurement starts, as it is
	// between tasks that do not come back to back. Absent with the oci
	// driver, or when WarmSkipped says why.
	MayflyWarm  *Stats        `json:"mayfly_warm,omitempty"`
	DriverWarm  *DriverPhases `json:"driver_warm,omitempty"`
	WarmSkipped string        `json:"warm_skipped,omitempty"`
	// WarmHits counts the measured tasks and driver runs that found a
	// warm container (the rest were created when they came).
	WarmHits   int64   `json:"warm_hits,omitempty"`
	WarmTarget *Target `json:"warm_target,omitempty"`
	// Samples are the raw latencies in ms, in the order measured, for the
	// chart.
	MayflySamples []float64 `json:"mayfly_samples_ms"`
	DockerSamples []float64 `json:"docker_samples_ms"`
	Target        Target    `json:"target"`
}

// Phases are the parts of a task's latency the harness can tell apart from
// the task's own timestamps:
//
//   - Enqueue: the POST that queues it, until its answer (the task is on
//     disk by then);
//   - ToStart: created_at to start_time: the runner's wake-up and lease,
//     image and package look-ups, the task's files, container create and
//     start, and the call that marks it running;
//   - Run: start_time to end_time: the container's run and exit, the log
//     flush, the container's removal and the call that records the end;
//   - Observe: end_time until the client's poll saw the task complete.
type Phases struct {
	Enqueue Stats `json:"enqueue"`
	ToStart Stats `json:"queued_to_start"`
	Run     Stats `json:"start_to_end"`
	Observe Stats `json:"end_to_observed"`
}

// DriverPhases time the three calls a runner makes on the driver per task.
type DriverPhases struct {
	Start   Stats `json:"start"` // create, copy files in, attach, start
	Wait    Stats `json:"wait"`  // until the container exited and its output is read
	Destroy Stats `json:"destroy"`
	Total   Stats `json:"total"`
}

// RunLatency runs the latency scenario.
func RunLatency(ctx context.Context, cfg Config) (*LatencyResult, error) {
	cfg = cfg.withDefaults()
	cli, err := dockerCLI(cfg)
	if err != nil {
		return nil, err
	}
	drv, image, err := taskDriver(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer drv.Close()
	s, err := startServer(ctx, serverOptions{dir: filepath.Join(cfg.WorkDir, "latency"), driver: drv,
		image: image, capacity: 1, http: true})
	if err != nil {
		return nil, err
	}
	defer s.stop()

	// One of each first, unmeasured: the runner's first task checks the
	// image and fetches the package, and the engine's first run warms its
	// caches; neither is what a task usually pays.
	if _, _, err := s.runOne(ctx); err != nil {
		return nil, fmt.Errorf("warm-up task: %w", err)
	}
	if _, err := dockerRun(ctx, cli, image); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}

	runDir := filepath.Join(cfg.WorkDir, "latency", "driver-run")
	if _, err := driverRun(ctx, drv, image, runDir, 0, filesMount); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}

	res := &LatencyResult{N: cfg.LatencyN, Image: image, DriverName: driverName(cfg)}
	warm, err := startWarm(ctx, cfg, image)
	if err != nil {
		return nil, err
	}
	if warm.skipped != "" {
		res.WarmSkipped = warm.skipped
		cfg.Log.Warn("latency: warm containers not measured", "reason", warm.skipped)
	} else {
		defer warm.close()
	}
	var may, dock, enq, toStart, run, observe, mayWarm []time.Duration
	var drvPh [3][3][]time.Duration // by files mode, then Start, Wait, Destroy
	var warmPh [3][]time.Duration
	const (
		viaMayfly = iota
		viaDockerRun
		viaDriverMount
		viaDriverCopy
		viaDriverBare
		viaMayflyWarm
		viaDriverWarm
		ways
	)
	for i := range cfg.LatencyN {
		// Rotate which goes first, so that none always runs right after
		// another's container removal.
		for k := range ways {
			switch (i + k) % ways {
			case viaMayflyWarm:
				if warm.srv == nil {
					continue
				}
				d, _, err := warm.srv.runOne(ctx)
				if err != nil {
					return nil, fmt.Errorf("warm: %w", err)
				}
				mayWarm = append(mayWarm, d)
				if err := warm.refilled(ctx); err != nil {
					return nil, err
				}
			case viaDriverWarm:
				if warm.srv == nil {
					continue
				}
				ph, err := driverRun(ctx, warm.drv, image, runDir, i, filesMount)
				if err != nil {
					return nil, fmt.Errorf("warm: %w", err)
				}
				for j := range ph {
					warmPh[j] = append(warmPh[j], ph[j])
				}
				if err := warm.refilled(ctx); err != nil {
					return nil, err
				}
			case viaDockerRun:
				d, err := dockerRun(ctx, cli, image)
				if err != nil {
					return nil, err
				}
				dock = append(dock, d)
			case viaDriverMount, viaDriverCopy, viaDriverBare:
				mode := filesMode((i+k)%ways - viaDriverMount)
				ph, err := driverRun(ctx, drv, image, runDir, i, mode)
				if err != nil {
					return nil, err
				}
				for j := range ph {
					drvPh[mode][j] = append(drvPh[mode][j], ph[j])
				}
			case viaMayfly:
				d, ph, err := s.runOne(ctx)
				if err != nil {
					return nil, err
				}
				may = append(may, d)
				enq, toStart, run, observe = append(enq, ph[0]), append(toStart, ph[1]), append(run, ph[2]), append(observe, ph[3])
			}
		}
		cfg.Log.Debug("latency sample", "i", i, "mayfly_ms", ms(may[i]), "docker_run_ms", ms(dock[i]),
			"driver_start_ms", ms(drvPh[filesMount][0][i]), "driver_copy_start_ms", ms(drvPh[filesCopy][0][i]),
			"driver_bare_start_ms", ms(drvPh[filesNone][0][i]))
	}
	res.Mayfly, res.Docker = Summarize(may), Summarize(dock)
	res.Phases = Phases{Enqueue: Summarize(enq), ToStart: Summarize(toStart), Run: Summarize(run), Observe: Summarize(observe)}
	res.Driver, res.DriverCopy, res.DriverBare = driverPhases(drvPh[filesMount]), driverPhases(drvPh[filesCopy]), driverPhases(drvPh[filesNone])
	for i := range may {
		res.MayflySamples = append(res.MayflySamples, ms(may[i]))
		res.DockerSamples = append(res.DockerSamples, ms(dock[i]))
	}
	res.Target = target("latency p50, Mayfly / docker run", ratio(res.Mayfly.P50, res.Docker.P50), "<=", 1.1)
	if warm.srv != nil {
		st, dp := Summarize(mayWarm), driverPhases(warmPh)
		res.MayflyWarm, res.DriverWarm = &st, &dp
		res.WarmHits = warm.drv.WarmStats().Hits - warm.hitsBefore
		tg := target("latency p50, Mayfly with warm containers / docker run", ratio(st.P50, res.Docker.P50), "<=", 0.9)
		res.WarmTarget = &tg
	}
	return res, nil
}

// warmSide is the latency scenario's second Mayfly: a server whose docker
// driver keeps warm containers.
type warmSide struct {
	drv        *docker.Driver
	srv        *server
	skipped    string
	hitsBefore int64
}

// startWarm starts the warm side, warmed up: its first tasks warm the
// shapes of the runner's task and the harness's driver runs.
func startWarm(ctx context.Context, cfg Config, image string) (*warmSide, error) {
	if driverName(cfg) != "docker" {
		return &warmSide{skipped: "warm containers are the docker driver's"}, nil
	}
	launcher, err := benchLauncher(ctx, cfg)
	if err != nil {
		return &warmSide{skipped: err.Error()}, nil
	}
	dir := filepath.Join(cfg.WorkDir, "latency-warm")
	// Beside the runner's task directories, on their file system: a task's
	// files are linked into its warm container's.
	warmDir := filepath.Join(filepath.Dir(assembly.RunDir(dir, "x")), "bench-warm-"+id.New())
	d, err := docker.NewWithOptions(ctx, docker.Options{WarmContainers: 1, Launcher: launcher, WarmDir: warmDir, Log: cfg.Log})
	if err != nil {
		return nil, fmt.Errorf("docker driver with warm containers: %w", err)
	}
	w := &warmSide{drv: d}
	s, err := startServer(ctx, serverOptions{dir: dir, driver: d, image: image, capacity: 1, http: true})
	if err != nil {
		d.Close()
		return nil, err
	}
	w.srv = s
	runDir := filepath.Join(cfg.WorkDir, "latency", "driver-run")
	for range 2 {
		if _, _, err := s.runOne(ctx); err != nil {
			w.close()
			return nil, fmt.Errorf("warm-up task, warm containers: %w", err)
		}
		if _, err := driverRun(ctx, d, image, runDir, 0, filesMount); err != nil {
			w.close()
			return nil, fmt.Errorf("warm-up, warm containers: %w", err)
		}
		if err := w.refilled(ctx); err != nil {
			w.close()
			return nil, err
		}
	}
	w.hitsBefore = d.WarmStats().Hits
	return w, nil
}

// refilled waits until the pool has replaced what it gave out, so that no
// create runs under the next measurement.
func (w *warmSide) refilled(ctx context.Context) error {
	for w.drv.WarmStats().Pending > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

func (w *warmSide) close() {
	if w.srv != nil {
		w.srv.stop()
	}
	w.drv.Close()
}

// benchLauncher finds the static launcher: cfg's, the one beside this
// program (make build puts it there), else one built with the go command.
func benchLauncher(ctx context.Context, cfg Config) (string, error) {
	if cfg.WarmLauncher != "" {
		return cfg.WarmLauncher, docker.CheckLauncher(cfg.WarmLauncher)
	}
	if p, err := docker.FindLauncher(); err == nil {
		return p, nil
	}
	goCmd, err := goCommand(cfg)
	if err != nil {
		return "", fmt.Errorf("no launcher beside this program, and none can be built: %w", err)
	}
	out, err := filepath.Abs(filepath.Join(cfg.WorkDir, "mayfly-launch"))
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-o", out, "github.com/mayfly-run/mayfly/cmd/mayfly-launch")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("no launcher beside this program, and building one failed (run from the repository, or make build): %w: %s", err, strings.TrimSpace(string(b)))
	}
	return out, docker.CheckLauncher(out)
}

// runOne queues one task through the API and polls until it has ended; it
// returns the whole latency and the phases Enqueue, ToStart, Run, Observe.
func (s *server) runOne(ctx context.Context) (time.Duration, [4]time.Duration, error) {
	var ph [4]time.Duration
	task, t0, queued, seen, err := s.runOneTask(ctx)
	if err != nil {
		return 0, ph, err
	}
	ph[0] = queued.Sub(t0)
	ph[1] = task.StartTime.Sub(task.CreatedAt)
	ph[2] = task.EndTime.Sub(*task.StartTime)
	ph[3] = seen.Sub(*task.EndTime)
	return seen.Sub(t0), ph, nil
}

// runOneTask queues one task through the API and polls until it has
// ended; it returns the task as last read, when the POST was sent, when it
// was answered and when the end was seen.
func (s *server) runOneTask(ctx context.Context) (task wire.Task, t0, queued, seen time.Time, err error) {
	t0 = time.Now()
	ids, err := s.client.QueueTasks(ctx, []wire.NewTask{{CodeName: codeName}})
	if err != nil {
		return task, t0, queued, seen, err
	}
	queued = time.Now()
	for {
		task, err = s.client.GetTask(ctx, ids[0])
		if err != nil {
			return task, t0, queued, seen, err
		}
		if client.Terminal(task.Status) {
			break
		}
		select {
		case <-ctx.Done():
			return task, t0, queued, seen, fmt.Errorf("wait for task %s: %w", ids[0], ctx.Err())
		case <-time.After(pollEvery):
		}
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

func driverPhases(ph [3][]time.Duration) DriverPhases {
	total := make([]time.Duration, len(ph[0]))
	for i := range total {
		total[i] = ph[0][i] + ph[1][i] + ph[2][i]
	}
	return DriverPhases{Start: Summarize(ph[0]), Wait: Summarize(ph[1]), Destroy: Summarize(ph[2]), Total: Summarize(total)}
}

// filesMode is how driverRun gives a container the task's files.
type filesMode int

const (
	filesMount filesMode = iota // written to a host directory, bind-mounted read-only, as the runner does
	filesCopy                   // copied into the container before start
	filesNone                   // none
)

// driverRun starts, waits for and destroys one container through the docker
// driver as the runner would for the trivial code: same image, command,
// user and limits, the task's files given as mode says, but no queue, API
// or runner around it.
func driverRun(ctx context.Context, drv driver.Driver, image, runDir string, i int, mode filesMode) ([3]time.Duration, error) {
	var ph [3]time.Duration
	taskID := fmt.Sprintf("bench-driver-%s-%d", id.New(), i)
	spec := driver.Spec{
		TaskID: taskID, RunnerID: "bench-driver", Image: image,
		Entrypoint: []string{}, Cmd: []string{"/bin/sh", "-c", "true", "mayfly"},
		Env: []string{"TASK_ID=" + taskID, "TASK_DIR=/mnt/task", "HOME=/mnt/task"}, WorkDir: "/mnt/task",
		User: "65534:65534", MemoryBytes: 512 << 20, PidsLimit: 512,
		Output: io.Discard, Stderr: io.Discard,
	}
	switch mode {
	case filesMount:
		dir := filepath.Join(runDir, taskID)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return ph, fmt.Errorf("create files directory of %s: %w", taskID, err)
		}
		defer os.RemoveAll(dir)
		for _, name := range []string{"payload.json", "config.json"} {
			if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
				return ph, fmt.Errorf("write %s of %s: %w", name, taskID, err)
			}
		}
		spec.Mounts = []driver.Mount{{Source: dir, Target: "/mnt/mayfly", ReadOnly: true}}
	case filesCopy:
		spec.Files = []driver.File{
			{Path: "/mnt/task/", Dir: true},
			{Path: "/mnt/task/README", Data: []byte("a code that does nothing\n")},
			{Path: "/mnt/mayfly/payload.json", Mode: 0o640},
			{Path: "/mnt/mayfly/config.json", Mode: 0o640},
		}
	}
	t0 := time.Now()
	h, err := drv.Start(ctx, spec)
	if err != nil {
		return ph, err
	}
	t1 := time.Now()
	res, werr := h.Wait(ctx)
	t2 := time.Now()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	derr := h.Destroy(dctx)
	t3 := time.Now()
	if err := errors.Join(werr, derr); err != nil {
		return ph, fmt.Errorf("container of %s: %w", taskID, err)
	}
	if res.ExitCode != 0 {
		return ph, fmt.Errorf("container of %s exited %d: %s", taskID, res.ExitCode, res.Err)
	}
	ph[0], ph[1], ph[2] = t1.Sub(t0), t2.Sub(t1), t3.Sub(t2)
	return ph, nil
}

// taskDriver opens the driver cfg names and checks the stack image is
// there: the benchmark never pulls or builds one, as that would be
// measured.
func taskDriver(ctx context.Context, cfg Config) (driver.Driver, string, error) {
	var drv driver.Driver
	switch cfg.Driver {
	case "", "docker":
		d, err := docker.New(ctx)
		if err != nil {
			return nil, "", fmt.Errorf("connect to the Docker engine: %w", err)
		}
		drv = d
	case "oci":
		d, err := oci.New(ctx, oci.Options{Dir: filepath.Join(cfg.WorkDir, "oci"), Log: cfg.Log})
		if err != nil {
			return nil, "", fmt.Errorf("oci driver: %w", err)
		}
		drv = d
	default:
		return nil, "", fmt.Errorf("driver %q: docker or oci", cfg.Driver)
	}
	image := cfg.Image
	if image == "" {
		image = stack.Image("busybox")
	}
	ok, err := drv.ImageExists(ctx, image)
	if err != nil {
		drv.Close()
		return nil, "", fmt.Errorf("look up image %s: %w", image, err)
	}
	if !ok {
		drv.Close()
		return nil, "", fmt.Errorf("image %s is missing: build it first with `mayfly stack build busybox`", image)
	}
	return drv, image, nil
}

func driverName(cfg Config) string {
	if cfg.Driver == "" {
		return "docker"
	}
	return cfg.Driver
}

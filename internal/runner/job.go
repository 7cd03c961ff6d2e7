package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/mayfly"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// The task contract's paths inside the container. TaskFilesDir is the
// task's own host directory, mounted read-only: payload, config and the API
// socket.
const (
	TaskDir      = "/mnt/task"
	CodeDir      = "/mnt/code" // the package as baked, read-only
	TaskFilesDir = "/mnt/mayfly"
	PayloadFile  = TaskFilesDir + "/payload.json"
	ConfigFile   = TaskFilesDir + "/config.json"
)

// fillTaskDir is the entrypoint that copies the baked package into the task
// directory and then runs the task's command ("$@"). It needs only sh and
// cp in the image, which every stack has; an image code with a package
// needs them too. Exit 125 is the engine's "could not start" status.
var fillTaskDir = []string{"/bin/sh", "-c",
	`cp -a ` + CodeDir + `/. ` + TaskDir + `/ || { echo "mayfly: could not copy the code package into ` + TaskDir + `" >&2; exit 125; }; exec "$@"`,
	"mayfly-fill"}

func missingImage(image string, job wire.Job, runnerID string) error {
	if job.Code.Image != "" {
		return fmt.Errorf("Image %s is not present on runner %s", image, runnerID)
	}
	return fmt.Errorf("Stack %q is not built on runner %s (run: mayfly stack build %s)", job.Code.Stack, runnerID, job.Code.Stack)
}

// errArchiveUnread ends the archive writer when the driver has stopped
// reading it.
var errArchiveUnread = errors.New("archive not read to its end")

// outcome is how a task ended on this runner; abandon means report nothing.
type outcome struct {
	status   mayfly.Status
	msg      string
	exitCode *int
	abandon  bool
	// cleanup removes the container and gives the task's home back; it
	// runs past the task's slot, beside the end's report, so removal is
	// off the task's critical path.
	cleanup func()
	phases  phases
	// started, when not nil, answers the task's running mark, still on its
	// way when the container ended; the end is reported after it.
	started <-chan error
}

// failOrAbandon fails the task, unless the engine is away: then the task
// is not at fault, and is left to run again once its lease runs out.
func (r *Runner) failOrAbandon(ctx context.Context, err error) outcome {
	if down := r.engineDown(ctx); down != nil {
		return outcome{abandon: true, msg: "container engine away: " + down.Error()}
	}
	return fail("%v", err)
}

func fail(format string, a ...any) outcome {
	return outcome{status: mayfly.StatusError, msg: fmt.Sprintf(format, a...)}
}

// runJob runs one leased task to its end and reports it. release frees its
// slot as soon as its container has ended: reporting the end (which waits
// for the server's durable write) and removing the container happen past
// the slot, side by side, so the next task starts meanwhile. Containers
// being removed are bounded by the capacity, ends being reported by the
// capacity and reportSlack, so a slow engine or server slows the runner
// rather than piling work up.
func (r *Runner) runJob(job wire.Job, release func()) {
	r.inflight.Store(job.TaskID, struct{}{})
	defer r.inflight.Delete(job.TaskID)
	log := r.log.With("task_id", job.TaskID, "code", job.CodeName)
	ctx, cancel := context.WithCancel(r.hardCtx)
	defer cancel()
	r.cfg.Metrics.RunnerBusy(1)
	out := r.execute(ctx, job)
	r.ending <- struct{}{}
	r.reporting <- struct{}{}
	r.cfg.Metrics.RunnerBusy(-1)
	release()
	removed := make(chan struct{})
	go func() {
		defer close(removed)
		defer func() { <-r.ending }()
		if out.cleanup != nil {
			out.cleanup()
		}
	}()
	defer func() { <-removed }()
	defer func() { <-r.reporting }()
	if out.started != nil {
		if err := <-out.started; err != nil && r.cfg.IsLeaseLost(err) {
			out.abandon, out.msg = true, err.Error()
		}
	}
	if out.abandon {
		log.Warn("task abandoned", "reason", out.msg)
		return
	}
	r.finish(job, out)
	ph := out.phases
	r.cfg.Metrics.RunnerTaskEnded(job.CodeName, string(out.status),
		span(ph.leased, ph.prepared), span(ph.prepared, ph.started), span(ph.started, ph.exited))
	if out.status == mayfly.StatusComplete {
		log.Info("task ended", "status", out.status)
	} else {
		log.Info("task ended", "status", out.status, "msg", out.msg)
	}
}

// finish reports the outcome. Passing errors (the server restarting, a
// dropped connection, a 5xx) are retried with backoff until the server
// answers, for up to ReportRetry: the report is the only record of how the
// task ended, and a server that cannot be reached cannot hand the task on
// either, so giving up after one lease would turn a short outage into a
// second run of a task that already ran. A report that comes after the
// lease was rescued is refused as lost and changes nothing. Shutdown past
// the drain grace ends the retries too.
func (r *Runner) finish(job wire.Job, out outcome) {
	lease := job.Lease(r.cfg.ID)
	req := wire.FinishRequest{RunnerID: r.cfg.ID, Attempt: job.Attempt, Status: string(out.status), Msg: out.msg, ExitCode: out.exitCode,
		Timings: out.phases.ms(job)}
	deadline := time.Now().Add(r.cfg.ReportRetry)
	wait := time.Duration(0)
	for try := 1; ; try++ {
		// Not under hardCtx: an end that is in hand is still worth one
		// report after the hard stop; only the retries stop there.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.queue.Finish(ctx, lease, req)
		cancel()
		if err == nil || r.cfg.IsLeaseLost(err) {
			if err != nil {
				r.log.Warn("finish refused: lease lost", "task_id", job.TaskID, "err", err)
			} else if try > 1 {
				r.log.Info("task end reported after retries", "task_id", job.TaskID, "tries", try)
			}
			return
		}
		if time.Now().After(deadline) || r.hardCtx.Err() != nil {
			r.log.Error("could not report task end; the server will run it again", "task_id", job.TaskID, "err", err)
			return
		}
		wait = backoff(wait)
		if try == 1 || try%10 == 0 {
			r.log.Warn("could not report task end; retrying", "task_id", job.TaskID, "err", err, "try", try, "in", wait)
		}
		select {
		case <-r.hardCtx.Done():
		case <-time.After(wait):
		}
	}
}

func (r *Runner) execute(ctx context.Context, job wire.Job) (out outcome) {
	var ph phases
	ph.mark(&ph.leased)
	defer func() { out.phases = ph }()
	hb := r.startHeartbeat(ctx, job)
	defer hb.Stop()
	prep, err := r.prepare(ctx, job)
	if err != nil {
		return r.failOrAbandon(ctx, err)
	}
	entrypoint, cmd, err := command(job, prep.hasRunner)
	if err != nil {
		return fail("%v", err)
	}
	if job.Code.PackageSHA256 != "" && entrypoint != nil {
		// nil: an image code's own command, whose image starts with the
		// same step (baked as its entrypoint).
		entrypoint = fillTaskDir
	}

	logs := newLogShipper(r.hardCtx, r.queue, job.Lease(r.cfg.ID), job.MaxLogBytes, r.cfg.ReportRetry, r.cfg.IsLeaseLost, r.log)
	defer logs.Close()
	tail := &tailBuffer{max: 2048}

	home, err := r.homes.take()
	if err != nil {
		return fail("Could not prepare the task's API socket: %v", err)
	}
	var h driver.Handle
	startTried := false
	// The home is the task's until its container has ended: then its
	// socket stops serving the task and writes its last progress, before
	// the end is reported. It goes back to the pool past the slot
	// (runJob), beside the container's removal, and is kept only if no
	// container can see it any more.
	sock, err := home.begin(job, func(ctx context.Context, p wire.Progress) error {
		return r.queue.ReportProgress(ctx, job.TaskToken, job.TaskID, p)
	})
	if err != nil {
		r.homes.give(home, true)
		return fail("Could not write the task's payload: %v", err)
	}
	defer func() {
		home.end(sock)
		out.cleanup = func() {
			keep := !startTried
			if h != nil {
				keep = r.destroy(h, job.TaskID)
			}
			r.homes.give(home, keep)
		}
	}()

	spec := driver.Spec{
		TaskID: job.TaskID, RunnerID: r.cfg.ID, Image: prep.image,
		Entrypoint: entrypoint, Cmd: cmd, Env: env(job), WorkDir: TaskDir, User: r.cfg.User,
		Network: r.cfg.Network, MemoryBytes: r.cfg.MemoryBytes,
		Mounts:    []driver.Mount{{Source: home.dir, Target: TaskFilesDir, ReadOnly: true}},
		PidsLimit: r.cfg.PidsLimit, NanoCPUs: r.cfg.NanoCPUs, NoFile: r.cfg.NoFile,
		ReadOnlyRoot: true,
		Tmpfs: []driver.Tmpfs{
			{Path: "/tmp", SizeBytes: r.cfg.TmpBytes},
			{Path: TaskDir, SizeBytes: r.cfg.TaskDirBytes, Owned: true},
		},
		Labels: map[string]string{"io.mayfly.code": job.CodeName, "io.mayfly.project": job.ProjectID},
		Output: logs, Stderr: tail,
	}
	var werr <-chan error
	if prep.archive != nil {
		var pr *io.PipeReader
		pr, werr = prep.archive()
		spec.Archive = pr
		// Whatever the driver did not read, the writer must not wait for.
		defer pr.CloseWithError(errArchiveUnread)
	}
	if hb.isLost() {
		return outcome{abandon: true, msg: "lease lost while preparing"}
	}
	ph.mark(&ph.prepared)
	startTried = true
	h, err = r.driver.Start(ctx, spec)
	if err != nil {
		// Without a handle the home is not kept: a driver whose start
		// failed may still have made a container that sees it.
		h = nil
		return r.failOrAbandon(ctx, fmt.Errorf("Could not start the container: %v", err))
	}
	ph.mark(&ph.started)
	r.active.Store(h.ID(), job.TaskID)
	if werr != nil {
		if perr := <-werr; perr != nil {
			// The container did not get the whole package.
			r.stop(h, 0)
			return fail("Could not unpack the code package: %v", perr)
		}
	}
	out = r.watch(ctx, job, h, hb)
	ph.mark(&ph.exited)
	// Every byte the container wrote is in the log before the end is
	// reported, so a client that sees the status can read the whole log.
	logs.Close()
	ph.mark(&ph.logged)
	if out.status == mayfly.StatusError && out.exitCode != nil {
		if t := strings.TrimSpace(tail.String()); t != "" {
			out.msg += ": " + t
		}
	}
	return out
}

// watch waits for the container to end, renewing the lease, and stops it
// on timeout, cancel, lost lease or shutdown.
func (r *Runner) watch(ctx context.Context, job wire.Job, h driver.Handle, hb *heartbeat) (out outcome) {
	// The running mark is a write of its own, and most tasks of a busy
	// queue end before it would have been made: it is sent only once the
	// container has run for RunningMarkDelay, and a task that ends sooner
	// goes from leased to its end in one write, its finish carrying the
	// start time from the runner's spans. The container never waits for
	// the mark; a mark not yet answered when the container ends is waited
	// for past the task's slot (runJob), so the end is recorded after it.
	var started <-chan error
	markDue := time.NewTimer(r.cfg.RunningMarkDelay)
	defer markDue.Stop()
	defer func() {
		if started != nil && !out.abandon {
			out.started = started
		}
	}()
	waitCh := make(chan struct {
		res driver.Result
		err error
	}, 1)
	waitCtx, stopWait := context.WithCancel(context.Background())
	defer stopWait()
	go func() {
		res, err := h.Wait(waitCtx)
		waitCh <- struct {
			res driver.Result
			err error
		}{res, err}
	}()

	timeout := time.NewTimer(time.Duration(job.Timeout) * time.Second)
	defer timeout.Stop()

	for {
		select {
		case w := <-waitCh:
			if w.err != nil {
				// The engine lost the container (it restarted, say): the
				// task did not fail by itself, so let the lease run out
				// and the queue run it again.
				return outcome{abandon: true, msg: "lost track of the container: " + w.err.Error()}
			}
			code := w.res.ExitCode
			switch {
			case w.res.OOMKilled:
				return outcome{status: mayfly.StatusKilled, exitCode: &code,
					msg: fmt.Sprintf("Out of memory: killed at the limit of %d MiB", r.cfg.MemoryBytes>>20)}
			case code == 0:
				return outcome{status: mayfly.StatusComplete, exitCode: &code}
			}
			return outcome{status: mayfly.StatusError, exitCode: &code, msg: "Exit code " + strconv.Itoa(code)}
		case <-timeout.C:
			r.stop(h, 0)
			<-waitCh
			return outcome{status: mayfly.StatusTimeout, msg: fmt.Sprintf("Timed out after %d s", job.Timeout)}
		case <-markDue.C:
			ch := make(chan error, 1)
			go func() { ch <- r.queue.Started(ctx, job.Lease(r.cfg.ID)) }()
			started = ch
		case err := <-started:
			started = nil
			if err != nil && r.cfg.IsLeaseLost(err) {
				r.stop(h, 0)
				<-waitCh
				return outcome{abandon: true, msg: err.Error()}
			}
			if err != nil {
				// The heartbeat notices a lost lease; the status stays
				// preparing until then, which is harmless.
				r.log.Warn("could not mark task running", "task_id", job.TaskID, "err", err)
			}
		case <-hb.lost:
			r.stop(h, 0)
			<-waitCh
			return outcome{abandon: true, msg: "lease lost: the task was handed on"}
		case <-hb.cancel:
			r.stop(h, r.cfg.StopGrace)
			<-waitCh
			return outcome{status: mayfly.StatusCancelled, msg: "Cancelled"}
		case <-ctx.Done():
			r.stop(h, 0)
			<-waitCh
			return outcome{abandon: true, msg: "runner shut down before the task ended"}
		}
	}
}

func (r *Runner) stop(h driver.Handle, grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace+30*time.Second)
	defer cancel()
	if err := h.Stop(ctx, grace); err != nil {
		r.log.Warn("could not stop container", "container", h.ID(), "err", err)
	}
}

// checkImage makes sure the image is there, asking the engine only the
// first time an image is seen.
func (r *Runner) checkImage(ctx context.Context, image string, job wire.Job) error {
	if _, ok := r.images.Load(image); ok {
		return nil
	}
	ok, err := r.driver.ImageExists(ctx, image)
	if err != nil {
		return fmt.Errorf("Could not check image %s: %v", image, err)
	}
	if !ok {
		return missingImage(image, job, r.cfg.ID)
	}
	r.images.Store(image, struct{}{})
	return nil
}

// interpreters run a code's file_name by runtime.
var interpreters = map[string][]string{
	"sh":     {"sh"},
	"python": {"python3"},
	"node":   {"node"},
	"ruby":   {"ruby"},
	"php":    {"php"},
}

// command decides what runs: the code's command (a shell line that gets
// the task arguments as "$@"), else __runner__.sh, else the file by
// runtime; image codes without a command run the image's own.
func command(job wire.Job, hasRunner bool) (entrypoint, cmd []string, err error) {
	args := []string{"-d", TaskDir, "-payload", PayloadFile, "-config", ConfigFile, "-id", job.TaskID}
	c := job.Code
	switch {
	case c.Command != "":
		return []string{}, append([]string{"/bin/sh", "-c", c.Command, "mayfly"}, args...), nil
	case hasRunner:
		return []string{}, append([]string{"/bin/sh", "__runner__.sh"}, args...), nil
	case c.Image != "" && c.FileName == "":
		return nil, nil, nil
	case c.FileName == "":
		return nil, nil, errors.New("Nothing to run: the code has no command, no __runner__.sh and no file_name")
	case c.Runtime == "binary":
		return []string{}, append([]string{"./" + c.FileName}, args...), nil
	}
	interp, ok := interpreters[c.Runtime]
	if !ok {
		if c.Runtime == "" {
			interp = interpreters["sh"]
		} else {
			return nil, nil, fmt.Errorf("Unknown runtime %q: set a command", c.Runtime)
		}
	}
	return []string{}, append(append(append([]string{}, interp...), c.FileName), args...), nil
}

// env is the task's environment: the code's env_vars, then the contract's
// variables, which win.
func env(job wire.Job) []string {
	var e []string
	for k, v := range job.Code.EnvVars {
		e = append(e, k+"="+v)
	}
	e = append(e,
		"PAYLOAD_FILE="+PayloadFile, "CONFIG_FILE="+ConfigFile, "TASK_ID="+job.TaskID,
		"TASK_DIR="+TaskDir, "CODE_NAME="+job.CodeName, "PROJECT_ID="+job.ProjectID,
		"HOME="+TaskDir,
		"MAYFLY_TASK_TOKEN="+job.TaskToken, "MAYFLY_API_SOCKET="+apiSocketPath, "MAYFLY_API_URL="+apiSocketURL,
	)
	if job.ScheduleID != "" {
		e = append(e, "SCHEDULE_ID="+job.ScheduleID)
	}
	return e
}

func userIDs(user string) (int, int) {
	u, g, _ := strings.Cut(user, ":")
	uid, err := strconv.Atoi(u)
	if err != nil {
		return 0, 0
	}
	gid, err := strconv.Atoi(g)
	if err != nil {
		gid = uid
	}
	return uid, gid
}

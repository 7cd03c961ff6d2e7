package oci

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mayfly-run/mayfly/internal/driver"
)

const (
	// cleanupTimeout bounds the removal of a container whose start
	// failed; it runs even when the caller's context is what failed.
	cleanupTimeout = 30 * time.Second
	// drainTimeout bounds how long output may still arrive after the
	// init exited: a process that escaped the pid namespace's end (none
	// can) would otherwise hold the pipes open.
	drainTimeout = 10 * time.Second
)

// Start prepares the container's bundle and root file system, unpacks
// spec's archive and files into it and starts it. On error nothing is left.
func (d *Driver) Start(ctx context.Context, spec driver.Spec) (_ driver.Handle, err error) {
	tr := &tracer{t0: time.Now()}
	img, err := d.resolve(ctx, spec.Image)
	if err != nil {
		return nil, fmt.Errorf("start task %s: %w", spec.TaskID, err)
	}
	tr.resolved = time.Now()
	id := driver.ContainerName(spec.TaskID)
	bdir := filepath.Join(d.dir, "bundles", id)
	if err := os.Mkdir(bdir, 0o700); err != nil {
		return nil, fmt.Errorf("start task %s: make bundle: %w", spec.TaskID, err)
	}
	defer func() {
		if err != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			if _, rerr := d.removeContainer(rctx, id); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	// Labelled first: a runner that dies from here on leaves a bundle
	// that its next life finds.
	labels := make(map[string]string, len(spec.Labels)+3)
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[driver.LabelManaged] = "true"
	labels[driver.LabelRunner] = spec.RunnerID
	labels[driver.LabelTask] = spec.TaskID
	if err := writeJSON(filepath.Join(bdir, labelsFile), labels); err != nil {
		return nil, fmt.Errorf("start task %s: %w", spec.TaskID, err)
	}

	rootfs := filepath.Join(bdir, "rootfs")
	for _, sub := range []string{"upper", "work", "rootfs"} {
		if err := os.Mkdir(filepath.Join(bdir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("start task %s: %w", spec.TaskID, err)
		}
	}
	opts := "lowerdir=" + strings.Join(img.lowers, ":") + ",upperdir=" + filepath.Join(bdir, "upper") + ",workdir=" + filepath.Join(bdir, "work")
	if err := unix.Mount("overlay", rootfs, "overlay", unix.MS_NODEV, opts); err != nil {
		return nil, fmt.Errorf("start task %s: mount overlay of %s: %w", spec.TaskID, spec.Image, err)
	}
	if err := fillRoot(rootfs, spec); err != nil {
		return nil, fmt.Errorf("start task %s: %w", spec.TaskID, err)
	}
	tr.prepared = time.Now()

	s, err := d.ociSpec(spec, img, id, rootfs)
	if err != nil {
		return nil, fmt.Errorf("start task %s: %w", spec.TaskID, err)
	}
	if s.Process.Cwd != "/" && !spec.ReadOnlyRoot {
		// Docker makes a missing working directory; with a read-only
		// root it can only be a mount point the runtime makes.
		if err := mkdirIn(rootfs, s.Process.Cwd); err != nil {
			return nil, fmt.Errorf("start task %s: working directory: %w", spec.TaskID, err)
		}
	}
	if err := writeJSON(filepath.Join(bdir, "config.json"), s); err != nil {
		return nil, fmt.Errorf("start task %s: %w", spec.TaskID, err)
	}
	tr.specced = time.Now()

	h, err := d.run(ctx, id, bdir, spec, tr)
	if err != nil {
		return nil, fmt.Errorf("start container %s of task %s: %w", id, spec.TaskID, err)
	}
	return h, nil
}

// fillRoot unpacks spec's archive and then its files into the mounted root
// file system; the writes land in the task's upper layer.
func fillRoot(rootfs string, spec driver.Spec) error {
	if spec.Archive != nil {
		if err := untar(spec.Archive, rootfs, ""); err != nil {
			return err
		}
	}
	if len(spec.Files) > 0 {
		uid, gid := numericUser(spec.User)
		buf, err := filesTar(spec.Files, uid, gid)
		if err != nil {
			return err
		}
		if err := untar(buf, rootfs, ""); err != nil {
			return err
		}
	}
	return nil
}

func mkdirIn(rootfs, dir string) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	return root.MkdirAll(strings.TrimPrefix(filepath.Clean(dir), "/"), 0o755)
}

func writeJSON(p string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(p), err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(p), err)
	}
	return nil
}

// run starts the container detached with its stdout and stderr on pipes of
// ours. The runtime hands its own stdio to the container's init and exits;
// the init is then our child (we are the subreaper), so its exit status is
// ours to collect.
func (d *Driver) run(ctx context.Context, id, bdir string, spec driver.Spec, tr *tracer) (*handle, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	logPath := filepath.Join(bdir, "runtime.log")
	pidPath := filepath.Join(bdir, "init.pid")
	cmd := exec.CommandContext(ctx, d.runtime, "--root", filepath.Join(d.dir, "state"), "--log", logPath, "--log-format", "json",
		"run", "--detach", "--pid-file", pidPath, "--bundle", bdir, id)
	cmd.Stdout, cmd.Stderr = outW, errW
	h := newHandle(d, id, outR, errR, spec.Output, spec.Stderr)
	h.tr, h.taskID = tr, spec.TaskID
	runErr := cmd.Run()
	// The container holds its own copies; the output ends when the last
	// of its processes closes them.
	outW.Close()
	errW.Close()
	if runErr != nil {
		h.abandon()
		return nil, fmt.Errorf("%s run: %w%s", filepath.Base(d.runtime), runErr, runtimeError(logPath))
	}
	pidData, err := os.ReadFile(pidPath)
	if err != nil {
		h.abandon()
		return nil, fmt.Errorf("read pid of its init: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidData)))
	if err != nil {
		h.abandon()
		return nil, fmt.Errorf("read pid of its init: %w", err)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		h.abandon()
		return nil, fmt.Errorf("find its init %d: %w", pid, err)
	}
	tr.started = time.Now()
	go h.collect(proc, d.oomFile(id))
	return h, nil
}

// runtimeError is the last error the runtime logged, as ": msg".
func runtimeError(logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Level == "error" {
			last = e.Msg
		}
	}
	if last == "" {
		return ""
	}
	return ": " + last
}

// oomFile is the cgroup file that counts the container's OOM kills.
func (d *Driver) oomFile(id string) string {
	if d.cgroup2 {
		return "/sys/fs/cgroup/mayfly/" + id + "/memory.events"
	}
	return "/sys/fs/cgroup/memory/mayfly/" + id + "/memory.oom_control"
}

// oomKills reads the oom_kill count of a memory.events or
// memory.oom_control file.
func oomKills(file string) int64 {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	return driver.CgroupValue(data, "oom_kill")
}

// handle is one started container. Its result is collected once, in the
// background, so Wait can be called again after its context ended.
type handle struct {
	d  *Driver
	id string

	copied chan struct{} // closed when both output pipes reached their end
	outR   *os.File
	errR   *os.File

	done   chan struct{} // closed when result and err are set
	result driver.Result
	err    error

	destroyMu sync.Mutex
	tr        *tracer // marks written before done is closed, read after
	taskID    string
}

func newHandle(d *Driver, id string, outR, errR *os.File, output, stderr io.Writer) *handle {
	h := &handle{d: d, id: id, outR: outR, errR: errR, copied: make(chan struct{}), done: make(chan struct{})}
	var mu sync.Mutex // one write to Output at a time, in the order read
	out := driver.KeepGoing(output)
	errOnly := driver.KeepGoing(stderr)
	var wg sync.WaitGroup
	pump := func(r *os.File, both bool) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				mu.Lock()
				_, _ = out.Write(buf[:n])
				if both {
					_, _ = errOnly.Write(buf[:n])
				}
				mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}
	wg.Add(2)
	go pump(outR, false)
	go pump(errR, true)
	go func() {
		wg.Wait()
		outR.Close()
		errR.Close()
		close(h.copied)
	}()
	return h
}

func (h *handle) ID() string { return h.id }

// abandon releases a handle whose start failed: a container that never ran
// may still hold the pipes until it is deleted, so the readers are cut.
func (h *handle) abandon() {
	h.outR.SetReadDeadline(time.Now())
	h.errR.SetReadDeadline(time.Now())
	<-h.copied
}

// collect waits for the init to exit, then for the end of the output, then
// reads the OOM count while the cgroup is still there (until Destroy).
func (h *handle) collect(proc *os.Process, oomFile string) {
	defer close(h.done)
	st, err := proc.Wait()
	h.tr.exited = time.Now()
	if err != nil {
		h.err = fmt.Errorf("wait for container %s: %w", h.id, err)
		h.abandon()
		return
	}
	timer := time.NewTimer(drainTimeout)
	select {
	case <-h.copied:
	case <-timer.C:
		h.abandon()
	}
	timer.Stop()
	h.tr.drained = time.Now()
	var res driver.Result
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		// As a shell reports it, and as Docker does.
		res.ExitCode = 128 + int(ws.Signal())
	} else {
		res.ExitCode = st.ExitCode()
	}
	res.OOMKilled = oomKills(oomFile) > 0
	h.result = res
}

// Wait returns how the container ended once its output has been delivered.
func (h *handle) Wait(ctx context.Context) (driver.Result, error) {
	select {
	case <-h.done:
		return h.result, h.err
	case <-ctx.Done():
		return driver.Result{}, fmt.Errorf("wait for container %s: %w", h.id, ctx.Err())
	}
}

// Stop sends SIGTERM to every process of the container and SIGKILL after
// grace. It returns once the container has stopped. One that is gone needs
// no stopping.
func (h *handle) Stop(ctx context.Context, grace time.Duration) error {
	select {
	case <-h.done:
		return nil
	default:
	}
	if grace > 0 {
		if err := h.kill(ctx, "TERM"); err != nil {
			return err
		}
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-h.done:
			return nil
		case <-timer.C:
		case <-ctx.Done():
			return fmt.Errorf("stop container %s: %w", h.id, ctx.Err())
		}
	}
	if err := h.kill(ctx, "KILL"); err != nil {
		return err
	}
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop container %s: %w", h.id, ctx.Err())
	}
}

// kill signals the container's init; the pid namespace ends with it.
func (h *handle) kill(ctx context.Context, sig string) error {
	out, err := h.d.runc(ctx, "kill", h.id, sig)
	if err == nil {
		return nil
	}
	select {
	case <-h.done:
		return nil // it ended meanwhile
	default:
	}
	if strings.Contains(out, "not running") || strings.Contains(out, "does not exist") {
		return nil
	}
	return fmt.Errorf("signal container %s: %w: %s", h.id, err, out)
}

// Destroy kills the container and removes its runtime state, cgroup, mounts
// and bundle.
func (h *handle) Destroy(ctx context.Context) error {
	h.destroyMu.Lock()
	defer h.destroyMu.Unlock()
	t0 := time.Now()
	gone, err := h.d.removeContainer(ctx, h.id)
	if gone && err == nil && h.d.trace != nil {
		select {
		case <-h.done:
			h.d.trace(h.taskID, h.tr.phases(time.Since(t0)))
		default:
		}
	}
	return err
}

package docker

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/mayfly-run/mayfly/internal/driver"
)

const (
	// drainTimeout bounds how long output may still arrive after the exit.
	// The engine ends the attach stream once the container's pipes close,
	// which they do when it exits; this only guards against an engine that
	// never does.
	drainTimeout = 10 * time.Second
	// inspectTimeout bounds the one inspect after the exit.
	inspectTimeout = 30 * time.Second
)

// handle is one started container. Its result is collected once, in the
// background, so Wait can be called again after its context ended.
type handle struct {
	d   *Driver
	cli *client.Client
	id  string
	// warm is the pool's record of a warm container, nil for one created
	// for its task; launch is the write end of its launch FIFO, closed
	// once the task has ended (or never starts).
	warm   *warmCtr
	launch *os.File
	// oom watches the container's memory cgroup from its start (nil
	// before, or where the driver cannot): see oom_linux.go.
	oom *oomWatch

	// bg carries the requests that outlive Start's context: the wait
	// registered before start, the inspect after the exit.
	bg     context.Context
	cancel context.CancelFunc

	waitC   <-chan container.WaitResponse
	waitE   <-chan error
	attach  *types.HijackedResponse // nil when nobody reads output
	copied  chan struct{}           // closed when the output stream ended
	copying bool                    // copyOutput runs (or ran): copied will close

	done   chan struct{} // closed when result and err are set
	result driver.Result
	err    error
}

func newHandle(d *Driver, id string) *handle {
	bg, cancel := context.WithCancel(context.Background())
	return &handle{d: d, cli: d.cli, id: id, bg: bg, cancel: cancel, copied: make(chan struct{}), done: make(chan struct{})}
}

func (h *handle) ID() string { return h.id }

// prepare attaches to the output (if anyone wants it) and registers the wait
// for the next exit; both must precede the start.
func (h *handle) prepare(ctx context.Context, output, stderr io.Writer) error {
	if output != nil || stderr != nil {
		if err := h.attachOutput(ctx, output != nil); err != nil {
			close(h.copied)
			return err
		}
		h.copying = true
		go h.copyOutput(output, stderr)
	} else {
		close(h.copied)
	}
	return h.registerWait()
}

// prepareAhead attaches to both streams and registers the wait before
// anyone knows where the output goes: a warm container's, done when it is
// created. deliver then hands the output on.
func (h *handle) prepareAhead(ctx context.Context) error {
	if err := h.attachOutput(ctx, true); err != nil {
		return err
	}
	return h.registerWait()
}

// deliver starts copying the output of a handle prepared ahead, and
// reports whether its requests still stand: an engine that restarted since
// broke them, and the output would be lost.
func (h *handle) deliver(output, stderr io.Writer) error {
	select {
	case err := <-h.waitE:
		return fmt.Errorf("the wait registered ahead broke: %w", err)
	case w := <-h.waitC:
		return fmt.Errorf("its launcher ended before the task came, with status %d", w.StatusCode)
	default:
	}
	h.copying = true
	go h.copyOutput(output, stderr)
	return nil
}

func (h *handle) attachOutput(ctx context.Context, stdout bool) error {
	resp, err := h.cli.ContainerAttach(ctx, h.id, container.AttachOptions{
		Stream: true,
		Stdout: stdout,
		Stderr: true,
	})
	if err != nil {
		return fmt.Errorf("attach to output: %w", err)
	}
	h.attach = &resp
	return nil
}

// registerWait registers the wait for the next exit; ContainerWait
// returns once the engine has.
func (h *handle) registerWait() error {
	h.waitC, h.waitE = h.cli.ContainerWait(h.bg, h.id, container.WaitConditionNextExit)
	select {
	case err := <-h.waitE:
		return fmt.Errorf("wait for exit: %w", err)
	default:
		return nil
	}
}

// copyOutput demultiplexes the attach stream: stdout to output, stderr to
// output and stderr, in the order the engine sent the frames.
func (h *handle) copyOutput(output, stderr io.Writer) {
	defer close(h.copied)
	out := driver.KeepGoing(output)
	errW := out
	if stderr != nil {
		errW = io.MultiWriter(out, driver.KeepGoing(stderr))
	}
	// The stream ends with an error only when the connection breaks or is
	// closed under it; whatever arrived has been written.
	_, _ = stdcopy.StdCopy(out, errW, h.attach.Reader)
}

// abandon releases a handle whose start failed (or a warm container's
// that never started).
func (h *handle) abandon() {
	h.cancel()
	h.oom.release()
	if h.launch != nil {
		h.launch.Close()
	}
	if h.attach != nil {
		h.attach.Close()
	}
	if h.copying {
		<-h.copied
	}
}

// collect waits for the exit, then for the end of the output, then inspects
// the container for what the exit status does not say.
func (h *handle) collect() {
	defer close(h.done)
	defer h.cancel()
	defer h.oom.release()
	if h.launch != nil {
		defer h.launch.Close()
	}
	var res driver.Result
	var waitErr error
	select {
	case w := <-h.waitC:
		res.ExitCode = int(w.StatusCode)
		if w.Error != nil {
			res.Err = w.Error.Message
		}
	case waitErr = <-h.waitE:
	}

	timer := time.NewTimer(drainTimeout)
	select {
	case <-h.copied:
	case <-timer.C:
	}
	timer.Stop()
	if h.attach != nil {
		h.attach.Close()
		<-h.copied
	}

	if waitErr != nil {
		// The wait broke: the engine died, or its connection did. What
		// an inspect would tell after is not the container's own end: an
		// engine restarted since reports a container its crash took down
		// as exited 0 (seen with TestEngineRestart, once the inspect came
		// late enough to reach the new engine). The task's end is unknown.
		h.err = fmt.Errorf("wait for container %s: %w", shortID(h.id), waitErr)
		return
	}
	res.OOMKilled = h.oom.killed()
	ctx, cancel := context.WithTimeout(h.bg, inspectTimeout)
	defer cancel()
	info, err := h.cli.ContainerInspect(ctx, h.id)
	switch {
	case err == nil && info.State != nil:
		res.OOMKilled = res.OOMKilled || (info.State.OOMKilled && !h.d.engineOOMIgnored)
		if res.Err == "" {
			res.Err = info.State.Error
		}
	case cerrdefs.IsNotFound(err):
		// Destroyed right after its exit: the exit code is known, the
		// engine's OOM flag went with the container (the watch's stays).
	default:
		h.err = fmt.Errorf("inspect container %s after exit: %w", shortID(h.id), err)
		return
	}
	h.result = res
}

// Wait returns how the container ended once its output has been delivered.
func (h *handle) Wait(ctx context.Context) (driver.Result, error) {
	select {
	case <-h.done:
		return h.result, h.err
	case <-ctx.Done():
		return driver.Result{}, fmt.Errorf("wait for container %s: %w", shortID(h.id), ctx.Err())
	}
}

// Stop sends SIGTERM and, after grace (rounded up to whole seconds),
// SIGKILL. It returns once the container has stopped. A container that is
// gone needs no stopping.
func (h *handle) Stop(ctx context.Context, grace time.Duration) error {
	timeout := stopTimeout(grace)
	err := h.cli.ContainerStop(ctx, h.id, container.StopOptions{Signal: "SIGTERM", Timeout: &timeout})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: %w", shortID(h.id), err)
	}
	return nil
}

// Destroy force-removes the container and its anonymous volumes.
func (h *handle) Destroy(ctx context.Context) error {
	_, err := h.d.remove(ctx, h.id)
	if err == nil && h.warm != nil {
		h.d.warm.forget(h.warm)
	}
	return err
}

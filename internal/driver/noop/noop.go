// Package noop is a driver.Driver that runs no container: Start reads the
// task's files and returns a handle whose Wait reports exit 0 at once. It
// exists so benchmarks and tests can measure the queue and the runner's own
// work without the container engine's cost in the way; `mayfly server`
// never offers it.
package noop

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
)

// Driver starts nothing. The zero value is ready to use.
type Driver struct {
	started atomic.Int64
	mu      sync.Mutex
	live    map[string]string            // container id -> runner id, until destroyed
	tasks   map[string]string            // container id -> task id
	baked   map[string]map[string]string // code image -> its labels
}

var _ driver.Driver = (*Driver)(nil)

// New returns a driver.
func New() *Driver { return &Driver{} }

// Started reports how many containers Start has pretended to start.
func (d *Driver) Started() int64 { return d.started.Load() }

// Start consumes the spec's archive, if any (the runner sends one only to
// drivers that do not bake), as a real driver copies it into the
// container: the runner waits for its writer to finish and treats an
// unread archive as a failed unpack.
func (d *Driver) Start(ctx context.Context, spec driver.Spec) (driver.Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start task %s: %w", spec.TaskID, err)
	}
	if spec.Archive != nil {
		if _, err := io.Copy(io.Discard, spec.Archive); err != nil {
			return nil, fmt.Errorf("read files of task %s: %w", spec.TaskID, err)
		}
	}
	n := d.started.Add(1)
	id := fmt.Sprintf("noop-%d", n)
	d.mu.Lock()
	if d.live == nil {
		d.live = map[string]string{}
	}
	d.live[id] = spec.RunnerID
	if d.tasks == nil {
		d.tasks = map[string]string{}
	}
	d.tasks[id] = spec.TaskID
	d.mu.Unlock()
	return &handle{d: d, id: id}, nil
}

// ImageExists says yes to every image: nothing is ever pulled.
func (d *Driver) ImageExists(context.Context, string) (bool, error) { return true, nil }

// RemoveOrphans forgets the runner's handles that were never destroyed.
func (d *Driver) RemoveOrphans(_ context.Context, runnerID string, keep func(containerID, taskID string) bool) (int, error) {
	if runnerID == "" {
		return 0, fmt.Errorf("remove orphans: a runner id is required")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for id, rid := range d.live {
		if rid == runnerID && (keep == nil || !keep(id, d.tasks[id])) {
			delete(d.tasks, id)
			delete(d.live, id)
			n++
		}
	}
	return n, nil
}

// ListManaged lists the handles not yet destroyed.
func (d *Driver) ListManaged(_ context.Context, runnerID string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []string
	for id, rid := range d.live {
		if runnerID == "" || rid == runnerID {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// Close does nothing.
func (d *Driver) Close() error { return nil }

type handle struct {
	d  *Driver
	id string
}

func (h *handle) ID() string { return h.id }

func (h *handle) Wait(ctx context.Context) (driver.Result, error) {
	if err := ctx.Err(); err != nil {
		return driver.Result{}, fmt.Errorf("wait for %s: %w", h.id, err)
	}
	return driver.Result{ExitCode: 0}, nil
}

func (h *handle) Stop(context.Context, time.Duration) error { return nil }

func (h *handle) Destroy(context.Context) error {
	h.d.mu.Lock()
	delete(h.d.live, h.id)
	delete(h.d.tasks, h.id)
	h.d.mu.Unlock()
	return nil
}

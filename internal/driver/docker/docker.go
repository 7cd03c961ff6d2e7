// Package docker is the driver that runs each task in a fresh container of a
// Docker engine, through the engine API with version negotiation (Debian's
// docker.io speaks API 1.41 while the client defaults to newer).
//
// A container goes through
//
//	create -> copy files in -> attach + register wait -> start -> exit -> remove
//	   \________________ any error: force remove _____/
//
// Attaching and registering the wait before the start is what makes the
// output and the exit status impossible to miss, however short the task.
// Start makes no other round trip (no image or container inspect): the
// runner checks images once, not per task. After the start, a container
// inspect in the background finds the container's memory cgroup, whose
// OOMs the driver watches itself (oom_linux.go). With warm containers
// (Options.WarmContainers) the create, attach, wait and start are done
// ahead of the task, and Start makes no engine call at all (an image's id
// and command are asked at most every 10 seconds); see warm.go.
package docker

import (
	"context"
	"errors"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/mayfly-run/mayfly/internal/driver"
)

// Driver starts task containers on one Docker engine. It is safe for
// concurrent use.
type Driver struct {
	cli  *client.Client
	warm *warmPool // nil: no warm containers
	// engineOOMIgnored makes the engine's OOM flag count for nothing, so
	// a test can show the driver's own watch alone (the engine's is lost
	// at random under load).
	engineOOMIgnored bool
	cgroups          cgroupLayout // where its OOM watch finds containers' cgroups
}

var _ driver.Driver = (*Driver)(nil)

// New connects to the engine named by the environment (DOCKER_HOST etc.,
// else the local socket) and checks that it answers.
func New(ctx context.Context) (*Driver, error) {
	return NewWithOptions(ctx, Options{})
}

// NewWithOptions is New with warm containers as opts say.
func NewWithOptions(ctx context.Context, opts Options) (*Driver, error) {
	if opts.WarmContainers < 0 {
		return nil, fmt.Errorf("docker driver: %d warm containers", opts.WarmContainers)
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker driver: create client: %w", err)
	}
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker driver: engine at %s does not answer: %w", cli.DaemonHost(), err)
	}
	d := &Driver{cli: cli}
	if opts.WarmContainers > 0 {
		if d.warm, err = newWarmPool(d, opts); err != nil {
			cli.Close()
			return nil, fmt.Errorf("docker driver: %w", err)
		}
	}
	return d, nil
}

// Prewarm creates the warm containers of spec's shape that the pool lacks
// and returns once they are there, so the next Start of that shape is
// warm. Without warm containers it does nothing.
func (d *Driver) Prewarm(ctx context.Context, spec driver.Spec) error {
	if d.warm == nil {
		return nil
	}
	return d.warm.prewarm(ctx, spec)
}

// WarmStats tells how often tasks found a warm container; zero without
// warm containers.
func (d *Driver) WarmStats() WarmStats {
	if d.warm == nil {
		return WarmStats{}
	}
	return d.warm.stats()
}

// WarmCounts is WarmStats as the runner's metrics take it; ok is false
// without warm containers.
func (d *Driver) WarmCounts() (hits, misses int64, idle, pending int, ok bool) {
	if d.warm == nil {
		return 0, 0, 0, 0, false
	}
	s := d.warm.stats()
	return s.Hits, s.Misses, s.Idle, s.Pending, true
}

// Ping reports whether the engine answers.
func (d *Driver) Ping(ctx context.Context) error {
	if _, err := d.cli.Ping(ctx); err != nil {
		return fmt.Errorf("docker engine at %s does not answer: %w", d.cli.DaemonHost(), err)
	}
	return nil
}

var _ driver.Pinger = (*Driver)(nil)

// Close removes the idle warm containers and releases the client's
// connections. Handles of started containers must not be used after.
func (d *Driver) Close() error {
	var werr error
	if d.warm != nil {
		werr = d.warm.close()
	}
	return errors.Join(werr, d.cli.Close())
}

// ImageExists reports whether image is available locally; it never pulls.
func (d *Driver) ImageExists(ctx context.Context, image string) (bool, error) {
	_, err := d.cli.ImageInspect(ctx, image)
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect image %s: %w", image, err)
	}
	return true, nil
}

// ListManaged returns the ids of all containers, running or not, that carry
// Mayfly's labels and runnerID ("" = any runner), except the warm
// containers this driver keeps waiting for tasks.
func (d *Driver) ListManaged(ctx context.Context, runnerID string) ([]string, error) {
	args := filters.NewArgs(filters.Arg("label", driver.LabelManaged+"=true"))
	if runnerID != "" {
		args.Add("label", driver.LabelRunner+"="+runnerID)
	}
	list, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
	if err != nil {
		return nil, fmt.Errorf("list containers of runner %q: %w", runnerID, err)
	}
	ids := make([]string, 0, len(list))
	for _, c := range list {
		if d.warm != nil {
			if ok, taskID := d.warm.lookup(c.ID, c.Labels); ok && taskID == "" {
				continue // a warm container waiting: the driver's stock
			}
		}
		ids = append(ids, c.ID)
	}
	return ids, nil
}

// RemoveOrphans force-removes the managed containers of runnerID whose id is
// not in keep. It goes on past a failed removal and reports all failures
// together.
func (d *Driver) RemoveOrphans(ctx context.Context, runnerID string, keep func(containerID, taskID string) bool) (int, error) {
	if runnerID == "" {
		return 0, errors.New("remove orphans: empty runner id would match every runner's containers")
	}
	list, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", driver.LabelManaged+"=true"), filters.Arg("label", driver.LabelRunner+"="+runnerID))})
	if err != nil {
		return 0, fmt.Errorf("list containers of runner %q: %w", runnerID, err)
	}
	removed := 0
	var errs []error
	for _, c := range list {
		id := c.ID
		taskID := c.Labels[driver.LabelTask]
		if d.warm != nil {
			// A warm container of this driver is no orphan while it
			// waits; once taken, its task is the pool's to tell (it
			// has no task label). One of an earlier life is an orphan.
			if ok, tid := d.warm.lookup(id, c.Labels); ok {
				if tid == "" {
					continue
				}
				taskID = tid
			}
		}
		if keep != nil && keep(id, taskID) {
			continue
		}
		gone, err := d.remove(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if gone {
			removed++
		}
	}
	return removed, errors.Join(errs...)
}

// remove force-removes container id with its anonymous volumes. It reports
// whether this call removed it; a container already gone is no error.
func (d *Driver) remove(ctx context.Context, id string) (bool, error) {
	err := d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	case cerrdefs.IsConflict(err):
		// "removal already in progress": someone else removes it; done
		// once it is gone.
		waitC, errC := d.cli.ContainerWait(ctx, id, container.WaitConditionRemoved)
		select {
		case <-waitC:
			return false, nil
		case werr := <-errC:
			if cerrdefs.IsNotFound(werr) {
				return false, nil
			}
			return false, fmt.Errorf("remove container %s: %w", shortID(id), err)
		}
	default:
		return false, fmt.Errorf("remove container %s: %w", shortID(id), err)
	}
}

// stoppable is a context that ends after timeout or once stop is closed:
// for the engine calls of work in the background that a close cuts short.
func stoppable(stop <-chan struct{}, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

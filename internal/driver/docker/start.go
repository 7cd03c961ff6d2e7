package docker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/mayfly-run/mayfly/internal/driver"
)

// cleanupTimeout bounds the removal of a container whose start failed; it
// runs even when the caller's context is what failed.
const cleanupTimeout = 30 * time.Second

// Start creates the container of spec, copies its files in, attaches to its
// output and starts it; with warm containers, it hands the task to one
// started ahead, of spec's shape, when there is one (see warm.go). On
// error the container is removed again.
func (d *Driver) Start(ctx context.Context, spec driver.Spec) (_ driver.Handle, err error) {
	if d.warm != nil {
		if h, ok, err := d.warm.start(ctx, spec); ok {
			return h, err
		}
	}
	cfg, hostCfg := containerConfig(spec)
	created, err := d.cli.ContainerCreate(ctx, cfg, hostCfg, nil, nil, driver.ContainerName(spec.TaskID))
	if err != nil {
		return nil, fmt.Errorf("create container for task %s from image %s: %w", spec.TaskID, spec.Image, err)
	}
	h := newHandle(d, created.ID)
	defer func() {
		if err != nil {
			h.abandon()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			if _, rerr := d.remove(rctx, created.ID); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()

	// The copy is the slow step (the engine mounts the root file system
	// and unpacks in a chroot); attaching and registering the wait happen
	// meanwhile.
	copyErr := make(chan error, 1)
	go func() { copyErr <- d.copyIn(ctx, created.ID, spec) }()
	prepErr := h.prepare(ctx, spec.Output, spec.Stderr)
	if err := errors.Join(<-copyErr, prepErr); err != nil {
		return nil, fmt.Errorf("prepare container %s of task %s: %w", shortID(created.ID), spec.TaskID, err)
	}
	if err := d.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return nil, fmt.Errorf("start container %s of task %s: %w", shortID(created.ID), spec.TaskID, err)
	}
	h.oom = watchOOM(d, created.ID)
	go h.collect()
	return h, nil
}

// containerConfig maps a spec to the engine's create request, with the
// isolation defaults of every task.
func containerConfig(spec driver.Spec) (*container.Config, *container.HostConfig) {
	labels := make(map[string]string, len(spec.Labels)+3)
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[driver.LabelManaged] = "true"
	labels[driver.LabelRunner] = spec.RunnerID
	labels[driver.LabelTask] = spec.TaskID

	cfg := &container.Config{
		Image:        spec.Image,
		Cmd:          spec.Cmd,
		Env:          spec.Env,
		WorkingDir:   spec.WorkDir,
		User:         spec.User,
		Labels:       labels,
		AttachStdout: spec.Output != nil,
		AttachStderr: spec.Output != nil || spec.Stderr != nil,
		// API 1.41 drops the signal of a stop request and uses this one.
		StopSignal: "SIGTERM",
	}
	if spec.Entrypoint != nil {
		// An empty but non-nil list clears the image's entrypoint.
		cfg.Entrypoint = append([]string{}, spec.Entrypoint...)
	}

	hostCfg := &container.HostConfig{
		NetworkMode: "none",
		CapDrop:     []string{"ALL"},
		SecurityOpt: []string{"no-new-privileges"},
		// Output is read through the attach stream; a log driver would
		// only write a second copy to disk.
		LogConfig:  container.LogConfig{Type: "none"},
		AutoRemove: false,
	}
	if spec.Network {
		hostCfg.NetworkMode = ""
	}
	for _, m := range spec.Mounts {
		hostCfg.Mounts = append(hostCfg.Mounts, mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	if spec.MemoryBytes > 0 {
		hostCfg.Memory = spec.MemoryBytes
		// No swap on top: the limit is what the task gets.
		hostCfg.MemorySwap = spec.MemoryBytes
	}
	if spec.PidsLimit > 0 {
		pids := spec.PidsLimit
		hostCfg.PidsLimit = &pids
	}
	hostCfg.NanoCPUs = spec.NanoCPUs
	if spec.NoFile > 0 {
		hostCfg.Ulimits = []*container.Ulimit{{Name: "nofile", Soft: spec.NoFile, Hard: spec.NoFile}}
	}
	hostCfg.ReadonlyRootfs = spec.ReadOnlyRoot
	if len(spec.Tmpfs) > 0 {
		hostCfg.Tmpfs = make(map[string]string, len(spec.Tmpfs))
		uid, gid := numericUser(spec.User)
		for _, t := range spec.Tmpfs {
			hostCfg.Tmpfs[t.Path] = tmpfsOptions(t, uid, gid)
		}
	}
	return cfg, hostCfg
}

// tmpfsOptions are the mount options of t. exec: tasks run programs from
// their task directory (runtime binary) and some from /tmp; nosuid and
// nodev keep the mount from granting anything.
func tmpfsOptions(t driver.Tmpfs, uid, gid int) string {
	opts := "rw,exec,nosuid,nodev"
	if t.SizeBytes > 0 {
		opts += fmt.Sprintf(",size=%d", t.SizeBytes)
	}
	if t.Owned {
		return opts + fmt.Sprintf(",mode=0755,uid=%d,gid=%d", uid, gid)
	}
	return opts + ",mode=1777"
}

// stopTimeout is grace in whole seconds, rounded up: the engine takes
// nothing finer, and rounding down could cut a task's grace short.
func stopTimeout(grace time.Duration) int {
	if grace <= 0 {
		return 0
	}
	s := math.Ceil(grace.Seconds())
	if s > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(s)
}

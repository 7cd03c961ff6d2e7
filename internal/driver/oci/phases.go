package oci

import "time"

// Phases are where one container's time went inside the driver. A driver
// with Options.Trace reports them once per container, when it is
// destroyed; the benchmark's breakdown of the oci path is made of them.
type Phases struct {
	// Resolve finds the image's layers (a cache hit costs no I/O).
	Resolve time.Duration
	// Prepare makes the bundle directory and its labels, mounts the
	// overlay and writes the task's files into it.
	Prepare time.Duration
	// Spec generates the runtime config and writes config.json.
	Spec time.Duration
	// Runtime is the runtime's `run --detach`: namespaces, cgroup,
	// mounts, seccomp, up to the exec of the task's command.
	Runtime time.Duration
	// Run is from the runtime's return until the init's exit was reaped.
	Run time.Duration
	// Drain is from the init's exit until the end of its output.
	Drain time.Duration
	// Delete is Destroy: the runtime's delete, the unmount and the
	// bundle's removal (after the end was reported, off a task's path).
	Delete time.Duration
}

// tracer holds the marks of one container.
type tracer struct {
	t0, resolved, prepared, specced, started, exited, drained time.Time
}

func (t *tracer) phases(destroyed time.Duration) Phases {
	sp := func(a, b time.Time) time.Duration {
		if a.IsZero() || b.IsZero() || b.Before(a) {
			return 0
		}
		return b.Sub(a)
	}
	return Phases{Resolve: sp(t.t0, t.resolved), Prepare: sp(t.resolved, t.prepared), Spec: sp(t.prepared, t.specced),
		Runtime: sp(t.specced, t.started), Run: sp(t.started, t.exited), Drain: sp(t.exited, t.drained), Delete: destroyed}
}

// Package driver is the contract between the runner and whatever starts
// containers (docker now, oci later). A driver starts one fresh container per
// task from a spec, streams its output, waits for it, stops it and destroys
// it; everything about queues and leases stays in the runner.
package driver

import (
	"context"
	"io"
	"time"
)

// Labels put on every container a driver creates, so a restarted runner can
// find and remove the ones nobody tracks any more.
const (
	LabelManaged = "io.mayfly.managed" // "true"
	LabelRunner  = "io.mayfly.runner"  // runner id
	LabelTask    = "io.mayfly.task"    // task id
)

// File is a file placed in the container before it starts.
type File struct {
	Path string // absolute path in the container
	Mode int64  // permission bits; 0 = 0644, or 0755 for a directory
	Data []byte
	Dir  bool // a directory; so is a Path with a trailing slash
}

// Mount is a bind mount of a host directory.
type Mount struct {
	Source   string // host path
	Target   string // path in the container
	ReadOnly bool
}

// Tmpfs is a size-capped in-memory file system mounted over the image's
// content at Path: with a read-only root, the only places a task can
// write. Its pages count against the container's memory limit.
type Tmpfs struct {
	Path      string
	SizeBytes int64 // the cap; writes past it fail with ENOSPC
	// Owned hands the file system's root to Spec.User (numeric) with mode
	// 0755; otherwise it is root's with mode 1777, as /tmp is.
	Owned bool
}

// Spec says what one task's container is.
type Spec struct {
	TaskID   string
	RunnerID string
	Image    string
	// Cmd overrides the image's command; Entrypoint, when non-nil, its
	// entrypoint (empty slice = none).
	Entrypoint []string
	Cmd        []string
	Env        []string // KEY=VALUE
	WorkDir    string
	User       string // "uid:gid"; empty = the image's user
	// Archive, when set, is a tar stream unpacked at / before start (the
	// code package and task files). Owners and modes in its headers are
	// kept, so a directory entry owned by User hands that directory to the
	// task.
	Archive io.Reader
	// Files are written at / before start, after Archive, owned by User
	// when it is numeric ("uid:gid"), else by root.
	Files []File

	// Mounts are host directories bind-mounted into the container (the
	// runner's per-task API socket).
	Mounts []Mount

	Network     bool  // false = no network at all
	MemoryBytes int64 // 0 = unlimited
	PidsLimit   int64 // 0 = unlimited
	NanoCPUs    int64 // 0 = unlimited
	NoFile      int64 // open files per process, soft and hard; 0 = the engine's
	// ReadOnlyRoot makes the image's file system read-only: the task can
	// write only to Tmpfs (and writable Mounts), so it cannot fill the
	// host's disk. A driver that cannot place Archive and Files in a
	// read-only root (Docker cannot) refuses such a spec at Start.
	ReadOnlyRoot bool
	Tmpfs        []Tmpfs
	Labels       map[string]string

	// Output receives stdout and stderr interleaved in the order written,
	// as far as two pipes can tell: writes to the two streams within a few
	// milliseconds of each other may swap. Stderr additionally receives
	// stderr alone. Either may be nil. A writer that fails gets no more
	// output; the task goes on.
	Output io.Writer
	Stderr io.Writer
}

// BakeSpec says how to make an image of a base image plus files: the
// per-revision images that let a task start without copying its code.
type BakeSpec struct {
	Ref     string // the image to make
	Base    string
	Archive io.Reader // tar unpacked at /, owners kept
	WorkDir string
	// EntrypointPrefix, when set, goes before the base's entrypoint: a
	// step the image runs before its own command (filling the task
	// directory from the baked code).
	EntrypointPrefix []string
	Labels           map[string]string
}

// Baker is what a driver that can bake images offers besides Driver. The
// runner uses it when the driver has it and copies files into every
// container when not.
type Baker interface {
	// ImageID returns the id of an image, "" when it is not there.
	ImageID(ctx context.Context, ref string) (string, error)
	Bake(ctx context.Context, spec BakeSpec) error
	// RemoveImages removes the images carrying every label in labels
	// except keep, skipping those in use, and returns how many it removed.
	RemoveImages(ctx context.Context, labels map[string]string, keep string) (int, error)
}

// ImagePruner is a Baker that can list its images and remove them one at
// a time, so a runner can drop code images it has not used for a while.
type ImagePruner interface {
	// ListImages returns the references of the images carrying every
	// label in labels.
	ListImages(ctx context.Context, labels map[string]string) ([]string, error)
	// RemoveImage removes one image unless a container uses it, and
	// reports whether it went.
	RemoveImage(ctx context.Context, ref string) (bool, error)
}

// Pinger is a driver that can tell whether its engine answers, so the
// runner can tell a task that failed from an engine that is away.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Result is how a container ended.
type Result struct {
	ExitCode  int
	OOMKilled bool
	Err       string // the engine's own error, if any
}

// Handle is one started container.
type Handle interface {
	ID() string
	// Wait blocks until the container exits and its output has been
	// delivered, or ctx ends.
	Wait(ctx context.Context) (Result, error)
	// Stop sends SIGTERM, then SIGKILL after grace.
	Stop(ctx context.Context, grace time.Duration) error
	// Destroy removes the container and everything it wrote. Safe to call
	// more than once.
	Destroy(ctx context.Context) error
}

// Driver starts containers.
type Driver interface {
	// Start creates, prepares and starts a container. On error nothing is
	// left behind.
	Start(ctx context.Context, spec Spec) (Handle, error)
	// ImageExists reports whether the image is available locally.
	ImageExists(ctx context.Context, image string) (bool, error)
	// RemoveOrphans removes every container labelled as Mayfly's with the
	// given runner id unless keep (nil = keep none) says to keep it, and
	// returns how many it removed. keep is asked while the driver walks
	// its containers, with the container id (as Handle.ID gives it) and
	// the container's task id: a container still being started is known
	// to the runner only by its task. runnerID must not be empty: one
	// runner never sweeps another's containers.
	RemoveOrphans(ctx context.Context, runnerID string, keep func(containerID, taskID string) bool) (int, error)
	// ListManaged returns the ids of containers labelled with runnerID
	// ("" = any runner).
	ListManaged(ctx context.Context, runnerID string) ([]string, error)
	Close() error
}

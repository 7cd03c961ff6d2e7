// Package oci is the driver that starts each task's container directly with
// an OCI runtime (runc), without a container engine on the path of a task.
//
// Root file systems are directories the driver keeps itself (layer.go): a
// stack's is exported from the Docker engine once per image id, and a code
// revision's package is unpacked into a layer of its own when baked. Both are
// read-only lower layers of a per-task overlayfs mount. A task goes through
//
//	bundle dir -> overlay mount -> files in -> config.json -> runc run -d
//	  -> wait for the init (we are its subreaper) -> output drained
//	  -> OOM count read from the cgroup -> runc delete -> unmount -> rm
//
// The bundle directory (bundles/<container id>) is the record of a
// container: it is made before anything else and removed last, and it holds
// the labels, so a runner that died leaves bundles that RemoveOrphans finds.
package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"

	"github.com/mayfly-run/mayfly/internal/driver"
)

// Options configure a Driver.
type Options struct {
	// Dir holds layers, bundles and the runtime's state. It must be on a
	// file system overlayfs can use as upper layer (not overlayfs, not
	// tmpfs on old kernels).
	Dir string
	// Runtime is the OCI runtime binary; "" = crun when it is on PATH and
	// starts a container on this host's cgroup set-up, else runc.
	Runtime string
	Log     *slog.Logger
	// Trace, when set, receives the phases of each task's container once
	// it has been destroyed (for benchmarks).
	Trace func(taskID string, p Phases)
}

// Driver starts task containers with an OCI runtime. It is safe for
// concurrent use.
type Driver struct {
	dir     string
	runtime string
	log     *slog.Logger
	cli     *client.Client // the engine the stacks' root file systems come from
	cgroup2 bool
	trace   func(string, Phases)

	bg sync.WaitGroup // layer collections after a rebuild

	seccompOnce sync.Once
	seccomp     *specs.LinuxSeccomp
	seccompErr  error

	exports singleflight.Group
	ids     sync.Map // image ref -> cachedID
}

var (
	_ driver.Driver      = (*Driver)(nil)
	_ driver.Baker       = (*Driver)(nil)
	_ driver.ImagePruner = (*Driver)(nil)
)

// New checks the runtime, root, overlayfs and cgroups, connects to the
// engine the stacks come from and makes the process the subreaper of the
// containers it starts: a detached container's init outlives the runtime
// process that made it, and only its parent can learn its exit status.
func New(ctx context.Context, opts Options) (*Driver, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Dir == "" {
		return nil, errors.New("oci driver: no directory for layers and bundles")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("oci driver: needs root (mounts overlayfs and creates cgroups)")
	}
	if !hasFilesystem("overlay") {
		return nil, errors.New("oci driver: the kernel has no overlayfs (modprobe overlay)")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("oci driver: directory: %w", err)
	}
	for _, sub := range []string{"layers/base", "layers/code", "bundles", "state", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("oci driver: %w", err)
		}
	}
	path, err := chooseRuntime(ctx, opts.Runtime, dir, opts.Log)
	if err != nil {
		return nil, fmt.Errorf("oci driver: %w", err)
	}
	ver, err := runtimeVersion(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("oci driver: %w", err)
	}
	if old, why := tooOld(ver); old {
		opts.Log.Warn("OCI runtime is older than the release that fixed a known container escape; make sure the distribution backported the fix",
			"runtime", path, "version", ver, "fixed_in", why)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("oci driver: become subreaper: %w", err)
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("oci driver: create engine client: %w", err)
	}
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("oci driver: engine at %s (where the stacks are) does not answer: %w", cli.DaemonHost(), err)
	}
	var st unix.Statfs_t
	cg2 := unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
	opts.Log.Debug("oci driver ready", "runtime", path, "version", ver, "dir", dir, "cgroup2", cg2)
	d := &Driver{dir: dir, runtime: path, log: opts.Log, cli: cli, cgroup2: cg2, trace: opts.Trace}
	d.sweep(ctx)
	return d, nil
}

// Close waits for a layer collection under way and releases the engine
// client. Containers keep running.
func (d *Driver) Close() error {
	d.bg.Wait()
	return d.cli.Close()
}

// Ping reports whether the engine the stacks come from answers; tasks of
// layers already there start without it, but no new stack can.
func (d *Driver) Ping(ctx context.Context) error {
	if _, err := d.cli.Ping(ctx); err != nil {
		return fmt.Errorf("docker engine at %s does not answer: %w", d.cli.DaemonHost(), err)
	}
	return nil
}

var _ driver.Pinger = (*Driver)(nil)

func hasFilesystem(name string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == name {
			return true
		}
	}
	return false
}

var versionRE = regexp.MustCompile(`(?m)^\S+ version (\d+)\.(\d+)\.(\d+)`)

func runtimeVersion(ctx context.Context, path string) (string, error) {
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", path, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}

// fixedIn lists, per runtime, known container escapes and the first
// fixed release of each minor line that got the fix. A version is exposed
// when the first fix at or after its minor line is newer than it (a line
// that never got the fix, as runc 1.1 for the 2025 escapes, is exposed).
var fixedIn = map[string][]struct {
	cve   string
	fixes [][3]int // ascending
}{
	"runc": {
		{"CVE-2024-21626", [][3]int{{1, 1, 12}}},
		{"CVE-2025-31133, CVE-2025-52565, CVE-2025-52881", [][3]int{{1, 2, 8}, {1, 3, 3}, {1, 4, 0}}},
	},
	"crun": {
		{"CVE-2022-27650", [][3]int{{1, 4, 4}}},
	},
}

// tooOld tells whether a runc or crun version (a `--version` line)
// predates the releases that fixed known container escapes, and which.
// Distributions backport such fixes without changing the upstream
// version, so this is a warning, not a refusal.
func tooOld(ver string) (bool, string) {
	m := versionRE.FindStringSubmatch(ver)
	if m == nil {
		return false, ""
	}
	name, _, _ := strings.Cut(ver, " ")
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	v := [3]int{n(m[1]), n(m[2]), n(m[3])}
	var why []string
	for _, c := range fixedIn[name] {
		for _, f := range c.fixes {
			if f[0] < v[0] || (f[0] == v[0] && f[1] < v[1]) {
				continue // an older line's fix
			}
			if slices.Compare(v[:], f[:]) < 0 {
				why = append(why, fmt.Sprintf("%d.%d.%d (%s)", f[0], f[1], f[2], c.cve))
			}
			break
		}
	}
	return len(why) > 0, strings.Join(why, ", ")
}

// labelsFile holds a container's labels in its bundle.
const labelsFile = "labels.json"

type bundleInfo struct {
	ID     string
	Labels map[string]string
}

// bundles lists the containers whose bundle exists, with their labels.
func (d *Driver) bundles() ([]bundleInfo, error) {
	ents, err := os.ReadDir(filepath.Join(d.dir, "bundles"))
	if err != nil {
		return nil, fmt.Errorf("list bundles: %w", err)
	}
	var out []bundleInfo
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		b := bundleInfo{ID: e.Name()}
		data, err := os.ReadFile(filepath.Join(d.dir, "bundles", e.Name(), labelsFile))
		if err != nil || json.Unmarshal(data, &b.Labels) != nil {
			// Made and not yet labelled, or half removed: nobody's
			// container; the runner id is unknown, so only a sweep of
			// any runner could take it. Leave it to Destroy.
			continue
		}
		out = append(out, b)
	}
	return out, nil
}

// ListManaged returns the ids of containers with a bundle and runnerID ("" =
// any runner).
func (d *Driver) ListManaged(ctx context.Context, runnerID string) ([]string, error) {
	list, err := d.bundles()
	if err != nil {
		return nil, err
	}
	ids := []string{}
	for _, b := range list {
		if b.Labels[driver.LabelManaged] == "true" && (runnerID == "" || b.Labels[driver.LabelRunner] == runnerID) {
			ids = append(ids, b.ID)
		}
	}
	return ids, nil
}

// RemoveOrphans kills and removes the containers of runnerID that keep does
// not keep: their runtime state, cgroup, mounts and bundle.
func (d *Driver) RemoveOrphans(ctx context.Context, runnerID string, keep func(containerID, taskID string) bool) (int, error) {
	if runnerID == "" {
		return 0, errors.New("remove orphans: empty runner id would match every runner's containers")
	}
	list, err := d.bundles()
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, b := range list {
		if b.Labels[driver.LabelRunner] != runnerID || b.Labels[driver.LabelManaged] != "true" {
			continue
		}
		if keep != nil && keep(b.ID, b.Labels[driver.LabelTask]) {
			continue
		}
		gone, err := d.removeContainer(ctx, b.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if gone {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// removeContainer deletes container id with everything it had. It reports
// whether this call removed the bundle; one already gone is no error.
func (d *Driver) removeContainer(ctx context.Context, id string) (bool, error) {
	bdir := filepath.Join(d.dir, "bundles", id)
	if _, err := os.Lstat(bdir); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err := d.runtimeDelete(ctx, id); err != nil {
		return false, err
	}
	if err := unmountBundle(bdir); err != nil {
		return false, fmt.Errorf("remove container %s: %w", id, err)
	}
	// Locked against another driver's sweep, and renamed first so that
	// a listing never sees a half-removed bundle with its labels.
	lock, err := lockDir(bdir, true)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("remove bundle of %s: %w", id, err)
	}
	defer lock.Close()
	trash := filepath.Join(d.dir, "tmp", "rm-"+id+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Rename(bdir, trash); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("remove bundle of %s: %w", id, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return true, fmt.Errorf("remove bundle of %s: %w", id, err)
	}
	return true, nil
}

// runtimeDelete kills the container and deletes its runtime state and
// cgroup; a container the runtime does not know is no error.
func (d *Driver) runtimeDelete(ctx context.Context, id string) error {
	out, err := d.runc(ctx, "delete", "--force", id)
	if err != nil && !strings.Contains(out, "does not exist") {
		return fmt.Errorf("delete container %s: %w: %s", id, err, out)
	}
	return nil
}

// runc runs one runtime command and returns its combined output.
func (d *Driver) runc(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.runtime, append([]string{"--root", filepath.Join(d.dir, "state")}, args...)...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// unmountBundle unmounts the bundle's root file system if it is mounted.
func unmountBundle(bdir string) error {
	err := unix.Unmount(filepath.Join(bdir, "rootfs"), unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", bdir, err)
	}
	return nil
}

// Runtime is the path of the OCI runtime the driver starts containers with.
func (d *Driver) Runtime() string { return d.runtime }

// StateDir is the runtime's state directory (its --root).
func (d *Driver) StateDir() string { return filepath.Join(d.dir, "state") }

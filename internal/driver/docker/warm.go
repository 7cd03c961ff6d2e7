package docker

// Warm containers: containers are created and started ahead of demand, so
// a task that comes pays for neither (together most of a trivial task's
// latency on the engine).
//
// What a create fixes and many tasks share (image, user, working
// directory, network, limits, tmpfs, mount targets) is the container's
// shape; a pool keeps up to Options.WarmContainers idle containers per
// shape for the few shapes used last. A warm container runs the launcher
// (a static binary bind-mounted from the host, so images need no shell),
// which waits on a FIFO; the per-task parts come in when a task takes it:
//
//   - the task's files: each mount's source is a directory of the
//     container's own, which gets hard links to the entries of the task's
//     directory (a unix socket works through a link; files on another
//     file system are copied);
//   - output and exit: attached and registered when the container was
//     made, before its start, so nothing the task writes is missed;
//   - command line and environment: written down the FIFO; the launcher
//     merges the environment over the container's and execs the program,
//     which becomes the container's process 1.
//
// A task whose shape has no idle container is created as without the pool
// (and its shape warmed for the next); so is one the warm path fails for
// before anything ran.

import (
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/launch"
)

// LabelWarm marks a container created ahead of its task, with the id of the
// pool that made it. It carries no task label: a warm container's task is
// known to the driver that took it.
const LabelWarm = "io.mayfly.warm"

const (
	// launcherTarget and launchFileTarget are where a warm container sees
	// the launcher and its launch file (both read-only).
	launcherTarget   = "/.mayfly-launch"
	launchFileTarget = "/.mayfly-task"
	// maxWarmShapes bounds the shapes kept warm; the one used least
	// recently goes first.
	maxWarmShapes = 4
	// maxSeen bounds the shapes remembered as seen once.
	maxSeen = 64
	// warmCreates bounds the creates of warm containers at once, so
	// refilling never crowds out the tasks' own engine calls.
	warmCreates = 2
	// warmRetry is how long a shape whose warm create failed is not
	// tried again (an image that went, a launcher that cannot run).
	warmRetry = 30 * time.Second
	// imageTTL is how long an image's id and command are taken as known: a
	// tag moved to another image is noticed within it, and warm
	// containers of the old one are then dropped.
	imageTTL = 10 * time.Second
	// DefaultWarmIdle is how long a warm container may wait for a task.
	DefaultWarmIdle = 5 * time.Minute
)

// Options configure a Driver.
type Options struct {
	// WarmContainers is how many containers of each shape are kept
	// created ahead of demand; 0 creates every container when its task
	// comes.
	WarmContainers int
	// Launcher is the host path of the static launcher binary
	// (mayfly-launch); required with WarmContainers.
	Launcher string
	// WarmDir is where the warm containers' own host directories are
	// made (a new directory under it, removed at Close); it must be on
	// the engine's host, and on the file system of the tasks' mount
	// sources, whose entries are linked into them (else files are copied
	// and a unix socket cannot be: such a task is started cold). Empty =
	// the system's temporary directory.
	WarmDir string
	// WarmIdle is how long an idle warm container is kept; 0 =
	// DefaultWarmIdle.
	WarmIdle time.Duration
	Log      *slog.Logger
}

// WarmStats counts how tasks' containers were had.
type WarmStats struct {
	Hits   int64 // started in a warm container
	Misses int64 // created when the task came
	Idle   int   // warm containers waiting now
	// Pending are warm containers being created now.
	Pending int
}

// CheckLauncher reports whether path is a launcher a warm container can
// run: an executable, statically linked ELF file.
func CheckLauncher(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("launcher %s: path is not absolute", path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	if !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("launcher %s is not an executable file", path)
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("launcher %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("launcher %s is dynamically linked; build it with CGO_ENABLED=0 (make build does)", path)
		}
	}
	return nil
}

// FindLauncher returns the launcher installed beside the running program
// (bin/mayfly-launch next to bin/mayfly, as make build puts it).
func FindLauncher() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the launcher: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", fmt.Errorf("find the launcher: %w", err)
	}
	p := filepath.Join(filepath.Dir(exe), "mayfly-launch")
	if err := CheckLauncher(p); err != nil {
		return "", fmt.Errorf("warm containers need the static launcher beside %s (make build makes it, or pass its path): %w", exe, err)
	}
	return p, nil
}

// warmPool is the driver's stock of warm containers.
type warmPool struct {
	// instance is this pool's LabelWarm value: a container of this pool
	// is known by it even while its create is under way.
	instance  string
	d         *Driver
	n         int
	launcher  string
	dir       string
	ownParent bool // dir's parent is Options.WarmDir, not a shared one
	idleMax   time.Duration
	log       *slog.Logger

	mu     sync.Mutex
	shapes map[string]*warmShape
	// owned are the warm containers made and not yet removed, idle or
	// running a task: never an orphan while this driver lives.
	owned  map[string]*warmCtr
	images map[string]imageInfo
	seen   map[string]time.Time // shapes seen once, not (yet) kept warm
	closed bool

	wg   sync.WaitGroup
	sem  chan struct{}
	done chan struct{}

	hits, misses atomic.Int64
}

type warmShape struct {
	key     string
	tmpl    driver.Spec // the per-task parts cleared
	idle    []*warmCtr
	pending int
	used    time.Time
	failed  time.Time
}

type warmCtr struct {
	id      string
	dir     string // its host directory: launch FIFO and mount directories
	imageID string
	made    time.Time
	taskID  string // set once taken
	// h was attached to the output and waiting for the exit before the
	// container started: a task's start makes no engine call.
	h *handle
}

type imageInfo struct {
	id         string
	entrypoint []string
	cmd        []string
	at         time.Time
}

func newWarmPool(d *Driver, opts Options) (*warmPool, error) {
	if err := CheckLauncher(opts.Launcher); err != nil {
		return nil, err
	}
	parent := opts.WarmDir
	if parent == "" {
		parent = os.TempDir()
	} else {
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return nil, fmt.Errorf("warm containers: %w", err)
		}
		// A directory of its own, so warm directories an earlier,
		// killed driver left here are ours to remove.
		if old, _ := filepath.Glob(filepath.Join(parent, "warm-*")); len(old) > 0 {
			for _, o := range old {
				os.RemoveAll(o)
			}
		}
	}
	dir, err := os.MkdirTemp(parent, "warm-")
	if err != nil {
		return nil, fmt.Errorf("warm containers: %w", err)
	}
	// The engine (root) must reach the containers' directories; their
	// names, which are random, are nobody's business.
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("warm containers: %w", err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	p := &warmPool{instance: hex.EncodeToString(b[:]), d: d, n: opts.WarmContainers, launcher: opts.Launcher, dir: dir,
		idleMax: opts.WarmIdle, log: opts.Log, ownParent: opts.WarmDir != "",
		shapes: map[string]*warmShape{}, owned: map[string]*warmCtr{}, images: map[string]imageInfo{}, seen: map[string]time.Time{},
		sem: make(chan struct{}, warmCreates), done: make(chan struct{})}
	if p.idleMax <= 0 {
		p.idleMax = DefaultWarmIdle
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.wg.Add(1)
	go p.expireLoop()
	return p, nil
}

// shapeKey is the key of spec's shape, or "" when spec cannot run warm.
func shapeKey(spec driver.Spec) string {
	for _, m := range spec.Mounts {
		if !filepath.IsAbs(m.Source) {
			return "" // the engine's error, please
		}
	}
	type mnt struct {
		Target   string
		ReadOnly bool
	}
	k := struct {
		Image, RunnerID, User, WorkDir string
		Network, ReadOnlyRoot          bool
		Memory, Pids, CPUs, NoFile     int64
		Tmpfs                          []driver.Tmpfs
		Mounts                         []mnt
	}{spec.Image, spec.RunnerID, spec.User, spec.WorkDir,
		spec.Network, spec.ReadOnlyRoot,
		spec.MemoryBytes, spec.PidsLimit, spec.NanoCPUs, spec.NoFile, spec.Tmpfs, nil}
	for _, m := range spec.Mounts {
		k.Mounts = append(k.Mounts, mnt{m.Target, m.ReadOnly})
	}
	b, _ := json.Marshal(k)
	return string(b)
}

// start runs spec in a warm container of its shape. ok false means it did
// not (none idle, or the warm path failed before anything ran): create one.
func (p *warmPool) start(ctx context.Context, spec driver.Spec) (_ driver.Handle, ok bool, _ error) {
	key := shapeKey(spec)
	if key == "" {
		return nil, false, nil
	}
	w, sh := p.take(key, spec)
	if sh != nil {
		p.fill(sh)
	}
	if w == nil {
		p.misses.Add(1)
		return nil, false, nil
	}
	img, err := p.image(ctx, spec.Image)
	if err != nil || img.id != w.imageID {
		// The image went or its tag moved: this container runs what the
		// task must not.
		p.discard(w)
		p.misses.Add(1)
		return nil, false, nil
	}
	argv := resolveArgv(spec, img)
	if len(argv) == 0 {
		p.discard(w)
		p.misses.Add(1)
		return nil, false, nil // the engine says what is missing
	}
	h, err := p.startIn(ctx, w, spec, argv)
	if err != nil {
		p.discard(w)
		if ctx.Err() != nil {
			return nil, true, err
		}
		p.log.Warn("warm container failed to start; creating one", "task_id", spec.TaskID, "container", shortID(w.id), "err", err)
		p.misses.Add(1)
		return nil, false, nil
	}
	p.hits.Add(1)
	return h, true, nil
}

// take removes an idle container of key's shape from the pool, registering
// the shape the second time it is seen. It returns the shape to refill
// (nil when there is none: the pool is closed, or the shape is new).
func (p *warmPool) take(key string, spec driver.Spec) (*warmCtr, *warmShape) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil
	}
	sh := p.shapes[key]
	if sh == nil {
		// A shape is warmed the second time it is seen within the idle
		// time, not the first: a one-off task (a code run once) would
		// cost a container made for nothing and push a shape in use out.
		if at, ok := p.seen[key]; !ok || time.Since(at) > p.idleMax {
			p.seeLocked(key)
			return nil, nil
		}
		delete(p.seen, key)
		sh = p.registerLocked(key, spec)
	}
	sh.used = time.Now()
	if n := len(sh.idle); n > 0 {
		// The newest: the older ones expire first when tasks thin out.
		w := sh.idle[n-1]
		sh.idle = sh.idle[:n-1]
		w.taskID = spec.TaskID
		return w, sh
	}
	return nil, sh
}

// seeLocked remembers that key was seen, forgetting the oldest of
// maxSeen; p.mu is held.
func (p *warmPool) seeLocked(key string) {
	if len(p.seen) >= maxSeen {
		var oldest string
		var at time.Time
		for k, t := range p.seen {
			if oldest == "" || t.Before(at) {
				oldest, at = k, t
			}
		}
		delete(p.seen, oldest)
	}
	p.seen[key] = time.Now()
}

// registerLocked returns the shape of key, registered anew from spec when
// the pool has none; p.mu is held.
func (p *warmPool) registerLocked(key string, spec driver.Spec) *warmShape {
	sh := p.shapes[key]
	if sh != nil {
		return sh
	}
	sh = &warmShape{key: key, tmpl: shapeTemplate(spec), used: time.Now()}
	p.shapes[key] = sh
	p.evictLocked()
	return sh
}

// evictLocked drops the shapes used least recently beyond maxWarmShapes.
func (p *warmPool) evictLocked() {
	for len(p.shapes) > maxWarmShapes {
		var oldest *warmShape
		for _, sh := range p.shapes {
			if oldest == nil || sh.used.Before(oldest.used) {
				oldest = sh
			}
		}
		delete(p.shapes, oldest.key)
		for _, w := range oldest.idle {
			p.removeLater(w)
		}
		oldest.idle = nil
	}
}

// shapeTemplate is spec without its per-task parts.
func shapeTemplate(spec driver.Spec) driver.Spec {
	t := spec
	t.TaskID, t.Entrypoint, t.Cmd, t.Env, t.Labels = "", nil, nil, nil, nil
	t.Archive, t.Files, t.Output, t.Stderr = nil, nil, nil, nil
	t.Mounts = append([]driver.Mount(nil), spec.Mounts...)
	t.Tmpfs = append([]driver.Tmpfs(nil), spec.Tmpfs...)
	return t
}

// fill creates, in the background, what sh lacks of its warm containers.
func (p *warmPool) fill(sh *warmShape) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.shapes[sh.key] != sh || time.Since(sh.failed) < warmRetry {
		return
	}
	want := p.n - len(sh.idle) - sh.pending
	for range want {
		sh.pending++
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			select {
			case p.sem <- struct{}{}:
			case <-p.done:
				p.mu.Lock()
				sh.pending--
				p.mu.Unlock()
				return
			}
			w, err := p.create(sh)
			<-p.sem
			p.mu.Lock()
			defer p.mu.Unlock()
			sh.pending--
			if err != nil {
				sh.failed = time.Now()
				p.log.Warn("could not create a warm container", "image", sh.tmpl.Image, "err", err)
				return
			}
			if p.closed || p.shapes[sh.key] != sh {
				p.removeLater(w)
				return
			}
			sh.idle = append(sh.idle, w)
		}()
	}
}

// create makes one warm container of sh's shape.
func (p *warmPool) create(sh *warmShape) (_ *warmCtr, err error) {
	ctx, cancel := stoppable(p.done, cleanupTimeout)
	defer cancel()
	img, err := p.image(ctx, sh.tmpl.Image)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(p.dir, "c-")
	if err != nil {
		return nil, fmt.Errorf("make a warm container's directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, fmt.Errorf("open a warm container's directory: %w", err)
	}
	// The launch file is a FIFO: the launcher, started with the
	// container, waits on it until a task's command line comes.
	fifo := filepath.Join(dir, "task")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		return nil, fmt.Errorf("make a warm container's launch FIFO: %w", err)
	}
	if err := handToUser(fifo, sh.tmpl.User); err != nil {
		return nil, err
	}
	// Held open for writing from now on: the launcher's open does not
	// wait for a writer, and what is written is there for it however late
	// it comes to read (it reads exactly the launch file's length).
	fifoFD, err := syscall.Open(fifo, syscall.O_RDWR|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open a warm container's launch FIFO: %w", err)
	}
	launchW := os.NewFile(uintptr(fifoFD), fifo)
	defer func() {
		if err != nil {
			launchW.Close()
		}
	}()
	// The mounts' sources are directories of the container's own, filled
	// with links to the task's files when it comes: a running
	// container's bind mounts cannot be moved.
	spec := sh.tmpl
	spec.Mounts = append([]driver.Mount(nil), sh.tmpl.Mounts...)
	for i := range spec.Mounts {
		src := filepath.Join(dir, "mount-"+strconv.Itoa(i))
		if err := os.Mkdir(src, 0o755); err != nil {
			return nil, fmt.Errorf("make a warm container's mount: %w", err)
		}
		if err := os.Chmod(src, 0o755); err != nil {
			return nil, fmt.Errorf("open a warm container's mount: %w", err)
		}
		spec.Mounts[i].Source = src
	}
	// Created from the image's id, so that what runs is the image checked.
	spec.Image = img.id
	cfg, hostCfg := containerConfig(spec)
	cfg.Entrypoint = []string{launcherTarget, launchFileTarget}
	cfg.Cmd, cfg.Env = nil, nil
	// What is read of the output is the attach's to say, per task.
	cfg.AttachStdout, cfg.AttachStderr = true, true
	delete(cfg.Labels, driver.LabelTask)
	cfg.Labels[LabelWarm] = p.instance
	hostCfg.Mounts = append(hostCfg.Mounts,
		mount.Mount{Type: mount.TypeBind, Source: p.launcher, Target: launcherTarget, ReadOnly: true},
		mount.Mount{Type: mount.TypeBind, Source: filepath.Join(dir, "task"), Target: launchFileTarget, ReadOnly: true})
	var b [6]byte
	_, _ = rand.Read(b[:])
	created, err := p.d.cli.ContainerCreate(ctx, cfg, hostCfg, nil, nil, "mayfly-warm-"+hex.EncodeToString(b[:]))
	if err != nil {
		return nil, fmt.Errorf("create a warm container from %s: %w", sh.tmpl.Image, err)
	}
	w := &warmCtr{id: created.ID, dir: dir, imageID: img.id, made: time.Now()}
	w.h = newHandle(p.d, created.ID)
	w.h.warm, w.h.launch = w, launchW
	if err := w.h.prepareAhead(ctx); err != nil {
		w.h.abandon()
		rctx, rcancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer rcancel()
		if _, rerr := p.d.remove(rctx, created.ID); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return nil, fmt.Errorf("prepare a warm container: %w", err)
	}
	p.mu.Lock()
	p.owned[w.id] = w
	p.mu.Unlock()
	if err := p.d.cli.ContainerStart(ctx, w.id, container.StartOptions{}); err != nil {
		rctx, rcancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer rcancel()
		return nil, errors.Join(fmt.Errorf("start a warm container: %w", err), p.remove(rctx, w))
	}
	w.h.oom = watchOOM(p.d, w.id)
	return w, nil
}

// handToUser makes path the task user's alone when the driver can (it runs
// as root and the user is numeric), else readable by all: the launcher
// runs as the task user.
func handToUser(path, user string) error {
	uid, gid := numericUser(user)
	if os.Geteuid() == 0 && user != "" && (uid != 0 || strings.HasPrefix(user, "0")) {
		if err := os.Chown(path, uid, gid); err != nil {
			return fmt.Errorf("hand %s to the task user: %w", path, err)
		}
		return os.Chmod(path, 0o600)
	}
	return os.Chmod(path, 0o644)
}

// image returns what the engine says of ref, asking at most once per
// imageTTL.
func (p *warmPool) image(ctx context.Context, ref string) (imageInfo, error) {
	p.mu.Lock()
	info, ok := p.images[ref]
	p.mu.Unlock()
	if ok && time.Since(info.at) < imageTTL {
		return info, nil
	}
	img, err := p.d.cli.ImageInspect(ctx, ref)
	if err != nil {
		return imageInfo{}, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	info = imageInfo{id: img.ID, at: time.Now()}
	if img.Config != nil {
		info.entrypoint, info.cmd = img.Config.Entrypoint, img.Config.Cmd
	}
	p.mu.Lock()
	p.images[ref] = info
	p.mu.Unlock()
	return info, nil
}

// resolveArgv is the command line the engine would run for spec: an
// entrypoint that is nil takes the image's, an empty one clears it, and
// the image's command applies only when neither spec's entrypoint nor its
// command says otherwise.
func resolveArgv(spec driver.Spec, img imageInfo) []string {
	ep, cmd := spec.Entrypoint, spec.Cmd
	if len(ep) == 0 {
		if len(cmd) == 0 {
			cmd = img.cmd
		}
		if ep == nil {
			ep = img.entrypoint
		}
	}
	return append(append([]string(nil), ep...), cmd...)
}

// startIn hands the task's files, command line and environment to w,
// whose launcher waits for them.
func (p *warmPool) startIn(ctx context.Context, w *warmCtr, spec driver.Spec, argv []string) (_ driver.Handle, err error) {
	for i, m := range spec.Mounts {
		if err := linkTree(m.Source, filepath.Join(w.dir, "mount-"+strconv.Itoa(i))); err != nil {
			return nil, fmt.Errorf("give warm container %s the files of %s: %w", shortID(w.id), m.Source, err)
		}
	}
	h := w.h
	defer func() {
		if err != nil {
			h.abandon()
		}
	}()
	if err := p.d.copyIn(ctx, w.id, spec); err != nil {
		return nil, fmt.Errorf("prepare warm container %s of task %s: %w", shortID(w.id), spec.TaskID, err)
	}
	if err := h.deliver(spec.Output, spec.Stderr); err != nil {
		return nil, fmt.Errorf("warm container %s of task %s: %w", shortID(w.id), spec.TaskID, err)
	}
	if err := sendLaunch(ctx, h.launch, launch.Encode(argv, spec.Env)); err != nil {
		return nil, fmt.Errorf("start the task %s in warm container %s: %w", spec.TaskID, shortID(w.id), err)
	}
	go h.collect()
	return h, nil
}

// sendLaunch writes the launch file down the FIFO the launcher waits on.
func sendLaunch(ctx context.Context, f *os.File, data []byte) error {
	// Through the runtime's poller: a launcher that stops reading a launch
	// file longer than the pipe holds cannot hold the task's start past
	// ctx.
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(cleanupTimeout)
	}
	if err := f.SetWriteDeadline(dl); err != nil {
		return fmt.Errorf("write the launch FIFO: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write the launch FIFO: %w", err)
	}
	return nil
}

// linkTree gives dst (an empty directory) the entries of src, as hard
// links where both are on one file system (a unix socket works through a
// link, and nothing is copied), else as copies of regular files.
func linkTree(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		from, to := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		if e.IsDir() {
			st, err := os.Stat(from)
			if err != nil {
				return err
			}
			if err := os.Mkdir(to, st.Mode().Perm()); err != nil {
				return err
			}
			if err := linkTree(from, to); err != nil {
				return err
			}
			continue
		}
		err := os.Link(from, to)
		if err == nil {
			continue
		}
		if !errors.Is(err, syscall.EXDEV) || !e.Type().IsRegular() {
			return err
		}
		if err := copyFile(from, to); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// discard removes a warm container that will not run, in the background.
func (p *warmPool) discard(w *warmCtr) {
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.removeLater(w)
	}
	p.mu.Unlock()
	if closed {
		// Close may be waiting for the pool's goroutines: none is added.
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := p.remove(ctx, w); err != nil {
			p.log.Warn("could not remove a warm container", "container", shortID(w.id), "err", err)
		}
	}
}

// removeLater removes w in the background; p.mu is held.
func (p *warmPool) removeLater(w *warmCtr) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := p.remove(ctx, w); err != nil {
			p.log.Warn("could not remove a warm container", "container", shortID(w.id), "err", err)
		}
	}()
}

// remove removes w's container, which runs no task, and then its
// directory.
func (p *warmPool) remove(ctx context.Context, w *warmCtr) error {
	w.h.abandon()
	if _, err := p.d.remove(ctx, w.id); err != nil {
		return err
	}
	p.forget(w)
	return nil
}

// forget drops w, whose container is gone, and its directory.
func (p *warmPool) forget(w *warmCtr) {
	p.mu.Lock()
	delete(p.owned, w.id)
	p.mu.Unlock()
	os.RemoveAll(w.dir)
}

// lookup reports whether the container id, labelled labels, is one of
// this pool's, and which task it runs ("" = none: it waits, or is being
// made).
func (p *warmPool) lookup(id string, labels map[string]string) (ok bool, taskID string) {
	if labels[LabelWarm] != p.instance {
		return false, ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if w, ok := p.owned[id]; ok {
		taskID = w.taskID
	}
	return true, taskID
}

// prewarm creates the warm containers of spec's shape that it lacks, and
// returns once they are there.
func (p *warmPool) prewarm(ctx context.Context, spec driver.Spec) error {
	key := shapeKey(spec)
	if key == "" {
		return errors.New("prewarm: mount sources must be absolute paths")
	}
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return errors.New("prewarm: driver closed")
		}
		sh := p.registerLocked(key, spec)
		sh.used = time.Now()
		if len(sh.idle) >= p.n {
			p.mu.Unlock()
			return nil
		}
		if len(sh.idle)+sh.pending >= p.n {
			// Made in the background: wait for them.
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		sh.pending++
		p.mu.Unlock()
		w, err := p.create(sh)
		p.mu.Lock()
		sh.pending--
		if err == nil && !p.closed && p.shapes[key] == sh {
			sh.idle = append(sh.idle, w)
			w = nil
		}
		if w != nil {
			p.removeLater(w)
		}
		p.mu.Unlock()
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// expireLoop removes warm containers that waited longer than idleMax, and
// forgets the shapes nobody used that long.
func (p *warmPool) expireLoop() {
	defer p.wg.Done()
	t := time.NewTicker(min(p.idleMax/4+time.Second, 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		p.mu.Lock()
		for key, sh := range p.shapes {
			kept := sh.idle[:0]
			for _, w := range sh.idle {
				if time.Since(w.made) > p.idleMax {
					p.removeLater(w)
				} else {
					kept = append(kept, w)
				}
			}
			sh.idle = kept
			if time.Since(sh.used) > p.idleMax && len(sh.idle) == 0 && sh.pending == 0 {
				delete(p.shapes, key)
			}
		}
		p.mu.Unlock()
	}
}

func (p *warmPool) stats() WarmStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := WarmStats{Hits: p.hits.Load(), Misses: p.misses.Load()}
	for _, sh := range p.shapes {
		s.Idle += len(sh.idle)
		s.Pending += sh.pending
	}
	return s
}

// close removes every idle warm container and waits for creates under
// way. Containers running tasks are their handles' to destroy.
func (p *warmPool) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	var idle []*warmCtr
	for _, sh := range p.shapes {
		idle = append(idle, sh.idle...)
		sh.idle = nil
	}
	p.shapes = map[string]*warmShape{}
	p.mu.Unlock()
	// Removals started by the pool finish first (they hold p.wg), and
	// creates under way remove what they made.
	p.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	for _, w := range idle {
		if err := p.remove(ctx, w); err != nil {
			errs = append(errs, err)
		}
	}
	p.mu.Lock()
	running := len(p.owned)
	p.mu.Unlock()
	if running == 0 {
		os.RemoveAll(p.dir)
		if p.ownParent {
			os.Remove(filepath.Dir(p.dir)) // when empty
		}
	}
	return errors.Join(errs...)
}

package docker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mayfly-run/mayfly/internal/driver"
)

// The engine learns of an out-of-memory kill from an event its shim sends,
// and under load that event goes missing: a child killed at the limit while
// process 1 goes on, the container ending 0 or 137 with no flag (seen on
// this project's CI once in a few hundred containers, and on warm
// containers more often). The driver therefore watches the container's
// memory cgroup itself, as the shim does, and a task ran out of memory if
// either saw it.
//
// cgroup v1 only: a memory.oom_control eventfd is signalled at each OOM of
// the cgroup and once more when the cgroup is removed. A signal while the
// control file still reads is an OOM; one after the cgroup is gone is its
// removal, unless two or more were counted by then (an OOM whose reader
// came late, then the removal). On cgroup v2, or where the runner cannot
// see or write the container's cgroup (not root, another pid namespace),
// the engine's flag is all there is.

// oomSettle bounds how long the end of a task waits for the watcher to see
// the cgroup's removal. The kernel signals it before the engine reports
// the exit (10-20 ms before, measured), so this only matters when the
// signal is late.
const oomSettle = 200 * time.Millisecond

// oomWatch follows one container's memory cgroup for OOMs.
type oomWatch struct {
	seen atomic.Bool
	done chan struct{} // closed when the watch ended
	stop chan struct{} // closed by release
	once sync.Once     // of release
	// fd is the eventfd's file once registered; release times out its
	// read, which would otherwise wait for the cgroup's removal.
	fd atomic.Pointer[os.File]
}

// watchOOM starts watching container id, just started, in the background.
// It returns at once.
func watchOOM(d *Driver, id string) *oomWatch {
	if !canWatchOOM() {
		return nil
	}
	w := &oomWatch{done: make(chan struct{}), stop: make(chan struct{})}
	go w.run(d, id)
	return w
}

// canWatchOOM: the watch needs cgroup v1's memory controller and root
// (cgroup.event_control is root's); without them it would only cost an
// inspect per task.
var canWatchOOM = sync.OnceValue(func() bool {
	if os.Geteuid() != 0 {
		return false
	}
	_, err := os.Stat("/sys/fs/cgroup/memory")
	return err == nil
})

func (w *oomWatch) run(d *Driver, id string) {
	defer close(w.done)
	// Where the engine's containers' cgroups are is guessed (the default
	// places) or learnt from the first one found through its process:
	// asking the engine for the process of each takes long enough that a
	// short task has ended, and its cgroup is gone, before the answer.
	dir := d.cgroups.guess(id)
	if dir == "" {
		pid, err := w.pid(d, id)
		if err != nil {
			return // gone already: the engine's flag must tell
		}
		if dir, err = memoryCgroupV1(pid, id); err != nil {
			return
		}
		d.cgroups.learn(dir, id)
	}
	_ = w.follow(dir) // one it cannot follow leaves the engine's flag
}

// pid asks the engine for container id's process.
func (w *oomWatch) pid(d *Driver, id string) (int, error) {
	ctx, cancel := stoppable(w.stop, inspectTimeout)
	defer cancel()
	info, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return 0, err
	}
	if info.State == nil || info.State.Pid == 0 {
		return 0, errors.New("not running")
	}
	return info.State.Pid, nil
}

// cgroupLayout is where the engine puts its containers' memory cgroups:
// a directory with the container's id in it, the same for every
// container of one engine.
type cgroupLayout struct {
	mu            sync.Mutex
	before, after string // the directory is before + id + after
}

// defaultLayouts are where an engine with its default cgroup parent puts
// its containers' memory cgroups, with the cgroupfs and with the systemd
// cgroup driver.
var defaultLayouts = [][2]string{
	{"/sys/fs/cgroup/memory/docker/", ""},
	{"/sys/fs/cgroup/memory/system.slice/docker-", ".scope"},
}

// guess is container id's memory cgroup directory where the learnt layout
// or a default one has it, else "".
func (l *cgroupLayout) guess(id string) string {
	l.mu.Lock()
	before, after := l.before, l.after
	l.mu.Unlock()
	layouts := defaultLayouts
	if before != "" {
		layouts = [][2]string{{before, after}}
	}
	for _, lay := range layouts {
		dir := lay[0] + id + lay[1]
		if _, err := os.Stat(dir + "/memory.oom_control"); err == nil {
			return dir
		}
	}
	return ""
}

func (l *cgroupLayout) learn(dir, id string) {
	before, after, ok := strings.Cut(dir, id)
	if !ok || strings.Contains(after, id) {
		return
	}
	l.mu.Lock()
	l.before, l.after = before, after
	l.mu.Unlock()
}

// follow registers an eventfd for the OOMs of cgroup dir and reads it until
// the cgroup is removed or the watch released.
func (w *oomWatch) follow(dir string) error {
	ctl, err := os.Open(dir + "/memory.oom_control")
	if err != nil {
		return err
	}
	defer ctl.Close()
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	// Nonblocking, so reads go through the runtime's poller (no thread
	// held per container) and a read deadline ends them.
	ev := os.NewFile(uintptr(efd), "oom-eventfd")
	defer ev.Close()
	reg := fmt.Sprintf("%d %d", efd, ctl.Fd())
	if err := os.WriteFile(dir+"/cgroup.event_control", []byte(reg), 0); err != nil {
		return fmt.Errorf("register for the OOMs of %s: %w", dir, err)
	}
	w.fd.Store(ev)
	select {
	case <-w.stop:
		return nil // released while registering
	default:
	}
	// An OOM before the registration is in the control file's counters.
	if data, err := readAt(ctl); err == nil && oomInControl(data) {
		w.seen.Store(true)
	}
	var total uint64
	buf := make([]byte, 8)
	for {
		n, err := ev.Read(buf)
		if err != nil || n != 8 {
			return nil // released
		}
		total += binary.LittleEndian.Uint64(buf)
		if _, err := readAt(ctl); err == nil {
			w.seen.Store(true) // signalled while the cgroup is there: an OOM
			continue
		}
		if total >= 2 {
			w.seen.Store(true) // an OOM read late, then the removal
		}
		return nil
	}
}

// killed reports whether the watch saw an OOM, after waiting up to
// oomSettle for it to see the cgroup's removal. The container must have
// exited.
func (w *oomWatch) killed() bool {
	if w == nil {
		return false
	}
	t := time.NewTimer(oomSettle)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
	}
	return w.seen.Load()
}

// release ends the watch; it may be called more than once.
func (w *oomWatch) release() {
	if w == nil {
		return
	}
	w.once.Do(func() { close(w.stop) })
	if f := w.fd.Load(); f != nil {
		// Ends the read; on a file the watch has closed already, nothing.
		_ = f.SetReadDeadline(time.Now())
	}
}

func readAt(f *os.File) ([]byte, error) {
	buf := make([]byte, 256)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:n], nil
}

// oomInControl reports whether a memory.oom_control file's text counts an
// OOM kill or says the cgroup is under OOM now.
func oomInControl(data []byte) bool {
	return driver.CgroupValue(data, "oom_kill") > 0 || driver.CgroupValue(data, "under_oom") > 0
}

// memoryCgroupV1 is the directory of process pid's cgroup v1 memory
// controller, or an error where there is none (cgroup v2). The path must
// name container id, as the engine's cgroup paths do: a runner in another
// pid namespace would read some other process of its own under pid.
func memoryCgroupV1(pid int, id string) (string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-id:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				if !strings.Contains(parts[2], id) {
					return "", fmt.Errorf("process %d is not in a cgroup of container %s", pid, shortID(id))
				}
				dir := "/sys/fs/cgroup/memory" + parts[2]
				if _, err := os.Stat(dir + "/memory.oom_control"); err != nil {
					return "", err
				}
				return dir, nil
			}
		}
	}
	return "", errors.New("no cgroup v1 memory controller")
}

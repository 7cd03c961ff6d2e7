package runner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mayfly-run/mayfly/internal/netcap"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// A task's home is its directory on the runner, mounted read-only at
// TaskFilesDir: its payload, its config and its API socket (apisock.go).
// Making one (directory, socket, bind, listen, two chmods, the poller) and
// taking it down again are two dozen system calls, most of what a runner
// spends on a trivial task; so a home whose container is known to be gone
// serves the runner's next task, and a task costs only its two files.
//
// A home is kept only when its container's removal succeeded (or no
// container was ever given it): nothing of an earlier task can then reach
// its socket or read its directory, and the task it serves is switched
// only between containers. Its socket refuses requests between tasks.
// Idle homes beyond the runner's capacity are closed at once, the others
// after homeIdle.
const homeIdle = 10 * time.Second

// taskFileNames are the files a task's home holds for each task: made
// with the home and kept open, emptied when a task leaves and written when
// the next comes, which costs two system calls a file instead of a create,
// a close and a removal.
var taskFileNames = [...]string{"payload.json", "config.json"}

type taskHome struct {
	dir   string
	every time.Duration           // at most one progress write per task this often
	files [len(taskFileNames)]int // open for writing
	srv   *http.Server
	ln    *netcap.Listener
	log   *slog.Logger
	task  atomic.Pointer[sockTask]
	idle  time.Time // since when it waits in the pool; guarded by homes.mu
}

// homes is a runner's pool of idle task homes.
type homes struct {
	dir     string
	lim     sockLimits
	log     *slog.Logger
	max     int           // idle homes kept
	idleFor time.Duration // how long a home is kept idle

	mu      sync.Mutex
	free    []*taskHome // oldest first
	seq     int
	timer   *time.Timer
	closed  bool
	closing sync.WaitGroup // expired homes being closed
}

func newHomes(dir string, lim sockLimits, max int, log *slog.Logger) *homes {
	return &homes{dir: dir, lim: lim, max: max, log: log, idleFor: homeIdle}
}

// take returns an idle home, the one used last, or makes one.
func (p *homes) take() (*taskHome, error) {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		h := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return h, nil
	}
	p.seq++
	name := "t" + strconv.Itoa(p.seq)
	p.mu.Unlock()
	return openHome(filepath.Join(p.dir, name), p.lim, p.log)
}

// give takes back a home whose task has left. keep says that no container
// can still see it; a home that is not kept is closed.
func (p *homes) give(h *taskHome, keep bool) {
	if keep {
		keep = h.clear() == nil
	}
	p.mu.Lock()
	if !keep || p.closed || len(p.free) >= p.max {
		p.mu.Unlock()
		h.close()
		return
	}
	h.idle = time.Now()
	p.free = append(p.free, h)
	if p.timer == nil {
		p.timer = time.AfterFunc(p.idleFor, p.expire)
	}
	p.mu.Unlock()
}

// expire closes the homes idle for idleFor and waits for the next one.
func (p *homes) expire() {
	p.mu.Lock()
	p.timer = nil
	cut := time.Now().Add(-p.idleFor)
	n := 0
	for n < len(p.free) && !p.free[n].idle.After(cut) {
		n++
	}
	old := append([]*taskHome(nil), p.free[:n]...)
	p.free = append(p.free[:0], p.free[n:]...)
	if len(p.free) > 0 && !p.closed {
		p.timer = time.AfterFunc(time.Until(p.free[0].idle.Add(p.idleFor)), p.expire)
	}
	p.closing.Add(1)
	p.mu.Unlock()
	defer p.closing.Done()
	for _, h := range old {
		h.close()
	}
}

// close closes the idle homes, and waits for those that expired to be
// gone, so that the run directory can go too; homes given back later are
// closed then.
func (p *homes) close() {
	p.mu.Lock()
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	old := p.free
	p.free = nil
	p.mu.Unlock()
	for _, h := range old {
		h.close()
	}
	p.closing.Wait()
}

// idleCount is how many homes wait in the pool.
func (p *homes) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// openHome makes a home's directory and starts serving its socket.
func openHome(dir string, lim sockLimits, log *slog.Logger) (*taskHome, error) {
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrExist) {
		// A home left by an earlier life of this runner (a crash leaves
		// them) would make the listen fail.
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("clear task directory: %w", err)
		}
		err = os.Mkdir(dir, 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("create task directory: %w", err)
	}
	// The task user must reach the socket, whatever the umask.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("open task directory: %w", err)
	}
	h := &taskHome{dir: dir, every: lim.ProgressEvery, log: log}
	for i, name := range taskFileNames {
		fd, err := syscall.Open(dir+"/"+name, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o644)
		if err != nil {
			for _, fd := range h.files[:i] {
				syscall.Close(fd)
			}
			os.RemoveAll(dir)
			return nil, fmt.Errorf("create the task's %s: %w", name, err)
		}
		h.files[i] = fd
	}
	closeFiles := func() {
		for _, fd := range h.files {
			syscall.Close(fd)
		}
	}
	sock := filepath.Join(dir, "api.sock")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		closeFiles()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("listen on task socket: %w", err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		uln.Close()
		closeFiles()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("open task socket: %w", err)
	}
	h.ln = netcap.Wrap(uln, lim.MaxConns, 0, nil)
	h.srv = &http.Server{Handler: http.HandlerFunc(h.serveHTTP), ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout: lim.ReadTimeout, WriteTimeout: lim.WriteTimeout, IdleTimeout: lim.IdleTimeout,
		MaxHeaderBytes: 64 << 10}
	go h.srv.Serve(h.ln)
	return h, nil
}

// begin makes the home job's: its payload and config are written and its
// socket serves the job's progress.
func (h *taskHome) begin(job wire.Job, send func(context.Context, wire.Progress) error) (*sockTask, error) {
	t := &sockTask{job: job, route: "/2/projects/" + job.ProjectID + "/tasks/" + job.TaskID + "/progress",
		gate: &progressGate{every: h.every, log: h.log.With("task_id", job.TaskID), send: send}}
	for i, data := range [...]string{job.Payload, job.Code.Config} {
		if err := writeAll(h.files[i], data); err != nil {
			return nil, fmt.Errorf("write %s: %w", taskFileNames[i], err)
		}
	}
	h.task.Store(t)
	return t, nil
}

// writeAll writes data at the start of the empty file fd.
func writeAll(fd int, data string) error {
	b := []byte(data)
	for off := int64(0); len(b) > 0; {
		n, err := syscall.Pwrite(fd, b, off)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// end stops serving t, waits a little for its requests under way, and
// writes the last progress it reported, so that the task's final word is
// in before its end is.
func (h *taskHome) end(t *sockTask) {
	h.task.CompareAndSwap(t, nil)
	if drained := t.stop(); drained != nil {
		select {
		case <-drained:
		case <-time.After(2 * time.Second):
			t.gate.log.Warn("a progress report of the task was still under way at its end")
		}
	}
	if err := t.gate.flush(10 * time.Second); err != nil {
		t.gate.log.Warn("could not write the task's last progress", "err", err)
	}
}

// clear empties the last task's files.
func (h *taskHome) clear() error {
	var errs []error
	for i, fd := range h.files {
		if err := syscall.Ftruncate(fd, 0); err != nil {
			errs = append(errs, fmt.Errorf("empty %s: %w", taskFileNames[i], err))
		}
	}
	return errors.Join(errs...)
}

// close stops serving the socket and removes the home.
func (h *taskHome) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := h.srv.Shutdown(ctx); err != nil {
		h.srv.Close()
	}
	cancel()
	// The listener's close removed the socket.
	for i, fd := range h.files {
		syscall.Close(fd)
		os.Remove(h.dir + "/" + taskFileNames[i])
	}
	if err := os.Remove(h.dir); err != nil {
		os.RemoveAll(h.dir)
	}
}

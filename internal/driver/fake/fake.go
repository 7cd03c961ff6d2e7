// Package fake is a scriptable driver.Driver with no engine behind it, so
// that the runner's logic (lease lost, cancel, timeout, retries, log cut,
// finish retries, drain) and volume properties (bursts, chaos) are tested
// on every `go test`. Each container does what its Behavior says: write
// output, run for a while, exit with a code, fail to start, hang until
// stopped, shrug off SIGTERM, or run out of memory.
//
// A task picks its Behavior in its payload, so a test drives the fake
// through the real queue: a payload {"fake": {"exit": 3, "run_ms": 200,
// "out": "hello\n"}} makes a container that prints hello and exits 3 after
// 200 ms. Driver.Script overrides that for tests that want to decide in Go.
//
// The driver keeps every container until it is destroyed and counts how
// many ran at once, so tests can check that nothing leaks and that limits
// held.
package fake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
)

// Behavior is what one container does.
type Behavior struct {
	Out    string `json:"out,omitempty"`    // written to the output
	Err    string `json:"err,omitempty"`    // written to the output and to stderr
	Exit   int    `json:"exit,omitempty"`   // exit code
	RunMs  int    `json:"run_ms,omitempty"` // how long it runs before it exits
	Hang   bool   `json:"hang,omitempty"`   // runs until stopped
	OOM    bool   `json:"oom,omitempty"`    // ends killed for memory
	NoTerm bool   `json:"no_term,omitempty"`
	// StartErr makes Start fail with this message.
	StartErr string `json:"start_err,omitempty"`
	// LogBytes writes this many bytes of filler output, to test log caps.
	LogBytes int `json:"log_bytes,omitempty"`
	// Stamps names a host directory: the container appends a line
	// "start|end PID-CONTAINER UNIXNANO" to the file named after its task
	// when it starts and when it ends, as a real task would write its own
	// clock readings, so that a test can prove from them that no task ran
	// twice at once. A container whose process is killed writes no end:
	// it ended with the process (PID).
	Stamps string `json:"stamps,omitempty"`
	// Progress is reported, in order, through the task's API socket just
	// before the container exits, as a task reports how far it got; each
	// answer goes to the output as a line "progress STATUS".
	Progress []Progress `json:"progress,omitempty"`
}

// Progress is one report of a Behavior.
type Progress struct {
	Percent int    `json:"percent"`
	Msg     string `json:"msg,omitempty"`
}

// PayloadFile is where the runner puts the payload on the host side: the
// file payload.json in the directory mounted at /mnt/mayfly. The fake reads
// it there, as a task would read $PAYLOAD_FILE.
const (
	taskFilesTarget = "/mnt/mayfly"
	payloadName     = "payload.json"
	socketName      = "api.sock"
)

// FromPayload reads a Behavior from a payload {"fake": {...}}; any other
// payload is a container that exits 0 at once.
func FromPayload(payload []byte) Behavior {
	var p struct {
		Fake Behavior `json:"fake"`
	}
	_ = json.Unmarshal(payload, &p)
	return p.Fake
}

// Payload is the payload that makes a container behave as b.
func Payload(b Behavior) string {
	out, _ := json.Marshal(map[string]Behavior{"fake": b})
	return string(out)
}

// Driver is safe for concurrent use. The zero value is ready.
type Driver struct {
	// Script, when set, decides each container's behaviour instead of its
	// payload.
	Script func(spec driver.Spec, payload []byte) Behavior
	// EngineDown, when it returns an error, makes Ping and Start fail as
	// an engine that is away would.
	EngineDown func() error

	seq     atomic.Int64
	mu      sync.Mutex
	live    map[string]*container
	running int
	maxRun  int
	starts  int
	specs   []driver.Spec
}

var (
	_ driver.Driver = (*Driver)(nil)
	_ driver.Pinger = (*Driver)(nil)
)

// New returns a driver whose containers follow their payloads.
func New() *Driver { return &Driver{} }

// Stats is what the driver has seen.
type Stats struct {
	Starts     int // successful starts
	Live       int // started and not yet destroyed
	Running    int // started and not yet exited
	MaxRunning int // the most running at once
}

// Stats returns the counts so far.
func (d *Driver) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Stats{Starts: d.starts, Live: len(d.live), Running: d.running, MaxRunning: d.maxRun}
}

// keptSpecs is how many of the latest specs Specs returns. A runner
// process on the fake driver runs tens of thousands of tasks in a soak;
// keeping every spec (and the task's log writers it points to) would grow
// without end.
const keptSpecs = 100

// Specs returns the specs of the latest containers started (at most
// keptSpecs), in order, without their archive and output writers.
func (d *Driver) Specs() []driver.Spec {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]driver.Spec(nil), d.specs...)
}

// Ping fails while EngineDown says so.
func (d *Driver) Ping(context.Context) error {
	if d.EngineDown != nil {
		return d.EngineDown()
	}
	return nil
}

// taskFile is the host path of a file the runner put in the task's
// directory, or "".
func taskFile(spec driver.Spec, name string) string {
	for _, m := range spec.Mounts {
		if m.Target == taskFilesTarget {
			return filepath.Join(m.Source, name)
		}
	}
	return ""
}

func payloadOf(spec driver.Spec) []byte {
	if path := taskFile(spec, payloadName); path != "" {
		b, _ := os.ReadFile(path)
		return b
	}
	return nil
}

// Start reads the spec's archive to its end, as a real driver copies it
// into the container, and starts a container that follows its Behavior.
func (d *Driver) Start(ctx context.Context, spec driver.Spec) (driver.Handle, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start task %s: %w", spec.TaskID, err)
	}
	if err := d.Ping(ctx); err != nil {
		return nil, fmt.Errorf("start task %s: %w", spec.TaskID, err)
	}
	if spec.Archive != nil {
		if _, err := io.Copy(io.Discard, spec.Archive); err != nil {
			return nil, fmt.Errorf("read files of task %s: %w", spec.TaskID, err)
		}
	}
	payload := payloadOf(spec)
	b := FromPayload(payload)
	if d.Script != nil {
		b = d.Script(spec, payload)
	}
	if b.StartErr != "" {
		return nil, fmt.Errorf("start task %s: %s", spec.TaskID, b.StartErr)
	}
	c := &container{d: d, id: fmt.Sprintf("fake-%d", d.seq.Add(1)), spec: spec, b: b,
		stop: make(chan time.Duration, 1), done: make(chan struct{})}
	d.mu.Lock()
	if d.live == nil {
		d.live = map[string]*container{}
	}
	d.live[c.id] = c
	d.starts++
	d.running++
	d.maxRun = max(d.maxRun, d.running)
	kept := spec
	kept.Archive, kept.Output, kept.Stderr = nil, nil, nil
	if len(d.specs) == keptSpecs {
		d.specs = append(d.specs[:0], d.specs[1:]...)
	}
	d.specs = append(d.specs, kept)
	d.mu.Unlock()
	go c.run()
	return c, nil
}

// ImageExists says yes: the fake has every image.
func (d *Driver) ImageExists(context.Context, string) (bool, error) { return true, nil }

// RemoveOrphans destroys the runner's containers that keep does not claim.
func (d *Driver) RemoveOrphans(ctx context.Context, runnerID string, keep func(containerID, taskID string) bool) (int, error) {
	if runnerID == "" {
		return 0, errors.New("remove orphans: a runner id is required")
	}
	d.mu.Lock()
	var gone []*container
	for id, c := range d.live {
		if c.spec.RunnerID == runnerID && (keep == nil || !keep(id, c.spec.TaskID)) {
			gone = append(gone, c)
		}
	}
	d.mu.Unlock()
	for _, c := range gone {
		_ = c.Destroy(ctx)
	}
	return len(gone), nil
}

// ListManaged lists the containers not yet destroyed.
func (d *Driver) ListManaged(_ context.Context, runnerID string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []string
	for id, c := range d.live {
		if runnerID == "" || c.spec.RunnerID == runnerID {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// Close does nothing.
func (d *Driver) Close() error { return nil }

type container struct {
	d    *Driver
	id   string
	spec driver.Spec
	b    Behavior

	stop     chan time.Duration // a Stop's grace
	done     chan struct{}
	res      driver.Result
	stopOnce sync.Once
	destroy  sync.Once
}

func (c *container) ID() string { return c.id }

// run plays the behaviour: output first, then the run time, cut short by
// a stop.
func (c *container) run() {
	c.stamp("start")
	defer func() {
		c.stamp("end")
		c.d.mu.Lock()
		c.d.running--
		c.d.mu.Unlock()
		close(c.done)
	}()
	write := func(w io.Writer, s string) {
		if w != nil && s != "" {
			_, _ = io.WriteString(w, s)
		}
	}
	write(c.spec.Output, c.b.Out)
	write(c.spec.Output, c.b.Err)
	write(c.spec.Stderr, c.b.Err)
	if c.b.LogBytes > 0 && c.spec.Output != nil {
		line := []byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n")
		for n := c.b.LogBytes; n > 0; n -= len(line) {
			if _, err := c.spec.Output.Write(line[:min(n, len(line))]); err != nil {
				break
			}
		}
	}
	for _, p := range c.b.Progress {
		write(c.spec.Output, "progress "+c.report(p)+"\n")
	}
	var runFor <-chan time.Time
	if !c.b.Hang {
		runFor = time.After(time.Duration(c.b.RunMs) * time.Millisecond)
	}
	select {
	case <-runFor:
		c.res = driver.Result{ExitCode: c.b.Exit, OOMKilled: c.b.OOM}
		if c.b.OOM {
			c.res.ExitCode = 137
		}
	case grace := <-c.stop:
		if c.b.NoTerm {
			// SIGTERM is ignored: the kill comes after the grace.
			select {
			case <-time.After(grace):
			case <-runFor:
				c.res = driver.Result{ExitCode: c.b.Exit}
				return
			}
			c.res = driver.Result{ExitCode: 137}
			return
		}
		c.res = driver.Result{ExitCode: 143}
	}
}

// report posts p to the task's API socket as a task would, with the
// task's token, and returns the answer's status.
func (c *container) report(p Progress) string {
	env := map[string]string{}
	for _, kv := range c.spec.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	sock := taskFile(c.spec, socketName)
	if sock == "" {
		return "no socket"
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(p)
	req, err := http.NewRequest(http.MethodPost, "http://mayfly/2/projects/"+env["PROJECT_ID"]+"/tasks/"+env["TASK_ID"]+"/progress",
		bytes.NewReader(body))
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Authorization", "OAuth "+env["MAYFLY_TASK_TOKEN"])
	resp, err := client.Do(req)
	if err != nil {
		return err.Error()
	}
	resp.Body.Close()
	return strconv.Itoa(resp.StatusCode)
}

// stamp appends one line to the task's stamp file: one write of a short
// line to a file opened for appending, which concurrent writers (other
// runner processes) cannot interleave.
func (c *container) stamp(what string) {
	if c.b.Stamps == "" || c.spec.TaskID == "" || filepath.Base(c.spec.TaskID) != c.spec.TaskID {
		return
	}
	f, err := os.OpenFile(filepath.Join(c.b.Stamps, c.spec.TaskID), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = fmt.Fprintf(f, "%s %d-%s %d\n", what, os.Getpid(), c.id, time.Now().UnixNano())
}

func (c *container) Wait(ctx context.Context) (driver.Result, error) {
	select {
	case <-c.done:
		return c.res, nil
	case <-ctx.Done():
		return driver.Result{}, fmt.Errorf("wait for %s: %w", c.id, ctx.Err())
	}
}

func (c *container) Stop(ctx context.Context, grace time.Duration) error {
	c.stopOnce.Do(func() { c.stop <- grace })
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", c.id, ctx.Err())
	}
}

func (c *container) Destroy(ctx context.Context) error {
	c.destroy.Do(func() {
		c.stopOnce.Do(func() { c.stop <- 0 })
		<-c.done
		c.d.mu.Lock()
		delete(c.d.live, c.id)
		c.d.mu.Unlock()
	})
	return nil
}

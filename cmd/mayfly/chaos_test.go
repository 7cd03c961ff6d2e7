package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	dockerclient "github.com/docker/docker/client"

	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/driver/fake"
	"github.com/mayfly-run/mayfly/internal/mayfly"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// TestChaos runs tasks for MAYFLY_CHAOS_DURATION (default 60 s; `make
// chaos` runs it for an hour) while a fault is injected every few seconds,
// at random: a runner killed with SIGKILL or stopped with SIGTERM, one of
// the two servers killed, PostgreSQL killed (every backend with it), or
// the Docker engine the real containers run in killed. Each victim comes
// back after a moment. Then it proves, from what the tasks wrote
// themselves:
//
//   - no acknowledged task was lost, and every one ended;
//   - no task ran twice at the same time: every container stamps its
//     start and end (the fake driver's into a shared directory, the real
//     containers into their logs; a container killed with its runner or
//     engine ends when the engine or the process says it died);
//   - the schedule fired once per due time;
//   - nothing leaked: containers, mounts, goroutines and descriptors of
//     the processes that were never killed, temp and task directories.
//
// It is a test rather than a `mayfly chaos` command because what it needs
// is test equipment: a PostgreSQL server of its own, a private Docker
// engine it may kill, and a binary built with the fake driver. None of it
// belongs in the binary operators run.
func TestChaos(t *testing.T) {
	t.Parallel()
	dur := 60 * time.Second
	if v := os.Getenv("MAYFLY_CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("MAYFLY_CHAOS_DURATION=%q: %v", v, err)
		}
		dur = d
	}
	testenv.Docker(t)
	busybox := testenv.StackImage(t, "busybox")
	bin := fakeMayflyBin(t)
	pg := testenv.OwnPostgres(t)
	h := newChaosHarness(t, bin, pg, busybox, dur)
	h.run()
}

type chaosHarness struct {
	t       *testing.T
	bin     string
	pg      *testenv.PostgresServer
	root    string // everything of the run lives under here
	dur     time.Duration
	stamps  string
	tmp     string // TMPDIR of every process
	project string
	token   string
	ctx     context.Context

	engine           *chaosProc
	containerd       *chaosProc
	engineSock       string
	enginePid        string
	servers          []*chaosProc // [0] may be killed; [1] never is
	addrs            []string
	fakeRunners      []*chaosProc // [0] never killed
	realRunner       *chaosProc
	runnerDirs       map[*chaosProc]string
	runnerMetricAddr map[*chaosProc]string

	deathsMu sync.Mutex
	// deaths are when each pid was seen dead, in order: over a long run
	// the kernel hands a dead runner's pid to a later process, and a
	// container of the first must end with the first's death, not the
	// later one's (an hour's soak saw a pid taken again 25 minutes on).
	deaths map[int][]time.Time

	faultsMu sync.Mutex
	faults   map[string]int

	events *engineEvents
}

func newChaosHarness(t *testing.T, bin string, pg *testenv.PostgresServer, busybox string, dur time.Duration) *chaosHarness {
	// Unix socket paths are short: a directory of our own under /tmp.
	root, err := os.MkdirTemp("", "mayfly-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	h := &chaosHarness{t: t, bin: bin, pg: pg, root: root, dur: dur, ctx: context.Background(),
		project: "5f00000000000000000000c4", token: "chaos-admin-token",
		deaths: map[int][]time.Time{}, faults: map[string]int{},
		runnerDirs: map[*chaosProc]string{}, runnerMetricAddr: map[*chaosProc]string{}}
	h.stamps = filepath.Join(root, "stamps")
	h.tmp = filepath.Join(root, "tmp")
	for _, d := range []string{h.stamps, h.tmp} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(h.cleanup)
	h.startEngine(busybox)
	return h
}

// chaosProc is one process of the run, restarted as often as it is
// killed; its output goes to a file, however long the run.
type chaosProc struct {
	h       *chaosHarness
	name    string
	args    []string
	env     []string
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (h *chaosHarness) proc(name string, env []string, args ...string) *chaosProc {
	return &chaosProc{h: h, name: name, args: args, env: env, logPath: filepath.Join(h.root, name+".log")}
}

// start starts the process. The goroutine that starts it stays on its
// thread until it exits, so that the parent-death signal (which follows
// the thread) kills it only when the test binary dies.
func (p *chaosProc) start() {
	p.h.t.Helper()
	if err := p.run(); err != nil {
		p.h.t.Fatal(err)
	}
}

func (p *chaosProc) run() error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Env = append(append(os.Environ(), "TMPDIR="+p.h.tmp), p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			close(done)
			return
		}
		started <- nil
		cmd.Wait()
		p.h.deathsMu.Lock()
		p.h.deaths[cmd.Process.Pid] = append(p.h.deaths[cmd.Process.Pid], time.Now())
		p.h.deathsMu.Unlock()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	return nil
}

func (p *chaosProc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// stop signals the process and waits until it is gone; false when it
// outlived within.
func (p *chaosProc) stop(sig syscall.Signal, within time.Duration) bool {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return true
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(within):
		return false
	}
}

func (p *chaosProc) alive() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

func (p *chaosProc) tail() string {
	b, _ := os.ReadFile(p.logPath)
	return string(tail(b, 3000))
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// startEngine starts a Docker engine of the run's own, which it may kill
// without harming anyone else's containers: its own socket, data, state
// and containerd, no bridge and no iptables (task containers have no
// network). The stack image is copied in from the machine's engine.
func (h *chaosHarness) startEngine(busybox string) {
	t := h.t
	dockerd, err := exec.LookPath("dockerd")
	testenv.Integration(t, "dockerd (for a private engine to kill)", err)
	if os.Geteuid() != 0 {
		testenv.Integration(t, "root (to start a private Docker engine)", fmt.Errorf("euid %d", os.Geteuid()))
	}
	containerd, err := exec.LookPath("containerd")
	testenv.Integration(t, "containerd (for a private engine to kill)", err)
	e := filepath.Join(h.root, "engine")
	if err := os.MkdirAll(e, 0o700); err != nil {
		t.Fatal(err)
	}
	// containerd apart, as a host runs it (its own service): killing the
	// engine leaves it and the containers' shims, as a crash of dockerd
	// would, and the engine's restart finds them.
	ctdConfig := filepath.Join(e, "containerd.toml")
	if err := os.WriteFile(ctdConfig, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctdSock := filepath.Join(e, "containerd.sock")
	h.containerd = h.proc("containerd", nil, containerd, "-c", ctdConfig, "--address", ctdSock,
		"--root", filepath.Join(e, "containerd-root"), "--state", filepath.Join(e, "containerd-state"), "--log-level", "warn")
	h.containerd.start()
	h.engineSock = filepath.Join(e, "docker.sock")
	h.enginePid = filepath.Join(e, "docker.pid")
	h.engine = h.proc("dockerd", nil, dockerd, "-H", "unix://"+h.engineSock, "--containerd", ctdSock,
		"--data-root", filepath.Join(e, "data"), "--exec-root", filepath.Join(e, "exec"),
		"--pidfile", h.enginePid, "--bridge=none", "--iptables=false",
		"--ip6tables=false", "--ip-masq=false", "--log-level=warn")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(ctdSock); err == nil {
			break
		}
		if time.Now().After(deadline) || !h.containerd.alive() {
			t.Fatalf("containerd did not start\n%s", h.containerd.tail())
		}
	}
	h.engine.start()
	h.waitEngine(time.Minute)
	save := exec.Command("docker", "save", busybox)
	load := exec.Command("docker", "-H", "unix://"+h.engineSock, "load")
	pipe, err := save.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	load.Stdin = pipe
	var out bytes.Buffer
	load.Stdout, load.Stderr = &out, &out
	if err := save.Start(); err != nil {
		t.Fatal(err)
	}
	if err := load.Run(); err != nil {
		t.Fatalf("load %s into the private engine: %v: %s", busybox, err, out.Bytes())
	}
	if err := save.Wait(); err != nil {
		t.Fatalf("docker save %s: %v", busybox, err)
	}
	h.events = watchEngine(h.ctx, h.engineCli())
}

func (h *chaosHarness) engineCli() *dockerclient.Client {
	cli, err := dockerclient.NewClientWithOpts(dockerclient.WithHost("unix://"+h.engineSock), dockerclient.WithAPIVersionNegotiation())
	if err != nil {
		h.t.Fatal(err)
	}
	return cli
}

func (h *chaosHarness) waitEngine(within time.Duration) {
	if err := h.engineUp(within); err != nil {
		h.t.Fatal(err)
	}
}

func (h *chaosHarness) engineUp(within time.Duration) error {
	cli := h.engineCli()
	defer cli.Close()
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(h.ctx, 2*time.Second)
		_, err := cli.Ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || !h.engine.alive() {
			return fmt.Errorf("the private engine does not answer: %v\n%s", err, h.engine.tail())
		}
	}
}

// cleanup stops what is left, the engine last, and removes the run's
// files, mounts of the engine's included.
func (h *chaosHarness) cleanup() {
	procs := append(append([]*chaosProc{h.realRunner}, h.fakeRunners...), h.servers...)
	for _, p := range procs {
		if p != nil {
			p.stop(syscall.SIGKILL, 10*time.Second)
		}
	}
	if h.engine != nil {
		if h.t.Failed() {
			h.t.Logf("engine log tail:\n%s", h.engine.tail())
		}
		if !h.engine.stop(syscall.SIGTERM, 30*time.Second) {
			h.engine.stop(syscall.SIGKILL, 10*time.Second)
		}
		if !h.containerd.stop(syscall.SIGTERM, 30*time.Second) {
			h.containerd.stop(syscall.SIGKILL, 10*time.Second)
		}
		// Its containerd and shims, should the engine have left them.
		for _, pid := range pidsUnder(h.root) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, m := range mountsUnder(h.root) {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	if h.t.Failed() {
		for _, p := range procs {
			if p != nil {
				h.t.Logf("%s log tail:\n%s", p.name, p.tail())
			}
		}
	}
	os.RemoveAll(h.root)
}

// pidsUnder lists processes whose command line names a path under dir.
func pidsUnder(dir string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if bytes.Contains(cmdline, []byte(dir)) {
			out = append(out, pid)
		}
	}
	return out
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// engineEvents records when each container of the private engine
// started and died, across the engine's deaths: the engine's own account
// of what ran, for containers whose stamps a killed runner never shipped.
type engineEvents struct {
	mu      sync.Mutex
	started map[string]time.Time // container id -> start
	ended   map[string]time.Time // container id -> first die or destroy
	task    map[string]string    // container id -> task id
}

func watchEngine(ctx context.Context, cli *dockerclient.Client) *engineEvents {
	ev := &engineEvents{started: map[string]time.Time{}, ended: map[string]time.Time{}, task: map[string]string{}}
	go func() {
		defer cli.Close()
		since := time.Now().Add(-time.Minute)
		for ctx.Err() == nil {
			f := filters.NewArgs(filters.Arg("type", "container"), filters.Arg("label", driver.LabelManaged+"=true"))
			msgs, errs := cli.Events(ctx, events.ListOptions{Filters: f, Since: strconv.FormatInt(since.Unix(), 10)})
		read:
			for {
				select {
				case m := <-msgs:
					at := time.Unix(0, m.TimeNano)
					since = at.Add(-time.Second) // replayed events are idempotent below
					ev.mu.Lock()
					id := m.Actor.ID
					if tid := m.Actor.Attributes[driver.LabelTask]; tid != "" {
						ev.task[id] = tid
					}
					switch m.Action {
					case events.ActionStart:
						if _, ok := ev.started[id]; !ok {
							ev.started[id] = at
						}
					case events.ActionDie, events.ActionDestroy, events.ActionKill:
						if m.Action == events.ActionKill {
							break // a signal, not an end
						}
						if _, ok := ev.ended[id]; !ok {
							ev.ended[id] = at
						}
					}
					ev.mu.Unlock()
				case <-errs:
					break read
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return ev
}

// ended returns when the container whose id starts with prefix ended,
// by the engine's account.
func (ev *engineEvents) endOf(prefix string) (time.Time, bool) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for id, at := range ev.ended {
		if strings.HasPrefix(id, prefix) {
			return at, true
		}
	}
	return time.Time{}, false
}

const chaosRealScript = `n=$(hostname); echo "stamp start $n $(cut -d' ' -f1 /proc/uptime)"; sleep 1; echo "stamp end $n $(cut -d' ' -f1 /proc/uptime)"`

func (h *chaosHarness) startServers() {
	t := h.t
	blobs := filepath.Join(h.root, "blobs")
	env := []string{"MAYFLY_BOOTSTRAP_PROJECT=" + h.project, "MAYFLY_BOOTSTRAP_TOKEN=" + h.token,
		"MAYFLY_DATABASE_URL=" + h.pg.URL(), "MAYFLY_RUNNER=false", "MAYFLY_MIN_RUN_EVERY=1s",
		"MAYFLY_BLOB_URL=file://" + blobs, "MAYFLY_LEASE_DURATION=6s", "MAYFLY_MAX_ATTEMPTS=20",
		"MAYFLY_LOG_LEVEL=info", "MAYFLY_REQUEST_RATE=0"}
	for i := range 2 {
		dir := filepath.Join(h.root, fmt.Sprintf("server%d", i))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			for _, key := range []string{"task-token.key", "token-hash.key"} {
				b, err := os.ReadFile(filepath.Join(h.root, "server0", key))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, key), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		addr := freeAddr(t)
		p := h.proc(fmt.Sprintf("server%d", i), env, h.bin, "server", "--listen", addr, "--data-dir", dir, "--drain-grace", "5s")
		h.servers = append(h.servers, p)
		h.addrs = append(h.addrs, addr)
		p.start()
		h.waitHealthy(i, time.Minute)
	}
}

func (h *chaosHarness) waitHealthy(i int, within time.Duration) {
	if err := h.serverUp(i, within); err != nil {
		h.t.Fatal(err)
	}
}

func (h *chaosHarness) serverUp(i int, within time.Duration) error {
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + h.addrs[i] + "/healthz")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) || !h.servers[i].alive() {
			return fmt.Errorf("server %d does not answer: %v\n%s", i, err, h.servers[i].tail())
		}
	}
}

func (h *chaosHarness) startRunners() {
	mk := func(name, server string, env []string, args ...string) *chaosProc {
		dir := filepath.Join(h.root, name)
		maddr := freeAddr(h.t)
		p := h.proc(name, append([]string{"MAYFLY_RUNNER_TOKEN=", "MAYFLY_TOKEN="}, env...),
			append([]string{h.bin, "runner", "--server", "http://" + server, "--token", h.token, "--data-dir", dir,
				"--drain-grace", "3s", "--metrics-listen", maddr, "--log-level", "warn"}, args...)...)
		h.runnerDirs[p] = dir
		h.runnerMetricAddr[p] = maddr
		p.start()
		return p
	}
	// Runners of either server, as a load balancer would spread them; the
	// first one is the witness that is never killed.
	for i := range 3 {
		h.fakeRunners = append(h.fakeRunners, mk(fmt.Sprintf("fake-runner%d", i), h.addrs[(i+1)%2], nil,
			"--driver", "fake", "--capacity", "8"))
	}
	h.realRunner = mk("real-runner", h.addrs[1], []string{"DOCKER_HOST=unix://" + h.engineSock},
		"--driver", "docker", "--capacity", "2", "--cluster", "real", "--stop-grace", "2s")
	for _, p := range append([]*chaosProc{h.realRunner}, h.fakeRunners...) {
		h.waitMetrics(p, time.Minute)
	}
}

func (h *chaosHarness) waitMetrics(p *chaosProc, within time.Duration) {
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		if _, err := scrape("http://"+h.runnerMetricAddr[p]+"/metrics", ""); err == nil {
			return
		}
		if time.Now().After(deadline) || !p.alive() {
			h.t.Fatalf("%s does not serve its metrics\n%s", p.name, p.tail())
		}
	}
}

// scrape reads a Prometheus text page into name -> value (labels kept in
// the name).
func scrape(url, token string) (map[string]float64, error) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "OAuth "+token)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// procSample is what one process holds at one time.
type procSample struct {
	Goroutines, FDs int
	RSSKiB          int
}

func sampleProc(pid int, metricsURL, token string) (procSample, error) {
	var s procSample
	m, err := scrape(metricsURL, token)
	if err != nil {
		return s, err
	}
	s.Goroutines = int(m["go_goroutines"])
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.FDs = len(fds)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.RSSKiB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	return s, nil
}

// witnesses are the processes never killed, whose holdings are compared
// before and after: the second server and the first fake runner.
// (The server answers /metrics only while it can check the token in the
// database.)
func (h *chaosHarness) sampleWitnesses() (server, runner procSample, err error) {
	if server, err = sampleProc(h.servers[1].pid(), "http://"+h.addrs[1]+"/metrics", h.token); err != nil {
		return server, runner, fmt.Errorf("sample the server: %w", err)
	}
	r := h.fakeRunners[0]
	if runner, err = sampleProc(r.pid(), "http://"+h.runnerMetricAddr[r]+"/metrics", ""); err != nil {
		return server, runner, fmt.Errorf("sample the runner: %w", err)
	}
	return server, runner, nil
}

// quietSample samples the witnesses once the goroutines of finished work
// have had time to end: the lowest of a few readings.
func (h *chaosHarness) quietSample() (server, runner procSample) {
	server, runner, err := h.sampleWitnesses()
	if err != nil {
		h.t.Fatal(err)
	}
	for range 5 {
		time.Sleep(time.Second)
		s, r, err := h.sampleWitnesses()
		if err != nil {
			h.t.Fatal(err)
		}
		server.Goroutines, server.FDs = min(server.Goroutines, s.Goroutines), min(server.FDs, s.FDs)
		runner.Goroutines, runner.FDs = min(runner.Goroutines, r.Goroutines), min(runner.FDs, r.FDs)
		server.RSSKiB, runner.RSSKiB = s.RSSKiB, r.RSSKiB
	}
	return server, runner
}

// holdsMore tells a witness that holds more after the run than before
// it. A goroutine or descriptor lost per task or per fault would be
// thousands or dozens; what a run legitimately changes once the warm-up
// filled the pools (idle connections) is a handful. Memory: the heap may
// double before a collection; a leak of a task's buffers grows with the
// tasks (the fake driver's kept specs took a runner from 30 to 95 MB in
// 18 minutes).
func holdsMore(before, after procSample) bool {
	return after.Goroutines > before.Goroutines+15 || after.FDs > before.FDs+15 ||
		after.RSSKiB > 2*before.RSSKiB+16<<10
}

// holdings counts what the run keeps on the machine outside the
// processes: containers of the private engine, mounts under the run's
// directory, temp entries, task directories of the runners.
//
// EngineMounts are counted apart, not held against Mayfly: the init-layer
// mounts (overlay2/<id>-init/merged) that the engine itself makes while
// creating a container, and leaves behind when it is killed in the
// middle of that create; it does not clean them when it is back. Mayfly
// mounts nothing under the engine's data root, and a container it failed
// to remove shows in Containers with its own (non-init) layer mount.
type holdings struct {
	Containers, Mounts, TempEntries, TaskDirs int
	EngineMounts                              int
}

// engineInitMount tells a mount of the engine's own init layer.
func (h *chaosHarness) engineInitMount(m string) bool {
	return strings.HasPrefix(m, filepath.Join(h.root, "engine", "data", "overlay2")+"/") &&
		strings.HasSuffix(m, "-init/merged")
}

func (h *chaosHarness) holdings() holdings {
	var out holdings
	cli := h.engineCli()
	defer cli.Close()
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", driver.LabelManaged+"=true"))})
	if err != nil {
		h.t.Fatalf("list the private engine's containers: %v", err)
	}
	out.Containers = len(list)
	for _, m := range mountsUnder(h.root) {
		if h.engineInitMount(m) {
			out.EngineMounts++
		} else {
			out.Mounts++
		}
	}
	tmp, _ := os.ReadDir(h.tmp)
	out.TempEntries = len(tmp)
	for _, dir := range h.runnerDirs {
		rid, err := os.ReadFile(filepath.Join(dir, "runner-id"))
		if err != nil {
			continue
		}
		entries, _ := os.ReadDir(assembly.RunDir(dir, strings.TrimSpace(string(rid))))
		out.TaskDirs += len(entries)
	}
	return out
}

func (h *chaosHarness) client(i int) *client.Client {
	return client.New("http://"+h.addrs[i], h.token, h.project)
}

// liveClient is a client of a live server: the first one when it lives,
// else the witness.
func (h *chaosHarness) liveClient(n int) *client.Client {
	if n%2 == 0 && h.servers[0].alive() {
		return h.client(0)
	}
	return h.client(1)
}

func (h *chaosHarness) fault(kind string) {
	h.faultsMu.Lock()
	h.faults[kind]++
	h.faultsMu.Unlock()
}

// injectFaults kills something every few seconds until ctx ends, and
// brings it back. It runs beside the test, so it returns what went wrong
// rather than failing the test itself.
func (h *chaosHarness) injectFaults(ctx context.Context, every [2]time.Duration) error {
	pause := func(lo, hi time.Duration) time.Duration { return lo + rand.N(hi-lo) }
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause(every[0], every[1])):
		}
		switch k := rand.N(8); {
		case k < 3: // a runner, killed or stopped
			victims := append([]*chaosProc{h.realRunner}, h.fakeRunners[1:]...)
			p := victims[rand.N(len(victims))]
			if rand.N(2) == 0 {
				h.fault("runner SIGKILL")
				p.stop(syscall.SIGKILL, 30*time.Second)
			} else {
				h.fault("runner SIGTERM")
				if !p.stop(syscall.SIGTERM, 60*time.Second) {
					p.stop(syscall.SIGKILL, 30*time.Second)
					return fmt.Errorf("%s did not stop within 60 s of SIGTERM\n%s", p.name, p.tail())
				}
			}
			time.Sleep(pause(200*time.Millisecond, 2*time.Second))
			if err := p.run(); err != nil {
				return err
			}
		case k < 5: // the server that is not the witness
			h.fault("server SIGKILL")
			h.servers[0].stop(syscall.SIGKILL, 30*time.Second)
			time.Sleep(pause(500*time.Millisecond, 3*time.Second))
			if err := h.servers[0].run(); err != nil {
				return err
			}
			if err := h.serverUp(0, time.Minute); err != nil {
				return err
			}
		case k < 6:
			h.fault("PostgreSQL SIGKILL")
			h.pg.Kill()
			time.Sleep(pause(500*time.Millisecond, 3*time.Second))
			if err := h.pg.Restart(); err != nil {
				return fmt.Errorf("restart PostgreSQL: %w", err)
			}
		default:
			h.fault("engine SIGKILL")
			h.engine.stop(syscall.SIGKILL, 30*time.Second)
			// Dead and reaped: its pid file would stop the restart.
			os.Remove(h.enginePid)
			time.Sleep(pause(500*time.Millisecond, 3*time.Second))
			if err := h.engine.run(); err != nil {
				return err
			}
			if err := h.engineUp(2 * time.Minute); err != nil {
				return err
			}
		}
	}
}

type chaosFigures struct {
	mu        sync.Mutex
	acked     []string
	real      map[string]bool
	enqErrors int
}

func (h *chaosHarness) run() {
	t := h.t
	ctx := h.ctx
	h.startServers()
	h.startRunners()
	c := h.client(1)
	pushCode(t, c, wire.CodeUpload{Name: "fake", Command: "true"})
	pushCode(t, c, wire.CodeUpload{Name: "tick", Command: "true"})
	pushCode(t, c, wire.CodeUpload{Name: "real", Command: chaosRealScript})
	unfinished := func() int {
		n := 0
		for _, code := range []string{"fake", "real"} {
			tasks, err := c.ListTasks(ctx, client.TaskFilter{CodeName: code, PerPage: 100,
				Statuses: []string{"queued", "preparing", "running"}})
			if err != nil {
				return -1
			}
			n += len(tasks)
		}
		return n
	}
	// A warm-up at the run's pace, without faults: the runners' caches
	// and the connection pools of every process are what they will be
	// before the witnesses are sampled.
	for i := range 10 {
		tasks := []wire.NewTask{{CodeName: "real", Cluster: "real"}}
		for range 20 {
			tasks = append(tasks, wire.NewTask{CodeName: "fake", Payload: fake.Payload(fake.Behavior{RunMs: 10 + rand.N(300)})})
		}
		if _, err := h.liveClient(i).QueueTasks(ctx, tasks); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for deadline := time.Now().Add(2 * time.Minute); unfinished() != 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the warm-up tasks did not end within 2 minutes")
		}
	}
	// A runner keeps the directories of its last tasks (with their
	// sockets and files open) for the next ones, for 10 s: the witnesses
	// are sampled once they are gone, so that none can hide a leak.
	for deadline := time.Now().Add(time.Minute); h.holdings().TaskDirs > 0; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("task directories still held a minute after the warm-up: %+v", h.holdings())
		}
	}
	serverBefore, runnerBefore := h.quietSample()
	heldBefore := h.holdings()
	t.Logf("before: server %+v, runner %+v, %+v", serverBefore, runnerBefore, heldBefore)

	every := 2
	sids, err := c.CreateSchedules(ctx, []wire.NewSchedule{{CodeName: "tick", RunEvery: &every,
		Payload: fake.Payload(fake.Behavior{RunMs: 10, Stamps: h.stamps})}})
	if err != nil {
		t.Fatal(err)
	}
	scheduledAt := time.Now()

	// Memory and descriptors of the witnesses through the run.
	var samplesMu sync.Mutex
	var serverRSS, runnerRSS, serverFDs, runnerFDs []int
	runCtx, stopRun := context.WithTimeout(ctx, h.dur)
	defer stopRun()
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-runCtx.Done():
				return
			case <-time.After(5 * time.Second):
			}
			s, r, err := h.sampleWitnesses()
			if err != nil {
				continue
			}
			samplesMu.Lock()
			serverRSS, runnerRSS = append(serverRSS, s.RSSKiB), append(runnerRSS, r.RSSKiB)
			serverFDs, runnerFDs = append(serverFDs, s.FDs), append(runnerFDs, r.FDs)
			samplesMu.Unlock()
		}
	})
	var faultErr error
	wg.Go(func() {
		if faultErr = h.injectFaults(runCtx, [2]time.Duration{2 * time.Second, 5 * time.Second}); faultErr != nil {
			stopRun()
		}
	})

	// The enqueuer: batches of 20 fake tasks every half second and a real
	// one every other second, through either server; only answered
	// enqueues count (a refused one may or may not exist).
	fig := &chaosFigures{real: map[string]bool{}}
	wg.Go(func() {
		for n := 0; runCtx.Err() == nil; n++ {
			tasks := make([]wire.NewTask, 20)
			for i := range tasks {
				tasks[i] = wire.NewTask{CodeName: "fake", Payload: fake.Payload(fake.Behavior{
					RunMs: 10 + rand.N(300), Out: "ran\n", Stamps: h.stamps})}
			}
			if n%4 == 0 {
				tasks = append(tasks, wire.NewTask{CodeName: "real", Cluster: "real"})
			}
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			ids, err := h.liveClient(n).QueueTasks(qctx, tasks)
			cancel()
			fig.mu.Lock()
			if err != nil {
				fig.enqErrors++
			} else {
				fig.acked = append(fig.acked, ids...)
				if len(ids) == 21 {
					fig.real[ids[20]] = true
				}
			}
			fig.mu.Unlock()
			time.Sleep(500 * time.Millisecond)
		}
	})
	wg.Wait()
	if faultErr != nil {
		t.Fatalf("injecting faults: %v", faultErr)
	}
	if !h.servers[0].alive() || !h.engine.alive() {
		t.Fatal("a victim was not brought back")
	}
	h.faultsMu.Lock()
	t.Logf("faults injected over %v: %v", h.dur, h.faults)
	h.faultsMu.Unlock()

	// Every acknowledged task ends.
	settle := 3*time.Minute + h.dur/10
	for deadline := time.Now().Add(settle); ; time.Sleep(time.Second) {
		if unfinished() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("tasks still unfinished %v after the faults stopped", settle)
			break
		}
	}
	if err := c.CancelSchedule(ctx, sids[0]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the last tick ends

	tasks := h.allTasks(c, "fake", "real", "tick")
	statuses := map[string]int{}
	lost, notEnded := 0, 0
	for _, id := range fig.acked {
		tk, ok := tasks[id]
		if !ok {
			var err error
			if tk, err = c.GetTask(ctx, id); err != nil {
				lost++
				t.Errorf("acknowledged task %s lost: %v", id, err)
				continue
			}
		}
		statuses[tk.Status]++
		if !mayfly.Status(tk.Status).Terminal() {
			notEnded++
			if notEnded < 10 {
				t.Errorf("acknowledged task %s is still %s", id, tk.Status)
			}
		}
	}
	// Every fake task that ended complete stamped at least one run: the
	// stamps are the whole story.
	for _, id := range fig.acked {
		if _, err := os.Stat(filepath.Join(h.stamps, id)); err != nil && !fig.real[id] && tasks[id].Status == "complete" {
			t.Errorf("task %s completed without a stamped run", id)
		}
	}
	doubledFake, fakeRuns := h.checkFakeStamps(tasks)
	doubledReal, realRuns := h.checkRealStamps(c, fig)
	fired := h.checkSchedule(c, sids[0], tasks, scheduledAt)

	// Nothing left behind, once the runners have had time to clean up.
	var heldAfter holdings
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		heldAfter = h.holdings()
		if heldAfter.Containers == 0 && heldAfter.Mounts <= heldBefore.Mounts &&
			heldAfter.TempEntries <= heldBefore.TempEntries && heldAfter.TaskDirs <= heldBefore.TaskDirs || time.Now().After(deadline) {
			break
		}
	}
	serverAfter, runnerAfter := h.quietSample()
	// Idle connections that the run's busiest moments opened close after
	// a while (the runner's after 20 s): give them that long before
	// calling what is held a leak.
	for deadline := time.Now().Add(45 * time.Second); (holdsMore(serverBefore, serverAfter) ||
		holdsMore(runnerBefore, runnerAfter)) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Second)
		serverAfter, runnerAfter = h.quietSample()
	}
	t.Logf("after: server %+v, runner %+v, %+v", serverAfter, runnerAfter, heldAfter)
	if heldAfter.Containers != 0 || heldAfter.Mounts > heldBefore.Mounts ||
		heldAfter.TempEntries > heldBefore.TempEntries || heldAfter.TaskDirs > heldBefore.TaskDirs {
		t.Errorf("left behind: before %+v, after %+v; mounts now: %q", heldBefore, heldAfter, mountsUnder(h.root))
	}
	for _, w := range []struct {
		name          string
		before, after procSample
	}{{"server", serverBefore, serverAfter}, {"runner", runnerBefore, runnerAfter}} {
		if holdsMore(w.before, w.after) {
			t.Errorf("the %s holds more after the run: before %+v, after %+v", w.name, w.before, w.after)
		}
	}
	for _, p := range append([]*chaosProc{h.realRunner}, h.fakeRunners...) {
		m, err := scrape("http://"+h.runnerMetricAddr[p]+"/metrics", "")
		if err != nil {
			t.Errorf("scrape %s: %v", p.name, err)
		} else if busy := m["mayfly_runner_busy_slots"]; busy != 0 {
			t.Errorf("%s still has %v busy slots", p.name, busy)
		}
	}

	samplesMu.Lock()
	t.Logf("CHAOS SUMMARY: %v of faults, %v: %d tasks acknowledged (%d real containers, %d enqueues refused mid-fault), "+
		"by status %v; %d fake and %d real container runs stamped; lost %d, not ended %d, doubled %d; "+
		"schedule fired %d times; leaked: containers %d, mounts %+d, temp entries %+d, task dirs %+d "+
		"(the engine's own init-layer mounts %+d), "+
		"server goroutines %d->%d fds %d->%d, runner goroutines %d->%d fds %d->%d; "+
		"RSS KiB server %s, runner %s; fds server %s, runner %s",
		h.dur, h.faults, len(fig.acked), len(fig.real), fig.enqErrors, statuses, fakeRuns, realRuns,
		lost, notEnded, doubledFake+doubledReal, fired,
		heldAfter.Containers, heldAfter.Mounts-heldBefore.Mounts, heldAfter.TempEntries-heldBefore.TempEntries,
		heldAfter.TaskDirs-heldBefore.TaskDirs, heldAfter.EngineMounts-heldBefore.EngineMounts,
		serverBefore.Goroutines, serverAfter.Goroutines, serverBefore.FDs, serverAfter.FDs,
		runnerBefore.Goroutines, runnerAfter.Goroutines, runnerBefore.FDs, runnerAfter.FDs,
		spread(serverRSS), spread(runnerRSS), spread(serverFDs), spread(runnerFDs))
	samplesMu.Unlock()
}

// spread is min/median/max of samples.
func spread(v []int) string {
	if len(v) == 0 {
		return "-"
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return fmt.Sprintf("min %d median %d max %d (first %d, last %d)", s[0], s[len(s)/2], s[len(s)-1], v[0], v[len(v)-1])
}

// allTasks lists every task of the codes, by id.
func (h *chaosHarness) allTasks(c *client.Client, codes ...string) map[string]wire.Task {
	out := map[string]wire.Task{}
	for _, code := range codes {
		for page := 0; ; page++ {
			list, err := c.ListTasks(h.ctx, client.TaskFilter{CodeName: code, PerPage: 100, Page: page})
			if err != nil {
				h.t.Fatalf("list tasks of %s: %v", code, err)
			}
			for _, tk := range list {
				out[tk.ID] = tk
			}
			if len(list) < 100 {
				break
			}
		}
	}
	return out
}

// stampRun is one container's life, by its own stamps.
type stampRun struct {
	nonce      string
	start, end time.Time
}

// overlaps counts the runs of one task that began before the previous
// one ended.
func overlaps(runs []stampRun) int {
	slices.SortFunc(runs, func(a, b stampRun) int { return a.start.Compare(b.start) })
	n := 0
	for i := 1; i < len(runs); i++ {
		if runs[i].start.Before(runs[i-1].end) {
			n++
		}
	}
	return n
}

// checkFakeStamps reads the stamps of the fake containers. A container
// without an end died with its runner process: it ended when the process
// was seen dead.
func (h *chaosHarness) checkFakeStamps(tasks map[string]wire.Task) (doubled, runs int) {
	t := h.t
	files, err := os.ReadDir(h.stamps)
	if err != nil {
		t.Fatal(err)
	}
	h.deathsMu.Lock()
	defer h.deathsMu.Unlock()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(h.stamps, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		byNonce := map[string]*stampRun{}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			fields := strings.Fields(line)
			if len(fields) != 3 {
				t.Errorf("task %s: stamp line %q", f.Name(), line)
				continue
			}
			ns, _ := strconv.ParseInt(fields[2], 10, 64)
			r := byNonce[fields[1]]
			if r == nil {
				r = &stampRun{nonce: fields[1]}
				byNonce[fields[1]] = r
			}
			if fields[0] == "start" {
				r.start = time.Unix(0, ns)
			} else {
				r.end = time.Unix(0, ns)
			}
		}
		var list []stampRun
		for _, r := range byNonce {
			if r.end.IsZero() {
				pidStr, _, _ := strings.Cut(r.nonce, "-")
				pid, _ := strconv.Atoi(pidStr)
				died, ok := firstDeathAfter(h.deaths[pid], r.start)
				if !ok {
					t.Errorf("task %s: container %s started and never ended, and its runner lives", f.Name(), r.nonce)
					continue
				}
				r.end = died
			}
			list = append(list, *r)
		}
		runs += len(list)
		if n := overlaps(list); n > 0 {
			doubled += n
			t.Errorf("task %s ran twice at once (status %s): %+v", f.Name(), tasks[f.Name()].Status, list)
		}
	}
	return doubled, runs
}

// firstDeathAfter is the first of deaths (in order) at or after start: the
// death of the process that had that pid when a container of it started.
func firstDeathAfter(deaths []time.Time, start time.Time) (time.Time, bool) {
	for _, d := range deaths {
		if !d.Before(start) {
			return d, true
		}
	}
	return time.Time{}, false
}

// realRunBound is the longest a real chaos container can run after its
// start stamp: chaosRealScript sleeps one second, then stamps its end;
// the rest is room for a loaded machine, well under the lease (6 s) that
// must run out before a task can run again.
const realRunBound = 3 * time.Second

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// checkRealStamps reads the stamps real containers wrote to their logs
// (readings of the host's uptime clock). A run whose end never reached the
// log ended when the engine says its container died or was removed; a run
// whose start never reached the log is still seen by the engine.
func (h *chaosHarness) checkRealStamps(c *client.Client, fig *chaosFigures) (doubled, runs int) {
	t := h.t
	up, _ := os.ReadFile("/proc/uptime")
	upSec, _ := strconv.ParseFloat(strings.Fields(string(up))[0], 64)
	boot := time.Now().Add(-time.Duration(upSec * float64(time.Second)))
	// Readings are to 10 ms; the clocks agree to within one.
	const slack = 20 * time.Millisecond
	at := func(s string) time.Time {
		v, _ := strconv.ParseFloat(s, 64)
		return boot.Add(time.Duration(v * float64(time.Second)))
	}
	h.events.mu.Lock()
	engineRuns := map[string][]stampRun{}
	for id, start := range h.events.started {
		// A killed engine reports the exits it missed once it is back:
		// its report is a bound, seconds late, and one it never made
		// none. The script bounds every run by realRunBound.
		end := start.Add(realRunBound)
		if died, ok := h.events.ended[id]; ok {
			end = minTime(end, died)
		}
		engineRuns[h.events.task[id]] = append(engineRuns[h.events.task[id]], stampRun{nonce: id[:12], start: start, end: end})
	}
	h.events.mu.Unlock()
	for id := range fig.real {
		log, err := c.TaskLog(h.ctx, id)
		if err != nil && !client.IsNotFound(err) {
			t.Errorf("log of %s: %v", id, err)
			continue
		}
		byNonce := map[string]*stampRun{}
		for _, line := range strings.Split(string(log), "\n") {
			f := strings.Fields(line)
			if len(f) != 4 || f[0] != "stamp" {
				continue
			}
			r := byNonce[f[2]]
			if r == nil {
				r = &stampRun{nonce: f[2]}
				byNonce[f[2]] = r
			}
			if f[1] == "start" {
				r.start = at(f[3]).Add(-slack)
			} else {
				r.end = at(f[3]).Add(slack)
			}
		}
		var list []stampRun
		for _, r := range byNonce {
			if r.start.IsZero() {
				continue
			}
			if r.end.IsZero() {
				end, ok := h.events.endOf(r.nonce)
				if !ok {
					t.Errorf("task %s: container %s stamped its start, never its end, and the engine saw it end neither", id, r.nonce)
					continue
				}
				// An engine killed while the container ran learns of its
				// exit only once it is back, and reports it then: the
				// event's time is a bound, and may fall seconds after
				// the real end. The script itself ends a second after
				// its start stamp (unless killed sooner), so the run
				// ended by realRunBound after it at the latest.
				r.end = minTime(end, r.start.Add(realRunBound))
			}
			list = append(list, *r)
		}
		runs += len(list)
		if n := overlaps(list); n > 0 {
			doubled += n
			t.Errorf("real task %s ran twice at once, by its stamps: %+v", id, list)
		}
		if n := overlaps(engineRuns[id]); n > 0 {
			doubled += n
			t.Errorf("real task %s ran twice at once, by the engine: %+v", id, engineRuns[id])
		}
	}
	return doubled, runs
}

// checkSchedule proves that the schedule fired once per due time: each
// run it counts is one task, and no two tasks came from one due time, by
// the servers' own record of each run ("schedule fired", with its due
// time and task). A run late for a fault keeps the rhythm (the next is
// due an interval after the last due time), so the gaps between tasks
// alone prove nothing. A server killed between a run's commit and its log
// line leaves the run unrecorded: no more such runs than server kills.
func (h *chaosHarness) checkSchedule(c *client.Client, sid string, tasks map[string]wire.Task, since time.Time) int {
	t := h.t
	sc, err := c.GetSchedule(h.ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	dueOf := map[string]string{} // task id -> due time
	for _, p := range h.servers {
		b, err := os.ReadFile(p.logPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, `msg="schedule fired"`) || !strings.Contains(line, "schedule_id="+sid) {
				continue
			}
			dueOf[logField(line, "task_id")] = logField(line, "due")
		}
	}
	var fired int
	unlogged := 0
	byDue := map[string][]string{}
	for id, tk := range tasks {
		if tk.ScheduleID != sid {
			continue
		}
		fired++
		due, ok := dueOf[id]
		if !ok {
			unlogged++
			continue
		}
		byDue[due] = append(byDue[due], id)
	}
	if fired != sc.RunCount {
		t.Errorf("the schedule counts %d runs and made %d tasks", sc.RunCount, fired)
	}
	for due, ids := range byDue {
		if len(ids) > 1 {
			t.Errorf("the run due %s fired %d times: tasks %v", due, len(ids), ids)
		}
	}
	h.faultsMu.Lock()
	kills := h.faults["server SIGKILL"]
	h.faultsMu.Unlock()
	if unlogged > kills {
		t.Errorf("%d runs of the schedule are in no server's log, with only %d server kills", unlogged, kills)
	}
	if due := int(h.dur / (2 * time.Second)); fired < due/3 {
		t.Errorf("the schedule fired %d times in %v (due %d times)", fired, time.Since(since).Round(time.Second), due)
	}
	return fired
}

// logField reads key=value from a text log line.
func logField(line, key string) string {
	_, v, ok := strings.Cut(line, " "+key+"=")
	if !ok {
		return ""
	}
	if strings.HasPrefix(v, `"`) {
		if s, err := strconv.QuotedPrefix(v); err == nil {
			u, _ := strconv.Unquote(s)
			return u
		}
	}
	f, _, _ := strings.Cut(v, " ")
	return f
}

// A pid seen dead twice (the kernel gave a dead runner's pid to a later
// one): a container started by the first ends at the first's death, not
// 25 minutes later at the second's, which made an hour's soak report six
// tasks run twice at once.
func TestChaosRunEndsAtItsOwnProcessDeath(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 20, 38, 46, 0, time.UTC)
	deaths := []time.Time{t0.Add(2 * time.Second), t0.Add(25 * time.Minute)}
	if got, ok := firstDeathAfter(deaths, t0); !ok || !got.Equal(deaths[0]) {
		t.Errorf("a container started at %v ends at %v (%v), want its process's death at %v", t0, got, ok, deaths[0])
	}
	if got, ok := firstDeathAfter(deaths, t0.Add(time.Minute)); !ok || !got.Equal(deaths[1]) {
		t.Errorf("a container of the second process ends at %v (%v), want %v", got, ok, deaths[1])
	}
	if _, ok := firstDeathAfter(deaths, t0.Add(time.Hour)); ok {
		t.Errorf("a container of a living process was given a death")
	}
}

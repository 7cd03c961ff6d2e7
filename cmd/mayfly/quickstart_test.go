package main

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver/docker"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

// These tests run the real binary as a user would: `mayfly server` as a
// process, the CLI and curl against it.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// mayflyBin returns the binary under test: $MAYFLY_BIN (make test builds
// it) or one built for this test run.
func mayflyBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MAYFLY_BIN"); p != "" {
		return p
	}
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mayfly-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "mayfly")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = err
			t.Logf("go build: %s", out)
		}
	})
	if binErr != nil {
		t.Fatalf("build mayfly: %v", binErr)
	}
	return binPath
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serverProc is a running `mayfly server`.
type serverProc struct {
	cmd     *exec.Cmd
	addr    string
	dataDir string
	mu      sync.Mutex
	out     strings.Builder
	done    chan error
}

func (s *serverProc) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

func startServer(t *testing.T, env ...string) *serverProc {
	t.Helper()
	return startServerAt(t, freeAddr(t), t.TempDir(), env...)
}

// restartServer starts a server again on the address and data of old,
// which must have exited.
func restartServer(t *testing.T, old *serverProc, env ...string) *serverProc {
	t.Helper()
	return startServerAt(t, old.addr, old.dataDir, env...)
}

func startServerAt(t *testing.T, addr, dataDir string, env ...string) *serverProc {
	t.Helper()
	return startServerBin(t, mayflyBin(t), addr, dataDir, env...)
}

// projectOwners maps each bootstrap project id to the test that uses it.
// A server's cleanup removes the code images of its bootstrap project,
// so two tests sharing an id remove each other's images mid-run: a task
// of the other then fails at once with "No such image".
var projectOwners sync.Map

// claimProject makes the bootstrap project of env the test's own, and
// fails the test if another test of this process has it.
func claimProject(t *testing.T, env []string) {
	t.Helper()
	for _, e := range env {
		if p, ok := strings.CutPrefix(e, "MAYFLY_BOOTSTRAP_PROJECT="); ok && p != "" {
			test, _, _ := strings.Cut(t.Name(), "/")
			if owner, _ := projectOwners.LoadOrStore(p, test); owner != test {
				t.Fatalf("bootstrap project %s is %s's too: each test needs a project of its own, since a server's cleanup removes its project's code images", p, owner)
			}
		}
	}
}

// startServerBin starts the server of the binary bin.
func startServerBin(t *testing.T, bin, addr, dataDir string, env ...string) *serverProc {
	t.Helper()
	claimProject(t, env)
	s := &serverProc{addr: addr, dataDir: dataDir, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, "server", "--listen", s.addr, "--data-dir", s.dataDir, "--drain-grace", "5s")
	s.cmd.Env = append(os.Environ(), env...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = pw, pw
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			s.mu.Lock()
			s.out.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
		}
	}()
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		// The code images its runner baked go with the test.
		for _, e := range env {
			if p, ok := strings.CutPrefix(e, "MAYFLY_BOOTSTRAP_PROJECT="); ok && p != "" {
				if d, err := docker.New(context.Background()); err == nil {
					d.RemoveImages(context.Background(), map[string]string{runner.LabelProject: p}, "")
					d.Close()
				}
			}
		}
		if t.Failed() {
			t.Logf("server output:\n%s", s.output())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + s.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return s
		}
		select {
		case err := <-s.done:
			t.Fatalf("server exited: %v\n%s", err, s.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not answer: %v\n%s", err, s.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (s *serverProc) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("server exit after SIGTERM: %v\n%s", err, s.output())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("server did not stop after SIGTERM\n%s", s.output())
	}
}

// TestQuickStart runs the README's quick start as written, against a real
// server with the real Docker engine.
func TestQuickStart(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	testenv.StackImage(t, "busybox")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- quickstart -->\n```sh\n(.*?)```\n<!-- /quickstart -->").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no quickstart block")
	}
	srv := startServer(t, "MAYFLY_BOOTSTRAP_PROJECT=5f0000000000000000000001", "MAYFLY_BOOTSTRAP_TOKEN=quickstart-secret-token")
	script := strings.ReplaceAll(string(m[1]), "127.0.0.1:8080", srv.addr)
	// The block runs from the repository root, where bin/mayfly is.
	script = strings.ReplaceAll(script, "bin/mayfly", mayflyBin(t))
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("quick start failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Pushed code hello",
		"Hello from task ",
		`payload: {"name":"world"}`,
		`payload: {"via":"curl"}`,
		`"status":"complete"`,
		"complete",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("quick start output lacks %q:\n%s", want, out)
		}
	}
	srv.stop(t)
	rid, err := os.ReadFile(filepath.Join(srv.dataDir, "runner-id"))
	if err != nil {
		t.Fatal(err)
	}
	left, err := testenv.Docker(t).ListManaged(context.Background(), strings.TrimSpace(string(rid)))
	if err != nil || len(left) > 0 {
		t.Fatalf("containers left after the quick start: %v %v", left, err)
	}
}

// TestBootstrapPrintsCredentials starts on an empty store without fixed
// values: the server makes up a project and a token and prints them, and
// they work.
func TestBootstrapPrintsCredentials(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	srv := startServer(t, "MAYFLY_BOOTSTRAP_PROJECT=", "MAYFLY_BOOTSTRAP_TOKEN=")
	var project, token string
	deadline := time.Now().Add(10 * time.Second)
	for project == "" || token == "" {
		out := srv.output()
		if m := regexp.MustCompile(`MAYFLY_PROJECT=([0-9a-f]{24})`).FindStringSubmatch(out); m != nil {
			project = m[1]
		}
		if m := regexp.MustCompile(`MAYFLY_TOKEN=(\S+)`).FindStringSubmatch(out); m != nil {
			token = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no credentials printed:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	req, _ := http.NewRequest("GET", "http://"+srv.addr+"/2/projects/"+project, nil)
	req.Header.Set("Authorization", "OAuth "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("printed credentials do not work: %d", resp.StatusCode)
	}
	srv.stop(t)
}

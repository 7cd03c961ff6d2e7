package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// VersitygwEnv names the versitygw binary the S3 tests run against; unset,
// bin/tools/versitygw under the module root (where scripts/setup-s3.sh
// builds it), then $PATH are tried.
const VersitygwEnv = "MAYFLY_VERSITYGW"

// s3DirPrefix starts the name of the directory a test binary's S3 server
// keeps its buckets in; the pid of that binary follows.
const s3DirPrefix = "mayfly-versitygw-"

type s3Server struct {
	once                     sync.Once
	endpoint, access, secret string
	dir                      string
	cmd                      *exec.Cmd
	exited                   chan struct{}
	missing, err             error
}

var s3srv s3Server

// S3 returns the endpoint (http://127.0.0.1:PORT) and credentials of an
// S3-compatible server (versitygw on a posix directory), started once per
// test binary and stopped when it ends (StopS3 from TestMain stops it
// cleanly; the kernel kills it when the test binary dies regardless).
// Tests make their own buckets. Without the binary the test is skipped, or
// failed under MAYFLY_REQUIRE_INTEGRATION=1.
func S3(t testing.TB) (endpoint, access, secret string) {
	t.Helper()
	s3srv.once.Do(func() { s3srv.missing, s3srv.err = s3srv.start() })
	Integration(t, "S3 server (versitygw; run scripts/setup-s3.sh)", s3srv.missing)
	if s3srv.err != nil {
		t.Fatalf("start S3 server: %v", s3srv.err)
	}
	return s3srv.endpoint, s3srv.access, s3srv.secret
}

// StopS3 stops the S3 server, if S3 started one, and removes its data.
// Call it from TestMain after m.Run.
func StopS3() {
	s3srv.stop()
	if s3srv.dir != "" {
		os.RemoveAll(s3srv.dir)
	}
}

func (s *s3Server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// versitygwBinary finds the server binary; the error says where it looked.
func versitygwBinary() (string, error) {
	if p := os.Getenv(VersitygwEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", VersitygwEnv, p, err)
		}
		return p, nil
	}
	var tried []string
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, "bin", "tools", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	tried = append(tried, "$PATH")
	return "", fmt.Errorf("versitygw not found (%s unset; tried %s)", VersitygwEnv, strings.Join(tried, ", "))
}

// moduleRoot is the nearest directory above the working directory (a test
// runs in its package's directory) that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// removeStaleS3Dirs removes the data of servers whose test binary died
// before it could clean up.
func removeStaleS3Dirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), s3DirPrefix+"*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), s3DirPrefix))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// start returns missing when the binary is not there, err when it is but
// does not serve.
func (s *s3Server) start() (missing, err error) {
	bin, err := versitygwBinary()
	if err != nil {
		return err, nil
	}
	removeStaleS3Dirs()
	s.dir = filepath.Join(os.TempDir(), s3DirPrefix+strconv.Itoa(os.Getpid()))
	os.RemoveAll(s.dir)
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	return nil, s.serve(bin, s.dir)
}

// serve starts the server on dataDir with fresh credentials. The free
// port can be taken between our look and the server's bind; then the
// server exits at once and another port is tried.
func (s *s3Server) serve(bin, dataDir string) (err error) {
	s.access, s.secret = "mayfly"+randomHex(4), randomHex(16)
	for attempt := 0; ; attempt++ {
		err = s.run(bin, dataDir)
		if err == nil || attempt == 2 {
			return err
		}
	}
}

// S3At starts a server of its own for this test, keeping its buckets in
// dataDir (a small filesystem, say, to see it fill up), and stops it when
// the test ends.
func S3At(t testing.TB, dataDir string) (endpoint, access, secret string) {
	t.Helper()
	bin, err := versitygwBinary()
	Integration(t, "S3 server (versitygw; run scripts/setup-s3.sh)", err)
	s := &s3Server{}
	if err := s.serve(bin, dataDir); err != nil {
		t.Fatalf("start S3 server on %s: %v", dataDir, err)
	}
	t.Cleanup(s.stop)
	return s.endpoint, s.access, s.secret
}

func (s *s3Server) run(bin, dataDir string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()
	s.endpoint = "http://" + addr

	var out lockedBuffer
	started := make(chan error, 1)
	s.exited = make(chan struct{})
	// The kernel kills the server when the thread that started it ends
	// (Pdeathsig), so that thread is kept for the life of the server: the
	// server dies with the test binary even when TestMain never stops it.
	go func() {
		runtime.LockOSThread()
		cmd := exec.Command(bin,
			"--access", s.access, "--secret", s.secret,
			"--port", addr, "--quiet",
			"posix", dataDir)
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		err := cmd.Start()
		if err == nil {
			s.cmd = cmd
		}
		started <- err
		if err == nil {
			_ = cmd.Wait()
		}
		close(s.exited)
		// The thread stays locked: it ends with this goroutine, which is
		// harmless once the server is gone.
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}

	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-s.exited:
			s.cmd = nil
			return fmt.Errorf("%s exited at start; its output:\n%s", bin, out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.endpoint+"/", nil)
		resp, err := client.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			return nil // any answer, even "access denied", is a server
		}
		if time.Now().After(deadline) {
			_ = s.cmd.Process.Kill()
			<-s.exited
			s.cmd = nil
			return fmt.Errorf("%s does not answer on %s after 30s: %v; its output:\n%s", bin, addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lockedBuffer keeps the server's output for the error that reports its
// failure to start, and no more than that needs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() < 64<<10 {
		b.buf.Write(p)
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A test binary that needs PostgreSQL starts one throw-away server of its
// own (the Debian binaries, a fresh data directory under the temp dir, a
// free loopback port) on first use and gives each test a database of its
// own in it. The server dies with the test binary, however that ends: it
// is started with the parent-death signal set, so a killed test run leaves
// nothing listening, and the next run starts another in a new directory.

// pgUser is the superuser the throw-away cluster is made with.
const pgUser = "mayfly"

type pgServer struct {
	once    sync.Once
	missing string // what is not installed, when err means "cannot run here"
	err     error
	bin     string
	cred    *syscall.Credential
	dir     string
	port    int
	proc    *os.Process
	exited  chan struct{}
	logPath string
	// createOpts ends CREATE DATABASE: copying the template's files is
	// much quicker than writing them through the WAL (15's default) when
	// fsync is off.
	createOpts string
}

var pg pgServer

// Postgres returns the URL of a fresh, empty database on the test binary's
// PostgreSQL server, starting the server on first use. It skips the test
// (or fails it under MAYFLY_REQUIRE_INTEGRATION=1) when PostgreSQL is not
// installed. Call StopPostgres from TestMain to stop the server early; it
// dies with the test binary anyway.
func Postgres(t testing.TB) string {
	t.Helper()
	pg.once.Do(func() { pg.missing, pg.err = pg.start() })
	if pg.missing != "" {
		Integration(t, pg.missing, pg.err)
	}
	if pg.err != nil {
		t.Fatalf("start postgres: %v", pg.err)
	}
	var b [8]byte
	rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pg.admin(ctx, "CREATE DATABASE "+name+pg.createOpts); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE: a store the test forgot to close must not keep the
		// database alive; the cluster is thrown away at the end anyway.
		if err := pg.admin(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	return pg.url(name)
}

// StopPostgres stops the test binary's PostgreSQL server, if it started
// one, and removes its files.
func StopPostgres() {
	if pg.proc == nil {
		return
	}
	// SIGINT is PostgreSQL's fast shutdown: it ends the sessions and stops.
	pg.proc.Signal(syscall.SIGINT)
	select {
	case <-pg.exited:
	case <-time.After(30 * time.Second):
		pg.proc.Kill()
		<-pg.exited
	}
	os.RemoveAll(pg.dir)
}

func (s *pgServer) url(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", pgUser, s.port, db)
}

// admin runs one statement as the superuser on the maintenance database.
func (s *pgServer) admin(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.url("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func (s *pgServer) serverVersion(ctx context.Context) (int, error) {
	conn, err := pgx.Connect(ctx, s.url("postgres"))
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var v string
	if err := conn.QueryRow(ctx, "SHOW server_version_num").Scan(&v); err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

// pgBinDir finds the newest Debian PostgreSQL server binaries, or the ones
// on PATH.
func pgBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return va - vb
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if isExec(filepath.Join(dirs[i], "initdb")) && isExec(filepath.Join(dirs[i], "postgres")) {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && isExec(filepath.Join(filepath.Dir(p), "postgres")) {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no initdb and postgres under /usr/lib/postgresql/*/bin nor on PATH (Debian: apt-get install postgresql)")
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// pgCredential is who the server runs as: PostgreSQL refuses to run as
// root, so root runs it as the postgres user, creating it if needed.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		out, aerr := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres").CombinedOutput()
		if aerr != nil {
			return nil, fmt.Errorf("no postgres user to run the server as, and useradd failed: %v: %s", aerr, out)
		}
		if u, err = user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("look up the postgres user: %w", err)
		}
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (s *pgServer) start() (missing string, err error) {
	if s.bin, err = pgBinDir(); err != nil {
		return "postgresql server binaries", err
	}
	removeStalePostgres()
	if s.cred, err = pgCredential(); err != nil {
		return "", err
	}
	if s.dir, err = os.MkdirTemp("", "mayfly-pg-"); err != nil {
		return "", err
	}
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return "", fmt.Errorf("hand %s to the postgres user: %w", s.dir, err)
		}
	}
	initdb := exec.Command(filepath.Join(s.bin, "initdb"), "-D", filepath.Join(s.dir, "data"), "-U", pgUser,
		"--auth=trust", "--encoding=UTF8", "--no-sync")
	initdb.Dir = s.dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb: %v: %s", err, tail(out, 2048))
	}
	if s.port, err = freePort(); err != nil {
		return "", err
	}
	s.logPath = filepath.Join(s.dir, "postgres.log")
	return "", s.run()
}

// run starts the server on the cluster made by start and waits until it
// answers.
func (s *pgServer) run() error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", filepath.Join(s.dir, "data"),
		"-p", strconv.Itoa(s.port),
		"-k", s.dir, // the unix socket stays in our directory
		"-c", "listen_addresses=127.0.0.1",
		// Every parallel test holds a small pool of its own.
		"-c", "max_connections=400",
		// The cluster is thrown away with the test binary: nothing in it
		// needs to survive a crash of the machine, and the tests run twice
		// as fast without the flushes. (A killed server still recovers:
		// the operating system keeps what it was given.)
		"-c", "fsync=off",
	)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: s.cred,
		// Dies with the test binary, even one killed with SIGKILL.
		Pdeathsig: syscall.SIGKILL,
		// Its own process group, so Kill takes the backends with it.
		Setpgid: true,
	}
	started := make(chan error, 1)
	exited := make(chan struct{})
	s.exited = exited
	go func() {
		// The parent-death signal fires when the thread that started the
		// child exits, not the process: keep this goroutine on its thread
		// for as long as the server runs.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(exited)
			return
		}
		started <- nil
		cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.proc = cmd.Process

	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		version, err := s.serverVersion(ctx)
		cancel()
		if err == nil {
			if version >= 150000 {
				s.createOpts = " STRATEGY FILE_COPY"
			}
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(s.logPath)
			return fmt.Errorf("postgres exited at start: %s", tail(log, 2048))
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.logPath)
			return fmt.Errorf("postgres did not answer within a minute: %v; log: %s", err, tail(log, 2048))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// PostgresServer is a PostgreSQL server of one test's own, for tests that
// kill and restart it.
type PostgresServer struct {
	s pgServer
}

// OwnPostgres starts a throw-away PostgreSQL server for t alone, stopped
// and removed when t ends, with one empty database, and returns it. It
// skips (or fails under MAYFLY_REQUIRE_INTEGRATION=1) like Postgres.
func OwnPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	p := &PostgresServer{}
	missing, err := p.s.start()
	t.Cleanup(func() {
		if p.s.proc != nil {
			p.s.proc.Signal(syscall.SIGINT)
			select {
			case <-p.s.exited:
			case <-time.After(30 * time.Second):
				p.Kill()
			}
		}
		if p.s.dir != "" {
			os.RemoveAll(p.s.dir)
		}
	})
	if missing != "" {
		Integration(t, missing, err)
	}
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.s.admin(ctx, "CREATE DATABASE mayfly"+p.s.createOpts); err != nil {
		t.Fatalf("create database: %v", err)
	}
	return p
}

// URL is the address of the server's database.
func (p *PostgresServer) URL() string { return p.s.url("mayfly") }

// Kill kills the server and every backend with SIGKILL, as a crash of
// PostgreSQL or its host would, and waits until it is gone.
func (p *PostgresServer) Kill() {
	// PostgreSQL's children each start a session of their own, so the
	// process group holds only the postmaster: find them by parent, kill
	// them too, and wait until none is left holding the shared memory
	// (a restart refuses to start beside one).
	children := childrenOf(p.s.proc.Pid)
	syscall.Kill(p.s.proc.Pid, syscall.SIGKILL)
	for _, c := range children {
		syscall.Kill(c, syscall.SIGKILL)
	}
	<-p.s.exited
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		alive := 0
		for _, c := range children {
			if syscall.Kill(c, 0) == nil {
				alive++
			}
		}
		if alive == 0 {
			return
		}
	}
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after
		// its closing parenthesis.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// Restart starts the killed server again on the same files and port, and
// waits until it answers (after its crash recovery).
func (p *PostgresServer) Restart() error { return p.s.run() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// removeStalePostgres deletes the directories of earlier runs whose server
// is gone (a test binary that was killed before it could clean up).
func removeStalePostgres() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "mayfly-pg-*"))
	for _, d := range dirs {
		// Young directories may be another binary's, still in initdb
		// (whose bootstrap processes come and go, pid file and all).
		if fi, err := os.Stat(d); err != nil || time.Since(fi.ModTime()) < 10*time.Minute {
			continue
		}
		if pidFile, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid")); err == nil {
			first, _, _ := bytes.Cut(pidFile, []byte("\n"))
			if pid, err := strconv.Atoi(strings.TrimSpace(string(first))); err == nil && syscall.Kill(pid, 0) == nil {
				continue // still running: another test binary's
			}
		}
		os.RemoveAll(d)
	}
}

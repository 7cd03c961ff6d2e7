// Package drivertest is the contract of driver.Driver as one suite of tests
// that every driver runs against the real thing, so that the runner can
// count on the same behaviour from each. A change of semantics goes into the
// suite first.
//
// The suite needs an image with a BusyBox-like userland (sh, awk, stat,
// seq); the busybox stack is one.
package drivertest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
)

const (
	// taskTimeout bounds every wait for a container; a driver that hangs
	// fails instead of stalling the test binary.
	taskTimeout = 2 * time.Minute
	// cleanupTimeout bounds the removals at the end of a test.
	cleanupTimeout = time.Minute
	// nobody is the unprivileged user tasks run as.
	nobody = "65534:65534"
)

// Run runs the suite. newDriver returns a connected driver for one test and
// arranges its closing (t.Cleanup); image is the image tasks run from.
func Run(t *testing.T, newDriver func(t *testing.T) driver.Driver, image string) {
	for _, tc := range contract {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, setup(t, newDriver, image))
		})
	}
}

// RunOnly runs the cases named in only, for a driver set up to show one
// property (say, with one of its sources of truth taken away).
func RunOnly(t *testing.T, newDriver func(t *testing.T) driver.Driver, image string, only ...string) {
	for _, name := range only {
		i := slices.IndexFunc(contract, func(c contractCase) bool { return c.name == name })
		if i < 0 {
			t.Fatalf("no contract case %q", name)
		}
		tc := contract[i]
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, setup(t, newDriver, image))
		})
	}
}

type contractCase struct {
	name string
	fn   func(t *testing.T, b *bundle)
}

// contract is every case a driver must pass.
var contract = []contractCase{
	{"OutputInterleavedInOrder", testOutputOrder},
	{"OutputDeliveredBeforeWaitReturns", testOutputComplete},
	{"StderrOnly", testStderrOnly},
	{"NoWriters", testNoWriters},
	{"FailingWriter", testFailingWriter},
	{"Entrypoint", testEntrypoint},
	{"ExitCodes", testExitCodes},
	{"EnvWorkDirUser", testEnvWorkDirUser},
	{"ArchiveAndFiles", testArchiveAndFiles},
	{"ArchiveOnly", testArchiveOnly},
	{"FilesOnly", testFilesOnly},
	{"NoNetwork", testNoNetwork},
	{"NoCapabilities", testNoCapabilities},
	{"PidsLimit", testPidsLimit},
	{"MemoryLimitOOM", testMemoryLimit},
	{"StopRunsTermHandler", testStopTerm},
	{"StopKillsAfterGrace", testStopKill},
	{"WaitRespectsContext", testWaitContext},
	{"MissingProgram", testMissingProgram},
	{"MissingImage", testMissingImage},
	{"ImageExists", testImageExists},
	{"DestroyLeavesNothing", testDestroy},
	{"RemoveOrphans", testRemoveOrphans},
	{"Sandbox", testSandbox},
	{"SandboxDiskFill", testSandboxDiskFill},
	{"SandboxForkBomb", testSandboxForkBomb},
	{"SandboxOOM", testSandboxOOM},
	{"SandboxTmpfsIsMemory", testSandboxTmpfsIsMemory},
}

// bundle is what one test works with: its own driver and runner id, so
// tests running in parallel never see each other's containers.
type bundle struct {
	t      *testing.T
	d      driver.Driver
	runner string
	image  string
}

func setup(t *testing.T, newDriver func(t *testing.T) driver.Driver, image string) *bundle {
	t.Helper()
	d := newDriver(t)
	b := &bundle{t: t, d: d, runner: "drivertest-" + randomID(6), image: image}
	// Registered before any container exists, so it runs after their
	// Destroy cleanups: whatever is still there was left behind.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		ids, err := d.ListManaged(ctx, b.runner)
		if err != nil {
			t.Errorf("list containers of runner %s: %v", b.runner, err)
			return
		}
		if len(ids) > 0 {
			t.Errorf("containers of runner %s left behind: %v", b.runner, ids)
			if _, err := d.RemoveOrphans(ctx, b.runner, nil); err != nil {
				t.Errorf("remove leftovers: %v", err)
			}
		}
	})
	return b
}

// spec is a task of the bundle's runner running cmd as nobody, with small
// limits.
func (b *bundle) spec(cmd ...string) driver.Spec {
	return driver.Spec{
		TaskID:      randomID(12),
		RunnerID:    b.runner,
		Image:       b.image,
		Cmd:         cmd,
		User:        nobody,
		MemoryBytes: 64 << 20,
		PidsLimit:   64,
		Labels:      map[string]string{"io.mayfly.test": "drivertest"},
	}
}

// sh is a spec running script with sh -c.
func (b *bundle) sh(script string) driver.Spec {
	return b.spec("sh", "-c", script)
}

// start starts spec and destroys the container when the test ends.
func (b *bundle) start(spec driver.Spec) driver.Handle {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), taskTimeout)
	defer cancel()
	h, err := b.d.Start(ctx, spec)
	if err != nil {
		b.t.Fatalf("start %v: %v", spec.Cmd, err)
	}
	b.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := h.Destroy(ctx); err != nil {
			b.t.Errorf("destroy %s: %v", h.ID(), err)
		}
	})
	return h
}

// wait waits for h with the suite's deadline.
func (b *bundle) wait(h driver.Handle) driver.Result {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), taskTimeout)
	defer cancel()
	res, err := h.Wait(ctx)
	if err != nil {
		b.t.Fatalf("wait for %s: %v", h.ID(), err)
	}
	return res
}

// run runs spec to its end with both writers set.
func (b *bundle) run(spec driver.Spec) (res driver.Result, output, stderr string) {
	b.t.Helper()
	var out, errOut syncBuffer
	spec.Output, spec.Stderr = &out, &errOut
	res = b.wait(b.start(spec))
	return res, out.String(), errOut.String()
}

// runOK runs spec, expects exit 0 and returns its output.
func (b *bundle) runOK(spec driver.Spec) string {
	b.t.Helper()
	res, out, _ := b.run(spec)
	if res.ExitCode != 0 {
		b.t.Fatalf("%v: exit code %d, want 0; output:\n%s", spec.Cmd, res.ExitCode, out)
	}
	return out
}

func testOutputOrder(t *testing.T, b *bundle) {
	// The sleeps make the order of the writes unambiguous: two pipes
	// written at the same instant have no order to keep.
	res, out, errOut := b.run(b.sh(`echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2; sleep 0.2; echo err2 >&2; sleep 0.2; echo out3`))
	if res.ExitCode != 0 {
		t.Fatalf("exit code %d, want 0", res.ExitCode)
	}
	if want := "out1\nerr1\nout2\nerr2\nout3\n"; out != want {
		t.Errorf("output = %q, want %q", out, want)
	}
	if want := "err1\nerr2\n"; errOut != want {
		t.Errorf("stderr = %q, want %q", errOut, want)
	}
}

func testOutputComplete(t *testing.T, b *bundle) {
	// Much output written right before the exit must all be there when
	// Wait returns. The stderr line may land anywhere in the end of
	// stdout, even inside a line: the streams are separate pipes, and seq
	// writes in blocks, not lines.
	res, out, errOut := b.run(b.sh(`seq 1 200000; echo last >&2`))
	if res.ExitCode != 0 {
		t.Fatalf("exit code %d, want 0", res.ExitCode)
	}
	if n := strings.Count(out, "last\n"); n != 1 {
		t.Errorf("stderr line found %d times in the output, want once", n)
	}
	lines := strings.Split(strings.TrimSuffix(strings.Replace(out, "last\n", "", 1), "\n"), "\n")
	for i, line := range lines {
		if line != strconv.Itoa(i+1) {
			t.Fatalf("stdout line %d is %q, want %d (%d lines in all, want 200000)", i+1, line, i+1, len(lines))
		}
	}
	if len(lines) != 200000 {
		t.Errorf("stdout has %d lines, want 200000", len(lines))
	}
	if errOut != "last\n" {
		t.Errorf("stderr = %q, want %q", errOut, "last\n")
	}
}

func testStderrOnly(t *testing.T, b *bundle) {
	var errOut syncBuffer
	spec := b.sh(`echo out; echo err >&2; echo out2`)
	spec.Stderr = &errOut
	res := b.wait(b.start(spec))
	if res.ExitCode != 0 {
		t.Fatalf("exit code %d, want 0", res.ExitCode)
	}
	if got := errOut.String(); got != "err\n" {
		t.Errorf("stderr = %q, want %q", got, "err\n")
	}
}

func testNoWriters(t *testing.T, b *bundle) {
	res := b.wait(b.start(b.sh(`seq 1 10000; seq 1 10000 >&2; exit 4`)))
	if res.ExitCode != 4 {
		t.Errorf("exit code %d, want 4", res.ExitCode)
	}
}

// failingWriter fails every write, as a log shipper whose server is gone.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("writer broken") }

func testFailingWriter(t *testing.T, b *bundle) {
	// More output than any pipe holds: a driver that stopped reading
	// after the writer failed would block the task for ever.
	var errOut syncBuffer
	spec := b.sh(`seq 1 200000; echo done >&2`)
	spec.Output, spec.Stderr = failingWriter{}, &errOut
	res := b.wait(b.start(spec))
	if res.ExitCode != 0 {
		t.Errorf("exit code %d, want 0", res.ExitCode)
	}
	if got := errOut.String(); got != "done\n" {
		t.Errorf("stderr = %q, want %q despite the failing output writer", got, "done\n")
	}
}

func testEntrypoint(t *testing.T, b *bundle) {
	spec := b.spec(`echo "$0" "$1"`, "first")
	spec.Entrypoint = []string{"sh", "-c"}
	// sh -c makes the first argument after the script $0; $1 is unset.
	if out := b.runOK(spec); out != "first \n" {
		t.Errorf("output = %q, want %q", out, "first \n")
	}
	spec = b.spec("echo", "no", "entrypoint")
	spec.Entrypoint = []string{}
	if out := b.runOK(spec); out != "no entrypoint\n" {
		t.Errorf("output = %q, want %q", out, "no entrypoint\n")
	}
}

func testExitCodes(t *testing.T, b *bundle) {
	for _, code := range []int{0, 3} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			t.Parallel()
			sub := *b
			sub.t = t
			res, _, _ := sub.run(sub.sh("exit " + strconv.Itoa(code)))
			if res.ExitCode != code {
				t.Errorf("exit code %d, want %d", res.ExitCode, code)
			}
			if res.OOMKilled {
				t.Errorf("OOMKilled set for a plain exit")
			}
		})
	}
}

func testEnvWorkDirUser(t *testing.T, b *bundle) {
	spec := b.sh(`echo "$FOO"; echo "$EMPTY."; pwd; id -u; id -g`)
	spec.Env = []string{"FOO=bar baz", "EMPTY="}
	spec.WorkDir = "/tmp"
	out := b.runOK(spec)
	if want := "bar baz\n.\n/tmp\n65534\n65534\n"; out != want {
		t.Errorf("output = %q, want %q", out, want)
	}
}

func testArchiveAndFiles(t *testing.T, b *bundle) {
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	now := time.Now()
	add := func(name string, mode int64, uid int, body string) {
		hdr := &tar.Header{Name: name, Mode: mode, Uid: uid, Gid: uid, ModTime: now, Typeflag: tar.TypeReg, Size: int64(len(body))}
		if strings.HasSuffix(name, "/") {
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	add("mnt/task/", 0o755, 65534, "")
	add("mnt/task/hello.txt", 0o644, 65534, "hello")
	add("mnt/task/root.txt", 0o600, 0, "secret")
	add("mnt/task/bin/", 0o755, 65534, "")
	add("mnt/task/bin/run.sh", 0o755, 65534, "#!/bin/sh\necho ran\n")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}

	spec := b.sh(`stat -c '%u:%g %a %n' /mnt/task hello.txt root.txt bin/run.sh payload.json out
cat hello.txt; echo
cat payload.json; echo
./bin/run.sh
cat root.txt 2>/dev/null || echo root.txt unreadable
echo new >new.txt && echo task dir writable
echo x >out/y && echo out dir writable`)
	spec.WorkDir = "/mnt/task"
	spec.Archive = &tarball
	spec.Files = []driver.File{
		{Path: "/mnt/task/payload.json", Mode: 0o600, Data: []byte(`{"a":1}`)},
		{Path: "/mnt/task/out/", Mode: 0o700},
	}
	out := b.runOK(spec)
	want := `65534:65534 755 /mnt/task
65534:65534 644 hello.txt
0:0 600 root.txt
65534:65534 755 bin/run.sh
65534:65534 600 payload.json
65534:65534 700 out
hello
{"a":1}
ran
root.txt unreadable
task dir writable
out dir writable
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
}

func testArchiveOnly(t *testing.T, b *bundle) {
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	script := []byte("echo from tar\n")
	for _, hdr := range []*tar.Header{
		{Name: "mnt/task/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 65534, Gid: 65534},
		{Name: "mnt/task/run.sh", Typeflag: tar.TypeReg, Mode: 0o500, Uid: 65534, Gid: 65534, Size: int64(len(script))},
	} {
		hdr.ModTime = time.Now()
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			if _, err := tw.Write(script); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	spec := b.sh(`stat -c '%u:%g %a' /mnt/task run.sh; sh run.sh; touch x && echo writable`)
	spec.WorkDir = "/mnt/task"
	spec.Archive = &tarball
	if out, want := b.runOK(spec), "65534:65534 750\n65534:65534 500\nfrom tar\nwritable\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
}

func testFilesOnly(t *testing.T, b *bundle) {
	// Parents that no entry names are the engine's to create: root's,
	// and not writable by the task.
	spec := b.sh(`stat -c '%u:%g %a %n' /work /work/in/data.txt; cat /work/in/data.txt; touch /work/x 2>/dev/null || echo parent not writable`)
	spec.Files = []driver.File{{Path: "/work/in/data.txt", Mode: 0o640, Data: []byte("data\n")}}
	want := "0:0 755 /work\n65534:65534 640 /work/in/data.txt\ndata\nparent not writable\n"
	if out := b.runOK(spec); out != want {
		t.Errorf("output %q, want %q", out, want)
	}
}

func testNoNetwork(t *testing.T, b *bundle) {
	// Interfaces as the kernel lists them, without relying on ip(8).
	out := b.runOK(b.sh(`ls /sys/class/net; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '`))
	if want := "lo\nlo\n"; out != want {
		t.Errorf("interfaces = %q, want only lo (%q)", out, want)
	}
}

func testNoCapabilities(t *testing.T, b *bundle) {
	// As root, where capabilities would otherwise be granted.
	spec := b.spec("grep", "-E", "^(CapEff|CapPrm|CapBnd|NoNewPrivs):", "/proc/self/status")
	spec.User = "0:0"
	out := b.runOK(spec)
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, ":")
		fields[k] = strings.TrimSpace(v)
	}
	for _, k := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if fields[k] != "0000000000000000" {
			t.Errorf("%s = %q, want none", k, fields[k])
		}
	}
	if fields["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", fields["NoNewPrivs"])
	}
}

func testPidsLimit(t *testing.T, b *bundle) {
	spec := b.sh(`for i in $(seq 1 30); do sleep 30 & done; echo spawned`)
	spec.PidsLimit = 10
	res, out, errOut := b.run(spec)
	_ = res // the shell goes on after a failed fork; the message is the test
	if !strings.Contains(errOut, "fork") {
		t.Errorf("30 processes under a limit of 10: no fork failure reported; output:\n%s", out)
	}
}

func testMemoryLimit(t *testing.T, b *bundle) {
	// awk doubles a string until it no longer fits: an allocation that
	// grows for sure, in the process that is the container's init.
	spec := b.spec("awk", `BEGIN { s = "x"; while (1) s = s s }`)
	spec.MemoryBytes = 16 << 20
	res, out, _ := b.run(spec)
	if !res.OOMKilled {
		t.Errorf("OOMKilled not set; exit code %d, output:\n%s", res.ExitCode, out)
	}
	if res.ExitCode == 0 {
		t.Errorf("exit code 0 after running out of memory")
	}
}

func testStopTerm(t *testing.T, b *bundle) {
	var out syncBuffer
	spec := b.sh(`trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done`)
	spec.Output = &out
	h := b.start(spec)
	out.waitFor(t, "ready\n")
	ctx, cancel := context.WithTimeout(context.Background(), taskTimeout)
	defer cancel()
	if err := h.Stop(ctx, 30*time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	res := b.wait(h)
	if res.ExitCode != 7 {
		t.Errorf("exit code %d, want 7 from the TERM handler", res.ExitCode)
	}
	if got := out.String(); got != "ready\ngot TERM\n" {
		t.Errorf("output = %q, want the handler's message", got)
	}
}

func testStopKill(t *testing.T, b *bundle) {
	var out syncBuffer
	spec := b.sh(`trap '' TERM; echo ready; while :; do sleep 0.1; done`)
	spec.Output = &out
	h := b.start(spec)
	out.waitFor(t, "ready\n")
	ctx, cancel := context.WithTimeout(context.Background(), taskTimeout)
	defer cancel()
	if err := h.Stop(ctx, 500*time.Millisecond); err != nil {
		t.Fatalf("stop: %v", err)
	}
	res := b.wait(h)
	if res.ExitCode != 128+9 {
		t.Errorf("exit code %d, want 137 (SIGKILL)", res.ExitCode)
	}
	if res.OOMKilled {
		t.Errorf("OOMKilled set for a task killed at the end of its grace")
	}
	// Stopping what has stopped is no error.
	if err := h.Stop(ctx, time.Second); err != nil {
		t.Errorf("second stop: %v", err)
	}
}

func testWaitContext(t *testing.T, b *bundle) {
	h := b.start(b.spec("sleep", "600"))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := h.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait on a running container with a short deadline: err = %v, want DeadlineExceeded", err)
	}
	// A Wait that gave up does not lose the result for the next one.
	stopCtx, stopCancel := context.WithTimeout(context.Background(), taskTimeout)
	defer stopCancel()
	if err := h.Stop(stopCtx, 0); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if res := b.wait(h); res.ExitCode != 128+9 {
		t.Errorf("exit code %d, want 137", res.ExitCode)
	}
}

func testMissingProgram(t *testing.T, b *bundle) {
	var out syncBuffer
	spec := b.spec("/no/such/program")
	spec.Output = &out
	ctx, cancel := context.WithTimeout(context.Background(), taskTimeout)
	defer cancel()
	h, err := b.d.Start(ctx, spec)
	if err != nil {
		if !strings.Contains(err.Error(), "/no/such/program") {
			t.Errorf("start error does not name the program: %v", err)
		}
		b.expectNone(ctx)
		return
	}
	// A driver may also start a shim that reports the failure as the
	// task's own.
	t.Cleanup(func() { _ = h.Destroy(context.Background()) })
	res := b.wait(h)
	if res.ExitCode == 0 {
		t.Errorf("exit code 0 for a missing program")
	}
	if !strings.Contains(out.String()+res.Err, "/no/such/program") {
		t.Errorf("nothing names the missing program; output %q, err %q", out.String(), res.Err)
	}
}

func testMissingImage(t *testing.T, b *bundle) {
	spec := b.sh("true")
	spec.Image = "mayfly-drivertest/no-such-image:" + randomID(4)
	ctx, cancel := context.WithTimeout(context.Background(), taskTimeout)
	defer cancel()
	h, err := b.d.Start(ctx, spec)
	if err == nil {
		_ = h.Destroy(ctx)
		t.Fatalf("start from a missing image succeeded; drivers never pull")
	}
	if !strings.Contains(err.Error(), spec.Image) {
		t.Errorf("start error does not name the image: %v", err)
	}
	b.expectNone(ctx)
}

func testImageExists(t *testing.T, b *bundle) {
	ctx, cancel := context.WithTimeout(context.Background(), taskTimeout)
	defer cancel()
	ok, err := b.d.ImageExists(ctx, b.image)
	if err != nil || !ok {
		t.Errorf("ImageExists(%s) = %v, %v; want true", b.image, ok, err)
	}
	missing := "mayfly-drivertest/no-such-image:" + randomID(4)
	ok, err = b.d.ImageExists(ctx, missing)
	if err != nil || ok {
		t.Errorf("ImageExists(%s) = %v, %v; want false, nil", missing, ok, err)
	}
}

func testDestroy(t *testing.T, b *bundle) {
	h := b.start(b.spec("sleep", "600"))
	ctx, cancel := context.WithTimeout(context.Background(), taskTimeout)
	defer cancel()
	if err := h.Destroy(ctx); err != nil {
		t.Fatalf("destroy a running container: %v", err)
	}
	if err := h.Destroy(ctx); err != nil {
		t.Errorf("second destroy: %v", err)
	}
	b.expectNone(ctx)
	// Wait must not hang on a container that is gone; what it reports is
	// up to the driver.
	if _, err := h.Wait(ctx); errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait after destroy did not return")
	}
	if err := h.Stop(ctx, time.Second); err != nil {
		t.Errorf("stop after destroy: %v", err)
	}
}

func testRemoveOrphans(t *testing.T, b *bundle) {
	kept := b.start(b.spec("sleep", "600"))
	orphans := []driver.Handle{b.start(b.spec("sleep", "600")), b.start(b.spec("sleep", "600"))}
	// A container of another runner is none of this runner's business.
	other := *b
	other.runner = "drivertest-" + randomID(6)
	otherSpec := other.spec("sleep", "600")
	otherH := b.start(otherSpec)

	ctx, cancel := context.WithTimeout(context.Background(), taskTimeout)
	defer cancel()
	n, err := b.d.RemoveOrphans(ctx, b.runner, func(id, _ string) bool { return id == kept.ID() })
	if err != nil {
		t.Fatalf("remove orphans: %v", err)
	}
	if n != len(orphans) {
		t.Errorf("removed %d, want %d", n, len(orphans))
	}
	ids, err := b.d.ListManaged(ctx, b.runner)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if !slices.Equal(ids, []string{kept.ID()}) {
		t.Errorf("left %v, want only the kept %s", ids, kept.ID())
	}
	ids, err = b.d.ListManaged(ctx, other.runner)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if !slices.Equal(ids, []string{otherH.ID()}) {
		t.Errorf("other runner has %v, want %s", ids, otherH.ID())
	}
	all, err := b.d.ListManaged(ctx, "")
	if err != nil {
		t.Fatalf("list all: %v", err)
	}
	if !slices.Contains(all, kept.ID()) || !slices.Contains(all, otherH.ID()) {
		t.Errorf("list of any runner misses ours: %v", all)
	}
	if _, err := b.d.RemoveOrphans(ctx, "", nil); err == nil {
		t.Errorf("remove orphans of every runner (empty id) accepted")
	}
	for _, h := range orphans {
		if err := h.Destroy(ctx); err != nil {
			t.Errorf("destroy of a removed orphan: %v", err)
		}
	}
}

// expectNone fails the test if the bundle's runner has containers.
func (b *bundle) expectNone(ctx context.Context) {
	b.t.Helper()
	ids, err := b.d.ListManaged(ctx, b.runner)
	if err != nil {
		b.t.Fatalf("list: %v", err)
	}
	if len(ids) != 0 {
		b.t.Errorf("containers left behind: %v", ids)
	}
}

// syncBuffer is an output writer that tests can read, and wait on, while
// the driver writes.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// waitFor blocks until the output contains want, failing the test at the
// suite's deadline.
func (s *syncBuffer) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.NewTimer(taskTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if strings.Contains(s.buf.String(), want) {
			s.mu.Unlock()
			return
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("output never contained %q; got %q", want, s.String())
		}
	}
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

package oci_test

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/driver/drivertest"
	"github.com/mayfly-run/mayfly/internal/driver/oci"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

func TestDriver(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	drivertest.Run(t, func(t *testing.T) driver.Driver { return testenv.OCI(t) }, image)
}

// runTrivial starts, waits for and destroys a container running true, and
// returns how long the start to exit took.
func runTrivial(ctx context.Context, d driver.Driver, image string, i int) (time.Duration, error) {
	spec := driver.Spec{
		TaskID: fmt.Sprintf("bench-%d", i), RunnerID: "bench", Image: image,
		Cmd: []string{"true"}, User: "65534:65534", Output: io.Discard,
		ReadOnlyRoot: true, NanoCPUs: 1e9, NoFile: 1024, MemoryBytes: 64 << 20, PidsLimit: 64,
		Tmpfs: []driver.Tmpfs{{Path: "/tmp", SizeBytes: 64 << 20}, {Path: "/mnt/task", SizeBytes: 256 << 20, Owned: true}},
	}
	t0 := time.Now()
	h, err := d.Start(ctx, spec)
	if err != nil {
		return 0, err
	}
	res, err := h.Wait(ctx)
	took := time.Since(t0)
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("exit code %d", res.ExitCode)
	}
	return took, errorsJoin(err, h.Destroy(ctx))
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// BenchmarkStartToExit runs a trivial sandboxed task on the oci and the
// docker driver, interleaved so that both see the same machine, and
// reports each one's mean start-to-exit time and their ratio.
//
//	go test -run '^$' -bench StartToExit -benchtime 20x ./internal/driver/oci/
func BenchmarkStartToExit(b *testing.B) {
	image := testenv.StackImage(b, "busybox")
	o, dk := testenv.OCI(b), testenv.Docker(b)
	ctx := context.Background()
	// The first oci start exports the stack; that is not a start.
	if _, err := runTrivial(ctx, o, image, -1); err != nil {
		b.Fatal(err)
	}
	var tOCI, tDocker time.Duration
	n := 0
	for i := 0; b.Loop(); i++ {
		d1, err := runTrivial(ctx, o, image, i)
		if err != nil {
			b.Fatalf("oci: %v", err)
		}
		d2, err := runTrivial(ctx, dk, image, i)
		if err != nil {
			b.Fatalf("docker: %v", err)
		}
		tOCI += d1
		tDocker += d2
		n++
	}
	b.ReportMetric(float64(tOCI.Microseconds())/1e3/float64(n), "oci-ms/op")
	b.ReportMetric(float64(tDocker.Microseconds())/1e3/float64(n), "docker-ms/op")
	b.ReportMetric(float64(tOCI)/float64(tDocker), "oci/docker")
}

// BenchmarkPhases starts a trivial task with the runner's kind of spec
// (read-only root, two tmpfs, a bind mount, limits) and reports the mean
// of each of the driver's phases.
//
//	go test -run '^$' -bench Phases -benchtime 20x ./internal/driver/oci/
func BenchmarkPhases(b *testing.B) {
	image := testenv.StackImage(b, "busybox")
	var mu sync.Mutex
	var sum oci.Phases
	n := 0
	d, err := oci.New(context.Background(), oci.Options{Dir: testenv.OCIDir(b), Trace: func(_ string, p oci.Phases) {
		mu.Lock()
		defer mu.Unlock()
		sum.Resolve += p.Resolve
		sum.Prepare += p.Prepare
		sum.Spec += p.Spec
		sum.Runtime += p.Runtime
		sum.Run += p.Run
		sum.Drain += p.Drain
		sum.Delete += p.Delete
		n++
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	files := b.TempDir()
	ctx := context.Background()
	run := func(i int) {
		spec := driver.Spec{
			TaskID: fmt.Sprintf("phases-%d", i), RunnerID: "bench", Image: image,
			Entrypoint: []string{}, Cmd: []string{"/bin/sh", "-c", "true"}, User: "65534:65534", Output: io.Discard,
			WorkDir: "/mnt/task", Mounts: []driver.Mount{{Source: files, Target: "/mnt/mayfly", ReadOnly: true}},
			ReadOnlyRoot: true, NanoCPUs: 1e9, NoFile: 1024, MemoryBytes: 64 << 20, PidsLimit: 64,
			Tmpfs: []driver.Tmpfs{{Path: "/tmp", SizeBytes: 64 << 20}, {Path: "/mnt/task", SizeBytes: 256 << 20, Owned: true}},
		}
		h, err := d.Start(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.Wait(ctx); err != nil {
			b.Fatal(err)
		}
		if err := h.Destroy(ctx); err != nil {
			b.Fatal(err)
		}
	}
	run(-1)
	mu.Lock()
	sum, n = oci.Phases{}, 0
	mu.Unlock()
	for i := 0; b.Loop(); i++ {
		run(i)
	}
	mu.Lock()
	defer mu.Unlock()
	if n == 0 {
		return
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 / float64(n) }
	b.ReportMetric(per(sum.Resolve), "resolve-ms")
	b.ReportMetric(per(sum.Prepare), "prepare-ms")
	b.ReportMetric(per(sum.Spec), "spec-ms")
	b.ReportMetric(per(sum.Runtime), "runtime-ms")
	b.ReportMetric(per(sum.Run), "run-ms")
	b.ReportMetric(per(sum.Drain), "drain-ms")
	b.ReportMetric(per(sum.Delete), "delete-ms")
}

// TestDriverEachRuntime runs the contract suite on runc and on crun, each
// forced, where its trial container works on this host (crun does not on
// a hybrid cgroup v1/v2 host with controllers on the v2 side).
func TestDriverEachRuntime(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	chosen := testenv.OCI(t).Runtime() // skips, or fails under MAYFLY_REQUIRE_INTEGRATION=1, where no runtime can work
	for _, rt := range []string{"runc", "crun"} {
		t.Run(rt, func(t *testing.T) {
			path, err := exec.LookPath(rt)
			if err != nil {
				t.Skipf("SKIP: %s is not installed (scripts/setup.sh installs it)", rt)
			}
			if path == chosen {
				t.Skipf("%s is the runtime chosen here: TestDriver runs the suite on it", rt)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			d, err := oci.New(ctx, oci.Options{Dir: testenv.OCIDir(t), Runtime: rt, Log: testenv.Logger(t)})
			cancel()
			if err != nil {
				if strings.Contains(err.Error(), "trial container") {
					t.Skipf("SKIP: %s does not work on this host: %v", rt, err)
				}
				t.Fatal(err)
			}
			d.Close()
			drivertest.Run(t, func(t *testing.T) driver.Driver {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				d, err := oci.New(ctx, oci.Options{Dir: testenv.OCIDir(t), Runtime: rt, Log: testenv.Logger(t)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { d.Close() })
				return d
			}, image)
		})
	}
}

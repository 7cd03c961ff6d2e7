package docker_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/driver/docker"
	"github.com/mayfly-run/mayfly/internal/driver/drivertest"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

func TestDriver(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	drivertest.Run(t, func(t *testing.T) driver.Driver { return testenv.Docker(t) }, image)
}

// oomCases are the contract's cases that end in an OOM kill (of process 1,
// of a child, through a tmpfs) or must not (plain exits, a SIGKILL at the
// end of a stop's grace).
var oomCases = []string{"MemoryLimitOOM", "SandboxOOM", "SandboxTmpfsIsMemory", "ExitCodes", "StopKillsAfterGrace"}

// TestOOMSeenWithoutTheEnginesFlag: the engine's OOM flag comes from an
// event of its shim's, lost at random under load (CI failed on
// SandboxTmpfsIsMemory: dd killed at the limit, the container ending 0
// with no flag; warm containers lost it in two runs of eight). With the
// engine's flag disregarded, the driver's own watch of the container's
// memory cgroup must tell each OOM case of the contract, and no other.
func TestOOMSeenWithoutTheEnginesFlag(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	requireOOMWatch(t)
	drivertest.RunOnly(t, func(t *testing.T) driver.Driver {
		d := testenv.Docker(t)
		docker.IgnoreEngineOOM(d)
		return d
	}, image, oomCases...)
}

// TestWarmOOMSeenWithoutTheEnginesFlag is the same for warm containers,
// whose watch starts before their task is known.
func TestWarmOOMSeenWithoutTheEnginesFlag(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	requireOOMWatch(t)
	drivertest.RunOnly(t, func(t *testing.T) driver.Driver {
		d := testenv.DockerWarm(t, 1)
		docker.IgnoreEngineOOM(d)
		return prewarmed{d, t}
	}, image, oomCases...)
}

func requireOOMWatch(t *testing.T) {
	t.Helper()
	if why := docker.OOMWatchUnsupported(); why != "" {
		t.Skipf("SKIPPED LOUDLY: the driver cannot watch cgroups for OOMs here (%s); the engine's flag is all it has", why)
	}
}

// BenchmarkRun measures what the runner pays per task: start, wait and
// destroy of a container that does nothing, with and without files to copy
// in, and in the sandbox a runner asks for.
func BenchmarkRun(b *testing.B) {
	d := testenv.Docker(b)
	image := testenv.StackImage(b, "busybox")
	for _, variant := range []string{"Bare", "WithFiles", "Sandboxed"} {
		withFiles := variant == "WithFiles"
		b.Run(variant, func(b *testing.B) {
			ctx := context.Background()
			var starts time.Duration
			for i := 0; b.Loop(); i++ {
				spec := driver.Spec{
					TaskID:   fmt.Sprintf("bench-%d", i),
					RunnerID: "bench",
					Image:    image,
					Cmd:      []string{"true"},
					User:     "65534:65534",
					Output:   io.Discard,
				}
				if withFiles {
					spec.Files = []driver.File{{Path: "/mnt/task/payload.json", Data: []byte(`{}`)}}
				}
				if variant == "Sandboxed" {
					// What a runner asks for: read-only root, two capped
					// tmpfs, CPU and open-file limits.
					spec.ReadOnlyRoot, spec.NanoCPUs, spec.NoFile = true, 1e9, 1024
					spec.Tmpfs = []driver.Tmpfs{{Path: "/tmp", SizeBytes: 64 << 20}, {Path: "/mnt/task", SizeBytes: 256 << 20, Owned: true}}
				}
				t0 := time.Now()
				h, err := d.Start(ctx, spec)
				if err != nil {
					b.Fatal(err)
				}
				starts += time.Since(t0)
				if _, err := h.Wait(ctx); err != nil {
					b.Fatal(err)
				}
				if err := h.Destroy(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(starts.Milliseconds())/float64(b.N), "start-ms/op")
		})
	}
}

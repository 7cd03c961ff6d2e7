package docker_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/driver/drivertest"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

func TestDriver(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	drivertest.Run(t, func(t *testing.T) driver.Driver { return testenv.Docker(t) }, image)
}

// BenchmarkRun measures what the runner pays per task: start, wait and
// destroy of a container that does nothing, with and without files to copy
// in.
func BenchmarkRun(b *testing.B) {
	d := testenv.Docker(b)
	image := testenv.StackImage(b, "busybox")
	for _, withFiles := range []bool{false, true} {
		name := "Bare"
		if withFiles {
			name = "WithFiles"
		}
		b.Run(name, func(b *testing.B) {
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

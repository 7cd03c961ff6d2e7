package runner_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// BenchmarkTaskLatency is one trivial task from queue to complete through
// the service, the runner and the Docker engine. Compare it with
// BenchmarkDockerRun from the same run:
//
//	go test -run '^$' -bench 'TaskLatency|DockerRun' -benchtime 20x ./internal/runner/
func BenchmarkTaskLatency(b *testing.B) {
	bd := setup(b, service.Config{}, 1)
	bd.push("true", wire.CodeUpload{Command: "true"}, map[string]string{"x": ""})
	b.ResetTimer()
	for range b.N {
		id := bd.queue(wire.NewTask{CodeName: "true"})[0]
		for {
			tk, err := bd.svc.GetTask(context.Background(), bd.project, id)
			if err != nil {
				b.Fatal(err)
			}
			if store.Terminal(tk.Status) {
				if tk.Status != store.StatusComplete {
					b.Fatalf("task %s: %s %s", id, tk.Status, tk.Msg)
				}
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// BenchmarkDockerRun is the baseline: `docker run --rm --network none` of
// the same stack image running `true`.
func BenchmarkDockerRun(b *testing.B) {
	testenv.Docker(b)
	image := testenv.StackImage(b, "busybox")
	if _, err := exec.LookPath("docker"); err != nil {
		b.Skip("no docker CLI for the baseline")
	}
	b.ResetTimer()
	for range b.N {
		out, err := exec.Command("docker", "run", "--rm", "--network", "none", image, "true").CombinedOutput()
		if err != nil {
			b.Fatalf("docker run: %v %s", err, out)
		}
	}
}

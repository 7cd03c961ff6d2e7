package runner_test

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// TestWarmContainersKeepTheContract runs the task contract, task after
// task, through a docker driver with warm containers: each task, started
// in a container created before it was known, gets its own arguments,
// payload, environment and package, and the runner's orphan sweep (every
// 20 ms here) never takes a warm container for an orphan, waiting or
// running.
func TestWarmContainersKeepTheContract(t *testing.T) {
	t.Parallel()
	image := testenv.StackImage(t, "busybox")
	drv := testenv.DockerWarm(t, 1)
	b := newBundleOn(t, drv, service.Config{}, 1, 64<<20, func(string) string { return image })
	b.push("contract", wire.CodeUpload{Runtime: "sh", FileName: "run.sh", Config: `{"db":"x"}`,
		EnvVars: map[string]string{"GREETING": "hi", "TASK_ID": "not-this"}},
		map[string]string{"run.sh": contractScript, "data.txt": "from the package"})
	const n = 4
	for i := range n {
		payload := `{"order":` + string(rune('0'+i)) + `}`
		taskID := b.queue(wire.NewTask{CodeName: "contract", Payload: payload})[0]
		tk := b.waitEnd(taskID)
		log := b.log(taskID)
		if tk.Status != store.StatusComplete {
			t.Fatalf("task %d: status %s msg %q; log:\n%s", i, tk.Status, tk.Msg, log)
		}
		for _, want := range []string{
			"args: -d /mnt/task -payload /mnt/mayfly/payload.json -config /mnt/mayfly/config.json -id " + taskID,
			"payload: " + payload,
			`config: {"db":"x"}`,
			"env: TASK_ID=" + taskID + " TASK_DIR=/mnt/task CODE_NAME=contract PROJECT_ID=" + b.project + " GREETING=hi",
			"pwd: /mnt/task", "uid: 65534", "data: from the package", "writable: written", "net: lo \n", "to stderr",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("task %d: log lacks %q:\n%s", i, want, log)
			}
		}
	}
	// The first task of the shape warms it; the others find a container
	// waiting, unless the machine is slower to create one than the test
	// to queue the next task.
	if s := drv.WarmStats(); s.Hits < 1 || s.Hits+s.Misses < n {
		t.Errorf("warm stats %+v after %d tasks: no task ran warm", s, n)
	}
	s := drv.WarmStats()
	t.Logf("warm stats %+v", s)
	// The same counts on the runner's metrics.
	rec := httptest.NewRecorder()
	b.metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		fmt.Sprintf("mayfly_runner_warm_starts_total{outcome=\"hit\"} %d\n", s.Hits),
		fmt.Sprintf("mayfly_runner_warm_starts_total{outcome=\"miss\"} %d\n", s.Misses),
		"mayfly_runner_warm_idle ",
		"mayfly_runner_warm_pending ",
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

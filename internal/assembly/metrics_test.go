package assembly_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/driver/fake"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

func scrape(t *testing.T, url, token string) (int, map[string]*dto.MetricFamily) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return 200, fams
}

// value is the sample of family name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// /metrics is scraped while tasks run: the counts move with what was
// queued, leased and ended, requests are labelled by route pattern (no ids
// in labels), the queue's depth comes from the store, and only an admin
// token may read it.
func TestMetricsMoveWithTasks(t *testing.T) {
	t.Parallel()
	const project, token = "5f0000000000000000000a03", "metrics-secret-token"
	drv := fake.New()
	srv, err := assembly.Start(context.Background(), assembly.Config{
		DataDir: t.TempDir(), Service: service.Config{KnownStacks: []string{"busybox"}},
		BootstrapProject: project, BootstrapToken: token,
		Listen: "127.0.0.1:0", Limits: api.DefaultLimits(), Version: "test",
		Runner: &runner.Config{Capacity: 2, StackImage: func(string) string { return "fake/stack" }, LeaseWait: time.Second},
		Driver: drv, DrainGrace: 5 * time.Second, Log: testenv.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	url := "http://" + srv.Addr + "/metrics"
	ctx := context.Background()
	c := client.New("http://"+srv.Addr, token, project)
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	w, _ := zw.Create("run.sh")
	io.WriteString(w, "exit 0\n")
	zw.Close()
	if _, err := c.UploadCode(ctx, wire.CodeUpload{Name: "hello", Runtime: "sh", FileName: "run.sh"}, &zbuf); err != nil {
		t.Fatal(err)
	}

	if st, _ := scrape(t, url, ""); st != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %d, want 401", st)
	}
	st, before := scrape(t, url, token)
	if st != 200 {
		t.Fatalf("/metrics: %d", st)
	}
	if v := value(before, "mayfly_queue_depth", nil); v != 0 {
		t.Fatalf("queue depth before: %v", v)
	}
	if value(before, "go_goroutines", nil) <= 0 || value(before, "mayfly_runner_capacity", nil) != 2 {
		t.Fatalf("runtime or runner gauges missing")
	}

	var ids []string
	for range 3 {
		got, err := c.QueueTasks(ctx, []wire.NewTask{
			{CodeName: "hello", Payload: fake.Payload(fake.Behavior{Out: "x\n"})},
			{CodeName: "hello", Payload: fake.Payload(fake.Behavior{Exit: 2})},
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got...)
	}
	// One parked where no runner serves: it stays in the queue.
	if _, err := c.QueueTasks(ctx, []wire.NewTask{{CodeName: "hello", Cluster: "nowhere"}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if _, err := c.WaitTask(wctx, id, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	var after map[string]*dto.MetricFamily
	// The runner counts a task's end once its report was answered.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, after = scrape(t, url, token)
		if value(after, "mayfly_runner_tasks_ended_total", map[string]string{"code": "hello", "status": "error"}) == 3 ||
			time.Now().After(deadline) {
			break
		}
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"mayfly_tasks_queued_total", map[string]string{"code": "hello"}, 7},
		{"mayfly_tasks_leased_total", nil, 6},
		{"mayfly_queue_wait_seconds", nil, 6},
		{"mayfly_tasks_ended_total", map[string]string{"status": "complete"}, 3},
		{"mayfly_tasks_ended_total", map[string]string{"status": "error"}, 3},
		{"mayfly_runner_tasks_ended_total", map[string]string{"code": "hello", "status": "complete"}, 3},
		{"mayfly_runner_tasks_ended_total", map[string]string{"code": "hello", "status": "error"}, 3},
		{"mayfly_runner_phase_seconds", map[string]string{"phase": "run"}, 6},
		{"mayfly_queue_depth", nil, 1},
		{"mayfly_http_requests_total", map[string]string{"route": "POST /2/projects/{project}/tasks", "code": "200"}, 4},
		{"mayfly_http_requests_total", map[string]string{"route": "GET /metrics", "code": "401"}, 1},
	}
	for _, c := range checks {
		if got := value(after, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// No label carries an id.
	for _, m := range after["mayfly_http_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if strings.Contains(l.GetValue(), project) {
				t.Errorf("a label holds a project id: %s=%s", l.GetName(), l.GetValue())
			}
		}
	}
	if v := value(after, "mayfly_runner_busy_slots", nil); v != 0 {
		t.Errorf("busy slots after every task ended: %v", v)
	}
}

// /readyz asks what the server depends on: the embedded runner's engine
// and the code package store, besides the database and the disk.
func TestReadyzChecksEngineAndBlobs(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	drv := fake.New()
	drv.EngineDown = func() error {
		if down.Load() {
			return errors.New("engine stopped")
		}
		return nil
	}
	dataDir := t.TempDir()
	srv, err := assembly.Start(context.Background(), assembly.Config{
		DataDir: dataDir, Listen: "127.0.0.1:0", Limits: api.DefaultLimits(), Version: "test",
		Runner: &runner.Config{Capacity: 1, StackImage: func(string) string { return "fake/stack" }, LeaseWait: time.Second},
		Driver: drv, DrainGrace: time.Second, Log: testenv.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	ready := func() (int, string) {
		resp, err := http.Get("http://" + srv.Addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitReady := func(wantStatus int, wantText string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			st, body := ready()
			if st == wantStatus && strings.Contains(body, wantText) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz: %d %s; want %d with %q", st, body, wantStatus, wantText)
			}
		}
	}
	waitReady(200, "ok")
	down.Store(true)
	waitReady(503, "container engine")
	down.Store(false)
	waitReady(200, "ok")
	if err := os.Rename(filepath.Join(dataDir, "blobs"), filepath.Join(dataDir, "blobs-gone")); err != nil {
		t.Fatal(err)
	}
	waitReady(503, "code packages")
}

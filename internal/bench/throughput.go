package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mayfly-run/mayfly/internal/wire"
)

// maxPerPost is how many tasks one POST carries: the API's default limit.
const maxPerPost = 1000

// ThroughputResult compares M tasks on a runner of capacity C with M
// `docker run --rm` at parallelism C.
type ThroughputResult struct {
	M           int     `json:"m"`
	C           int     `json:"c"`
	Image       string  `json:"image"`
	DriverName  string  `json:"driver_name"` // Mayfly's runner's
	MayflySecs  float64 `json:"mayfly_wall_seconds"`
	MayflyRate  float64 `json:"mayfly_tasks_per_sec"`
	DockerSecs  float64 `json:"docker_wall_seconds"`
	DockerRate  float64 `json:"docker_tasks_per_sec"`
	EnqueueSecs float64 `json:"mayfly_enqueue_seconds"`
	Target      Target  `json:"target"`
}

// RunThroughput runs the throughput scenario.
func RunThroughput(ctx context.Context, cfg Config) (*ThroughputResult, error) {
	cfg = cfg.withDefaults()
	cli, err := dockerCLI(cfg)
	if err != nil {
		return nil, err
	}
	drv, image, err := taskDriver(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer drv.Close()
	s, err := startServer(ctx, serverOptions{dir: filepath.Join(cfg.WorkDir, "throughput"), driver: drv,
		image: image, capacity: cfg.ThroughputC, http: true})
	if err != nil {
		return nil, err
	}
	defer s.stop()
	res := &ThroughputResult{M: cfg.ThroughputM, C: cfg.ThroughputC, Image: image, DriverName: driverName(cfg)}

	// Warm both up as the latency scenario does, unmeasured.
	if _, _, err := s.runOne(ctx); err != nil {
		return nil, fmt.Errorf("warm-up task: %w", err)
	}
	if _, err := dockerRun(ctx, cli, image); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	base := s.queue.finished.Load()

	t0 := time.Now()
	var ids []string
	for i := 0; i < cfg.ThroughputM; i += maxPerPost {
		batch := make([]wire.NewTask, min(maxPerPost, cfg.ThroughputM-i))
		for j := range batch {
			batch[j] = wire.NewTask{CodeName: codeName}
		}
		got, err := s.client.QueueTasks(ctx, batch)
		if err != nil {
			return nil, err
		}
		ids = append(ids, got...)
	}
	res.EnqueueSecs = time.Since(t0).Seconds()
	if err := s.queue.waitFinished(ctx, base+int64(cfg.ThroughputM)); err != nil {
		return nil, err
	}
	wall := time.Since(t0)
	res.MayflySecs, res.MayflyRate = wall.Seconds(), float64(cfg.ThroughputM)/wall.Seconds()
	// Every task must have completed, or the rate counts failures.
	for _, id := range ids {
		t, err := s.client.GetTask(ctx, id)
		if err != nil {
			return nil, err
		}
		if t.Status != "complete" {
			return nil, fmt.Errorf("task %s ended %s: %s", id, t.Status, t.Msg)
		}
	}

	t0 = time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.ThroughputC)
	for range cfg.ThroughputM {
		g.Go(func() error {
			_, err := dockerRun(gctx, cli, image)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	wall = time.Since(t0)
	res.DockerSecs, res.DockerRate = wall.Seconds(), float64(cfg.ThroughputM)/wall.Seconds()
	res.Target = target("throughput, Mayfly / docker run (tasks/s)", ratio(res.MayflyRate, res.DockerRate), ">=", 1.0)
	return res, nil
}

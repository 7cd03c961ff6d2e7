package queuetest_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/runner/queuetest"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// BenchmarkLeaseRoundTrip measures what a runner waits for a task that is
// already queued, through the service itself (the embedded runner) and
// through HTTP over loopback (a remote runner), in the same run:
//
//	go test -run '^$' -bench LeaseRoundTrip -benchtime 300x ./internal/runner/queuetest/
//
// Each iteration queues one task (not timed), then leases it (timed) and
// reports started, one heartbeat and the finish (timed as the cycle).
func BenchmarkLeaseRoundTrip(b *testing.B) {
	for _, tr := range []struct {
		name  string
		queue func(b *testing.B, srv queuetest.Server) runner.Queue
	}{
		{"embedded", func(b *testing.B, srv queuetest.Server) runner.Queue { return srv.Svc }},
		{"remote", func(b *testing.B, srv queuetest.Server) runner.Queue {
			hs := httptest.NewServer(api.New(srv.Svc, api.Options{Version: "bench"}))
			b.Cleanup(hs.Close)
			return client.NewRunnerQueue(hs.URL, srv.AdminToken)
		}},
	} {
		b.Run(tr.name, func(b *testing.B) {
			srv := queuetest.NewService(b)
			q := tr.queue(b, srv)
			ctx := context.Background()
			if _, err := srv.Svc.UploadCode(ctx, srv.ProjectID, wire.CodeUpload{Name: "b", Stack: "busybox", Command: "true"},
				bytes.NewReader(zipped(b))); err != nil {
				b.Fatal(err)
			}
			leases := make([]time.Duration, 0, b.N)
			cycles := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				if _, err := srv.Svc.QueueTasks(ctx, srv.ProjectID, []wire.NewTask{{CodeName: "b"}}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				jobs, err := q.Lease(ctx, wire.LeaseRequest{RunnerID: "bench", Max: 1, WaitMs: 1000})
				if err != nil || len(jobs) != 1 {
					b.Fatalf("lease: %v %v", jobs, err)
				}
				leases = append(leases, time.Since(start))
				ref := jobs[0].Lease("bench")
				if err := q.Started(ctx, ref); err != nil {
					b.Fatal(err)
				}
				if _, err := q.Heartbeat(ctx, ref); err != nil {
					b.Fatal(err)
				}
				if err := q.Finish(ctx, ref, wire.FinishRequest{Status: "complete"}); err != nil {
					b.Fatal(err)
				}
				cycles = append(cycles, time.Since(start))
			}
			b.ReportMetric(p50(leases), "lease-p50-µs")
			b.ReportMetric(p50(cycles), "cycle-p50-µs")
		})
	}
}

func p50(d []time.Duration) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[len(s)/2].Microseconds())
}

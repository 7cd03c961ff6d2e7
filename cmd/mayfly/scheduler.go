package main

import (
	"context"
	"log/slog"

	"github.com/mayfly-run/mayfly/internal/scheduler"
	"github.com/mayfly-run/mayfly/internal/service"
)

// startScheduler runs the schedule loop until ctx ends or the returned
// stop is called; stop waits for the loop, so no run is being claimed when
// the store closes.
func startScheduler(ctx context.Context, svc *service.Service, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = scheduler.New(svc, scheduler.Config{Log: log}).Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

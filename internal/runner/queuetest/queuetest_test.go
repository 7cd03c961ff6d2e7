package queuetest_test

import (
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/mayfly-run/mayfly/internal/api"
	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/runner"
	"github.com/mayfly-run/mayfly/internal/runner/queuetest"
	"github.com/mayfly-run/mayfly/internal/service"
)

var (
	_ runner.Queue = (*service.Service)(nil)
	_ runner.Queue = (*client.RunnerQueue)(nil)
)

// The embedded runner's queue: the service itself.
func TestService(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T) (runner.Queue, queuetest.Fixture) {
		srv := queuetest.NewService(t)
		return srv.Svc, queuetest.Fixture{Server: srv,
			IsLeaseLost: func(err error) bool { return errors.Is(err, service.ErrLeaseLost) }}
	})
}

// A remote runner's queue: the HTTP client against the real API handler
// over loopback.
func TestHTTP(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T) (runner.Queue, queuetest.Fixture) {
		srv := queuetest.NewService(t)
		hs := httptest.NewServer(api.New(srv.Svc, api.Options{Version: "test"}))
		t.Cleanup(hs.Close)
		return client.NewRunnerQueue(hs.URL, srv.AdminToken), queuetest.Fixture{Server: srv,
			IsLeaseLost: client.IsLeaseLost,
			BadCredentials: func() runner.Queue {
				return client.NewRunnerQueue(hs.URL, "not-a-runner-token-at-all")
			}}
	})
}

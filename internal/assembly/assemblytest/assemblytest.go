// Package assemblytest starts Mayfly's parts for a test through the same
// assembly `mayfly server` uses, so test set-ups are put together the one
// way the server is. It is apart from testenv, which packages below the
// assembly use and so must not import it.
package assemblytest

import (
	"context"
	"testing"

	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

// Start starts the parts cfg asks for, on a fresh data directory unless
// cfg names one, and stops them when the test ends. Logs are discarded
// unless MAYFLY_TEST_LOG is set.
func Start(t testing.TB, cfg assembly.Config) *assembly.Server {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Log == nil {
		cfg.Log = testenv.Logger(t)
	}
	s, err := assembly.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start the server's parts: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

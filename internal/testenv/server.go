package testenv

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/mayfly-run/mayfly/internal/assembly"
)

// Server starts Mayfly's parts through the same assembly `mayfly server`
// uses, on a fresh data directory unless cfg names one, and stops them when
// the test ends. Logs are discarded unless MAYFLY_TEST_LOG is set.
func Server(t testing.TB, cfg assembly.Config) *assembly.Server {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Log == nil {
		cfg.Log = Logger(t)
	}
	s, err := assembly.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start the server's parts: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Logger is quiet, or with MAYFLY_TEST_LOG set, logs at debug level to
// stderr, each line naming the test.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("MAYFLY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

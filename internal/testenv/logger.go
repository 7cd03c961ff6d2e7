package testenv

import (
	"io"
	"log/slog"
	"os"
	"testing"
)

// Logger is quiet, or with MAYFLY_TEST_LOG set, logs at debug level to
// stderr, each line naming the test.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("MAYFLY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

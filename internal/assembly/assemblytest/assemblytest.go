// Package assemblytest starts Mayfly's parts for a test through the same
// assembly `mayfly server` uses, so test set-ups are put together the one
// way the server is. It is apart from testenv, which packages below the
// assembly use and so must not import it.
package assemblytest

import (
	"context"
	"os"
	"testing"

	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

// StoreEnv picks the store test set-ups run on: unset or "sqlite" for
// SQLite in the data directory, "postgres" for a fresh database on the
// test binary's PostgreSQL cluster (testenv.Postgres). `make test` runs
// the set-ups on both.
const StoreEnv = "MAYFLY_TEST_STORE"

// Start starts the parts cfg asks for, on a fresh data directory unless
// cfg names one, and stops them when the test ends. Logs are discarded
// unless MAYFLY_TEST_LOG is set.
func Start(t testing.TB, cfg assembly.Config) *assembly.Server {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.DatabaseURL == "" {
		switch store := os.Getenv(StoreEnv); store {
		case "", "sqlite":
		case "postgres":
			cfg.DatabaseURL = testenv.Postgres(t)
		default:
			t.Fatalf("%s=%q: use sqlite or postgres", StoreEnv, store)
		}
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

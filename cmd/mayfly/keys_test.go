package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mayfly-run/mayfly/internal/api"
)

// A key file cut short must stop the server: making a new key would
// silently invalidate every task token (task-token.key) or every API token
// (token-hash.key).
func TestServerRefusesDamagedKeyFiles(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"task-token.key", "token-hash.key"} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), []byte("cut short"), 0o600); err != nil {
			t.Fatal(err)
		}
		c := serverConfig{Listen: "127.0.0.1:0", DataDir: dir, RunnerCapacity: 1, LogLevel: "error", LogFormat: "text",
			Limits: api.DefaultLimits(), taskLimits: taskLimits{TaskCPUs: 1, TaskNoFile: 1024, TaskTmpMB: 64, TaskDirMB: 256}}
		err := runServer(context.Background(), c, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), name) {
			t.Fatalf("start with a damaged %s: %v, want an error naming the file", name, err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, name)); string(b) != "cut short" {
			t.Fatalf("%s was rewritten", name)
		}
	}
}

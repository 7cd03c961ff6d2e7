package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver/docker"
)

var (
	launcherOnce sync.Once
	launcherPath string
	launcherErr  error
)

// Launcher returns the path of a static mayfly-launch, built once per test
// process: test binaries themselves are not static (-race links libc), so
// they cannot serve as one.
func Launcher(t testing.TB) string {
	t.Helper()
	launcherOnce.Do(func() { launcherPath, launcherErr = buildLauncher() })
	Integration(t, "a static mayfly-launch, built with the go command", launcherErr)
	return launcherPath
}

func buildLauncher() (string, error) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the launcher is built with the go command, and none is on PATH: %w", err)
	}
	base := filepath.Join(os.TempDir(), fmt.Sprintf("mayfly-test-launch-%d", os.Geteuid()))
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	// Those of test processes long gone.
	if old, _ := filepath.Glob(filepath.Join(base, "*")); len(old) > 0 {
		for _, o := range old {
			if st, err := os.Stat(o); err == nil && time.Since(st.ModTime()) > 6*time.Hour {
				os.RemoveAll(o)
			}
		}
	}
	dir, err := os.MkdirTemp(base, "")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "mayfly-launch")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "build", "-o", out, "github.com/mayfly-run/mayfly/cmd/mayfly-launch")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, b)
	}
	return out, docker.CheckLauncher(out)
}

// DockerWarm returns a driver connected to the local engine that keeps n
// warm containers per shape, closed when the test ends.
func DockerWarm(t testing.TB, n int) *docker.Driver {
	t.Helper()
	launcher := Launcher(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := docker.NewWithOptions(ctx, docker.Options{WarmContainers: n, Launcher: launcher})
	Integration(t, "docker engine", err)
	t.Cleanup(func() { d.Close() })
	return d
}

// Package testenv gives integration tests the real things they run against
// (a Docker engine, stack images) and one policy for when those are missing:
// skip loudly, or fail when MAYFLY_REQUIRE_INTEGRATION=1, so that a machine
// that should run everything cannot pass by skipping.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver/docker"
	"github.com/mayfly-run/mayfly/internal/stack"
)

// RequireEnv is the variable that turns skipped integration tests into
// failures.
const RequireEnv = "MAYFLY_REQUIRE_INTEGRATION"

// Integration skips the test when err says that what it needs (named by
// what) is unavailable, or fails it when integration tests are required.
// A nil err does nothing.
func Integration(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s unavailable and %s=1: %v", what, RequireEnv, err)
		return
	}
	t.Skipf("SKIPPING: %s unavailable: %v (set %s=1 to make this fail)", what, err, RequireEnv)
}

// Docker returns a driver connected to the local engine, closed when the
// test ends.
func Docker(t testing.TB) *docker.Driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := docker.New(ctx)
	Integration(t, "docker engine", err)
	t.Cleanup(func() { d.Close() })
	return d
}

// buildTimeout bounds the build of one stack image, including the wait for
// another test process that builds it.
const buildTimeout = 10 * time.Minute

type stackBuild struct {
	once  sync.Once
	image string
	err   error
	// missing names what is not there when err means "cannot build
	// here" (no engine, no host files) rather than "the build is broken".
	missing string
}

var (
	stackBuildsMu sync.Mutex
	stackBuilds   = map[string]*stackBuild{}
)

// StackImage returns the image of stack name, built first if it is missing
// or out of date. One test process builds each stack once; the lock in
// stack.Build keeps the test binaries of several packages from building
// at once.
func StackImage(t testing.TB, name string) string {
	t.Helper()
	stackBuildsMu.Lock()
	b := stackBuilds[name]
	if b == nil {
		b = &stackBuild{}
		stackBuilds[name] = b
	}
	stackBuildsMu.Unlock()

	b.once.Do(func() { b.image, b.missing, b.err = buildStack(name) })
	if b.missing != "" {
		Integration(t, b.missing, b.err)
	}
	if b.err != nil {
		t.Fatalf("stack %s: %v", name, b.err)
	}
	return b.image
}

func buildStack(name string) (image, missing string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	d, err := docker.New(ctx)
	if err != nil {
		return "", "docker engine", err
	}
	d.Close()

	// stack.Build holds a machine-wide lock per stack, so test binaries
	// of several packages never build the same stack at once.
	var out bytes.Buffer
	image, _, err = stack.Build(ctx, name, &out, false)
	switch {
	case errors.Is(err, stack.ErrMissingHostFile):
		return "", "host files of stack " + name, err
	case errors.Is(err, stack.ErrMissingTool), errors.Is(err, stack.ErrNeedsRoot):
		return "", "what the base image of stack " + name + " is made with", err
	}
	if err != nil {
		return "", "", fmt.Errorf("build: %w\nbuild output:\n%s", err, tail(out.Bytes(), 4096))
	}
	return image, "", nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

package testenv

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver/oci"
)

var (
	ociDirOnce sync.Once
	ociDir     string
	ociDirErr  error
)

// OCIDir is the directory the oci driver of every test in this process
// keeps its layers in: a stack is exported from the engine once per test
// binary, not once per test. It is removed by nothing; the layers are a
// cache, keyed by image id, under the system's temporary directory.
func OCIDir(t testing.TB) string {
	t.Helper()
	ociDirOnce.Do(func() {
		ociDir = os.TempDir() + "/mayfly-test-oci"
		ociDirErr = os.MkdirAll(ociDir, 0o700)
	})
	if ociDirErr != nil {
		t.Fatalf("oci driver directory: %v", ociDirErr)
	}
	return ociDir
}

// OCI returns an oci driver (runc, overlayfs, root, and the local Docker
// engine the stacks come from), closed when the test ends.
func OCI(t testing.TB) *oci.Driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := oci.New(ctx, oci.Options{Dir: OCIDir(t), Log: Logger(t)})
	Integration(t, "oci driver (runc, root, overlayfs, docker engine)", err)
	t.Cleanup(func() { d.Close() })
	return d
}

package oci_test

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/driver/oci"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

// halfBakeEnv makes the test binary a runner that bakes a code layer from
// its stdin and is killed half way.
const halfBakeEnv = "MAYFLY_OCI_HALF_BAKE_DIR"

func halfBaker(dir string) int {
	ctx := context.Background()
	d, err := oci.New(ctx, oci.Options{Dir: dir})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	err = d.Bake(ctx, driver.BakeSpec{Ref: "mayfly/code:half-baked", Base: os.Getenv("MAYFLY_OCI_HALF_BAKE_IMAGE"), Archive: os.Stdin})
	fmt.Println("bake ended:", err)
	return 1
}

func newDriver(t *testing.T, dir string) *oci.Driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := oci.New(ctx, oci.Options{Dir: dir, Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func age(t *testing.T, p string, by time.Duration) {
	t.Helper()
	at := time.Now().Add(-by)
	if err := os.Chtimes(p, at, at); err != nil {
		t.Fatal(err)
	}
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestCrashHalfWayThroughALayer is the crash: a runner is killed with
// SIGKILL while a code layer is half unpacked. The half-written directory
// is never taken for a layer, survives the start-up sweep of another
// driver while its writer lives (however old), and is removed by the
// first start after the writer died. A bundle a crash left unlabelled
// goes too; a young one (another driver's start in progress) stays.
func TestCrashHalfWayThroughALayer(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	testenv.OCI(t)
	dir := t.TempDir()
	// The stack layer first, so that the writer's only layer is the code.
	if _, err := newDriver(t, dir).StackRootFS(context.Background(), image); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), halfBakeEnv+"="+dir, "MAYFLY_OCI_HALF_BAKE_IMAGE="+image)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	// Half an archive: one file, and no end.
	tw := tar.NewWriter(stdin)
	body := strings.Repeat("x", 1<<16)
	if err := tw.WriteHeader(&tar.Header{Name: "mnt/code/first.bin", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	_ = tw.Flush()

	tmp := filepath.Join(dir, "tmp")
	var half string
	for deadline := time.Now().Add(time.Minute); half == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, name := range entries(t, tmp) {
			if _, err := os.Stat(filepath.Join(tmp, name, "rootfs", "mnt", "code", "first.bin")); err == nil {
				half = filepath.Join(tmp, name)
			}
		}
	}
	if half == "" {
		t.Fatalf("the writer never got half way; tmp holds %v", entries(t, tmp))
	}
	// An unlabelled bundle from a crash between making and labelling it,
	// and one just made by a start in progress.
	stale := filepath.Join(dir, "bundles", "mayfly-crashed-start-0000")
	young := filepath.Join(dir, "bundles", "mayfly-starting-0000")
	for _, b := range []string{stale, young} {
		if err := os.MkdirAll(filepath.Join(b, "rootfs"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	age(t, stale, time.Hour)

	// Old, but its writer lives and holds it.
	age(t, half, time.Hour)
	newDriver(t, dir)
	if _, err := os.Stat(half); err != nil {
		t.Fatalf("the sweep removed a layer its live writer was filling: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true

	d := newDriver(t, dir)
	if _, err := os.Stat(half); !os.IsNotExist(err) {
		t.Errorf("half-written layer %s still there after the next start (%v)", half, err)
	}
	if left := entries(t, tmp); len(left) != 0 {
		t.Errorf("tmp still holds %v", left)
	}
	if ok, err := d.ImageExists(context.Background(), "mayfly/code:half-baked"); err != nil || ok {
		t.Errorf("the half-baked layer exists = %v (%v); want never", ok, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the unlabelled bundle of a crashed start is still there (%v)", err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("the sweep removed a bundle a start may be making: %v", err)
	}
}

// dockerBuild tags a one-line rebuild of base as ref and returns its id.
func dockerBuild(t *testing.T, base, ref, label string) string {
	t.Helper()
	cmd := exec.Command("docker", "build", "-q", "-t", ref, "-")
	cmd.Stdin = strings.NewReader("FROM " + base + "\nLABEL io.mayfly.test.generation=" + label + "\n")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker build: %v: %s", err, stderr.String())
	}
	lines := strings.Fields(string(out))
	if len(lines) == 0 {
		t.Fatalf("docker build printed no id: %s", stderr.String())
	}
	id := lines[len(lines)-1]
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", id).Run() })
	return id
}

func baseLayer(dir, id string) string {
	return filepath.Join(dir, "layers", "base", strings.TrimPrefix(id, "sha256:"))
}

// TestRebuiltStackLeavesNoOldLayer is the rebuild: a stack's image is
// built again under the same name. Its old root file system layer, and the
// code layers baked on it (the runner names code layers after the stack's
// current id, so none is asked for again), are removed at the next start,
// or as soon as the new one is exported; a layer a running container has
// mounted stays until it ends.
func TestRebuiltStackLeavesNoOldLayer(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	testenv.OCI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	ref := fmt.Sprintf("mayfly-test/oci-gc:%d", time.Now().UnixNano())
	v1 := dockerBuild(t, image, ref, "1")

	d1 := newDriver(t, dir)
	if _, err := d1.StackRootFS(ctx, ref); err != nil {
		t.Fatal(err)
	}
	code := "mayfly/code:on-v1"
	if err := d1.Bake(ctx, driver.BakeSpec{Ref: code, Base: ref}); err != nil {
		t.Fatal(err)
	}
	h, err := d1.Start(ctx, driver.Spec{TaskID: "gc-busy", RunnerID: "oci-gc-test", Image: ref, User: "65534:65534",
		Cmd: []string{"sleep", "600"}, PidsLimit: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Destroy(context.Background())

	v2 := dockerBuild(t, image, ref, "2")
	d2 := newDriver(t, dir)
	if ok, _ := d2.ImageExists(ctx, code); ok {
		t.Error("the code layer on the old stack layer survived the start after the rebuild")
	}
	if _, err := os.Stat(baseLayer(dir, v1)); err != nil {
		t.Fatalf("the old stack layer went while a container had it mounted: %v", err)
	}
	if err := h.Destroy(ctx); err != nil {
		t.Fatal(err)
	}

	// The rebuild seen by a driver that runs on: exporting the new layer
	// removes the old one.
	if _, err := d2.StackRootFS(ctx, ref); err != nil {
		t.Fatal(err)
	}
	d2.Close() // waits for the collection
	if _, err := os.Stat(baseLayer(dir, v1)); !os.IsNotExist(err) {
		t.Errorf("old stack layer still there after the new one was exported (%v)", err)
	}
	if _, err := os.Stat(baseLayer(dir, v2)); err != nil {
		t.Fatalf("the current stack layer: %v", err)
	}

	// Rebuilt again while no driver runs: the next start removes it.
	dockerBuild(t, image, ref, "3")
	newDriver(t, dir)
	if _, err := os.Stat(baseLayer(dir, v2)); !os.IsNotExist(err) {
		t.Errorf("stack layer of the previous build still there after a start (%v)", err)
	}
	if left := entries(t, filepath.Join(dir, "layers", "base")); len(left) != 0 {
		t.Errorf("layers left: %v", left)
	}
}

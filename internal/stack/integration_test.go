package stack_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/stack"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

func TestBusyboxStack(t *testing.T) {
	t.Parallel()
	d := testenv.Docker(t)
	img := testenv.StackImage(t, "busybox")
	if img != stack.Image("busybox") {
		t.Errorf("image %q, want %q", img, stack.Image("busybox"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Built (by StackImage) and unchanged since: no second build.
	again, built, err := stack.Build(ctx, "busybox", nil, false)
	if err != nil || built || again != img {
		t.Errorf("Build again = %q, %v, %v; want %q, false, nil", again, built, err, img)
	}
	installed, err := stack.Installed(ctx)
	if err != nil || !slices.Contains(installed, "busybox") {
		t.Errorf("Installed() = %v, %v; want busybox among them", installed, err)
	}

	var out bytes.Buffer
	h, err := d.Start(ctx, driver.Spec{
		TaskID:   "stack-test",
		RunnerID: "stack-test-" + randomID(),
		Image:    img,
		Cmd:      []string{"sh", "-c", "echo ok; ls -ld /tmp | cut -c1-10; id -un"},
		User:     "65534:65534",
		Output:   &out,
	})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = h.Destroy(context.Background()) })
	res, err := h.Wait(ctx)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("wait = %+v, %v; output:\n%s", res, err, out.String())
	}
	if want := "ok\ndrwxrwxrwt\nnobody\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}

// TestBuildOnceThenSkip builds a throw-away stack of its own, so it may
// force builds without pulling the busybox image from under other tests.
func TestBuildOnceThenSkip(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	base := testenv.StackImage(t, "busybox")
	name := "test-" + randomID()
	recipe := func(dockerfile string) fstest.MapFS {
		return fstest.MapFS{
			name + "/Dockerfile": {Data: []byte(dockerfile)},
			name + "/stack.json": {Data: []byte(`{"description": "test"}`)},
		}
	}
	// Steps of this test's own (the name in them): parallel tests that
	// built the same step on the same base would share its cached layer,
	// and one's removal of its images took the layer from under the
	// other's build ("unable to find image").
	v1 := recipe("FROM " + base + "\nRUN echo v1 " + name + " >/version\n")
	ref := stack.Image(name)
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true}); err != nil {
			t.Errorf("remove test image: %v", err)
		}
		cli.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	build := func(fsys fstest.MapFS, force, wantBuilt bool) string {
		t.Helper()
		var out bytes.Buffer
		got, built, err := stack.BuildFrom(ctx, fsys, "/", name, &out, force)
		if err != nil {
			t.Fatalf("build: %v\n%s", err, out.String())
		}
		if got != ref || built != wantBuilt {
			t.Fatalf("build (force %v) = %q, built %v; want %q, built %v", force, got, built, ref, wantBuilt)
		}
		inspect, err := cli.ImageInspect(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if inspect.Config.Labels[stack.LabelStack] != name || !strings.HasPrefix(inspect.Config.Labels[stack.LabelDigest], "sha256:") {
			t.Errorf("labels %v", inspect.Config.Labels)
		}
		if wantBuilt && !strings.Contains(out.String(), "Successfully") {
			t.Errorf("no build progress in the output:\n%s", out.String())
		}
		return inspect.ID
	}
	first := build(v1, false, true)
	if again := build(v1, false, false); again != first {
		t.Errorf("skipped build changed the image %s -> %s", first, again)
	}
	forced := build(v1, true, true)
	if forced == first {
		t.Errorf("forced build without cache gave the same image")
	}
	if _, err := cli.ImageInspect(ctx, first); err == nil {
		t.Errorf("image %s untagged by the rebuild is still there", first)
	}
	if changed := build(recipe("FROM "+base+"\nRUN echo v2 "+name+" >/version\n"), false, true); changed == forced {
		t.Errorf("changed recipe gave the same image")
	}
}

func TestBuildFailureReported(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	base := testenv.StackImage(t, "busybox")
	name := "test-" + randomID()
	fsys := fstest.MapFS{
		name + "/Dockerfile": {Data: []byte("FROM " + base + "\nRUN exit 3\n")},
		name + "/stack.json": {Data: []byte(`{}`)},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	_, built, err := stack.BuildFrom(ctx, fsys, "/", name, &out, false)
	if err == nil || built {
		t.Fatalf("failing build: built %v, err %v", built, err)
	}
	if !strings.Contains(err.Error(), "non-zero code: 3") || !strings.Contains(err.Error(), name) {
		t.Errorf("error %q does not tell what failed", err)
	}
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestBaseReused builds a stack with a debootstrap base whose image exists
// already (the busybox image, tagged as that base): neither the first build
// nor one after a Dockerfile change may run debootstrap.
func TestBaseReused(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	busybox := testenv.StackImage(t, "busybox")
	name := "test-" + randomID()
	spec := stack.Debootstrap{Suite: "bookworm", Include: []string{"no-such-package-" + randomID()}}
	recipe := func(step string) fstest.MapFS {
		return fstest.MapFS{
			name + "/Dockerfile": {Data: []byte("ARG BASE\nFROM ${BASE}\nRUN " + step + "\n")},
			name + "/stack.json": {Data: []byte(`{"debootstrap": {"suite": "bookworm", "include": ["` + spec.Include[0] + `"]}}`)},
		}
	}
	base := stack.BaseImage(name, spec)
	ref := stack.Image(name)
	t.Cleanup(func() { os.Remove(filepath.Join(os.TempDir(), "mayfly-stack-"+name+".lock")) })
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := cli.ImageTag(ctx, busybox, base); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, r := range []string{ref, base} {
			if _, err := cli.ImageRemove(ctx, r, image.RemoveOptions{PruneChildren: true}); err != nil {
				t.Errorf("remove test image %s: %v", r, err)
			}
		}
		cli.Close()
	})
	// The name keeps the steps this test's own (see TestBuildOnceThenSkip).
	for _, step := range []string{"echo v1 " + name + " >/version", "echo v2 " + name + " >/version"} {
		var out bytes.Buffer
		got, built, err := stack.BuildFrom(ctx, recipe(step), "/", name, &out, false)
		if err != nil || !built || got != ref {
			t.Fatalf("build (%s) = %q, %v, %v\n%s", step, got, built, err, out.String())
		}
		if !strings.Contains(out.String(), "debootstrap skipped") || strings.Contains(out.String(), "--variant") {
			t.Errorf("build (%s) did not reuse the base:\n%s", step, out.String())
		}
	}
	inspect, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if inspect.Config.Labels[stack.LabelStack] != name {
		t.Errorf("labels %v", inspect.Config.Labels)
	}
}

// TestDebootstrapFailureReported makes a base that cannot be made (a package
// Debian does not have): the error says what failed, and no work folder is
// left behind.
func TestDebootstrapFailureReported(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	if os.Geteuid() != 0 {
		testenv.Integration(t, "root (debootstrap)", stack.ErrNeedsRoot)
	}
	name := "test-" + randomID()
	fsys := fstest.MapFS{
		name + "/Dockerfile": {Data: []byte("ARG BASE\nFROM ${BASE}\n")},
		name + "/stack.json": {Data: []byte(`{"debootstrap": {"suite": "bookworm", "include": ["no-such-package-` + name + `"]}}`)},
	}
	t.Cleanup(func() { os.Remove(filepath.Join(os.TempDir(), "mayfly-stack-"+name+".lock")) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	_, built, err := stack.BuildFrom(ctx, fsys, "/", name, &out, false)
	if errors.Is(err, stack.ErrMissingTool) {
		testenv.Integration(t, "debootstrap", err)
	}
	if err == nil || built {
		t.Fatalf("build with an unknown package: built %v, err %v", built, err)
	}
	if !strings.Contains(err.Error(), "debootstrap bookworm") || !strings.Contains(err.Error(), name) {
		t.Errorf("error %q does not say what failed", err)
	}
	if !strings.Contains(out.String(), "no-such-package-"+name) {
		t.Errorf("debootstrap's own output is not in the build output:\n%s", out.String())
	}
	left, _ := filepath.Glob(filepath.Join(os.TempDir(), "mayfly-base-"+name+"-*"))
	if len(left) > 0 {
		t.Errorf("work folders left: %v", left)
	}
}

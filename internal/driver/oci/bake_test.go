package oci_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

type entry struct {
	name, link, body string
	typ              byte
	mode             int64
	uid              int
}

func tarOf(t *testing.T, entries ...entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.uid,
			Size: int64(len(e.body)), ModTime: time.Now()}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func randomRef() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "mayfly-test/code:" + hex.EncodeToString(b)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestBakeAndRemove: a baked code layer lies on its stack's, keeps the
// archive's owners, runs the entrypoint prefix before the stack's command,
// and is removed only once no container uses it.
func TestBakeAndRemove(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	d := testenv.OCI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref := randomRef()
	labels := map[string]string{"io.mayfly.code-id": ref}
	err := d.Bake(ctx, driver.BakeSpec{Ref: ref, Base: image, WorkDir: "/mnt/code", Labels: labels,
		EntrypointPrefix: []string{"/bin/sh", "-c", `echo prefix; exec "$@"`, "fill"},
		Archive: tarOf(t,
			entry{name: "mnt/code/", typ: tar.TypeDir, mode: 0o750, uid: 65534},
			entry{name: "mnt/code/hello.txt", typ: tar.TypeReg, mode: 0o640, uid: 65534, body: "hello\n"},
		)})
	if err != nil {
		t.Fatalf("bake: %v", err)
	}
	if id, err := d.ImageID(ctx, ref); err != nil || id == "" {
		t.Fatalf("ImageID of a baked ref = %q, %v", id, err)
	}
	var out lockedBuffer
	h, err := d.Start(ctx, driver.Spec{TaskID: "bake", RunnerID: "oci-bake-test", Image: ref, User: "65534:65534",
		ReadOnlyRoot: true, Output: &out,
		Cmd: []string{"sh", "-c", `pwd; stat -c '%u:%g %a' /mnt/code /mnt/code/hello.txt /mnt; cat hello.txt; sleep 600`}})
	if err != nil {
		t.Fatalf("start from the code layer: %v", err)
	}
	defer h.Destroy(context.Background())
	want := "prefix\n/mnt/code\n65534:65534 750\n65534:65534 640\n0:0 755\nhello\n"
	for deadline := time.Now().Add(time.Minute); out.String() != want && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if got := out.String(); got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
	if refs, err := d.ListImages(ctx, labels); err != nil || len(refs) != 1 || refs[0] != ref {
		t.Errorf("ListImages = %v, %v; want [%s]", refs, err, ref)
	}
	if n, err := d.RemoveImages(ctx, labels, ""); err != nil || n != 0 {
		t.Errorf("RemoveImages with a container on the layer removed %d (%v), want 0", n, err)
	}
	if err := h.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := d.RemoveImages(ctx, labels, ""); err != nil || n != 1 {
		t.Errorf("RemoveImages of an unused layer removed %d (%v), want 1", n, err)
	}
	if id, err := d.ImageID(ctx, ref); err != nil || id != "" {
		t.Errorf("ImageID after removal = %q, %v; want none", id, err)
	}
}

// TestArchiveCannotEscape is the attack: an archive whose symbolic links
// point at the host (absolute, and by ../) and then writes through them,
// when baked and when unpacked at a task's start. Nothing may land on the
// host.
func TestArchiveCannotEscape(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	d := testenv.OCI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	host := t.TempDir()
	up := strings.Repeat("../", 40) + strings.TrimPrefix(host, "/")
	attacks := map[string][]entry{
		"absolute link": {
			{name: "mnt/code/abs", typ: tar.TypeSymlink, link: host},
			{name: "mnt/code/abs/pwned-abs", typ: tar.TypeReg, mode: 0o644, body: "x"}},
		"relative link": {
			{name: "mnt/code/rel", typ: tar.TypeSymlink, link: up},
			{name: "mnt/code/rel/pwned-rel", typ: tar.TypeReg, mode: 0o644, body: "x"}},
		"link to a file": {
			{name: "mnt/code/victim", typ: tar.TypeSymlink, link: host + "/victim"},
			{name: "mnt/code/victim", typ: tar.TypeReg, mode: 0o644, body: "x"}},
		"dot-dot name":   {{name: "mnt/code/" + up + "/pwned-dots", typ: tar.TypeReg, mode: 0o644, body: "x"}},
		"hard link":      {{name: "mnt/code/hard", typ: tar.TypeLink, link: up + "/victim"}},
		"parent is link": {{name: "mnt/", typ: tar.TypeSymlink, link: host}, {name: "mnt/pwned-parent", typ: tar.TypeReg, body: "x"}},
	}
	if err := os.WriteFile(filepath.Join(host, "victim"), []byte("host file"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, entries := range attacks {
		ref := randomRef()
		bakeErr := d.Bake(ctx, driver.BakeSpec{Ref: ref, Base: image, Archive: tarOf(t, entries...)})
		if _, err := d.RemoveImage(ctx, ref); err != nil {
			t.Errorf("remove %s: %v", ref, err)
		}
		h, startErr := d.Start(ctx, driver.Spec{TaskID: "escape", RunnerID: "oci-escape-test", Image: image, Cmd: []string{"true"}, Archive: tarOf(t, entries...)})
		if startErr == nil {
			_, _ = h.Wait(ctx)
			_ = h.Destroy(ctx)
		}
		t.Logf("%s: bake: %v; start: %v", name, bakeErr, startErr)
	}
	ents, _ := os.ReadDir(host)
	for _, e := range ents {
		if e.Name() != "victim" {
			t.Errorf("the archive wrote %s on the host", filepath.Join(host, e.Name()))
		}
	}
	if b, _ := os.ReadFile(filepath.Join(host, "victim")); string(b) != "host file" {
		t.Errorf("host file changed to %q", b)
	}
	if ids, _ := d.ListManaged(ctx, "oci-escape-test"); len(ids) > 0 {
		t.Errorf("containers left: %v", ids)
	}
}

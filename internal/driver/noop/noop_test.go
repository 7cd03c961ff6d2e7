package noop_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/driver/noop"
)

func TestStartWaitDestroy(t *testing.T) {
	ctx := context.Background()
	d := noop.New()
	archive := strings.NewReader(strings.Repeat("x", 100000))
	h, err := d.Start(ctx, driver.Spec{TaskID: "t1", RunnerID: "r1", Archive: archive})
	if err != nil {
		t.Fatal(err)
	}
	if archive.Len() != 0 {
		t.Errorf("archive not read to its end: %d bytes left", archive.Len())
	}
	res, err := h.Wait(ctx)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Wait = %+v, %v; want exit 0", res, err)
	}
	if ids, _ := d.ListManaged(ctx, "r1"); len(ids) != 1 {
		t.Errorf("ListManaged before destroy = %v, want one", ids)
	}
	if err := h.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Destroy(ctx); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
	if ids, _ := d.ListManaged(ctx, ""); len(ids) != 0 {
		t.Errorf("ListManaged after destroy = %v, want none", ids)
	}
	if d.Started() != 1 {
		t.Errorf("Started = %d, want 1", d.Started())
	}
}

func TestRemoveOrphans(t *testing.T) {
	ctx := context.Background()
	d := noop.New()
	for _, r := range []string{"a", "a", "b"} {
		if _, err := d.Start(ctx, driver.Spec{RunnerID: r}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.RemoveOrphans(ctx, "", nil); err == nil {
		t.Error("RemoveOrphans with no runner id succeeded")
	}
	n, err := d.RemoveOrphans(ctx, "a", nil)
	if err != nil || n != 2 {
		t.Fatalf("RemoveOrphans(a) = %d, %v; want 2", n, err)
	}
	if ids, _ := d.ListManaged(ctx, ""); len(ids) != 1 {
		t.Errorf("left = %v, want runner b's one", ids)
	}
}

// The noop driver bakes as Docker does: bases are there, a code image is
// there once baked (its archive read once), and goes with RemoveImages.
func TestBake(t *testing.T) {
	ctx := context.Background()
	d := noop.New()
	if id, err := d.ImageID(ctx, "mayfly/stack-busybox"); err != nil || id == "" {
		t.Fatalf("base ImageID = %q, %v", id, err)
	}
	const ref = "mayfly/code:abc"
	if id, _ := d.ImageID(ctx, ref); id != "" {
		t.Fatalf("code image there before baking: %q", id)
	}
	archive := strings.NewReader(strings.Repeat("x", 5000))
	if err := d.Bake(ctx, driver.BakeSpec{Ref: ref, Archive: archive, Labels: map[string]string{"code": "c1"}}); err != nil {
		t.Fatal(err)
	}
	if archive.Len() != 0 {
		t.Errorf("bake left %d bytes of the archive unread", archive.Len())
	}
	if id, _ := d.ImageID(ctx, ref); id == "" {
		t.Fatal("baked image not there")
	}
	if n, _ := d.RemoveImages(ctx, map[string]string{"code": "c1"}, ref); n != 0 {
		t.Fatalf("RemoveImages removed the kept image")
	}
	if n, _ := d.RemoveImages(ctx, map[string]string{"code": "c1"}, ""); n != 1 {
		t.Fatalf("RemoveImages removed %d, want 1", n)
	}
	if id, _ := d.ImageID(ctx, ref); id != "" {
		t.Fatal("removed image still there")
	}
}

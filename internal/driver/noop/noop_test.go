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

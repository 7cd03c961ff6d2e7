package runner

import (
	"context"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver"
	"github.com/mayfly-run/mayfly/internal/driver/oci"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

// On the oci driver, code layers unused for the TTL are evicted as code
// images are on Docker: a layer the runner has no record of gets its clock
// started at the first prune, and goes once unused for the TTL; one used
// recently stays.
func TestPruneCodeLayersOCI(t *testing.T) {
	image := testenv.StackImage(t, "busybox")
	testenv.OCI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := oci.New(ctx, oci.Options{Dir: t.TempDir(), Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	labels := map[string]string{labelCodeImage: "true", LabelProject: "prune-oci"}
	for _, ref := range []string{"mayfly/code:unused", "mayfly/code:used"} {
		if err := d.Bake(ctx, driver.BakeSpec{Ref: ref, Base: image, Labels: labels}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(Config{ID: "r1", StackImage: func(s string) string { return s }, CacheDir: t.TempDir(),
		RunDir: t.TempDir(), CacheTTL: time.Hour}, nil, d)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, n := r.pruneCache(ctx, now); n != 0 {
		t.Fatalf("the first prune removed %d layers the runner had no record of; want their clocks started", n)
	}
	// A task used one an hour and a half later.
	r.imgMu.Lock()
	r.imageUsed["mayfly/code:used"] = now.Add(90 * time.Minute)
	r.imgMu.Unlock()
	if _, n := r.pruneCache(ctx, now.Add(2*time.Hour)); n != 1 {
		t.Errorf("prune a TTL later removed %d layers, want the unused one", n)
	}
	for ref, want := range map[string]bool{"mayfly/code:unused": false, "mayfly/code:used": true} {
		if ok, err := d.ImageExists(ctx, ref); err != nil || ok != want {
			t.Errorf("%s exists = %v (%v), want %v", ref, ok, err, want)
		}
	}
}

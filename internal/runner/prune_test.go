package runner

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/driver/noop"
)

// fakeImages is a driver whose engine holds a set of code images.
type fakeImages struct {
	*noop.Driver
	mu      sync.Mutex
	images  []string
	removed []string
}

func (f *fakeImages) ListImages(_ context.Context, labels map[string]string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if labels[labelCodeImage] != "true" {
		return nil, nil
	}
	return slices.Clone(f.images), nil
}

func (f *fakeImages) RemoveImage(_ context.Context, ref string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.Index(f.images, ref)
	if i < 0 {
		return false, nil
	}
	f.images = slices.Delete(f.images, i, i+1)
	f.removed = append(f.removed, ref)
	return true, nil
}

func newPruneRunner(t *testing.T, d *fakeImages) *Runner {
	t.Helper()
	r, err := New(Config{ID: "r1", StackImage: func(s string) string { return s }, CacheDir: t.TempDir(),
		RunDir: t.TempDir(), CacheTTL: time.Hour}, nil, d)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func writeAged(t *testing.T, p string, age time.Duration) {
	t.Helper()
	if err := os.WriteFile(p, []byte("zip"), 0o600); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-age)
	if err := os.Chtimes(p, at, at); err != nil {
		t.Fatal(err)
	}
}

// A runner that sees many code revisions over weeks must not keep every
// package it ever fetched: packages unused for the TTL go, as do fetches a
// crash interrupted; a package used recently stays however old its file.
func TestPrunePackageCache(t *testing.T) {
	t.Parallel()
	r := newPruneRunner(t, &fakeImages{Driver: noop.New()})
	dir := r.cache.dir
	stale := filepath.Join(dir, strings.Repeat("a", 64)+".zip")
	usedAgain := filepath.Join(dir, strings.Repeat("b", 64)+".zip")
	fresh := filepath.Join(dir, strings.Repeat("c", 64)+".zip")
	crashed := filepath.Join(dir, ".fetch-123")
	foreign := filepath.Join(dir, "notes.txt")
	writeAged(t, stale, 2*time.Hour)
	writeAged(t, usedAgain, 2*time.Hour)
	writeAged(t, fresh, time.Minute)
	writeAged(t, crashed, 2*time.Hour)
	writeAged(t, foreign, 2*time.Hour)
	// A task uses the old package again just before the prune.
	if !r.cache.use(usedAgain) {
		t.Fatal("cached package not found")
	}
	pk, _ := r.pruneCache(t.Context(), time.Now())
	if pk != 2 {
		t.Errorf("pruned %d packages, want the stale one and the interrupted fetch", pk)
	}
	for _, p := range []string{stale, crashed} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", filepath.Base(p), err)
		}
	}
	for _, p := range []string{usedAgain, fresh, foreign} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", filepath.Base(p), err)
		}
	}
}

// Code images unused for the TTL are removed; one in use stays. An image
// the runner has no record of (baked before a restart) gets its clock
// started at the first prune and goes a TTL later if still unused.
func TestPruneCodeImages(t *testing.T) {
	t.Parallel()
	d := &fakeImages{Driver: noop.New(), images: []string{"mayfly/code:old", "mayfly/code:busy", "mayfly/code:unknown"}}
	r := newPruneRunner(t, d)
	now := time.Now()
	r.imageUsed["mayfly/code:old"] = now.Add(-2 * time.Hour)
	r.imageUsed["mayfly/code:gone"] = now.Add(-2 * time.Hour) // removed by someone else
	r.baked.Store("mayfly/code:old", now)
	r.markImageUsed("mayfly/code:busy")

	if _, n := r.pruneCache(t.Context(), now); n != 1 || !slices.Equal(d.removed, []string{"mayfly/code:old"}) {
		t.Fatalf("first prune removed %d: %v; want only the image unused for the TTL", n, d.removed)
	}
	if _, ok := r.baked.Load("mayfly/code:old"); ok {
		t.Error("a removed image is still remembered as baked")
	}
	if _, ok := r.imageUsed["mayfly/code:gone"]; ok {
		t.Error("the record of an image no longer on the engine was kept")
	}
	// Two hours on, with the busy image used meanwhile.
	later := now.Add(2 * time.Hour)
	r.imgMu.Lock()
	r.imageUsed["mayfly/code:busy"] = later.Add(-time.Minute)
	r.imgMu.Unlock()
	if _, n := r.pruneCache(t.Context(), later); n != 1 || d.removed[len(d.removed)-1] != "mayfly/code:unknown" {
		t.Fatalf("second prune removed %d: %v; want the image unused since the restart", n, d.removed)
	}
	if !slices.Equal(d.images, []string{"mayfly/code:busy"}) {
		t.Fatalf("images left: %v, want the one in use", d.images)
	}
}

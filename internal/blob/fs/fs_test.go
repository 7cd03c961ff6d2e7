package fs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/blob"
	"github.com/mayfly-run/mayfly/internal/blob/blobtest"
)

func TestContract(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// A rename is only durable once the directory holding the new name is
// synced: a power cut after Put returned must not lose the blob. The new
// blob's directory, and the ones made for it, must be synced after the
// rename put the blob in place.
func TestPutSyncsDirectoriesAfterRename(t *testing.T) {
	root := t.TempDir()
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var synced []string
	s.syncDir = func(dir string) error {
		// The blob must be in place by the time its directory is synced.
		if dir == filepath.Join(root, "codes", "a") {
			if _, err := os.Stat(filepath.Join(dir, "1.zip")); err != nil {
				t.Errorf("directory synced before the blob was renamed into it: %v", err)
			}
		}
		mu.Lock()
		synced = append(synced, dir)
		mu.Unlock()
		return syncDir(dir)
	}
	if _, err := s.Put(context.Background(), "codes/a/1.zip", strings.NewReader("zip")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{filepath.Join(root, "codes", "a"), filepath.Join(root, "codes"), root} {
		if !slices.Contains(synced, want) {
			t.Errorf("directory %s was not synced; synced %v", want, synced)
		}
	}
}

// A failing directory sync fails the Put: the caller must not record a
// package that may vanish.
func TestPutFailsWhenDirectorySyncFails(t *testing.T) {
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.syncDir = func(string) error { return os.ErrPermission }
	if _, err := s.Put(context.Background(), "k", strings.NewReader("x")); err == nil {
		t.Fatal("Put succeeded although its directory could not be synced")
	}
}

// A crash mid-Put leaves a temporary file behind. RemoveTemp removes it
// once it is older than the given time, and leaves a young one (a Put in
// progress) alone; List never shows either.
func TestRemoveTempAfterCrash(t *testing.T) {
	root := t.TempDir()
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Put(ctx, "codes/a/1.zip", strings.NewReader("done")); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(root, "codes", "a", tempPrefix+"crashed")
	fresh := filepath.Join(root, "codes", "a", tempPrefix+"writing")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("half a zip"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Key != "codes/a/1.zip" {
		t.Fatalf("List = %v, want only the finished blob", list)
	}
	n, err := s.RemoveTemp(ctx, time.Now().Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("RemoveTemp = %d, %v; want 1, nil", n, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("temporary file of a Put in progress was removed: %v", err)
	}
}

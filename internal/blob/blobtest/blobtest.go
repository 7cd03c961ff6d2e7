// Package blobtest is the contract suite every blob.Store passes.
package blobtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/blob"
)

// Run runs the suite; newStore returns an empty store for each subtest.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	ctx := context.Background()
	t.Run("PutGetDelete", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		data := bytes.Repeat([]byte("mayfly"), 100000)
		n, err := s.Put(ctx, "codes/a/1.zip", bytes.NewReader(data))
		if err != nil || n != int64(len(data)) {
			t.Fatalf("Put = %d, %v; want %d, nil", n, err, len(data))
		}
		rc, err := s.Get(ctx, "codes/a/1.zip")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Get returned %d bytes, %v; want the %d put", len(got), err, len(data))
		}
		if err := s.Delete(ctx, "codes/a/1.zip"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := s.Get(ctx, "codes/a/1.zip"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "codes/a/1.zip"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("second Delete = %v, want ErrNotFound", err)
		}
	})
	t.Run("Replace", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for _, v := range []string{"one", "two"} {
			if _, err := s.Put(ctx, "k", strings.NewReader(v)); err != nil {
				t.Fatal(err)
			}
		}
		rc, err := s.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if got, _ := io.ReadAll(rc); string(got) != "two" {
			t.Fatalf("after replace got %q, want %q", got, "two")
		}
	})
	t.Run("FailedPutLeavesNothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		_, err := s.Put(ctx, "broken", io.MultiReader(strings.NewReader("partial"), errReader{}))
		if err == nil {
			t.Fatal("Put from a failing reader succeeded")
		}
		if _, err := s.Get(ctx, "broken"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Get after failed Put = %v, want ErrNotFound", err)
		}
	})
	t.Run("List", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if got, err := s.List(ctx); err != nil || len(got) != 0 {
			t.Fatalf("List of an empty store = %v, %v; want nothing", got, err)
		}
		before := time.Now().Add(-time.Minute)
		for _, k := range []string{"codes/a/1.zip", "codes/b/2.zip", "top"} {
			if _, err := s.Put(ctx, k, strings.NewReader(k)); err != nil {
				t.Fatal(err)
			}
		}
		_, _ = s.Put(ctx, "codes/c/broken.zip", io.MultiReader(strings.NewReader("partial"), errReader{}))
		if err := s.Delete(ctx, "top"); err != nil {
			t.Fatal(err)
		}
		got, err := s.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		var keys []string
		for _, b := range got {
			keys = append(keys, b.Key)
			if b.ModTime.Before(before) || b.ModTime.After(time.Now().Add(time.Minute)) {
				t.Errorf("blob %s written just now has mod time %v", b.Key, b.ModTime)
			}
		}
		slices.Sort(keys)
		if want := []string{"codes/a/1.zip", "codes/b/2.zip"}; !slices.Equal(keys, want) {
			t.Fatalf("List = %v, want %v", keys, want)
		}
	})
	t.Run("RemoveTempSparesBlobs", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if _, err := s.Put(ctx, "codes/a/1.zip", strings.NewReader("keep me")); err != nil {
			t.Fatal(err)
		}
		// Everything is older than a time in the future: only finished
		// blobs may survive.
		if _, err := s.RemoveTemp(ctx, time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("RemoveTemp: %v", err)
		}
		rc, err := s.Get(ctx, "codes/a/1.zip")
		if err != nil {
			t.Fatalf("Get after RemoveTemp: %v", err)
		}
		defer rc.Close()
		if got, _ := io.ReadAll(rc); string(got) != "keep me" {
			t.Fatalf("after RemoveTemp got %q", got)
		}
	})
	t.Run("BadKeys", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		for _, k := range []string{"", "../escape", "/abs"} {
			if _, err := s.Put(ctx, k, strings.NewReader("x")); err == nil {
				t.Errorf("Put(%q) succeeded", k)
			}
		}
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// Package fs is the local-directory blob store: one file per key, written to
// a temporary name, synced, renamed, and its directory synced, so a crash
// never leaves half a blob nor loses one whose Put returned. What a crash
// mid-Put leaves behind (a temporary file) is removed by RemoveTemp.
package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mayfly-run/mayfly/internal/blob"
)

// tempPrefix starts the name of a blob being written; List never shows
// such files and RemoveTemp removes stale ones.
const tempPrefix = ".tmp-"

type Store struct {
	dir string
	// syncDir makes a directory's entries durable; a field so a test can
	// see it called.
	syncDir func(dir string) error
}

// New returns a store rooted at dir, creating it if needed.
func New(dir string) (*Store, error) {
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create blob directory %s: %w", dir, err)
	}
	return &Store{dir: dir, syncDir: syncDir}, nil
}

// syncDir fsyncs a directory: a rename is durable only once the directory
// that holds the new name is.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *Store) path(key string) (string, error) {
	if key == "" || strings.Contains(key, "..") || strings.HasPrefix(key, "/") || strings.ContainsRune(key, 0) {
		return "", fmt.Errorf("invalid blob key %q", key)
	}
	return filepath.Join(s.dir, filepath.FromSlash(key)), nil
}

func (s *Store) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	p, err := s.path(key)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return 0, putErr(key, err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), tempPrefix+"*")
	if err != nil {
		return 0, putErr(key, err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	n, err := io.Copy(f, blob.ContextReader(ctx, r))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	// The new name, and any directory MkdirAll made on the way, live in
	// their parents' entries: sync each up to the root.
	for d := filepath.Dir(p); err == nil; d = filepath.Dir(d) {
		if err = s.syncDir(d); err != nil || d == s.dir || len(d) <= len(s.dir) {
			break
		}
	}
	if err != nil {
		return 0, putErr(key, err)
	}
	return n, nil
}

// putErr says which put failed, and maps a full filesystem or used-up
// quota to blob.ErrNoSpace.
func putErr(key string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("put blob %s: %w: %w", key, blob.ErrNoSpace, err)
	}
	return fmt.Errorf("put blob %s: %w", key, err)
}

func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("get blob %s: %w", key, blob.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get blob %s: %w", key, err)
	}
	return f, nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	err = os.Remove(p)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", key, blob.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete blob %s: %w", key, err)
	}
	return nil
}

func (s *Store) List(ctx context.Context) ([]blob.Info, error) {
	var out []blob.Info
	err := filepath.WalkDir(s.dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), tempPrefix) {
			return nil
		}
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			return nil // deleted while we walked
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(s.dir, p)
		if err != nil {
			return err
		}
		out = append(out, blob.Info{Key: filepath.ToSlash(rel), ModTime: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list blobs in %s: %w", s.dir, err)
	}
	return out, nil
}

func (s *Store) RemoveTemp(ctx context.Context, before time.Time) (int, error) {
	n := 0
	err := filepath.WalkDir(s.dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() || !strings.HasPrefix(e.Name(), tempPrefix) {
			return nil
		}
		// A Put in progress keeps writing, so its file stays young.
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(before) {
			return nil
		}
		if err := os.Remove(p); err == nil {
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("remove stale temporary blobs in %s: %w", s.dir, err)
	}
	return n, nil
}

// Ping reports whether the store's directory is there and a directory.
func (s *Store) Ping(context.Context) error {
	fi, err := os.Stat(s.dir)
	if err != nil {
		return fmt.Errorf("code package directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("code package directory %s is not a directory", s.dir)
	}
	return nil
}

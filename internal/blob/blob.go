// Package blob stores code packages by key. The embedded default keeps them
// in a local directory (fs); s3 keeps them in an S3-compatible object store
// behind the same interface, and open picks one by location alone.
package blob

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned by Get and Delete for a key that holds nothing.
var ErrNotFound = errors.New("blob not found")

// ErrNoSpace is returned by Put when the storage under the store is full
// (or over its quota); nothing of the blob is kept.
var ErrNoSpace = errors.New("no space left for blobs")

// Info describes one stored blob.
type Info struct {
	Key     string
	ModTime time.Time // when it was last written
}

// Store keeps immutable blobs. Put of an existing key replaces it whole;
// readers never see a partial blob.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader) (size int64, err error)
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	Delete(ctx context.Context, key string) error
	// List returns every complete blob, never the leftovers of a Put in
	// progress or interrupted.
	List(ctx context.Context) ([]Info, error)
	// RemoveTemp removes what Puts that began before the given time left
	// behind (a crash mid-write), and returns how many it removed. Puts
	// still in progress after that time are left alone.
	RemoveTemp(ctx context.Context, before time.Time) (int, error)
}

// ContextReader stops a long read (an upload being stored) between reads
// once ctx ends, so a store's Put gives up with its caller.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

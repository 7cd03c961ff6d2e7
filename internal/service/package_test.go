package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/blob"
	"github.com/mayfly-run/mayfly/internal/store"
)

// streamBlobs holds one blob and hands it out as a plain stream, as an
// object store would: no Seek.
type streamBlobs struct{ data []byte }

func (s *streamBlobs) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	return 0, errors.ErrUnsupported
}
func (s *streamBlobs) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(s.data)), nil
}
func (s *streamBlobs) Delete(ctx context.Context, key string) error { return nil }
func (s *streamBlobs) List(ctx context.Context) ([]blob.Info, error) {
	return nil, errors.ErrUnsupported
}
func (s *streamBlobs) RemoveTemp(ctx context.Context, before time.Time) (int, error) {
	return 0, errors.ErrUnsupported
}

var _ blob.Store = (*streamBlobs)(nil)

// TestOpenVerifiedStream: a blob store that cannot seek is checked through
// a spooled copy, and its bytes are served only when they match.
func TestOpenVerifiedStream(t *testing.T) {
	t.Parallel()
	data := []byte("PK\x03\x04 the package bytes")
	sum := sha256.Sum256(data)
	blobs := &streamBlobs{data: bytes.Clone(data)}
	s := &Service{blobs: blobs, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	rev := store.CodeRevision{Name: "hello", Rev: 3, PackageKey: "packages/x.zip",
		PackageSHA256: hex.EncodeToString(sum[:]), PackageSize: int64(len(data))}
	rc, err := s.openVerified(context.Background(), rev)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("served %q", got)
	}
	blobs.data[3] ^= 1
	_, err = s.openVerified(context.Background(), rev)
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrCorrupt) || e.Msg == "" {
		t.Fatalf("corrupt blob: %v", err)
	}
}

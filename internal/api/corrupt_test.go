package api_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// TestCorruptPackageIsNotServed damages a stored package on disk, one byte
// and then its length, and asks for it as a download and as a runner: both
// answer 500 naming the code and revision, never the bad bytes.
func TestCorruptPackageIsNotServed(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	up := b.pushHello()
	_, body := b.do("GET", b.url("/codes/"+up.ID), nil)
	rev := decode[wire.Code](t, body).LatestHistoryID
	blobs, _ := filepath.Glob(filepath.Join(b.dataDir, "blobs", "packages", "*"))
	if len(blobs) != 1 {
		t.Fatalf("blobs: %v", blobs)
	}
	good, err := os.ReadFile(blobs[0])
	if err != nil {
		t.Fatal(err)
	}
	if st, body := b.do("GET", b.url("/codes/"+up.ID+"/download"), nil); st != 200 || !bytes.Equal(body, good) {
		t.Fatalf("intact download: %d, %d bytes", st, len(body))
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x01
	for name, bad := range map[string][]byte{"one byte flipped": flipped, "truncated": good[:len(good)-1], "grown": append(bytes.Clone(good), 0)} {
		if err := os.WriteFile(blobs[0], bad, 0o600); err != nil {
			t.Fatal(err)
		}
		st, body := b.do("GET", b.url("/codes/"+up.ID+"/download"), nil)
		t.Run(name+" download", func(t *testing.T) {
			wantErr(t, st, body, 500, "stored package of code hello rev 1 is corrupt")
		})
		st, body = b.do("GET", b.srv.URL+"/runner/packages/"+rev, nil)
		t.Run(name+" runner", func(t *testing.T) {
			wantErr(t, st, body, 500, "stored package of code hello rev 1 is corrupt")
		})
	}
}

package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mayfly-run/mayfly/internal/blob"
	"github.com/mayfly-run/mayfly/internal/blob/blobtest"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopS3()
	os.Exit(code)
}

var buckets atomic.Int64

// newBucket makes an empty bucket on the test server and returns the
// config of a store in it, under a prefix so the prefix is exercised too.
func newBucket(t *testing.T) Config {
	t.Helper()
	endpoint, access, secret := testenv.S3(t)
	cfg := Config{
		Bucket:    fmt.Sprintf("mayfly-%d-%d", os.Getpid(), buckets.Add(1)),
		Prefix:    "packages/",
		Endpoint:  endpoint,
		Region:    "us-east-1",
		AccessKey: access,
		SecretKey: secret,
	}
	c := adminClient(t, cfg)
	ctx := context.Background()
	if err := c.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", cfg.Bucket, err)
	}
	return cfg
}

func adminClient(t *testing.T, cfg Config) *minio.Client {
	t.Helper()
	c, err := minio.New(strings.TrimPrefix(cfg.Endpoint, "http://"), &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newStore(t *testing.T) (*Store, Config) {
	t.Helper()
	cfg := newBucket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, cfg
}

func TestContract(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, _ := newStore(t)
		return s
	})
}

// incomplete lists the multipart uploads left in the bucket.
func incomplete(t *testing.T, cfg Config) []minio.ObjectMultipartInfo {
	t.Helper()
	var out []minio.ObjectMultipartInfo
	for u := range adminClient(t, cfg).ListIncompleteUploads(context.Background(), cfg.Bucket, "", true) {
		if u.Err != nil {
			t.Fatalf("list incomplete uploads: %v", u.Err)
		}
		out = append(out, u)
	}
	return out
}

// pattern is a reader of n bytes that holds none of them in memory.
type pattern struct{ left int64 }

func (p *pattern) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(b)), p.left)
	for i := range b[:n] {
		b[i] = byte(p.left - int64(i))
	}
	p.left -= n
	return int(n), nil
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// A 64 MiB package goes up in parts: the heap grows by about one part
// buffer, never by the package. Reading the whole upload into memory
// would grow it by 64 MiB or more.
func TestPutLargeKeepsHeapBounded(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	const size = 64 << 20
	before := heapInUse()
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	n, err := s.Put(ctx, "codes/big.zip", &pattern{left: size})
	close(stop)
	<-done
	if err != nil || n != size {
		t.Fatalf("Put = %d, %v; want %d, nil", n, err, size)
	}
	growth := int64(peak.Load()) - int64(before)
	t.Logf("heap in use before %d MiB, peak during a %d MiB upload %d MiB (growth %d MiB, part size %d MiB)",
		before>>20, size>>20, peak.Load()>>20, growth>>20, DefaultPartSize>>20)
	if growth > 48<<20 {
		t.Fatalf("heap grew by %d MiB during a %d MiB upload; want < 48 MiB", growth>>20, size>>20)
	}

	// And it comes back whole, streamed.
	rc, err := s.Get(ctx, "codes/big.zip")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	want := &pattern{left: size}
	got, wbuf := make([]byte, 1<<20), make([]byte, 1<<20)
	var total int64
	for {
		k, rerr := io.ReadFull(rc, got)
		if k > 0 {
			io.ReadFull(want, wbuf[:k])
			if !bytes.Equal(got[:k], wbuf[:k]) {
				t.Fatalf("download differs from the upload near byte %d", total)
			}
			total += int64(k)
		}
		if rerr != nil {
			break
		}
	}
	if total != size {
		t.Fatalf("downloaded %d bytes, want %d", total, size)
	}
}

// failAfter yields n bytes of a package, then fails as a dropped client
// connection does.
type failAfter struct {
	pattern
	err error
}

func (f *failAfter) Read(b []byte) (int, error) {
	n, err := f.pattern.Read(b)
	if err == io.EOF {
		return 0, f.err
	}
	return n, err
}

// An upload cut off mid-stream, after parts of it are already on the
// server, leaves neither an object nor an incomplete upload: the parts are
// aborted at once. Cancelling the Put's context instead (the client went
// away) must abort them too, although that context is dead.
func TestPutAbortedMidStreamLeavesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		put  func(s *Store) error
	}{
		{"reader fails", func(s *Store) error {
			_, err := s.Put(context.Background(), "codes/cut.zip", &failAfter{pattern{40 << 20}, errors.New("connection reset")})
			return err
		}},
		{"context cancelled", func(s *Store) error {
			ctx, cancel := context.WithCancel(context.Background())
			r := &cancelAfter{pattern: pattern{64 << 20}, at: 40 << 20, cancel: cancel}
			_, err := s.Put(ctx, "codes/cut.zip", r)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, cfg := newStore(t)
			if err := tc.put(s); err == nil {
				t.Fatal("Put of a cut-off upload succeeded")
			}
			if _, err := s.Get(context.Background(), "codes/cut.zip"); !errors.Is(err, blob.ErrNotFound) {
				t.Fatalf("Get after a cut-off upload = %v, want ErrNotFound", err)
			}
			if list, err := s.List(context.Background()); err != nil || len(list) != 0 {
				t.Fatalf("List after a cut-off upload = %v, %v; want nothing", list, err)
			}
			if left := incomplete(t, cfg); len(left) != 0 {
				t.Fatalf("cut-off upload left %d incomplete uploads: %+v", len(left), left)
			}
		})
	}
}

type cancelAfter struct {
	pattern
	at     int64
	read   int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(b []byte) (int, error) {
	n, err := c.pattern.Read(b)
	c.read += int64(n)
	if c.read >= c.at {
		c.cancel()
	}
	return n, err
}

// A server that crashed mid-upload leaves an incomplete upload behind.
// RemoveTemp aborts it once older than the cutoff, and leaves a younger
// one (an upload in progress) alone; List never shows either.
func TestRemoveTempAbortsStaleUploads(t *testing.T) {
	s, cfg := newStore(t)
	ctx := context.Background()
	if _, err := s.Put(ctx, "codes/a/1.zip", strings.NewReader("done")); err != nil {
		t.Fatal(err)
	}
	core := minio.Core{Client: adminClient(t, cfg)}
	// The uploads a crash leaves: started, a part sent, never completed.
	for _, key := range []string{"codes/a/crashed.zip", "codes/b/crashed.zip"} {
		id, err := core.NewMultipartUpload(ctx, cfg.Bucket, cfg.Prefix+key, minio.PutObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := core.PutObjectPart(ctx, cfg.Bucket, cfg.Prefix+key, id, 1, strings.NewReader("half a zip"), 10, minio.PutObjectPartOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if list, err := s.List(ctx); err != nil || len(list) != 1 || list[0].Key != "codes/a/1.zip" {
		t.Fatalf("List = %v, %v; want only the finished blob", list, err)
	}
	// Initiated times come from the server's clock at second resolution:
	// a cutoff an hour back spares these uploads, one ahead takes them.
	if n, err := s.RemoveTemp(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("RemoveTemp of young uploads = %d, %v; want 0, nil", n, err)
	}
	if left := incomplete(t, cfg); len(left) != 2 {
		t.Fatalf("young uploads: %d left, want 2", len(left))
	}
	if n, err := s.RemoveTemp(ctx, time.Now().Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("RemoveTemp = %d, %v; want 2, nil", n, err)
	}
	if left := incomplete(t, cfg); len(left) != 0 {
		t.Fatalf("stale uploads left: %+v", left)
	}
	rc, err := s.Get(ctx, "codes/a/1.zip")
	if err != nil {
		t.Fatalf("finished blob gone after RemoveTemp: %v", err)
	}
	rc.Close()
}

// Keys live under the store's prefix only: a store sees neither objects
// beside its prefix nor uploads there.
func TestPrefixIsolation(t *testing.T) {
	s, cfg := newStore(t)
	ctx := context.Background()
	other := cfg
	other.Prefix = "other/"
	o, err := Open(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Put(ctx, "codes/x.zip", strings.NewReader("not yours")); err != nil {
		t.Fatal(err)
	}
	if list, err := s.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("List = %v, %v; want nothing from another prefix", list, err)
	}
	if _, err := s.Get(ctx, "codes/x.zip"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Get of another prefix's key = %v, want ErrNotFound", err)
	}
}

// When S3 does not answer, opening the store says so at start, and within
// the caller's deadline.
func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, Config{Bucket: "b", Endpoint: "http://127.0.0.1:1", Region: "us-east-1", AccessKey: "a", SecretKey: "s"})
	if err == nil || !strings.Contains(err.Error(), "reach S3 bucket b") {
		t.Fatalf("Open of an unreachable endpoint = %v, want an error saying it cannot reach the bucket", err)
	}
}

func TestOpenMissingBucket(t *testing.T) {
	cfg := newBucket(t)
	cfg.Bucket += "-absent"
	_, err := Open(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Open of a missing bucket = %v, want 'does not exist'", err)
	}
}

func TestOpenWrongCredentials(t *testing.T) {
	cfg := newBucket(t)
	cfg.SecretKey = "wrong"
	if _, err := Open(context.Background(), cfg); err == nil {
		t.Fatal("Open with a wrong secret key succeeded")
	}
}

func TestParseURL(t *testing.T) {
	env := map[string]string{
		"AWS_ENDPOINT_URL":      "http://127.0.0.1:9000",
		"AWS_ACCESS_KEY_ID":     "id",
		"AWS_SECRET_ACCESS_KEY": "secret",
	}
	getenv := func(k string) string { return env[k] }
	cfg, err := ParseURL("s3://code/mayfly/packages/", getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Bucket: "code", Prefix: "mayfly/packages/", Endpoint: "http://127.0.0.1:9000",
		Region: "us-east-1", AccessKey: "id", SecretKey: "secret"}
	if cfg != want {
		t.Fatalf("ParseURL = %+v, want %+v", cfg, want)
	}
	env["AWS_REGION"] = "eu-central-1"
	if cfg, err := ParseURL("s3://code", getenv); err != nil || cfg.Prefix != "" || cfg.Region != "eu-central-1" {
		t.Fatalf("ParseURL(s3://code) = %+v, %v; want no prefix, region eu-central-1", cfg, err)
	}
	for _, bad := range []string{"s3://", "s3:///prefix", "http://code/x", "s3://code/../x", "s3://user:pw@code/x", "s3://code/x?y=1"} {
		if _, err := ParseURL(bad, getenv); err == nil {
			t.Errorf("ParseURL(%q) succeeded", bad)
		}
	}
}

// S3's answers map to the blob sentinels, so callers tell a missing
// package and a full disk from an outage without knowing the backend.
func TestMapErr(t *testing.T) {
	for _, tc := range []struct {
		resp minio.ErrorResponse
		want error
	}{
		{minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404}, blob.ErrNotFound},
		{minio.ErrorResponse{Code: "NotFound", StatusCode: 404}, blob.ErrNotFound},
		{minio.ErrorResponse{Code: "InsufficientStorage", StatusCode: 507}, blob.ErrNoSpace},
		{minio.ErrorResponse{Code: "QuotaExceeded", StatusCode: 403}, blob.ErrNoSpace},
		{minio.ErrorResponse{Code: "XMinioStorageFull", StatusCode: 507}, blob.ErrNoSpace},
	} {
		if err := mapErr(tc.resp); !errors.Is(err, tc.want) {
			t.Errorf("mapErr(%s) = %v, want %v", tc.resp.Code, err, tc.want)
		}
	}
	for _, other := range []error{minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, errors.New("connection refused")} {
		if err := mapErr(other); errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrNoSpace) {
			t.Errorf("mapErr(%v) = %v, want neither sentinel", other, err)
		}
	}
}

// An upload onto an S3 server whose disk fills up fails with
// blob.ErrNoSpace (so the API answers 507 and the client may retry), and
// leaves neither an object nor the parts that did fit.
func TestPutOnFullDisk(t *testing.T) {
	disk := t.TempDir()
	if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "size=12m"); err != nil {
		testenv.Integration(t, "a small tmpfs for a full S3 disk (mount needs root)", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(disk, syscall.MNT_DETACH) })
	endpoint, access, secret := testenv.S3At(t, disk)
	cfg := Config{Bucket: "full", Endpoint: endpoint, Region: "us-east-1", AccessKey: access, SecretKey: secret, PartSize: 5 << 20}
	ctx := context.Background()
	if err := adminClient(t, cfg).MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	usedBefore := diskUsed(t, disk)
	_, err = s.Put(ctx, "codes/huge.zip", &pattern{left: 32 << 20})
	if !errors.Is(err, blob.ErrNoSpace) {
		t.Fatalf("Put of 32 MiB onto a 12 MiB disk = %v, want ErrNoSpace", err)
	}
	if _, err := s.Get(ctx, "codes/huge.zip"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Get after a refused upload = %v, want ErrNotFound", err)
	}
	if left := incomplete(t, cfg); len(left) != 0 {
		t.Fatalf("refused upload left %d incomplete uploads", len(left))
	}
	if used := diskUsed(t, disk); used > usedBefore+1<<20 {
		t.Fatalf("refused upload still holds %d KiB of the S3 disk", (used-usedBefore)>>10)
	}
	// What did fit was freed: a package that fits goes in (completing a
	// multipart upload copies its parts, so it needs twice its size).
	if _, err := s.Put(ctx, "codes/small.zip", &pattern{left: 4 << 20}); err != nil {
		t.Fatalf("Put of 4 MiB after the refused upload: %v", err)
	}
}

// The answer of a failed part arrives wrapped in what says which part;
// it must map all the same.
func TestMapErrWrapped(t *testing.T) {
	err := fmt.Errorf("upload part 3: %w", minio.ErrorResponse{Code: "InsufficientStorage", StatusCode: 507})
	if !errors.Is(mapErr(err), blob.ErrNoSpace) {
		t.Fatalf("mapErr(%v) is not ErrNoSpace", err)
	}
}

func diskUsed(t *testing.T, dir string) uint64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return (st.Blocks - st.Bfree) * uint64(st.Bsize)
}

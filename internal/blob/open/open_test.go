package open

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mayfly-run/mayfly/internal/blob"
	"github.com/mayfly-run/mayfly/internal/blob/fs"
	"github.com/mayfly-run/mayfly/internal/blob/s3"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopS3()
	os.Exit(code)
}

// roundTrip proves st is a working store rooted where it should be.
func roundTrip(t *testing.T, st blob.Store) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.Put(ctx, "codes/a.zip", strings.NewReader("zip")); err != nil {
		t.Fatal(err)
	}
	rc, err := st.Get(ctx, "codes/a.zip")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, _ := io.ReadAll(rc); string(b) != "zip" {
		t.Fatalf("got %q back", b)
	}
}

func TestOpenFile(t *testing.T) {
	ctx := context.Background()
	for _, loc := range []func(dir string) string{
		func(dir string) string { return "file://" + dir },
		func(dir string) string { return "file://localhost" + dir },
		func(dir string) string { return dir },
	} {
		dir := t.TempDir()
		st, err := Open(ctx, loc(dir))
		if err != nil {
			t.Fatalf("Open(%s): %v", loc(dir), err)
		}
		if _, ok := st.(*fs.Store); !ok {
			t.Fatalf("Open(%s) = %T, want *fs.Store", loc(dir), st)
		}
		roundTrip(t, st)
		if _, err := os.Stat(filepath.Join(dir, "codes", "a.zip")); err != nil {
			t.Fatalf("Open(%s) does not store in %s: %v", loc(dir), dir, err)
		}
	}
}

func TestOpenRelativePath(t *testing.T) {
	t.Chdir(t.TempDir())
	st, err := Open(context.Background(), "blobs")
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, st)
	if _, err := os.Stat(filepath.Join("blobs", "codes", "a.zip")); err != nil {
		t.Fatal(err)
	}
}

func TestOpenBadLocations(t *testing.T) {
	for _, loc := range []string{"", "ftp://host/x", "file://otherhost/x", "file://relative", "file:///x?y=1", "s3://", "s3:///x"} {
		if st, err := Open(context.Background(), loc); err == nil {
			t.Errorf("Open(%q) = %T, want an error", loc, st)
		}
	}
}

// s3:// opens the S3 store with the endpoint and credentials of the AWS
// variables.
func TestOpenS3(t *testing.T) {
	endpoint, access, secret := testenv.S3(t)
	bucket := fmt.Sprintf("open-%d", os.Getpid())
	c, err := minio.New(strings.TrimPrefix(endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(access, secret, ""), BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(context.Background(), bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ENDPOINT_URL", endpoint)
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_ACCESS_KEY_ID", access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := Open(ctx, "s3://"+bucket+"/mayfly")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.(*s3.Store); !ok {
		t.Fatalf("Open(s3://...) = %T, want *s3.Store", st)
	}
	roundTrip(t, st)
	if _, err := c.StatObject(ctx, bucket, "mayfly/codes/a.zip", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("object not under the URL's prefix: %v", err)
	}
}

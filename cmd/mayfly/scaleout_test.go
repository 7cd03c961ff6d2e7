package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// The real server with its state in PostgreSQL and its code packages in
// S3: a task runs; then another server, on an empty data directory (only
// its key files copied, as servers sharing a store must share them), finds
// the code and the task there and runs a new task from the same package.
func TestServerOnPostgresAndS3(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	testenv.StackImage(t, "busybox")
	dbURL := testenv.Postgres(t)
	_, s3env := s3Bucket(t, "mayfly-scale-out", "code")
	ctx := context.Background()
	const project, token = "5f00000000000000000000f4", "scale-out-secret-token"
	env := append([]string{"MAYFLY_BOOTSTRAP_PROJECT=" + project, "MAYFLY_BOOTSTRAP_TOKEN=" + token,
		"MAYFLY_DATABASE_URL=" + dbURL}, s3env...)
	first := startServer(t, env...)
	c := client.New("http://"+first.addr, token, project)
	pushCode(t, c, wire.CodeUpload{Name: "pg", Command: `echo "ran on $(cat x)"`})
	run := func(c *client.Client) string {
		t.Helper()
		ids, err := c.QueueTasks(ctx, []wire.NewTask{{CodeName: "pg"}})
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if tk, err := c.WaitTask(wctx, ids[0], 100*time.Millisecond); err != nil || tk.Status != "complete" {
			t.Fatalf("task: %+v, %v", tk, err)
		}
		if log, err := c.TaskLog(ctx, ids[0]); err != nil || string(log) != "ran on x\n" {
			t.Fatalf("log %q, %v", log, err)
		}
		return ids[0]
	}
	firstTask := run(c)
	if _, err := os.Stat(filepath.Join(first.dataDir, "mayfly.db")); err == nil {
		t.Fatal("a SQLite file was made in the data directory: the store is not PostgreSQL")
	}
	first.stop(t)

	second := startServerAt(t, freeAddr(t), sharedKeysDir(t, first.dataDir), env...)
	c = client.New("http://"+second.addr, token, project)
	if tk, err := c.GetTask(ctx, firstTask); err != nil || tk.Status != "complete" {
		t.Fatalf("the first server's task on the second: %+v, %v", tk, err)
	}
	run(c)
}

// s3Bucket makes bucket on the test binary's S3 server and returns a
// client of it and the environment that points a server's code packages
// at bucket/prefix.
func s3Bucket(t *testing.T, bucket, prefix string) (*minio.Client, []string) {
	t.Helper()
	endpoint, access, secret := testenv.S3(t)
	mc, err := minio.New(strings.TrimPrefix(endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(access, secret, ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	if err := mc.MakeBucket(context.Background(), bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	return mc, []string{"MAYFLY_BLOB_URL=s3://" + bucket + "/" + prefix,
		"AWS_ENDPOINT_URL=" + endpoint, "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=" + access, "AWS_SECRET_ACCESS_KEY=" + secret}
}

// sharedKeysDir returns a fresh data directory holding the key files of
// from: servers sharing a store share its keys.
func sharedKeysDir(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	for _, key := range []string{"task-token.key", "token-hash.key"} {
		b, err := os.ReadFile(filepath.Join(from, key))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, key), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

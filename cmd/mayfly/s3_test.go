package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// The real server with its code packages in S3 (versitygw on loopback): a
// code pushed over the API lands in the bucket, a task runs from it, and
// the download is the same zip.
func TestServerOnS3(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	testenv.StackImage(t, "busybox")
	const bucket = "mayfly-server-on-s3"
	mc, s3env := s3Bucket(t, bucket, "mayfly")
	ctx := context.Background()
	const project, token = "5f00000000000000000000f3", "server-on-s3-secret-token"
	srv := startServer(t, append([]string{"MAYFLY_BOOTSTRAP_PROJECT=" + project, "MAYFLY_BOOTSTRAP_TOKEN=" + token}, s3env...)...)
	c := client.New("http://"+srv.addr, token, project)
	pushCode(t, c, wire.CodeUpload{Name: "s3", Command: `echo "from s3: $(cat x)"`})
	var keys []string
	for obj := range mc.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "mayfly/") {
		t.Fatalf("objects in the bucket: %v, want the one package under mayfly/", keys)
	}
	ids, err := c.QueueTasks(ctx, []wire.NewTask{{CodeName: "s3"}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tk, err := c.WaitTask(wctx, ids[0], 100*time.Millisecond)
	if err != nil || tk.Status != "complete" {
		t.Fatalf("task: %+v, %v\n%s", tk, err, srv.output())
	}
	if log, err := c.TaskLog(ctx, ids[0]); err != nil || string(log) != "from s3: x\n" {
		t.Fatalf("log %q, %v", log, err)
	}
}

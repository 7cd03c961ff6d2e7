package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// NUL in a name or label is refused with 400 on every store (PostgreSQL's
// text cannot hold it); a task's own stderr, whatever its bytes, still
// becomes a readable msg; the payload stays bytes.
func TestTextWithNULAndBinaryStderr(t *testing.T) {
	t.Parallel()
	b := setup(t, service.Config{})
	b.pushHello()
	for path, body := range map[string]string{
		"/tasks":     `{"tasks":[{"code_name":"hello","payload":"","label":"a\u0000b"}]}`,
		"/schedules": `{"schedules":[{"code_name":"hello","payload":"","name":"n\u0000"}]}`,
	} {
		st, out := b.do("POST", b.url(path), strings.NewReader(body))
		wantErr(t, st, out, 400, "must not contain NUL")
	}
	st, out := b.upload(`{"name":"nul","runtime":"sh","file_name":"hello.sh","command":"echo \u0000"}`,
		makeZip(t, zentry{name: "hello.sh", data: "echo\n"}))
	wantErr(t, st, out, 400, "command must not contain NUL")

	// A payload with NUL is fine.
	id := b.queueOne(`{"tasks":[{"code_name":"hello","payload":"x\u0000y"}]}`)
	jobs, err := b.svc.Lease(context.Background(), wire.LeaseRequest{RunnerID: "r1", Max: 1})
	if err != nil || len(jobs) != 1 || jobs[0].Payload != "x\x00y" {
		t.Fatalf("lease: %+v %v", jobs, err)
	}
	// The runner reports the tail of what the task wrote to stderr.
	if err := b.svc.Finish(context.Background(), jobs[0].Lease("r1"),
		wire.FinishRequest{RunnerID: "r1", Status: "error", Msg: "Exit code 1: boom\x00\xff\xfe tail"}); err != nil {
		t.Fatalf("finish with binary stderr: %v", err)
	}
	_, out = b.do("GET", b.url("/tasks/"+id), nil)
	if tk := decode[wire.Task](t, out); tk.Status != "error" || tk.Msg != "Exit code 1: boom\uFFFD tail" {
		t.Fatalf("task: %s", out)
	}
}

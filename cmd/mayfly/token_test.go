package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/client"
	"github.com/mayfly-run/mayfly/internal/testenv"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// Tokens from the CLI against the real server: a runner token leases and
// nothing else, a project token reaches its project, and revoked ones fail
// at once.
func TestTokenCLI(t *testing.T) {
	t.Parallel()
	testenv.Docker(t)
	const project, token = "5f00000000000000000000e8", "token-cli-secret-token"
	srv := startServer(t, "MAYFLY_BOOTSTRAP_PROJECT="+project, "MAYFLY_BOOTSTRAP_TOKEN="+token)
	cli := func(args ...string) cliResult { return runBin(t, srv, token, project, args...) }

	secret := strings.TrimSpace(cli("token", "create", "--runner", "--name", "box-1", "--cluster", "gpu", "-q").ok(t).stdout)
	if len(secret) < 20 {
		t.Fatalf("runner token secret %q", secret)
	}
	ls := cli("token", "ls", "--all").ok(t).stdout
	if !strings.Contains(ls, "runner") || !strings.Contains(ls, "box-1") || !strings.Contains(ls, "gpu") ||
		!strings.Contains(ls, "bootstrap") || strings.Contains(ls, secret) {
		t.Fatalf("token ls --all:\n%s", ls)
	}
	ctx := context.Background()
	// The runner token leases, for its cluster only, and reads no project.
	rq := client.New("http://"+srv.addr, secret, project)
	if _, err := rq.ListTasks(ctx, client.TaskFilter{}); !client.IsStatus(err, 403) {
		t.Fatalf("a runner token listed tasks: %v", err)
	}
	out := cli("token", "create", "--name", "ci").ok(t).stdout
	if !strings.Contains(out, "Created project token") {
		t.Fatalf("project token: %q", out)
	}
	ptSecret := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	pc := client.New("http://"+srv.addr, ptSecret, project)
	if _, err := pc.ListCodes(ctx, 0, 0); err != nil {
		t.Fatalf("project token on its project: %v", err)
	}
	if _, err := pc.CreateToken(ctx, wire.NewToken{Kind: "admin", Name: "escalate"}); !client.IsStatus(err, 403) {
		t.Fatalf("a project token made an admin token: %v", err)
	}
	toks, err := client.New("http://"+srv.addr, token, project).Tokens(ctx, project)
	if err != nil || len(toks) != 1 || toks[0].Name != "ci" {
		t.Fatalf("project tokens: %+v, %v", toks, err)
	}
	cli("token", "revoke", toks[0].ID).ok(t)
	if _, err := pc.ListCodes(ctx, 0, 0); !client.IsStatus(err, 401) {
		t.Fatalf("a revoked token still works: %v", err)
	}
	if r := cli("token", "revoke", toks[0].ID); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("revoke twice: %d %q", r.code, r.stderr)
	}
	// The embedded runner is listed once it has leased.
	waitUntil(t, 30*time.Second, "the embedded runner listed", func() bool {
		out := cli("runner", "ls").ok(t).stdout
		return strings.Contains(out, "docker") && strings.Contains(out, "default") && strings.Contains(out, "/4")
	})
	if r := runBin(t, srv, ptSecret, project, "runner", "ls"); r.code == 0 {
		t.Fatalf("runner ls with a revoked project token: %q", r.stdout)
	}
}

package main

import (
	"strings"
	"testing"
	"time"
)

// Projects, expiring tokens and the audit record from the CLI against
// the real server, whose quota defaults come from its environment.
func TestProjectCLI(t *testing.T) {
	t.Parallel()
	const project, token = "5f00000000000000000000e7", "project-cli-secret-token"
	srv := startServer(t, "MAYFLY_BOOTSTRAP_PROJECT="+project, "MAYFLY_BOOTSTRAP_TOKEN="+token, "MAYFLY_RUNNER=false",
		"MAYFLY_QUOTA_SCHEDULES=7")
	cli := func(args ...string) cliResult { return runBin(t, srv, token, project, args...) }

	id := strings.TrimSpace(cli("project", "create", "--name", "team-a", "--running-tasks", "3", "-q").ok(t).stdout)
	if len(id) != 24 {
		t.Fatalf("project id %q", id)
	}
	if ls := cli("project", "ls").ok(t).stdout; !strings.Contains(ls, id) || !strings.Contains(ls, "team-a") || !strings.Contains(ls, project) {
		t.Fatalf("project ls:\n%s", ls)
	}
	cli("project", "update", id, "--name", "team-b", "--schedules", "-1").ok(t)
	show := cli("project", "show", id).ok(t).stdout
	for _, want := range []string{"team-b", "running tasks  3", "schedules      no limit"} {
		if !strings.Contains(show, want) {
			t.Fatalf("project show lacks %q:\n%s", want, show)
		}
	}
	// The server's default from MAYFLY_QUOTA_SCHEDULES.
	if show := cli("project", "show", project).ok(t).stdout; !strings.Contains(show, "server default  7") {
		t.Fatalf("default project show:\n%s", show)
	}
	if r := cli("project", "update", id); r.code == 0 || !strings.Contains(r.stderr, "nothing to change") {
		t.Fatalf("update without changes: %d %q", r.code, r.stderr)
	}

	secret := strings.TrimSpace(cli("token", "create", "--project", id, "--name", "ci", "--expires", "720h", "-q").ok(t).stdout)
	ls := cli("token", "ls", "--project", id).ok(t).stdout
	year := time.Now().Add(720 * time.Hour).Format("2006-01")
	if !strings.Contains(ls, "ci") || !strings.Contains(ls, year) || strings.Contains(ls, secret) {
		t.Fatalf("token ls with an expiry:\n%s", ls)
	}
	if r := cli("token", "create", "--name", "x", "--admin", "--expires", "yesterday"); r.code == 0 || !strings.Contains(r.stderr, "--expires") {
		t.Fatalf("bad --expires: %d %q", r.code, r.stderr)
	}
	// The project token reads its own audit record.
	if out := runBin(t, srv, secret, id, "audit", "ls").ok(t).stdout; !strings.Contains(out, "project.update") || !strings.Contains(out, "bootstrap") {
		t.Fatalf("audit ls with the project token:\n%s", out)
	}
	cli("project", "rm", id).ok(t)
	audit := cli("audit", "ls", "--all").ok(t).stdout
	for _, want := range []string{"project.create", "project.update", "token.create", "project.delete"} {
		if !strings.Contains(audit, want) {
			t.Fatalf("audit ls --all lacks %s:\n%s", want, audit)
		}
	}
	if strings.Contains(audit, secret) || strings.Contains(audit, token) {
		t.Fatalf("audit shows a secret:\n%s", audit)
	}
}

package assembly_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mayfly-run/mayfly/internal/assembly"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/testenv"
)

// A token revoked through one server fails at once on another sharing the
// database: no server keeps tokens it has seen.
func TestRevokedTokenFailsOnEveryServer(t *testing.T) {
	t.Parallel()
	url := testenv.Postgres(t)
	// Servers sharing a store share its key files too.
	dir := t.TempDir()
	start := func() *assembly.Server {
		srv, err := assembly.Start(context.Background(), assembly.Config{
			DataDir: dir, DatabaseURL: url,
			Service:          service.Config{KnownStacks: []string{"busybox"}},
			BootstrapProject: sharedProject, BootstrapToken: "shared-secret-token",
			Log: testenv.Logger(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
		return srv
	}
	a, b := start(), start()
	ctx := context.Background()
	tok, secret, err := a.Service.CreateToken(ctx, service.NewToken{Kind: "project", ProjectID: sharedProject, Name: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	soon := time.Now().Add(time.Hour)
	_, short, err := a.Service.CreateToken(ctx, service.NewToken{Kind: "admin", Name: "short", ExpiresAt: &soon})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{secret, short} {
		if _, err := b.Service.Authenticate(ctx, s); err != nil {
			t.Fatalf("a token made on a, on b: %v", err)
		}
	}
	if err := a.Service.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	for name, srv := range map[string]*service.Service{"a": a.Service, "b": b.Service} {
		if _, err := srv.Authenticate(ctx, secret); !errors.Is(err, service.ErrUnauthorized) {
			t.Fatalf("revoked token on %s: %v", name, err)
		}
	}
}

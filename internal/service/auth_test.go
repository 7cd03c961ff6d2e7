package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	blobfs "github.com/mayfly-run/mayfly/internal/blob/fs"
	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/store/sqlite"
)

// authStore is a real store in a directory; start builds a service on it
// as a server start would, with the data directory's token hash key.
type authStore struct {
	t   *testing.T
	dir string
	st  *sqlite.Store
	key []byte
}

func newAuthStore(t *testing.T) *authStore {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "mayfly.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &authStore{t: t, dir: dir, st: st, key: []byte("0123456789abcdef0123456789abcdef")}
}

func (a *authStore) start(key []byte) *Service {
	blobs, err := blobfs.New(filepath.Join(a.dir, "blobs"))
	if err != nil {
		a.t.Fatal(err)
	}
	return New(a.st, blobs, Config{TokenHashKey: key}, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func plainSHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Rotating MAYFLY_BOOTSTRAP_TOKEN and restarting must retire the old
// secret: a leaked bootstrap token stays usable forever otherwise.
func TestBootstrapRestartWithNewTokenRevokesOld(t *testing.T) {
	t.Parallel()
	a := newAuthStore(t)
	ctx := t.Context()
	const first, second = "first-bootstrap-secret", "second-bootstrap-secret"

	boot, err := a.start(a.key).EnsureBootstrap(ctx, "", first)
	if err != nil || !boot.Created || boot.Replaced {
		t.Fatalf("first start: %+v, %v", boot, err)
	}
	svc := a.start(a.key) // a restart with the same token changes nothing
	if boot, err := svc.EnsureBootstrap(ctx, "", first); err != nil || boot.Created || boot.Replaced {
		t.Fatalf("restart with the same token: %+v, %v", boot, err)
	}
	if _, err := svc.Authenticate(ctx, first); err != nil {
		t.Fatalf("bootstrap token after a plain restart: %v", err)
	}

	svc = a.start(a.key)
	boot, err = svc.EnsureBootstrap(ctx, "", second)
	if err != nil || !boot.Created || !boot.Replaced {
		t.Fatalf("restart with a new token: %+v, %v", boot, err)
	}
	if _, err := svc.Authenticate(ctx, first); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("old bootstrap token after rotation: %v, want unauthorized", err)
	}
	tok, err := svc.Authenticate(ctx, second)
	if err != nil || tok.Kind != store.TokenAdmin {
		t.Fatalf("new bootstrap token: %+v, %v", tok, err)
	}

	// Naming only the project on a store in use neither makes up a new
	// token (which would revoke the current one) nor a project.
	svc = a.start(a.key)
	if b, err := svc.EnsureBootstrap(ctx, boot.ProjectID, ""); err != nil || b.Created || b.Replaced || b.Token != "" {
		t.Fatalf("restart naming only the project: %+v, %v", b, err)
	}
	if b, err := svc.EnsureBootstrap(ctx, "", second); err != nil || b.Created || b.ProjectID != "" {
		t.Fatalf("restart naming only the token: %+v, %v", b, err)
	}
	if n, err := a.st.CountProjects(ctx); err != nil || n != 1 {
		t.Fatalf("projects after restarts: %d, %v; want 1", n, err)
	}
	if _, err := svc.Authenticate(ctx, second); err != nil {
		t.Fatalf("bootstrap token after restarts naming one value: %v", err)
	}
}

// Tokens made by an operator (not the bootstrap one) survive a rotation.
func TestBootstrapRotationKeepsOtherTokens(t *testing.T) {
	t.Parallel()
	a := newAuthStore(t)
	ctx := t.Context()
	svc := a.start(a.key)
	boot, err := svc.EnsureBootstrap(ctx, "", "first-bootstrap-secret")
	if err != nil {
		t.Fatal(err)
	}
	other := id.Secret(20)
	if err := a.st.CreateToken(ctx, store.Token{ID: id.New(), Hash: svc.HashToken(other), Kind: store.TokenAdmin,
		Name: "ops", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.start(a.key).EnsureBootstrap(ctx, boot.ProjectID, "second-bootstrap-secret"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.start(a.key).Authenticate(ctx, other); err != nil {
		t.Fatalf("an operator's admin token was revoked by a bootstrap rotation: %v", err)
	}
}

// A copy of the database must not give away a token nor its plain SHA-256,
// which a short, operator-chosen token can be found from by guessing.
func TestTokenNeverOnDiskNorItsPlainDigest(t *testing.T) {
	t.Parallel()
	a := newAuthStore(t)
	ctx := t.Context()
	const secret = "short-secret-123" // the shortest allowed: 16 characters
	svc := a.start(a.key)
	if _, err := svc.EnsureBootstrap(ctx, "", secret); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := a.st.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(a.dir, "mayfly.db*"))
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for what, needle := range map[string]string{"the token": secret, "its plain sha256": plainSHA256(secret)} {
			if bytes.Contains(bytes.ToLower(b), []byte(needle)) {
				t.Errorf("%s holds %s", filepath.Base(f), what)
			}
		}
	}
	// The digest depends on the key: without the key file, the database
	// alone says nothing testable about a guess.
	if a.start(a.key).HashToken(secret) == a.start([]byte("another key, another server.....")).HashToken(secret) {
		t.Fatal("token digest does not depend on the key")
	}
}

// Stores written by older versions hold plain SHA-256 digests: those tokens
// still work, once by the old digest, and are re-hashed on that use.
func TestLegacyDigestUpgradedOnFirstUse(t *testing.T) {
	t.Parallel()
	a := newAuthStore(t)
	ctx := t.Context()
	svc := a.start(a.key)
	boot, err := svc.EnsureBootstrap(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	secret := id.Secret(20)
	tokID := id.New()
	if err := a.st.CreateToken(ctx, store.Token{ID: tokID, Hash: plainSHA256(secret), Kind: store.TokenProject,
		ProjectID: boot.ProjectID, Name: "old", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		tok, err := svc.Authenticate(ctx, secret)
		if err != nil || tok.ID != tokID {
			t.Fatalf("use %d of a token stored by an older version: %+v, %v", i+1, tok, err)
		}
		if _, err := a.st.GetTokenByHash(ctx, plainSHA256(secret)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("after use %d the plain digest is still stored: %v", i+1, err)
		}
		if got, err := a.st.GetTokenByHash(ctx, svc.HashToken(secret)); err != nil || got.ID != tokID {
			t.Fatalf("after use %d the keyed digest is not stored: %+v, %v", i+1, got, err)
		}
	}
	// A legacy bootstrap token named again at start is upgraded, not
	// replaced.
	const bootSecret = "legacy-bootstrap-secret"
	if _, err := a.st.ReplaceNamedToken(ctx, store.Token{ID: id.New(), Hash: plainSHA256(bootSecret),
		Kind: store.TokenAdmin, Name: bootstrapTokenName, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if b, err := a.start(a.key).EnsureBootstrap(ctx, "", bootSecret); err != nil || b.Created || b.Replaced {
		t.Fatalf("restart naming a legacy bootstrap token: %+v, %v", b, err)
	}
	if _, err := a.st.GetTokenByHash(ctx, svc.HashToken(bootSecret)); err != nil {
		t.Fatalf("legacy bootstrap token not upgraded: %v", err)
	}
}

// A server with another key (a lost key file) knows no stored token.
func TestTokenNeedsTheKey(t *testing.T) {
	t.Parallel()
	a := newAuthStore(t)
	ctx := context.Background()
	if _, err := a.start(a.key).EnsureBootstrap(ctx, "", "bootstrap-secret-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.start([]byte("another key, another server.....")).Authenticate(ctx, "bootstrap-secret-1"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("token accepted under another key: %v", err)
	}
}

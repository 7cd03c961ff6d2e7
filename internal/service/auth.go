package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/store"
)

// tokenHashPrefix marks digests of the keyed scheme. Digests without it are
// plain SHA-256 hex from older versions, upgraded when next used.
const tokenHashPrefix = "hmac-sha256:"

// bootstrapTokenName names the admin token EnsureBootstrap keeps: there is
// at most one, and a new bootstrap secret replaces it.
const bootstrapTokenName = "bootstrap"

// HashToken is how token secrets are kept: only a digest keyed with the
// server's token hash key is stored, so a copy of the database alone does
// not allow guessing short secrets offline, and a lookup is still one
// indexed query on the digest.
func (s *Service) HashToken(secret string) string {
	m := hmac.New(sha256.New, s.cfg.TokenHashKey)
	m.Write([]byte(secret))
	return tokenHashPrefix + hex.EncodeToString(m.Sum(nil))
}

// legacyTokenHash is the unkeyed digest older versions stored.
func legacyTokenHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// Authenticate returns the token a secret belongs to.
func (s *Service) Authenticate(ctx context.Context, secret string) (store.Token, error) {
	if secret == "" {
		return store.Token{}, errorf(ErrUnauthorized, "Missing token: send 'Authorization: OAuth TOKEN'")
	}
	if strings.HasPrefix(secret, taskTokenPrefix) {
		projectID, taskID, err := s.taskToken(secret)
		if err != nil {
			return store.Token{}, err
		}
		return store.Token{ID: taskID, Kind: store.TokenTask, ProjectID: projectID}, nil
	}
	t, err := s.findToken(ctx, secret)
	if errors.Is(err, store.ErrNotFound) {
		return store.Token{}, errorf(ErrUnauthorized, "Invalid token")
	}
	if err != nil {
		return store.Token{}, fmt.Errorf("look up token: %w", err)
	}
	if t.Expired(s.now()) {
		return store.Token{}, errorf(ErrUnauthorized, "Token expired")
	}
	return t, nil
}

// findToken looks a secret up by its keyed digest and, failing that, by the
// plain digest of older versions; a token found that way is re-hashed in
// place, so it takes the old path once.
func (s *Service) findToken(ctx context.Context, secret string) (store.Token, error) {
	hash := s.HashToken(secret)
	t, err := s.store.GetTokenByHash(ctx, hash)
	if err == nil {
		// The store matched on the digest already; comparing again in
		// constant time keeps a backend's loose match from ever letting a
		// wrong secret in.
		if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(hash)) != 1 {
			return store.Token{}, store.ErrNotFound
		}
		return t, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return store.Token{}, err
	}
	legacy := legacyTokenHash(secret)
	t, err = s.store.GetTokenByHash(ctx, legacy)
	if err != nil {
		return store.Token{}, err
	}
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(legacy)) != 1 {
		return store.Token{}, store.ErrNotFound
	}
	// ErrNotFound here means a concurrent request upgraded it first.
	if err := s.store.UpdateTokenHash(ctx, t.ID, legacy, hash); err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Token{}, fmt.Errorf("re-hash token %s: %w", t.ID, err)
	}
	s.log.Info("token digest upgraded to the keyed scheme", "token_id", t.ID, "kind", t.Kind)
	t.Hash = hash
	return t, nil
}

// Authorize checks that a token may act on a project, and that it exists.
func (s *Service) Authorize(ctx context.Context, t store.Token, projectID string) (store.Project, error) {
	switch t.Kind {
	case store.TokenAdmin:
	case store.TokenProject:
		if t.ProjectID != projectID {
			return store.Project{}, errorf(ErrForbidden, "This token is not valid for project %s", projectID)
		}
	case store.TokenTask:
		return store.Project{}, errorf(ErrForbidden, "A task token can only report its own task's progress")
	default:
		return store.Project{}, errorf(ErrForbidden, "A %s token cannot use project routes", t.Kind)
	}
	if !id.Valid(projectID) {
		return store.Project{}, errorf(ErrNotFound, "Project not found: %q is not a project id", projectID)
	}
	p, err := s.store.GetProject(ctx, projectID)
	return p, mapStoreErr(err, "Project")
}

// AuthorizeRunner checks that a token may lease and report tasks.
func (s *Service) AuthorizeRunner(t store.Token) error {
	if t.Kind == store.TokenAdmin || t.Kind == store.TokenRunner {
		return nil
	}
	return errorf(ErrForbidden, "A %s token cannot act as a runner", t.Kind)
}

// Bootstrap describes what the first start created.
type Bootstrap struct {
	Created   bool
	Replaced  bool // an older bootstrap token was revoked for this one
	ProjectID string
	Token     string // the secret; shown once
}

// EnsureBootstrap creates a project and an admin token on an empty store.
// Fixed values (from MAYFLY_BOOTSTRAP_PROJECT / MAYFLY_BOOTSTRAP_TOKEN) are
// used when given, and are made to exist even on a non-empty store so a
// deployment that names them can rely on them. There is one bootstrap
// token: a new MAYFLY_BOOTSTRAP_TOKEN revokes the one before it, so
// rotating the secret in the deployment really retires the old one.
func (s *Service) EnsureBootstrap(ctx context.Context, projectID, token string) (Bootstrap, error) {
	if projectID != "" && !id.Valid(projectID) {
		return Bootstrap{}, fmt.Errorf("bootstrap project id %q is not 24 lowercase hex characters", projectID)
	}
	if token != "" && len(token) < 16 {
		return Bootstrap{}, fmt.Errorf("bootstrap token is too short: use at least 16 characters")
	}
	n, err := s.store.CountProjects(ctx)
	if err != nil {
		return Bootstrap{}, fmt.Errorf("count projects: %w", err)
	}
	if n > 0 && projectID == "" && token == "" {
		return Bootstrap{}, nil
	}
	// Only an empty store gets made-up values: on a store in use, naming
	// just one of the two must not add a project or swap the token at
	// every restart.
	b := Bootstrap{ProjectID: projectID, Token: token}
	if b.ProjectID == "" && n == 0 {
		b.ProjectID = id.New()
	}
	if b.Token == "" && n == 0 {
		b.Token = id.Secret(20)
	}
	now := s.now()
	if b.ProjectID != "" {
		if _, err := s.store.GetProject(ctx, b.ProjectID); errors.Is(err, store.ErrNotFound) {
			if err := s.store.CreateProject(ctx, store.Project{ID: b.ProjectID, Name: "default", CreatedAt: now}); err != nil {
				return Bootstrap{}, fmt.Errorf("create bootstrap project: %w", err)
			}
			b.Created = true
		} else if err != nil {
			return Bootstrap{}, fmt.Errorf("look up bootstrap project: %w", err)
		}
	}
	if b.Token == "" {
		return b, nil
	}
	if _, err := s.findToken(ctx, b.Token); errors.Is(err, store.ErrNotFound) {
		removed, err := s.store.ReplaceNamedToken(ctx, store.Token{ID: id.New(), Hash: s.HashToken(b.Token),
			Kind: store.TokenAdmin, Name: bootstrapTokenName, CreatedAt: now})
		if err != nil {
			return Bootstrap{}, fmt.Errorf("create bootstrap token: %w", err)
		}
		b.Created, b.Replaced = true, removed > 0
	} else if err != nil {
		return Bootstrap{}, fmt.Errorf("look up bootstrap token: %w", err)
	}
	return b, nil
}

// GetProject returns a project.
func (s *Service) GetProject(ctx context.Context, projectID string) (store.Project, error) {
	p, err := s.store.GetProject(ctx, projectID)
	return p, mapStoreErr(err, "Project")
}

package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/store"
)

// HashToken is how token secrets are kept: only their digest is stored.
func HashToken(secret string) string {
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
	t, err := s.store.GetTokenByHash(ctx, HashToken(secret))
	if errors.Is(err, store.ErrNotFound) {
		return store.Token{}, errorf(ErrUnauthorized, "Invalid token")
	}
	if err != nil {
		return store.Token{}, fmt.Errorf("look up token: %w", err)
	}
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
	ProjectID string
	Token     string // the secret; shown once
}

// EnsureBootstrap creates a project and an admin token on an empty store.
// Fixed values (from MAYFLY_BOOTSTRAP_PROJECT / MAYFLY_BOOTSTRAP_TOKEN) are
// used when given, and are made to exist even on a non-empty store so a
// deployment that names them can rely on them.
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
	b := Bootstrap{ProjectID: projectID, Token: token}
	if b.ProjectID == "" {
		b.ProjectID = id.New()
	}
	if b.Token == "" {
		b.Token = id.Secret(20)
	}
	now := s.now()
	if _, err := s.store.GetProject(ctx, b.ProjectID); errors.Is(err, store.ErrNotFound) {
		if err := s.store.CreateProject(ctx, store.Project{ID: b.ProjectID, Name: "default", CreatedAt: now}); err != nil {
			return Bootstrap{}, fmt.Errorf("create bootstrap project: %w", err)
		}
		b.Created = true
	} else if err != nil {
		return Bootstrap{}, fmt.Errorf("look up bootstrap project: %w", err)
	}
	hash := HashToken(b.Token)
	if _, err := s.store.GetTokenByHash(ctx, hash); errors.Is(err, store.ErrNotFound) {
		if err := s.store.CreateToken(ctx, store.Token{ID: id.New(), Hash: hash, Kind: store.TokenAdmin,
			Name: "bootstrap", CreatedAt: now}); err != nil {
			return Bootstrap{}, fmt.Errorf("create bootstrap token: %w", err)
		}
		b.Created = true
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

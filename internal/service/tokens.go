package service

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/store"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// NewToken says what token to make.
type NewToken struct {
	Kind      string // admin, project or runner
	ProjectID string // for project tokens
	Name      string
	Clusters  []string // for runner tokens; none = any cluster
	// ExpiresAt, when set, is when the token stops working.
	ExpiresAt *time.Time
}

// CreateToken makes a token and returns it with its secret, which is shown
// this once and never stored.
func (s *Service) CreateToken(ctx context.Context, n NewToken) (store.Token, string, error) {
	n.Name = strings.TrimSpace(n.Name)
	if n.Name == "" || len(n.Name) > 128 || strings.ContainsRune(n.Name, 0) {
		return store.Token{}, "", errorf(ErrInvalid, "A token needs a name of 1 to 128 characters")
	}
	tok := store.Token{ID: id.New(), Kind: n.Kind, Name: n.Name, CreatedAt: s.now()}
	if n.ExpiresAt != nil {
		if !n.ExpiresAt.After(tok.CreatedAt) {
			return store.Token{}, "", errorf(ErrInvalid, "expires_at must be in the future")
		}
		exp := n.ExpiresAt.UTC()
		tok.ExpiresAt = &exp
	}
	switch n.Kind {
	case store.TokenAdmin:
	case store.TokenProject:
		if _, err := s.GetProject(ctx, n.ProjectID); err != nil || !id.Valid(n.ProjectID) {
			return store.Token{}, "", errorf(ErrInvalid, "A project token needs an existing project_id (got %q)", n.ProjectID)
		}
		tok.ProjectID = n.ProjectID
	case store.TokenRunner:
		for _, c := range n.Clusters {
			c = wire.Cluster(c)
			if len(c) > 64 {
				return store.Token{}, "", errorf(ErrInvalid, "cluster names are limited to 64 characters")
			}
			if !slices.Contains(tok.Clusters, c) {
				tok.Clusters = append(tok.Clusters, c)
			}
		}
	default:
		return store.Token{}, "", errorf(ErrInvalid, "kind must be admin, project or runner (got %q)", n.Kind)
	}
	if n.Kind != store.TokenProject && n.ProjectID != "" {
		return store.Token{}, "", errorf(ErrInvalid, "Only a project token names a project_id")
	}
	if n.Kind != store.TokenRunner && len(n.Clusters) > 0 {
		return store.Token{}, "", errorf(ErrInvalid, "Only a runner token names clusters")
	}
	secret := id.Secret(24)
	tok.Hash = s.HashToken(secret)
	if err := s.store.CreateToken(ctx, tok); err != nil {
		return store.Token{}, "", fmt.Errorf("create %s token %q: %w", tok.Kind, tok.Name, err)
	}
	s.log.Info("token created", "token_id", tok.ID, "kind", tok.Kind, "name", tok.Name, "project_id", tok.ProjectID)
	detail := "kind=" + tok.Kind + " name=" + quoteDetail(tok.Name)
	if tok.ExpiresAt != nil {
		detail += " expires_at=" + tok.ExpiresAt.Format(time.RFC3339)
	}
	s.audit(ctx, tok.ProjectID, "token.create", tok.ID, detail)
	return tok, secret, nil
}

// ListTokens lists the tokens of a project, or all when projectID is "".
func (s *Service) ListTokens(ctx context.Context, projectID string) ([]store.Token, error) {
	return s.store.ListTokens(ctx, projectID)
}

// RevokeToken deletes a token: every server refuses it from its next
// request on, since each request looks its token up in the store.
func (s *Service) RevokeToken(ctx context.Context, tokenID string) error {
	if !id.Valid(tokenID) {
		return errorf(ErrNotFound, "Token not found")
	}
	// Found first only for the audit record: which project, which name.
	var gone store.Token
	if toks, err := s.store.ListTokens(ctx, ""); err == nil {
		for _, t := range toks {
			if t.ID == tokenID {
				gone = t
			}
		}
	}
	if err := s.store.DeleteToken(ctx, tokenID); err != nil {
		return mapStoreErr(err, "Token")
	}
	s.log.Info("token revoked", "token_id", tokenID)
	s.audit(ctx, gone.ProjectID, "token.revoke", tokenID, "kind="+gone.Kind+" name="+quoteDetail(gone.Name))
	return nil
}

// RunnerID is who a runner is: a runner token is one runner, named by the
// token's id whatever the request says; an admin token (the embedded
// runner, tests) names its runner in the request.
func RunnerID(t store.Token, claimed string) string {
	if t.Kind == store.TokenRunner {
		return t.ID
	}
	return claimed
}

// CheckRunnerClusters refuses a lease for a cluster a runner token does not
// name.
func CheckRunnerClusters(t store.Token, clusters []string) error {
	if t.Kind != store.TokenRunner || len(t.Clusters) == 0 {
		return nil
	}
	if len(clusters) == 0 {
		clusters = []string{""}
	}
	for _, c := range clusters {
		if !slices.Contains(t.Clusters, wire.Cluster(c)) {
			name := "the default cluster"
			if c := wire.Cluster(c); c != "" {
				name = fmt.Sprintf("cluster %q", c)
			}
			return errorf(ErrForbidden, "This runner token is not good for %s", name)
		}
	}
	return nil
}

// OpenPackageFor opens a revision's package for a runner: a runner token
// gets only the packages of tasks it holds.
func (s *Service) OpenPackageFor(ctx context.Context, t store.Token, runnerID, revisionID string) (io.ReadCloser, error) {
	if t.Kind == store.TokenRunner {
		held, err := s.store.RunnerHoldsRevision(ctx, runnerID, revisionID)
		if err != nil {
			return nil, fmt.Errorf("check the package a runner asks for: %w", err)
		}
		if !held {
			return nil, errorf(ErrNotFound, "Package not found among the tasks this runner holds")
		}
	}
	return s.OpenPackage(ctx, revisionID)
}

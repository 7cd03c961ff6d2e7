package service

import (
	"context"

	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/store"
)

type actorKey struct{}

// WithActor says which token a request acts with, so the changes it
// makes are recorded under that token's id and name.
func WithActor(ctx context.Context, t store.Token) context.Context {
	return context.WithValue(ctx, actorKey{}, t)
}

// actor is the token ctx acts with; changes made by the server itself
// (schedules firing, maintenance) carry none.
func actor(ctx context.Context) (store.Token, bool) {
	t, ok := ctx.Value(actorKey{}).(store.Token)
	return t, ok
}

// audit records that the caller in ctx did action to target. Only ids,
// names and settings go in detail, never a secret. A record that cannot
// be written is logged: the change it describes has been made already.
func (s *Service) audit(ctx context.Context, projectID, action, target, detail string) {
	e := store.AuditEntry{ID: id.New(), ProjectID: projectID, Action: action, Target: target, Detail: detail,
		CreatedAt: s.now(), TokenKind: "server", TokenName: "mayfly"}
	if t, ok := actor(ctx); ok {
		e.TokenID, e.TokenName, e.TokenKind = t.ID, t.Name, t.Kind
		if t.Kind == store.TokenTask {
			e.TokenName = "task " + t.ID
		}
	}
	if err := s.store.AddAudit(context.WithoutCancel(ctx), e); err != nil {
		s.log.Error("audit record not written", "action", action, "target", target, "project_id", projectID, "err", err)
	}
}

// ListAudit lists the audit records of a project, or every record when
// projectID is "", newest first.
func (s *Service) ListAudit(ctx context.Context, projectID string, page store.Page) ([]store.AuditEntry, error) {
	return s.store.ListAudit(ctx, projectID, page)
}

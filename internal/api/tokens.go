package api

import (
	"net/http"

	"github.com/mayfly-run/mayfly/internal/id"
	"github.com/mayfly-run/mayfly/internal/mayfly"
	"github.com/mayfly-run/mayfly/internal/service"
	"github.com/mayfly-run/mayfly/internal/wire"
)

// Token management: admin tokens only.

func tokenJSON(t mayfly.Token) wire.Token {
	return wire.Token{ID: t.ID, Kind: t.Kind, ProjectID: t.ProjectID, Name: t.Name, Clusters: t.Clusters, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt}
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) error {
	var req wire.NewToken
	if err := a.readJSON(w, r, &req); err != nil {
		return err
	}
	tok, secret, err := a.svc.CreateToken(r.Context(), service.NewToken{Kind: req.Kind, ProjectID: req.ProjectID,
		Name: req.Name, Clusters: req.Clusters, ExpiresAt: req.ExpiresAt})
	if err != nil {
		return err
	}
	return writeJSON(w, wire.CreatedToken{Token: tokenJSON(tok), Secret: secret,
		Msg: "Token created; keep it now, it is not shown again"})
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) error {
	project := r.URL.Query().Get("project_id")
	if project != "" && !id.Valid(project) {
		return errStatus(http.StatusBadRequest, "project_id must be a project id (24 hex characters)")
	}
	toks, err := a.svc.ListTokens(r.Context(), project)
	if err != nil {
		return err
	}
	out := wire.TokenList{Tokens: make([]wire.Token, 0, len(toks))}
	for _, t := range toks {
		out.Tokens = append(out.Tokens, tokenJSON(t))
	}
	return writeJSON(w, out)
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) error {
	if err := a.svc.RevokeToken(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	return writeJSON(w, wire.Msg{Msg: "Revoked"})
}

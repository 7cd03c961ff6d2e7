package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/store"
)

func (s *Store) ListProjects(ctx context.Context, page store.Page) ([]store.Project, error) {
	limit, offset := pageBounds(page)
	rows, err := s.pool.Query(ctx,
		`SELECT `+projectCols+` FROM projects ORDER BY created_at, id LIMIT $1 OFFSET $2`, limit, offset)
	if err != nil {
		return nil, fail(err, "list projects")
	}
	defer rows.Close()
	var out []store.Project
	for rows.Next() {
		p, err := scanProject(rows)
		if err != nil {
			return nil, fail(err, "list projects")
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(err, "list projects")
	}
	return out, nil
}

func (s *Store) UpdateProject(ctx context.Context, p store.Project) error {
	q := p.Quotas
	err := oneRow(s.pool.Exec(ctx,
		`UPDATE projects SET name = $1, updated_at = $2, quota_queued = $3, quota_running = $4, quota_schedules = $5,
			quota_code_bytes = $6, quota_rate = $7 WHERE id = $8`,
		p.Name, micros(p.UpdatedAt), q.QueuedTasks, q.RunningTasks, q.Schedules, q.CodeBytes, q.RequestRate, p.ID))
	if err != nil {
		return fail(err, "update project %s", p.ID)
	}
	return nil
}

func (s *Store) DeleteProject(ctx context.Context, id string) ([]store.CodeRevision, error) {
	var revs []store.CodeRevision
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		var err error
		revs, err = queryRevisions(ctx, tx,
			`SELECT `+revisionCols+` FROM code_revisions r WHERE r.project_id = $1`, id)
		if err != nil {
			return err
		}
		// Foreign keys cascade to tokens, codes, tasks, logs and schedules.
		return oneRow(tx.Exec(ctx, `DELETE FROM projects WHERE id = $1`, id))
	})
	if err != nil {
		return nil, fail(err, "delete project %s", id)
	}
	return revs, nil
}

func (s *Store) ProjectUsage(ctx context.Context, projectID string, queuedCap int64) (store.Usage, error) {
	var u store.Usage
	var limit *int64
	if queuedCap > 0 {
		l := queuedCap + 1
		limit = &l
	}
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT COUNT(*) FROM (SELECT 1 FROM tasks WHERE project_id = $1 AND status = 'queued' LIMIT $2) q),
		(SELECT COUNT(*) FROM tasks WHERE project_id = $1 AND status IN ('preparing', 'running')),
		(SELECT COUNT(*) FROM schedules WHERE project_id = $1 AND status = 'scheduled'),
		(SELECT COALESCE(SUM(package_size), 0)::bigint FROM code_revisions WHERE project_id = $1)`,
		projectID, limit).Scan(&u.Queued, &u.Active, &u.Schedules, &u.CodeBytes)
	if err != nil {
		return store.Usage{}, fail(err, "count what project %s holds", projectID)
	}
	return u, nil
}

func (s *Store) AddAudit(ctx context.Context, e store.AuditEntry) error {
	_, err := s.pool.Exec(ctx,
		`INSERT INTO audit (id, project_id, token_id, token_name, token_kind, action, target, detail, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		e.ID, e.ProjectID, e.TokenID, e.TokenName, e.TokenKind, e.Action, e.Target, e.Detail, micros(e.CreatedAt))
	if err != nil {
		return fail(err, "record %s of %s", e.Action, e.Target)
	}
	return nil
}

func (s *Store) ListAudit(ctx context.Context, projectID string, page store.Page) ([]store.AuditEntry, error) {
	limit, offset := pageBounds(page)
	query := `SELECT id, project_id, token_id, token_name, token_kind, action, target, detail, created_at
		FROM audit ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2`
	args := []any{limit, offset}
	if projectID != "" {
		query = `SELECT id, project_id, token_id, token_name, token_kind, action, target, detail, created_at
			FROM audit WHERE project_id = $3 ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2`
		args = append(args, projectID)
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fail(err, "list audit records")
	}
	defer rows.Close()
	var out []store.AuditEntry
	for rows.Next() {
		var (
			e       store.AuditEntry
			created int64
		)
		if err := rows.Scan(&e.ID, &e.ProjectID, &e.TokenID, &e.TokenName, &e.TokenKind, &e.Action, &e.Target,
			&e.Detail, &created); err != nil {
			return nil, fail(err, "list audit records")
		}
		e.CreatedAt = fromMicros(created)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(err, "list audit records")
	}
	return out, nil
}

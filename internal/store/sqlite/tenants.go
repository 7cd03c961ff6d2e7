package sqlite

import (
	"context"

	"github.com/mayfly-run/mayfly/internal/store"
)

func (s *Store) ListProjects(ctx context.Context, page store.Page) ([]store.Project, error) {
	limit, offset := pageBounds(page)
	rows, err := s.read().QueryContext(ctx,
		`SELECT `+projectCols+` FROM projects ORDER BY created_at, id LIMIT ? OFFSET ?`, limit, offset)
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
	res, err := s.write().ExecContext(ctx,
		`UPDATE projects SET name = ?, updated_at = ?, quota_queued = ?, quota_running = ?, quota_schedules = ?,
			quota_code_bytes = ?, quota_rate = ? WHERE id = ?`,
		p.Name, micros(p.UpdatedAt), q.QueuedTasks, q.RunningTasks, q.Schedules, q.CodeBytes, q.RequestRate, p.ID)
	if err == nil {
		err = oneRow(res)
	}
	if err != nil {
		return fail(err, "update project %s", p.ID)
	}
	return nil
}

func (s *Store) DeleteProject(ctx context.Context, id string) ([]store.CodeRevision, error) {
	var revs []store.CodeRevision
	err := s.withTx(ctx, func(tx *querier) error {
		var err error
		revs, err = queryRevisions(ctx, tx,
			`SELECT `+revisionCols+` FROM code_revisions r WHERE r.project_id = ?`, id)
		if err != nil {
			return err
		}
		// Foreign keys cascade to tokens, codes, tasks, logs and schedules.
		res, err := tx.ExecContext(ctx, `DELETE FROM projects WHERE id = ?`, id)
		if err != nil {
			return err
		}
		return oneRow(res)
	})
	if err != nil {
		return nil, fail(err, "delete project %s", id)
	}
	return revs, nil
}

func (s *Store) ProjectUsage(ctx context.Context, projectID string, queuedCap int64) (store.Usage, error) {
	var u store.Usage
	limit := int64(-1)
	if queuedCap > 0 {
		limit = queuedCap + 1
	}
	err := s.read().QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM (SELECT 1 FROM tasks WHERE project_id = ?1 AND status = 'queued' LIMIT ?2)),
		(SELECT COUNT(*) FROM tasks WHERE project_id = ?1 AND status IN ('preparing', 'running')),
		(SELECT COUNT(*) FROM schedules WHERE project_id = ?1 AND status = 'scheduled'),
		(SELECT COALESCE(SUM(package_size), 0) FROM code_revisions WHERE project_id = ?1)`,
		projectID, limit).Scan(&u.Queued, &u.Active, &u.Schedules, &u.CodeBytes)
	if err != nil {
		return store.Usage{}, fail(err, "count what project %s holds", projectID)
	}
	return u, nil
}

func (s *Store) AddAudit(ctx context.Context, e store.AuditEntry) error {
	_, err := s.write().ExecContext(ctx,
		`INSERT INTO audit (id, project_id, token_id, token_name, token_kind, action, target, detail, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, e.ProjectID, e.TokenID, e.TokenName, e.TokenKind, e.Action, e.Target, e.Detail, micros(e.CreatedAt))
	if err != nil {
		return fail(err, "record %s of %s", e.Action, e.Target)
	}
	return nil
}

func (s *Store) ListAudit(ctx context.Context, projectID string, page store.Page) ([]store.AuditEntry, error) {
	limit, offset := pageBounds(page)
	query := `SELECT id, project_id, token_id, token_name, token_kind, action, target, detail, created_at
		FROM audit ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`
	args := []any{limit, offset}
	if projectID != "" {
		query = `SELECT id, project_id, token_id, token_name, token_kind, action, target, detail, created_at
			FROM audit WHERE project_id = ? ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`
		args = append([]any{projectID}, args...)
	}
	rows, err := s.read().QueryContext(ctx, query, args...)
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

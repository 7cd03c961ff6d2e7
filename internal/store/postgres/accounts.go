package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/store"
)

func (s *Store) CreateProject(ctx context.Context, p store.Project) error {
	q := p.Quotas
	_, err := s.pool.Exec(ctx,
		`INSERT INTO projects (id, name, created_at, updated_at, quota_queued, quota_running, quota_schedules,
			quota_code_bytes, quota_rate) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		p.ID, p.Name, micros(p.CreatedAt), micros(cmp.Or(p.UpdatedAt, p.CreatedAt)),
		q.QueuedTasks, q.RunningTasks, q.Schedules, q.CodeBytes, q.RequestRate)
	if err != nil {
		return fail(err, "create project %s", p.ID)
	}
	return nil
}

const projectCols = `id, name, created_at, updated_at, quota_queued, quota_running, quota_schedules, quota_code_bytes, quota_rate`

func scanProject(row rowScanner) (store.Project, error) {
	var (
		p                store.Project
		created, updated int64
	)
	q := &p.Quotas
	if err := row.Scan(&p.ID, &p.Name, &created, &updated, &q.QueuedTasks, &q.RunningTasks, &q.Schedules,
		&q.CodeBytes, &q.RequestRate); err != nil {
		return store.Project{}, err
	}
	p.CreatedAt, p.UpdatedAt = fromMicros(created), fromMicros(updated)
	return p, nil
}

func (s *Store) GetProject(ctx context.Context, id string) (store.Project, error) {
	p, err := scanProject(s.pool.QueryRow(ctx, `SELECT `+projectCols+` FROM projects WHERE id = $1`, id))
	if err != nil {
		return store.Project{}, fail(err, "get project %s", id)
	}
	return p, nil
}

func (s *Store) CountProjects(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM projects`).Scan(&n); err != nil {
		return 0, fail(err, "count projects")
	}
	return n, nil
}

const insertTokenSQL = `INSERT INTO tokens (id, hash, kind, project_id, name, clusters, created_at, expires_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`

func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	_, err := s.pool.Exec(ctx, insertTokenSQL,
		t.ID, t.Hash, t.Kind, nullString(t.ProjectID), t.Name, jsonList(t.Clusters), micros(t.CreatedAt), nullMicros(t.ExpiresAt))
	if err != nil {
		return fail(err, "create %s token %s", t.Kind, t.ID)
	}
	return nil
}

func (s *Store) GetTokenByHash(ctx context.Context, hash string) (store.Token, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE hash = $1`, hash))
	if err != nil {
		// The hash stays out of the message: it identifies a secret.
		return store.Token{}, fail(err, "get token by hash")
	}
	return t, nil
}

func (s *Store) UpdateTokenHash(ctx context.Context, tokenID, oldHash, newHash string) error {
	err := oneRow(s.pool.Exec(ctx,
		`UPDATE tokens SET hash = $1 WHERE id = $2 AND hash = $3`, newHash, tokenID, oldHash))
	if err != nil {
		return fail(err, "update hash of token %s", tokenID)
	}
	return nil
}

func (s *Store) ReplaceNamedToken(ctx context.Context, t store.Token) (int, error) {
	var removed int64
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		// Servers that start together each replace the bootstrap token:
		// without the lock each would delete the (not yet committed)
		// others' tokens in vain, and several would stay.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`,
			namedTokenLock, t.Kind+"/"+t.Name); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM tokens WHERE kind = $1 AND name = $2`, t.Kind, t.Name)
		if err != nil {
			return err
		}
		removed = tag.RowsAffected()
		_, err = tx.Exec(ctx, insertTokenSQL,
			t.ID, t.Hash, t.Kind, nullString(t.ProjectID), t.Name, jsonList(t.Clusters), micros(t.CreatedAt), nullMicros(t.ExpiresAt))
		return err
	})
	if err != nil {
		return 0, fail(err, "replace %s token %q", t.Kind, t.Name)
	}
	return int(removed), nil
}

// namedTokenLock is the first key of the advisory locks ReplaceNamedToken
// takes, one per kind and name.
const namedTokenLock int32 = 0x6d66 // "mf"

const tokenCols = `id, hash, kind, project_id, name, clusters, created_at, expires_at`

func scanToken(row rowScanner) (store.Token, error) {
	var (
		t        store.Token
		project  *string
		clusters string
		created  int64
		expires  *int64
	)
	if err := row.Scan(&t.ID, &t.Hash, &t.Kind, &project, &t.Name, &clusters, &created, &expires); err != nil {
		return store.Token{}, err
	}
	if err := json.Unmarshal([]byte(clusters), &t.Clusters); err != nil {
		return store.Token{}, err
	}
	if len(t.Clusters) == 0 {
		t.Clusters = nil
	}
	if project != nil {
		t.ProjectID = *project
	}
	t.CreatedAt = fromMicros(created)
	t.ExpiresAt = ptrTime(expires)
	return t, nil
}

func jsonList(v []string) string {
	b, _ := json.Marshal(nonNil(v))
	return string(b)
}

func (s *Store) ListTokens(ctx context.Context, projectID string) ([]store.Token, error) {
	rows, err := s.pool.Query(ctx,
		`SELECT `+tokenCols+` FROM tokens WHERE $1 = '' OR project_id = $1 ORDER BY created_at, id`, projectID)
	if err != nil {
		return nil, fail(err, "list tokens")
	}
	defer rows.Close()
	var out []store.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fail(err, "list tokens")
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(err, "list tokens")
	}
	return out, nil
}

func (s *Store) DeleteToken(ctx context.Context, tokenID string) error {
	if err := oneRow(s.pool.Exec(ctx, `DELETE FROM tokens WHERE id = $1`, tokenID)); err != nil {
		return fail(err, "delete token %s", tokenID)
	}
	return nil
}

// runnerHoldsSQL asks whether runner $2 holds an active task of revision
// $1: the revision gives its project and code, and with them the task is
// a range of tasks_active. A revision deleted with its code has no
// package to hand out either.
const runnerHoldsSQL = `SELECT 1 FROM code_revisions r
	JOIN tasks t ON t.project_id = r.project_id AND t.code_id = r.code_id AND t.code_revision_id = r.id
		AND t.runner_id = $2 AND t.status IN ('preparing', 'running')
	WHERE r.id = $1 LIMIT 1`

func (s *Store) RunnerHoldsRevision(ctx context.Context, runnerID, revisionID string) (bool, error) {
	var one int
	err := s.pool.QueryRow(ctx, runnerHoldsSQL, revisionID, runnerID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fail(err, "does runner %s hold a task of revision %s", runnerID, revisionID)
	}
	return true, nil
}

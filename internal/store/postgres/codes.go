package postgres

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/store"
)

const revisionCols = `r.id, r.code_id, r.project_id, r.name, r.rev, r.runtime, r.file_name,
	r.stack, r.image, r.command, r.config, r.env_vars, r.max_concurrency, r.retries,
	r.retries_delay, r.default_priority, r.package_key, r.package_sha256,
	r.package_size, r.created_at, r.retries_backoff`

// codeSelect reads a code as its latest revision plus the code's own columns.
const codeSelect = `SELECT ` + revisionCols + `, c.created_at, c.updated_at, c.paused
	FROM codes c JOIN code_revisions r ON r.id = c.latest_revision_id`

func scanRevision(row rowScanner, extra ...any) (store.CodeRevision, error) {
	var (
		r       store.CodeRevision
		env     string
		created int64
	)
	dest := []any{&r.ID, &r.CodeID, &r.ProjectID, &r.Name, &r.Rev, &r.Runtime, &r.FileName,
		&r.Stack, &r.Image, &r.Command, &r.Config, &env, &r.MaxConcurrency, &r.Retries,
		&r.RetriesDelay, &r.DefaultPriority, &r.PackageKey, &r.PackageSHA256,
		&r.PackageSize, &created, &r.RetriesBackoff}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return store.CodeRevision{}, err
	}
	if err := json.Unmarshal([]byte(env), &r.EnvVars); err != nil {
		return store.CodeRevision{}, fmt.Errorf("decode env_vars of revision %s: %w", r.ID, err)
	}
	r.CreatedAt = fromMicros(created)
	return r, nil
}

func scanCode(row rowScanner) (store.Code, error) {
	var (
		c                store.Code
		created, updated int64
	)
	rev, err := scanRevision(row, &created, &updated, &c.Paused)
	if err != nil {
		return store.Code{}, err
	}
	c.CodeRevision = rev
	c.CreatedAt = fromMicros(created)
	c.UpdatedAt = fromMicros(updated)
	return c, nil
}

func (s *Store) PutCodeRevision(ctx context.Context, rev store.CodeRevision) (store.Code, error) {
	// JSON keeps nil and empty maps apart ("null" vs "{}"), so EnvVars
	// reads back exactly as written.
	env, err := json.Marshal(rev.EnvVars)
	if err != nil {
		return store.Code{}, fmt.Errorf("put revision of code %s: encode env_vars: %w", rev.Name, err)
	}
	var code store.Code
	err = s.withTx(ctx, func(tx pgx.Tx) error {
		var (
			codeID  string
			created int64
			paused  bool
		)
		// A first upload inserts the code; ON CONFLICT DO NOTHING waits
		// for a concurrent first upload of the same name to commit and
		// then leaves its row, which the SELECT below reads: both uploads
		// succeed, one after the other, as on a single writer.
		created = micros(rev.CreatedAt)
		tag, err := tx.Exec(ctx,
			`INSERT INTO codes (id, project_id, name, latest_revision_id, created_at, updated_at, paused)
			 VALUES ($1, $2, $3, $4, $5, $5, FALSE)
			 ON CONFLICT (project_id, name) DO NOTHING`,
			rev.CodeID, rev.ProjectID, rev.Name, rev.ID, created)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			rev.Rev = 1
		} else {
			// The code's row stays locked to the end, so two uploads of
			// one code number their revisions one after the other.
			if err := tx.QueryRow(ctx,
				`SELECT id, created_at, paused FROM codes WHERE project_id = $1 AND name = $2 FOR NO KEY UPDATE`,
				rev.ProjectID, rev.Name).Scan(&codeID, &created, &paused); err != nil {
				return err
			}
			rev.CodeID = codeID
			if err := tx.QueryRow(ctx,
				`SELECT COALESCE(MAX(rev), 0) + 1 FROM code_revisions WHERE code_id = $1`,
				codeID).Scan(&rev.Rev); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx,
				`UPDATE codes SET latest_revision_id = $1, updated_at = $2 WHERE id = $3`,
				rev.ID, micros(rev.CreatedAt), codeID); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO code_revisions (id, code_id, project_id, name, rev, runtime, file_name,
				stack, image, command, config, env_vars, max_concurrency, retries,
				retries_delay, default_priority, package_key, package_sha256,
				package_size, created_at, retries_backoff)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)`,
			rev.ID, rev.CodeID, rev.ProjectID, rev.Name, rev.Rev, rev.Runtime, rev.FileName,
			rev.Stack, rev.Image, rev.Command, rev.Config, string(env), rev.MaxConcurrency, rev.Retries,
			rev.RetriesDelay, rev.DefaultPriority, rev.PackageKey, rev.PackageSHA256,
			rev.PackageSize, micros(rev.CreatedAt), rev.RetriesBackoff); err != nil {
			return err
		}
		rev.CreatedAt = fromMicros(micros(rev.CreatedAt))
		code = store.Code{
			CodeRevision: rev,
			CreatedAt:    fromMicros(created),
			UpdatedAt:    rev.CreatedAt,
			Paused:       paused,
		}
		return nil
	})
	if err != nil {
		return store.Code{}, fail(err, "put revision of code %s in project %s", rev.Name, rev.ProjectID)
	}
	return code, nil
}

func (s *Store) GetCode(ctx context.Context, projectID, codeID string) (store.Code, error) {
	c, err := scanCode(s.pool.QueryRow(ctx,
		codeSelect+` WHERE c.project_id = $1 AND c.id = $2`, projectID, codeID))
	if err != nil {
		return store.Code{}, fail(err, "get code %s in project %s", codeID, projectID)
	}
	return c, nil
}

func (s *Store) GetCodeByName(ctx context.Context, projectID, name string) (store.Code, error) {
	c, err := scanCode(s.pool.QueryRow(ctx,
		codeSelect+` WHERE c.project_id = $1 AND c.name = $2`, projectID, name))
	if err != nil {
		return store.Code{}, fail(err, "get code %q in project %s", name, projectID)
	}
	return c, nil
}

func (s *Store) ListCodes(ctx context.Context, projectID string, page store.Page) ([]store.Code, error) {
	limit, offset := pageBounds(page)
	rows, err := s.pool.Query(ctx,
		codeSelect+` WHERE c.project_id = $1 ORDER BY c.updated_at DESC, c.id DESC LIMIT $2 OFFSET $3`,
		projectID, limit, offset)
	if err != nil {
		return nil, fail(err, "list codes of project %s", projectID)
	}
	defer rows.Close()
	var codes []store.Code
	for rows.Next() {
		c, err := scanCode(rows)
		if err != nil {
			return nil, fail(err, "list codes of project %s", projectID)
		}
		codes = append(codes, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(err, "list codes of project %s", projectID)
	}
	return codes, nil
}

func (s *Store) DeleteCode(ctx context.Context, projectID, codeID string) ([]store.CodeRevision, error) {
	var revs []store.CodeRevision
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx,
			`SELECT 1 FROM codes WHERE project_id = $1 AND id = $2 FOR UPDATE`, projectID, codeID).Scan(&one); err != nil {
			return err
		}
		var err error
		revs, err = queryRevisions(ctx, tx,
			`SELECT `+revisionCols+` FROM code_revisions r WHERE r.code_id = $1 ORDER BY r.rev DESC`, codeID)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM code_revisions WHERE code_id = $1`, codeID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM codes WHERE id = $1`, codeID)
		return err
	})
	if err != nil {
		return nil, fail(err, "delete code %s in project %s", codeID, projectID)
	}
	return revs, nil
}

func (s *Store) ListCodeRevisions(ctx context.Context, projectID, codeID string, page store.Page) ([]store.CodeRevision, error) {
	limit, offset := pageBounds(page)
	var revs []store.CodeRevision
	// One snapshot, so "the code exists" and its revisions agree.
	err := s.withReadTx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx,
			`SELECT 1 FROM codes WHERE project_id = $1 AND id = $2`, projectID, codeID).Scan(&one); err != nil {
			return err
		}
		var err error
		revs, err = queryRevisions(ctx, tx,
			`SELECT `+revisionCols+` FROM code_revisions r WHERE r.code_id = $1 ORDER BY r.rev DESC LIMIT $2 OFFSET $3`,
			codeID, limit, offset)
		return err
	})
	if err != nil {
		return nil, fail(err, "list revisions of code %s in project %s", codeID, projectID)
	}
	return revs, nil
}

func (s *Store) GetCodeRevision(ctx context.Context, revisionID string) (store.CodeRevision, error) {
	r, err := scanRevision(s.pool.QueryRow(ctx,
		`SELECT `+revisionCols+` FROM code_revisions r WHERE r.id = $1`, revisionID))
	if err != nil {
		return store.CodeRevision{}, fail(err, "get code revision %s", revisionID)
	}
	return r, nil
}

// SetCodePaused pauses or resumes leasing of a code's queued tasks (the
// IronWorker "pause task queue").
func (s *Store) SetCodePaused(ctx context.Context, projectID, codeID string, paused bool) error {
	err := oneRow(s.pool.Exec(ctx,
		`UPDATE codes SET paused = $1 WHERE project_id = $2 AND id = $3`, paused, projectID, codeID))
	if err != nil {
		return fail(err, "set paused=%t on code %s in project %s", paused, codeID, projectID)
	}
	return nil
}

func queryRevisions(ctx context.Context, q querier, query string, args ...any) ([]store.CodeRevision, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var revs []store.CodeRevision
	for rows.Next() {
		r, err := scanRevision(rows)
		if err != nil {
			return nil, err
		}
		revs = append(revs, r)
	}
	return revs, rows.Err()
}

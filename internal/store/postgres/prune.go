package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/store"
)

func (s *Store) ReleaseTask(ctx context.Context, taskID, runnerID string, at time.Time) error {
	now := micros(at)
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		// A cancel asked meanwhile wins: the task ends as RescueExpired
		// would end it.
		tag, err := tx.Exec(ctx,
			`UPDATE tasks SET status = 'cancelled', msg = 'Cancelled', end_time = $1, updated_at = $1, lease_expires_at = NULL
			 WHERE id = $2 AND runner_id = $3 AND status = 'preparing' AND cancel_request`,
			now, taskID, runnerID)
		if err != nil || tag.RowsAffected() == 1 {
			return err
		}
		return leaseLost(tx.Exec(ctx,
			`UPDATE tasks SET status = 'queued', runner_id = '', attempt = GREATEST(attempt - 1, 0),
				lease_expires_at = NULL, updated_at = $1
			 WHERE id = $2 AND runner_id = $3 AND status = 'preparing'`,
			now, taskID, runnerID))
	})
	if err != nil {
		return fail(err, "release task %s of runner %s", taskID, runnerID)
	}
	return nil
}

func (s *Store) PruneTasks(ctx context.Context, p store.PruneParams) (int, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 1000
	}
	var n int
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		// SKIP LOCKED: a task another prune (on another server) is deleting
		// is left to it.
		rows, err := tx.Query(ctx,
			`SELECT id FROM tasks
			 WHERE end_time IS NOT NULL AND end_time < $1 AND status NOT IN ('queued', 'preparing', 'running')
			 ORDER BY end_time, id LIMIT $2
			 FOR UPDATE SKIP LOCKED`, micros(p.EndedBefore), limit)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		for _, q := range []string{
			`DELETE FROM task_logs WHERE task_id = ANY($1)`,
			`DELETE FROM tasks WHERE id = ANY($1)`,
			// A retry that stays must not name a task that is gone.
			`UPDATE tasks SET retry_of = '' WHERE retry_of != '' AND retry_of = ANY($1)`,
			`UPDATE tasks SET retry_at = '' WHERE retry_at != '' AND retry_at = ANY($1)`,
		} {
			if _, err := tx.Exec(ctx, q, ids); err != nil {
				return err
			}
		}
		n = len(ids)
		return nil
	})
	if err != nil {
		return 0, fail(err, "prune tasks ended before %s", p.EndedBefore.Format(time.RFC3339))
	}
	return n, nil
}

func (s *Store) ReferencedPackageKeys(ctx context.Context, keys []string) (map[string]bool, error) {
	out := make(map[string]bool, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx,
		`SELECT DISTINCT package_key FROM code_revisions
		 WHERE package_key != '' AND package_key = ANY($1)`, keys)
	if err != nil {
		return nil, fail(err, "look up %d package keys", len(keys))
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fail(err, "look up %d package keys", len(keys))
	}
	for _, k := range found {
		out[k] = true
	}
	return out, nil
}

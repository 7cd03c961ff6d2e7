package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

// Sets of ids travel as one JSON array read with json_each, so each
// statement has one fixed text and stays in the statement cache whatever
// the size of the set.

func (s *Store) ReleaseTask(ctx context.Context, taskID, runnerID string, at time.Time) error {
	now := micros(at)
	err := s.withTx(ctx, func(tx *querier) error {
		// A cancel asked meanwhile wins: the task ends as RescueExpired
		// would end it.
		res, err := tx.ExecContext(ctx,
			`UPDATE tasks SET status = 'cancelled', msg = 'Cancelled', end_time = ?, updated_at = ?, lease_expires_at = NULL
			 WHERE id = ? AND runner_id = ? AND status = 'preparing' AND cancel_request = 1`,
			now, now, taskID, runnerID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		return leaseLost(tx.ExecContext(ctx,
			`UPDATE tasks SET status = 'queued', runner_id = '', attempt = MAX(attempt - 1, 0),
				lease_expires_at = NULL, updated_at = ?
			 WHERE id = ? AND runner_id = ? AND status = 'preparing'`,
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
	err := s.withTx(ctx, func(tx *querier) error {
		rows, err := tx.QueryContext(ctx,
			`SELECT id FROM tasks
			 WHERE end_time IS NOT NULL AND end_time < ? AND status NOT IN ('queued', 'preparing', 'running')
			 ORDER BY end_time, id LIMIT ?`, micros(p.EndedBefore), limit)
		if err != nil {
			return err
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		set, err := json.Marshal(ids)
		if err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM task_logs WHERE task_id IN (SELECT value FROM json_each(?))`,
			`DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(?))`,
			// A retry that stays must not name a task that is gone.
			`UPDATE tasks SET retry_of = '' WHERE retry_of != '' AND retry_of IN (SELECT value FROM json_each(?))`,
			`UPDATE tasks SET retry_at = '' WHERE retry_at != '' AND retry_at IN (SELECT value FROM json_each(?))`,
		} {
			if _, err := tx.ExecContext(ctx, q, string(set)); err != nil {
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
	set, err := json.Marshal(keys)
	if err != nil {
		return nil, fmt.Errorf("look up package keys: %w", err)
	}
	rows, err := s.read().QueryContext(ctx,
		`SELECT DISTINCT package_key FROM code_revisions
		 WHERE package_key != '' AND package_key IN (SELECT value FROM json_each(?))`, string(set))
	if err != nil {
		return nil, fail(err, "look up %d package keys", len(keys))
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fail(err, "look up %d package keys", len(keys))
		}
		out[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fail(err, "look up %d package keys", len(keys))
	}
	return out, nil
}

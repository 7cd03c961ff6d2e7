package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

func (s *Store) GetTaskByID(ctx context.Context, taskID string) (store.Task, error) {
	t, err := scanTask(s.read().QueryRowContext(ctx, `SELECT `+taskCols+` FROM tasks WHERE id = ?`, taskID))
	if err != nil {
		return store.Task{}, fail(err, "get task %s", taskID)
	}
	return t, nil
}

func (s *Store) RetryTask(ctx context.Context, projectID, taskID string, next store.Task) error {
	err := s.withTx(ctx, func(tx *querier) error {
		var (
			status  store.Status
			retryAt string
		)
		if err := tx.QueryRowContext(ctx, `SELECT status, retry_at FROM tasks WHERE project_id = ? AND id = ?`,
			projectID, taskID).Scan(&status, &retryAt); err != nil {
			return err
		}
		if !store.Terminal(status) {
			return fmt.Errorf("%w: task is still %s", store.ErrConflict, status)
		}
		if retryAt != "" {
			return fmt.Errorf("%w: task was already retried as %s", store.ErrConflict, retryAt)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE tasks SET retry_at = ?, updated_at = ? WHERE id = ?`,
			next.ID, micros(next.CreatedAt), taskID); err != nil {
			return err
		}
		return insertTask(ctx, tx, next)
	})
	if err != nil {
		return fail(err, "retry task %s in project %s", taskID, projectID)
	}
	return nil
}

func (s *Store) SetProgress(ctx context.Context, p store.ProgressParams) error {
	err := s.withTx(ctx, func(tx *querier) error {
		var status store.Status
		if err := tx.QueryRowContext(ctx, `SELECT status FROM tasks WHERE id = ?`, p.TaskID).Scan(&status); err != nil {
			return err
		}
		if store.Terminal(status) {
			return fmt.Errorf("%w: task already ended %s", store.ErrConflict, status)
		}
		_, err := tx.ExecContext(ctx, `UPDATE tasks SET percent = ?, msg = ?, updated_at = ? WHERE id = ?`,
			p.Percent, p.Msg, micros(p.Now), p.TaskID)
		return err
	})
	if err != nil {
		return fail(err, "set progress of task %s", p.TaskID)
	}
	return nil
}

func (s *Store) CancelCodeTasks(ctx context.Context, projectID, codeID string, now time.Time) (int, error) {
	var n int64
	err := s.withTx(ctx, func(tx *querier) error {
		at := micros(now)
		res, err := tx.ExecContext(ctx,
			`UPDATE tasks SET status = 'cancelled', msg = 'Cancelled', end_time = ?, updated_at = ?
			 WHERE project_id = ? AND code_id = ? AND status = 'queued'`, at, at, projectID, codeID)
		if err != nil {
			return err
		}
		queued, err := res.RowsAffected()
		if err != nil {
			return err
		}
		res, err = tx.ExecContext(ctx,
			`UPDATE tasks SET cancel_request = 1, updated_at = ?
			 WHERE project_id = ? AND code_id = ? AND status IN ('preparing', 'running') AND cancel_request = 0`,
			at, projectID, codeID)
		if err != nil {
			return err
		}
		active, err := res.RowsAffected()
		n = queued + active
		return err
	})
	if err != nil {
		return 0, fail(err, "cancel tasks of code %s in project %s", codeID, projectID)
	}
	return int(n), nil
}

func (s *Store) CodeStats(ctx context.Context, projectID, codeID string) (map[store.Status]int, error) {
	rows, err := s.read().QueryContext(ctx,
		`SELECT status, COUNT(*) FROM tasks WHERE project_id = ? AND code_id = ? GROUP BY status`, projectID, codeID)
	if err != nil {
		return nil, fail(err, "stats of code %s", codeID)
	}
	defer rows.Close()
	out := map[store.Status]int{}
	for rows.Next() {
		var st store.Status
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fail(err, "stats of code %s", codeID)
		}
		out[st] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fail(err, "stats of code %s", codeID)
	}
	return out, nil
}

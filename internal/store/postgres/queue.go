package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/store"
)

func (s *Store) GetTaskByID(ctx context.Context, taskID string) (store.Task, error) {
	t, err := scanTask(s.pool.QueryRow(ctx, `SELECT `+taskCols+` FROM tasks WHERE id = $1`, taskID))
	if err != nil {
		return store.Task{}, fail(err, "get task %s", taskID)
	}
	return t, nil
}

func (s *Store) RetryTask(ctx context.Context, projectID, taskID string, next store.Task) error {
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		var status, retryAt string
		// Locked, so two retries of one task cannot both see retry_at empty.
		if err := tx.QueryRow(ctx, `SELECT status, retry_at FROM tasks WHERE project_id = $1 AND id = $2 FOR NO KEY UPDATE`,
			projectID, taskID).Scan(&status, &retryAt); err != nil {
			return err
		}
		if !store.Terminal(store.Status(status)) {
			return fmt.Errorf("%w: task is still %s", store.ErrConflict, status)
		}
		if retryAt != "" {
			return fmt.Errorf("%w: task was already retried as %s", store.ErrConflict, retryAt)
		}
		if _, err := tx.Exec(ctx, `UPDATE tasks SET retry_at = $1, updated_at = $2 WHERE id = $3`,
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
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		var status string
		if err := tx.QueryRow(ctx, `SELECT status FROM tasks WHERE id = $1 FOR NO KEY UPDATE`, p.TaskID).Scan(&status); err != nil {
			return err
		}
		if store.Terminal(store.Status(status)) {
			return fmt.Errorf("%w: task already ended %s", store.ErrConflict, status)
		}
		_, err := tx.Exec(ctx, `UPDATE tasks SET percent = $1, msg = $2, updated_at = $3 WHERE id = $4`,
			p.Percent, p.Msg, micros(p.Now), p.TaskID)
		return err
	})
	if err != nil {
		return fail(err, "set progress of task %s", p.TaskID)
	}
	return nil
}

// A code's cancel_all: its queued tasks are read through an index of the
// queue (the project's, or the whole queue's), its active ones through
// tasks_active.
const (
	cancelCodeQueuedSQL = `UPDATE tasks SET status = 'cancelled', msg = 'Cancelled', end_time = $1, updated_at = $1
		WHERE project_id = $2 AND code_id = $3 AND status = 'queued'`
	cancelCodeActiveSQL = `UPDATE tasks SET cancel_request = TRUE, updated_at = $1
		WHERE project_id = $2 AND code_id = $3 AND status IN ('preparing', 'running') AND NOT cancel_request`
)

func (s *Store) CancelCodeTasks(ctx context.Context, projectID, codeID string, now time.Time) (int, error) {
	var n int64
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		at := micros(now)
		tag, err := tx.Exec(ctx, cancelCodeQueuedSQL, at, projectID, codeID)
		if err != nil {
			return err
		}
		queued := tag.RowsAffected()
		tag, err = tx.Exec(ctx, cancelCodeActiveSQL, at, projectID, codeID)
		if err != nil {
			return err
		}
		n = queued + tag.RowsAffected()
		return nil
	})
	if err != nil {
		return 0, fail(err, "cancel tasks of code %s in project %s", codeID, projectID)
	}
	return int(n), nil
}

// codeStatsSQL counts code $2's tasks by status: a range of
// tasks_project_code_created (a project's tasks by code name), which holds
// the code id and the status, so the count reads no table. The name is the
// code's own: a code is never renamed, and tasks of an older code of the
// same name are told apart by the id.
const codeStatsSQL = `SELECT t.status, COUNT(*) FROM codes c
	JOIN tasks t ON t.project_id = c.project_id AND t.code_name = c.name AND t.code_id = c.id
	WHERE c.project_id = $1 AND c.id = $2 GROUP BY t.status`

func (s *Store) CodeStats(ctx context.Context, projectID, codeID string) (map[store.Status]int, error) {
	rows, err := s.pool.Query(ctx, codeStatsSQL, projectID, codeID)
	if err != nil {
		return nil, fail(err, "stats of code %s", codeID)
	}
	defer rows.Close()
	out := map[store.Status]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fail(err, "stats of code %s", codeID)
		}
		out[store.Status(st)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fail(err, "stats of code %s", codeID)
	}
	return out, nil
}

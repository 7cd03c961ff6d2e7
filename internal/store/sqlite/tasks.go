package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

const taskCols = `id, project_id, code_id, code_name, code_revision_id, code_rev, status,
	priority, payload, timeout, delay, cluster, label, msg, exit_code, percent, attempt,
	runner_id, lease_expires_at, cancel_request, retry_of, retry_at, retry_count,
	schedule_id, log_size, created_at, updated_at, due_at, start_time, end_time, timings`

func scanTask(row rowScanner) (store.Task, error) {
	var (
		t                       store.Task
		exitCode                sql.NullInt64
		lease, start, end       sql.NullInt64
		created, updated, dueAt int64
		timings                 string
	)
	err := row.Scan(&t.ID, &t.ProjectID, &t.CodeID, &t.CodeName, &t.CodeRevisionID, &t.CodeRev, &t.Status,
		&t.Priority, &t.Payload, &t.Timeout, &t.Delay, &t.Cluster, &t.Label, &t.Msg, &exitCode, &t.Percent, &t.Attempt,
		&t.RunnerID, &lease, &t.CancelRequest, &t.RetryOf, &t.RetryAt, &t.RetryCount,
		&t.ScheduleID, &t.LogSize, &created, &updated, &dueAt, &start, &end, &timings)
	if err != nil {
		return store.Task{}, err
	}
	if timings != "" {
		if err := json.Unmarshal([]byte(timings), &t.Timings); err != nil {
			return store.Task{}, fmt.Errorf("decode timings of task %s: %w", t.ID, err)
		}
	}
	if exitCode.Valid {
		c := int(exitCode.Int64)
		t.ExitCode = &c
	}
	t.LeaseExpiresAt = ptrTime(lease)
	t.StartTime = ptrTime(start)
	t.EndTime = ptrTime(end)
	t.CreatedAt = fromMicros(created)
	t.UpdatedAt = fromMicros(updated)
	t.DueAt = fromMicros(dueAt)
	return t, nil
}

// encodeTimings stores nil as "" so tasks without timings cost nothing.
func encodeTimings(m map[string]float64) string {
	if len(m) == 0 {
		return ""
	}
	b, err := json.Marshal(m)
	if err != nil {
		return ""
	}
	return string(b)
}

func scanTasks(rows *sql.Rows) ([]store.Task, error) {
	defer rows.Close()
	var tasks []store.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, t)
	}
	return tasks, rows.Err()
}

func nullInt(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func (s *Store) InsertTasks(ctx context.Context, tasks []store.Task) error {
	if len(tasks) == 0 {
		return nil
	}
	err := s.withTx(ctx, func(tx *querier) error {
		for _, t := range tasks {
			if err := insertTask(ctx, tx, t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(err, "insert %d tasks", len(tasks))
	}
	return nil
}

var insertTaskSQL = `INSERT INTO tasks (` + taskCols + `) VALUES (` + placeholders(31) + `)`

func insertTask(ctx context.Context, tx *querier, t store.Task) error {
	if _, err := tx.ExecContext(ctx, insertTaskSQL,
		t.ID, t.ProjectID, t.CodeID, t.CodeName, t.CodeRevisionID, t.CodeRev, t.Status,
		t.Priority, t.Payload, t.Timeout, t.Delay, t.Cluster, t.Label, t.Msg, nullInt(t.ExitCode), t.Percent, t.Attempt,
		t.RunnerID, nullMicros(t.LeaseExpiresAt), t.CancelRequest, t.RetryOf, t.RetryAt, t.RetryCount,
		t.ScheduleID, t.LogSize, micros(t.CreatedAt), micros(t.UpdatedAt), micros(t.DueAt),
		nullMicros(t.StartTime), nullMicros(t.EndTime), encodeTimings(t.Timings)); err != nil {
		return fmt.Errorf("task %s: %w", t.ID, mapErr(err))
	}
	return nil
}

func (s *Store) GetTask(ctx context.Context, projectID, taskID string) (store.Task, error) {
	t, err := scanTask(s.read().QueryRowContext(ctx,
		`SELECT `+taskCols+` FROM tasks WHERE project_id = ? AND id = ?`, projectID, taskID))
	if err != nil {
		return store.Task{}, fail(err, "get task %s in project %s", taskID, projectID)
	}
	return t, nil
}

// ListTasks returns a project's tasks newest first. FromTime is inclusive
// and ToTime exclusive, so consecutive windows never list a task twice.
func (s *Store) ListTasks(ctx context.Context, f store.TaskFilter) ([]store.Task, error) {
	query, args := listTasksQuery(f)
	// Run unprepared: the filters make many query shapes, and caching them
	// would crowd out the fixed statements.
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fail(err, "list tasks of project %s", f.ProjectID)
	}
	tasks, err := scanTasks(rows)
	if err != nil {
		return nil, fail(err, "list tasks of project %s", f.ProjectID)
	}
	return tasks, nil
}

// listTasksQuery is the statement ListTasks runs for f.
func listTasksQuery(f store.TaskFilter) (string, []any) {
	var (
		where = []string{"project_id = ?"}
		args  = []any{f.ProjectID}
	)
	if f.CodeName != "" {
		where = append(where, "code_name = ?")
		args = append(args, f.CodeName)
	}
	if f.Label != "" {
		// label != '' lets the partial index tasks_project_label_created
		// serve the filter.
		where = append(where, "label = ?", "label != ''")
		args = append(args, f.Label)
	}
	if len(f.Statuses) > 0 {
		where = append(where, "status IN ("+placeholders(len(f.Statuses))+")")
		for _, st := range f.Statuses {
			args = append(args, st)
		}
	}
	if f.FromTime != nil {
		where = append(where, "created_at >= ?")
		args = append(args, micros(*f.FromTime))
	}
	if f.ToTime != nil {
		where = append(where, "created_at < ?")
		args = append(args, micros(*f.ToTime))
	}
	limit, offset := pageBounds(f.Page)
	args = append(args, limit, offset)
	return `SELECT ` + taskCols + ` FROM tasks WHERE ` +
		strings.Join(where, " AND ") + ` ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, args
}

// leaseLost turns "the guarded UPDATE matched no row" into ErrLeaseLost.
func leaseLost(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	if err := oneRow(res); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrLeaseLost
		}
		return err
	}
	return nil
}

func (s *Store) MarkRunning(ctx context.Context, p store.StartParams) error {
	now := micros(p.Now)
	// Through the group writer, like every write on the task path, so that
	// many runners' marks share a commit.
	err := s.withTx(ctx, func(tx *querier) error {
		return leaseLost(tx.ExecContext(ctx,
			`UPDATE tasks SET status = 'running', start_time = ?, updated_at = ?
			 WHERE id = ? AND runner_id = ? AND attempt = ? AND status = 'preparing'`,
			now, now, p.TaskID, p.RunnerID, p.Attempt))
	})
	if err != nil {
		return fail(err, "mark task %s running for runner %s", p.TaskID, p.RunnerID)
	}
	return nil
}

func (s *Store) Heartbeat(ctx context.Context, p store.HeartbeatParams) (bool, error) {
	var cancel bool
	asked := time.Now()
	err := s.withTx(ctx, func(tx *querier) error {
		err := tx.QueryRowContext(ctx,
			`UPDATE tasks SET lease_expires_at = ?
			 WHERE id = ? AND runner_id = ? AND attempt = ? AND status IN ('preparing', 'running')
			 RETURNING cancel_request`,
			micros(store.LeaseStart(p.Now, asked, p.LeaseDuration).Add(p.LeaseDuration)), p.TaskID, p.RunnerID, p.Attempt).Scan(&cancel)
		if errors.Is(err, sql.ErrNoRows) {
			err = store.ErrLeaseLost
		}
		return err
	})
	if err != nil {
		return false, fail(err, "heartbeat task %s for runner %s", p.TaskID, p.RunnerID)
	}
	return cancel, nil
}

func (s *Store) FinishTask(ctx context.Context, p store.FinishParams) error {
	if !store.Terminal(p.Status) {
		return fmt.Errorf("finish task %s for runner %s: status %q is not terminal", p.TaskID, p.RunnerID, p.Status)
	}
	now := micros(p.Now)
	retryAt := ""
	if p.Retry != nil {
		retryAt = p.Retry.ID
	}
	// runner_id stays: it records who ran the task.
	finish := func(q *querier) error {
		return leaseLost(q.ExecContext(ctx,
			`UPDATE tasks SET status = ?, msg = CASE WHEN ? = '' THEN msg ELSE ? END, exit_code = ?,
				end_time = ?, updated_at = ?, lease_expires_at = NULL, retry_at = ?, timings = ?,
				start_time = COALESCE(start_time, ?)
			 WHERE id = ? AND runner_id = ? AND attempt = ? AND status IN ('preparing', 'running')`,
			p.Status, p.Msg, p.Msg, nullInt(p.ExitCode), now, now, retryAt, encodeTimings(p.Timings), nullMicros(p.StartTime()),
			p.TaskID, p.RunnerID, p.Attempt))
	}
	err := s.withTx(ctx, func(tx *querier) error {
		if err := finish(tx); err != nil || p.Retry == nil {
			return err
		}
		return insertTask(ctx, tx, *p.Retry)
	})
	if err != nil {
		return fail(err, "finish task %s as %s for runner %s", p.TaskID, p.Status, p.RunnerID)
	}
	return nil
}

func (s *Store) CancelTask(ctx context.Context, projectID, taskID string, now time.Time) (store.Task, error) {
	var task store.Task
	err := s.withTx(ctx, func(tx *querier) error {
		var status store.Status
		if err := tx.QueryRowContext(ctx,
			`SELECT status FROM tasks WHERE project_id = ? AND id = ?`, projectID, taskID).Scan(&status); err != nil {
			return err
		}
		at := micros(now)
		var row rowScanner
		switch status {
		case store.StatusQueued:
			row = tx.QueryRowContext(ctx,
				`UPDATE tasks SET status = 'cancelled', msg = 'Cancelled', end_time = ?, updated_at = ?
				 WHERE id = ? RETURNING `+taskCols, at, at, taskID)
		case store.StatusPreparing, store.StatusRunning:
			row = tx.QueryRowContext(ctx,
				`UPDATE tasks SET cancel_request = 1, updated_at = ?
				 WHERE id = ? RETURNING `+taskCols, at, taskID)
		default:
			return fmt.Errorf("%w: task is already %s", store.ErrConflict, status)
		}
		var err error
		task, err = scanTask(row)
		return err
	})
	if err != nil {
		return store.Task{}, fail(err, "cancel task %s in project %s", taskID, projectID)
	}
	return task, nil
}

func (s *Store) RescueExpired(ctx context.Context, p store.RescueParams) (int, error) {
	now := micros(p.Now)
	// The three updates partition the expired tasks: out of attempts ->
	// killed; else cancel asked -> cancelled; else back to the queue.
	const expired = `status IN ('preparing', 'running') AND lease_expires_at < ?`
	var moved int64
	err := s.withTx(ctx, func(tx *querier) error {
		steps := []struct {
			query string
			args  []any
		}{
			{`UPDATE tasks SET status = 'killed',
				msg = 'Runner lost: lease expired after ' || attempt || ' attempts',
				end_time = ?, updated_at = ?, lease_expires_at = NULL
			  WHERE ` + expired + ` AND attempt >= ?`, []any{now, now, now, p.MaxAttempts}},
			{`UPDATE tasks SET status = 'cancelled', msg = 'Cancelled',
				end_time = ?, updated_at = ?, lease_expires_at = NULL
			  WHERE ` + expired + ` AND cancel_request = 1`, []any{now, now, now}},
			{`UPDATE tasks SET status = 'queued', runner_id = '', updated_at = ?, lease_expires_at = NULL
			  WHERE ` + expired, []any{now, now}},
		}
		for _, st := range steps {
			res, err := tx.ExecContext(ctx, st.query, st.args...)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			moved += n
		}
		return nil
	})
	if err != nil {
		return 0, fail(err, "rescue expired leases")
	}
	return int(moved), nil
}

func (s *Store) AppendLog(ctx context.Context, p store.AppendLogParams) error {
	err := s.withTx(ctx, func(tx *querier) error {
		var (
			status   store.Status
			runnerID string
			attempt  int
			size     int64
		)
		if err := tx.QueryRowContext(ctx, `SELECT status, runner_id, attempt, log_size FROM tasks WHERE id = ?`,
			p.TaskID).Scan(&status, &runnerID, &attempt, &size); err != nil {
			return err
		}
		if status != store.StatusPreparing && status != store.StatusRunning || runnerID != p.RunnerID || attempt != p.Attempt {
			return fmt.Errorf("%w: the task is %s, attempt %d by runner %q", store.ErrLeaseLost, status, attempt, runnerID)
		}
		data := store.CapLog(p.Data, size, p.MaxBytes)
		if len(data) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE tasks SET log_size = log_size + ? WHERE id = ?`, len(data), p.TaskID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO task_logs (task_id, seq, data)
			 VALUES (?, COALESCE((SELECT MAX(seq) FROM task_logs WHERE task_id = ?), 0) + 1, ?)`,
			p.TaskID, p.TaskID, data)
		return err
	})
	if err != nil {
		return fail(err, "append %d bytes to log of task %s for runner %s attempt %d", len(p.Data), p.TaskID, p.RunnerID, p.Attempt)
	}
	return nil
}

func (s *Store) GetLog(ctx context.Context, taskID string) ([]byte, error) {
	rows, err := s.read().QueryContext(ctx,
		`SELECT data FROM task_logs WHERE task_id = ? ORDER BY seq`, taskID)
	if err != nil {
		return nil, fail(err, "get log of task %s", taskID)
	}
	defer rows.Close()
	var (
		log   []byte
		found bool
	)
	for rows.Next() {
		var chunk []byte
		if err := rows.Scan(&chunk); err != nil {
			return nil, fail(err, "get log of task %s", taskID)
		}
		log = append(log, chunk...)
		found = true
	}
	if err := rows.Err(); err != nil {
		return nil, fail(err, "get log of task %s", taskID)
	}
	if !found {
		return nil, fmt.Errorf("get log of task %s: %w", taskID, store.ErrNotFound)
	}
	return log, nil
}

func (s *Store) QueueStats(ctx context.Context, now time.Time) (int64, time.Time, error) {
	var n int64
	var oldest sql.NullInt64
	err := s.withReadTx(ctx, func(tx *querier) error {
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM tasks WHERE status = 'queued'`).Scan(&n); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT MIN(due_at) FROM tasks WHERE status = 'queued' AND due_at <= ?`,
			micros(now)).Scan(&oldest)
	})
	if err != nil {
		return 0, time.Time{}, fail(err, "queue statistics")
	}
	if !oldest.Valid {
		return n, time.Time{}, nil
	}
	return n, fromMicros(oldest.Int64), nil
}

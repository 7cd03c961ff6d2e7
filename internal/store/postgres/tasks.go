package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/store"
)

const taskCols = `id, project_id, code_id, code_name, code_revision_id, code_rev, status,
	priority, payload, timeout, delay, cluster, label, msg, exit_code, percent, attempt,
	runner_id, lease_expires_at, cancel_request, retry_of, retry_at, retry_count,
	schedule_id, log_size, created_at, updated_at, due_at, start_time, end_time, timings`

func scanTask(row rowScanner) (store.Task, error) {
	var (
		t                       store.Task
		exitCode                *int64
		lease, start, end       *int64
		created, updated, dueAt int64
		timings                 string
		payload                 []byte
	)
	err := row.Scan(&t.ID, &t.ProjectID, &t.CodeID, &t.CodeName, &t.CodeRevisionID, &t.CodeRev, &t.Status,
		&t.Priority, &payload, &t.Timeout, &t.Delay, &t.Cluster, &t.Label, &t.Msg, &exitCode, &t.Percent, &t.Attempt,
		&t.RunnerID, &lease, &t.CancelRequest, &t.RetryOf, &t.RetryAt, &t.RetryCount,
		&t.ScheduleID, &t.LogSize, &created, &updated, &dueAt, &start, &end, &timings)
	if err != nil {
		return store.Task{}, err
	}
	t.Payload = string(payload)
	if timings != "" {
		if err := json.Unmarshal([]byte(timings), &t.Timings); err != nil {
			return store.Task{}, fmt.Errorf("decode timings of task %s: %w", t.ID, err)
		}
	}
	if exitCode != nil {
		c := int(*exitCode)
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

func scanTasks(rows pgx.Rows) ([]store.Task, error) {
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

func (s *Store) InsertTasks(ctx context.Context, tasks []store.Task) error {
	if len(tasks) == 0 {
		return nil
	}
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		// One statement per chunk of bounded size: a row-by-row insert
		// costs the server a statement (and a run of the fair-share
		// trigger, and a foreign-key check) per task, which made a burst
		// of enqueues the largest share of the queue's database time; pgx
		// holds a statement's encoded arguments whole, and a POST may
		// carry a thousand payloads of a MiB.
		for start := 0; start < len(tasks); {
			end, size := start, 0
			for end < len(tasks) && (end == start || size+len(tasks[end].Payload) <= insertBatchBytes) {
				size += len(tasks[end].Payload)
				end++
			}
			chunk := tasks[start:end]
			if _, err := tx.Exec(ctx, insertTasksSQL, taskColumns(chunk)...); err != nil {
				return fmt.Errorf("tasks %s to %s: %w", chunk[0].ID, chunk[len(chunk)-1].ID, mapErr(err))
			}
			start = end
		}
		return nil
	})
	if err != nil {
		return fail(err, "insert %d tasks", len(tasks))
	}
	return nil
}

// insertTasksSQL inserts one row per element of its 31 arrays, in
// taskCols' order.
const insertTasksSQL = `INSERT INTO tasks (` + taskCols + `) SELECT * FROM unnest(
	$1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::text[],
	$8::int4[], $9::bytea[], $10::int4[], $11::int4[], $12::text[], $13::text[], $14::text[], $15::int4[], $16::int4[], $17::int4[],
	$18::text[], $19::int8[], $20::bool[], $21::text[], $22::text[], $23::int4[],
	$24::text[], $25::int8[], $26::int8[], $27::int8[], $28::int8[], $29::int8[], $30::int8[], $31::text[])`

// taskColumns turns tasks into the arrays of insertTasksSQL.
func taskColumns(tasks []store.Task) []any {
	n := len(tasks)
	var (
		id, project, codeID, codeName, revID, status, cluster, label, msg = make([]string, n), make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		runner, retryOf, retryAt, schedule, timings           = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		rev, priority, timeout, delay, percent, attempt, rcnt = make([]int, n), make([]int, n), make([]int, n), make([]int, n), make([]int, n), make([]int, n), make([]int, n)
		exitCode, lease, start, end                           = make([]*int64, n), make([]*int64, n), make([]*int64, n), make([]*int64, n)
		logSize, created, updated, due                        = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		payload                                               = make([][]byte, n)
		cancel                                                = make([]bool, n)
	)
	for i, t := range tasks {
		id[i], project[i], codeID[i], codeName[i], revID[i], rev[i], status[i] = t.ID, t.ProjectID, t.CodeID, t.CodeName, t.CodeRevisionID, t.CodeRev, string(t.Status)
		priority[i], payload[i], timeout[i], delay[i], cluster[i], label[i], msg[i] = t.Priority, []byte(t.Payload), t.Timeout, t.Delay, t.Cluster, t.Label, t.Msg
		exitCode[i], percent[i], attempt[i], runner[i], lease[i], cancel[i] = nullInt(t.ExitCode), t.Percent, t.Attempt, t.RunnerID, nullMicros(t.LeaseExpiresAt), t.CancelRequest
		retryOf[i], retryAt[i], rcnt[i], schedule[i], logSize[i] = t.RetryOf, t.RetryAt, t.RetryCount, t.ScheduleID, t.LogSize
		created[i], updated[i], due[i], start[i], end[i], timings[i] = micros(t.CreatedAt), micros(t.UpdatedAt), micros(t.DueAt), nullMicros(t.StartTime), nullMicros(t.EndTime), encodeTimings(t.Timings)
	}
	return []any{id, project, codeID, codeName, revID, rev, status, priority, payload, timeout, delay, cluster, label, msg,
		exitCode, percent, attempt, runner, lease, cancel, retryOf, retryAt, rcnt, schedule, logSize, created, updated, due, start, end, timings}
}

// insertBatchBytes bounds the payload bytes one insert batch carries.
const insertBatchBytes = 4 << 20

// insertTask inserts one task (a retry, a schedule's) in q's transaction.
func insertTask(ctx context.Context, q querier, t store.Task) error {
	if _, err := q.Exec(ctx, insertTasksSQL, taskColumns([]store.Task{t})...); err != nil {
		return fmt.Errorf("task %s: %w", t.ID, mapErr(err))
	}
	return nil
}

func (s *Store) GetTask(ctx context.Context, projectID, taskID string) (store.Task, error) {
	t, err := scanTask(s.pool.QueryRow(ctx,
		`SELECT `+taskCols+` FROM tasks WHERE project_id = $1 AND id = $2`, projectID, taskID))
	if err != nil {
		return store.Task{}, fail(err, "get task %s in project %s", taskID, projectID)
	}
	return t, nil
}

// ListTasks returns a project's tasks newest first. FromTime is inclusive
// and ToTime exclusive, so consecutive windows never list a task twice.
func (s *Store) ListTasks(ctx context.Context, f store.TaskFilter) ([]store.Task, error) {
	var p params
	where := []string{"project_id = " + p.add(f.ProjectID)}
	if f.CodeName != "" {
		where = append(where, "code_name = "+p.add(f.CodeName))
	}
	if f.Label != "" {
		// label != '' lets the partial index tasks_project_label_created
		// serve the filter.
		where = append(where, "label = "+p.add(f.Label), "label != ''")
	}
	if len(f.Statuses) > 0 {
		statuses := make([]string, len(f.Statuses))
		for i, st := range f.Statuses {
			statuses[i] = string(st)
		}
		where = append(where, "status IN ("+p.list(statuses)+")")
	}
	if f.FromTime != nil {
		where = append(where, "created_at >= "+p.add(micros(*f.FromTime)))
	}
	if f.ToTime != nil {
		where = append(where, "created_at < "+p.add(micros(*f.ToTime)))
	}
	limit, offset := pageBounds(f.Page)
	query := `SELECT ` + taskCols + ` FROM tasks WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY created_at DESC, id DESC LIMIT ` + p.add(limit) + ` OFFSET ` + p.add(offset)
	rows, err := s.pool.Query(ctx, query, p.args...)
	if err != nil {
		return nil, fail(err, "list tasks of project %s", f.ProjectID)
	}
	tasks, err := scanTasks(rows)
	if err != nil {
		return nil, fail(err, "list tasks of project %s", f.ProjectID)
	}
	return tasks, nil
}

func (s *Store) MarkRunning(ctx context.Context, p store.StartParams) error {
	res := s.group.do(ctx, &writeRequest{kind: kindStart, taskID: p.TaskID, start: p})
	if res.err != nil {
		return fail(res.err, "mark task %s running for runner %s", p.TaskID, p.RunnerID)
	}
	return nil
}

// markRunning is MarkRunning in a transaction of its own.
func (s *Store) markRunning(ctx context.Context, p store.StartParams) error {
	now := micros(p.Now)
	err := leaseLost(s.pool.Exec(ctx,
		`UPDATE tasks SET status = 'running', start_time = $1, updated_at = $1
		 WHERE id = $2 AND runner_id = $3 AND attempt = $4 AND status = 'preparing'`,
		now, p.TaskID, p.RunnerID, p.Attempt))
	if err != nil {
		return fail(err, "mark task %s running for runner %s", p.TaskID, p.RunnerID)
	}
	return nil
}

func (s *Store) Heartbeat(ctx context.Context, p store.HeartbeatParams) (bool, error) {
	res := s.group.do(ctx, &writeRequest{kind: kindHeartbeat, taskID: p.TaskID, beat: p, asked: time.Now()})
	if res.err != nil {
		return false, fail(res.err, "heartbeat task %s for runner %s", p.TaskID, p.RunnerID)
	}
	return res.cancel, nil
}

// heartbeat is Heartbeat in a transaction of its own.
func (s *Store) heartbeat(ctx context.Context, p store.HeartbeatParams) (bool, error) {
	var cancel bool
	err := s.pool.QueryRow(ctx,
		`UPDATE tasks SET lease_expires_at = $1
		 WHERE id = $2 AND runner_id = $3 AND attempt = $4 AND status IN ('preparing', 'running')
		 RETURNING cancel_request`,
		micros(p.Now.Add(p.LeaseDuration)), p.TaskID, p.RunnerID, p.Attempt).Scan(&cancel)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrLeaseLost
	}
	if err != nil {
		return false, fail(err, "heartbeat task %s for runner %s", p.TaskID, p.RunnerID)
	}
	return cancel, nil
}

func (s *Store) FinishTask(ctx context.Context, p store.FinishParams) error {
	if !store.Terminal(p.Status) {
		return fmt.Errorf("finish task %s for runner %s: status %q is not terminal", p.TaskID, p.RunnerID, p.Status)
	}
	if p.Retry == nil {
		// Most finishes: grouped with the other lease writes waiting.
		res := s.group.do(ctx, &writeRequest{kind: kindFinish, taskID: p.TaskID, finish: p})
		if res.err != nil {
			return fail(res.err, "finish task %s as %s for runner %s", p.TaskID, p.Status, p.RunnerID)
		}
		return nil
	}
	return s.finishTask(ctx, p)
}

// finishTask is FinishTask in a transaction of its own (with its retry's
// insert, if any).
func (s *Store) finishTask(ctx context.Context, p store.FinishParams) error {
	now := micros(p.Now)
	retryAt := ""
	if p.Retry != nil {
		retryAt = p.Retry.ID
	}
	// runner_id stays: it records who ran the task.
	finish := func(q querier) error {
		return leaseLost(q.Exec(ctx,
			`UPDATE tasks SET status = $1, msg = CASE WHEN $2 = '' THEN msg ELSE $2 END, exit_code = $3,
				end_time = $4, updated_at = $4, lease_expires_at = NULL, retry_at = $5, timings = $6,
				start_time = COALESCE(start_time, $10)
			 WHERE id = $7 AND runner_id = $8 AND attempt = $9 AND status IN ('preparing', 'running')`,
			p.Status, p.Msg, nullInt(p.ExitCode), now, retryAt, encodeTimings(p.Timings), p.TaskID, p.RunnerID, p.Attempt,
			nullMicros(p.StartTime())))
	}
	var err error
	if p.Retry == nil {
		err = finish(s.pool)
	} else {
		err = s.withTx(ctx, func(tx pgx.Tx) error {
			if err := finish(tx); err != nil {
				return err
			}
			return insertTask(ctx, tx, *p.Retry)
		})
	}
	if err != nil {
		return fail(err, "finish task %s as %s for runner %s", p.TaskID, p.Status, p.RunnerID)
	}
	return nil
}

func (s *Store) CancelTask(ctx context.Context, projectID, taskID string, now time.Time) (store.Task, error) {
	var task store.Task
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		var status string
		// Locked, so a lease or finish running meanwhile is either wholly
		// before this cancel or wholly after it.
		if err := tx.QueryRow(ctx,
			`SELECT status FROM tasks WHERE project_id = $1 AND id = $2 FOR UPDATE`, projectID, taskID).Scan(&status); err != nil {
			return err
		}
		at := micros(now)
		var row rowScanner
		switch store.Status(status) {
		case store.StatusQueued:
			row = tx.QueryRow(ctx,
				`UPDATE tasks SET status = 'cancelled', msg = 'Cancelled', end_time = $1, updated_at = $1
				 WHERE id = $2 RETURNING `+taskCols, at, taskID)
		case store.StatusPreparing, store.StatusRunning:
			row = tx.QueryRow(ctx,
				`UPDATE tasks SET cancel_request = TRUE, updated_at = $1
				 WHERE id = $2 RETURNING `+taskCols, at, taskID)
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

// The rescue's three updates partition the expired tasks: out of
// attempts -> killed; else cancel asked -> cancelled; else back to the
// queue. Each reads the active tasks through tasks_active and checks their
// expiry in the table: no index holds the expiry, so that a heartbeat,
// which changes only that, touches no index (a HOT update).
const (
	rescueExpired   = `status IN ('preparing', 'running') AND lease_expires_at < $1`
	rescueKilledSQL = `UPDATE tasks SET status = 'killed',
				msg = 'Runner lost: lease expired after ' || attempt || ' attempts',
				end_time = $1, updated_at = $1, lease_expires_at = NULL
			  WHERE ` + rescueExpired + ` AND attempt >= $2`
	rescueCancelledSQL = `UPDATE tasks SET status = 'cancelled', msg = 'Cancelled',
				end_time = $1, updated_at = $1, lease_expires_at = NULL
			  WHERE ` + rescueExpired + ` AND cancel_request`
	rescueQueuedSQL = `UPDATE tasks SET status = 'queued', runner_id = '', updated_at = $1, lease_expires_at = NULL
			  WHERE ` + rescueExpired
)

func (s *Store) RescueExpired(ctx context.Context, p store.RescueParams) (int, error) {
	now := micros(p.Now)
	var moved int64
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		steps := []struct {
			query string
			args  []any
		}{
			{rescueKilledSQL, []any{now, p.MaxAttempts}},
			{rescueCancelledSQL, []any{now}},
			{rescueQueuedSQL, []any{now}},
		}
		for _, st := range steps {
			tag, err := tx.Exec(ctx, st.query, st.args...)
			if err != nil {
				return err
			}
			moved += tag.RowsAffected()
		}
		return nil
	})
	if err != nil {
		return 0, fail(err, "rescue expired leases")
	}
	return int(moved), nil
}

func (s *Store) QueueStats(ctx context.Context, now time.Time) (int64, time.Time, error) {
	var n int64
	var oldest *int64
	err := s.pool.QueryRow(ctx, `SELECT COUNT(*), MIN(due_at) FILTER (WHERE due_at <= $1)
		FROM tasks WHERE status = 'queued'`, micros(now)).Scan(&n, &oldest)
	if err != nil {
		return 0, time.Time{}, fail(err, "queue statistics")
	}
	if oldest == nil {
		return n, time.Time{}, nil
	}
	return n, fromMicros(*oldest), nil
}

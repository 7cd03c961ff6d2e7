package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mayfly-run/mayfly/internal/store"
)

const scheduleCols = `id, project_id, code_name, name, payload, status, start_at, end_at,
	run_every, cron, timezone, run_times, priority, timeout, delay, cluster, label,
	max_concurrency, run_count, last_run_time, next_start, msg, version, created_at, updated_at`

func scanSchedule(row rowScanner) (store.Schedule, error) {
	var (
		s                      store.Schedule
		start, end, last, next sql.NullInt64
		priority               sql.NullInt64
		created, updated       int64
	)
	err := row.Scan(&s.ID, &s.ProjectID, &s.CodeName, &s.Name, &s.Payload, &s.Status, &start, &end,
		&s.RunEvery, &s.Cron, &s.Timezone, &s.RunTimes, &priority, &s.Timeout, &s.Delay, &s.Cluster, &s.Label,
		&s.MaxConcurrency, &s.RunCount, &last, &next, &s.Msg, &s.Version, &created, &updated)
	if err != nil {
		return store.Schedule{}, err
	}
	s.StartAt, s.EndAt, s.LastRunTime, s.NextStart = ptrTime(start), ptrTime(end), ptrTime(last), ptrTime(next)
	if priority.Valid {
		p := int(priority.Int64)
		s.Priority = &p
	}
	s.CreatedAt, s.UpdatedAt = fromMicros(created), fromMicros(updated)
	return s, nil
}

func scanSchedules(rows *sql.Rows) ([]store.Schedule, error) {
	defer rows.Close()
	var out []store.Schedule
	for rows.Next() {
		s, err := scanSchedule(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func (s *Store) CreateSchedules(ctx context.Context, schedules []store.Schedule) error {
	if len(schedules) == 0 {
		return nil
	}
	insert := `INSERT INTO schedules (` + scheduleCols + `) VALUES (` + placeholders(25) + `)`
	err := s.withTx(ctx, func(tx *querier) error {
		for _, sc := range schedules {
			if _, err := tx.ExecContext(ctx, insert,
				sc.ID, sc.ProjectID, sc.CodeName, sc.Name, sc.Payload, sc.Status, nullMicros(sc.StartAt), nullMicros(sc.EndAt),
				sc.RunEvery, sc.Cron, sc.Timezone, sc.RunTimes, nullInt(sc.Priority), sc.Timeout, sc.Delay, sc.Cluster, sc.Label,
				sc.MaxConcurrency, sc.RunCount, nullMicros(sc.LastRunTime), nullMicros(sc.NextStart), sc.Msg, sc.Version,
				micros(sc.CreatedAt), micros(sc.UpdatedAt)); err != nil {
				return fmt.Errorf("schedule %s: %w", sc.ID, mapErr(err))
			}
		}
		return nil
	})
	if err != nil {
		return fail(err, "create %d schedules", len(schedules))
	}
	return nil
}

func (s *Store) GetSchedule(ctx context.Context, projectID, scheduleID string) (store.Schedule, error) {
	sc, err := scanSchedule(s.read().QueryRowContext(ctx,
		`SELECT `+scheduleCols+` FROM schedules WHERE project_id = ? AND id = ?`, projectID, scheduleID))
	if err != nil {
		return store.Schedule{}, fail(err, "get schedule %s in project %s", scheduleID, projectID)
	}
	return sc, nil
}

func (s *Store) ListSchedules(ctx context.Context, projectID string, page store.Page) ([]store.Schedule, error) {
	limit, offset := pageBounds(page)
	rows, err := s.read().QueryContext(ctx,
		`SELECT `+scheduleCols+` FROM schedules WHERE project_id = ?
		 ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, projectID, limit, offset)
	if err != nil {
		return nil, fail(err, "list schedules of project %s", projectID)
	}
	out, err := scanSchedules(rows)
	if err != nil {
		return nil, fail(err, "list schedules of project %s", projectID)
	}
	return out, nil
}

func (s *Store) UpdateSchedule(ctx context.Context, sc store.Schedule) (store.Schedule, error) {
	out, err := scanSchedule(s.write().QueryRowContext(ctx,
		`UPDATE schedules SET code_name = ?, name = ?, payload = ?, status = ?, start_at = ?, end_at = ?,
			run_every = ?, cron = ?, timezone = ?, run_times = ?, priority = ?, timeout = ?, delay = ?,
			cluster = ?, label = ?, max_concurrency = ?, next_start = ?, msg = ?,
			version = version + 1, updated_at = ?
		 WHERE project_id = ? AND id = ? AND version = ?
		 RETURNING `+scheduleCols,
		sc.CodeName, sc.Name, sc.Payload, sc.Status, nullMicros(sc.StartAt), nullMicros(sc.EndAt),
		sc.RunEvery, sc.Cron, sc.Timezone, sc.RunTimes, nullInt(sc.Priority), sc.Timeout, sc.Delay,
		sc.Cluster, sc.Label, sc.MaxConcurrency, nullMicros(sc.NextStart), sc.Msg,
		micros(sc.UpdatedAt), sc.ProjectID, sc.ID, sc.Version))
	if errors.Is(err, sql.ErrNoRows) {
		err = s.missingOrChanged(ctx, sc.ProjectID, sc.ID)
	}
	if err != nil {
		return store.Schedule{}, fail(err, "update schedule %s in project %s", sc.ID, sc.ProjectID)
	}
	return out, nil
}

// missingOrChanged tells why a guarded write of a schedule matched no row.
func (s *Store) missingOrChanged(ctx context.Context, projectID, scheduleID string) error {
	var one int
	err := s.write().QueryRowContext(ctx,
		`SELECT 1 FROM schedules WHERE project_id = ? AND id = ?`, projectID, scheduleID).Scan(&one)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: the schedule changed meanwhile", store.ErrConflict)
}

func (s *Store) CancelSchedule(ctx context.Context, projectID, scheduleID string, now time.Time) (store.Schedule, error) {
	var out store.Schedule
	err := s.withTx(ctx, func(tx *querier) error {
		var status string
		if err := tx.QueryRowContext(ctx,
			`SELECT status FROM schedules WHERE project_id = ? AND id = ?`, projectID, scheduleID).Scan(&status); err != nil {
			return err
		}
		if status != store.ScheduleScheduled {
			return fmt.Errorf("%w: schedule is already %s", store.ErrConflict, status)
		}
		var err error
		out, err = scanSchedule(tx.QueryRowContext(ctx,
			`UPDATE schedules SET status = 'cancelled', next_start = NULL, msg = 'Cancelled',
				version = version + 1, updated_at = ?
			 WHERE id = ? RETURNING `+scheduleCols, micros(now), scheduleID))
		return err
	})
	if err != nil {
		return store.Schedule{}, fail(err, "cancel schedule %s in project %s", scheduleID, projectID)
	}
	return out, nil
}

func (s *Store) DueSchedules(ctx context.Context, now time.Time, limit int) ([]store.Schedule, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.read().QueryContext(ctx,
		`SELECT `+scheduleCols+` FROM schedules
		 WHERE status = 'scheduled' AND next_start IS NOT NULL AND next_start <= ?
		 ORDER BY next_start, id LIMIT ?`, micros(now), limit)
	if err != nil {
		return nil, fail(err, "list due schedules")
	}
	out, err := scanSchedules(rows)
	if err != nil {
		return nil, fail(err, "list due schedules")
	}
	return out, nil
}

func (s *Store) NextScheduleStart(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	err := s.read().QueryRowContext(ctx,
		`SELECT MIN(next_start) FROM schedules WHERE status = 'scheduled'`).Scan(&next)
	if err != nil {
		return time.Time{}, false, fail(err, "find the next schedule start")
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return fromMicros(next.Int64), true, nil
}

func (s *Store) FireSchedule(ctx context.Context, p store.FireParams) (bool, error) {
	var fired bool
	err := s.withTx(ctx, func(tx *querier) error {
		var one int
		err := tx.QueryRowContext(ctx,
			`SELECT 1 FROM schedules
			 WHERE project_id = ? AND id = ? AND status = 'scheduled' AND next_start = ? AND version = ?`,
			p.ProjectID, p.ScheduleID, micros(p.DueAt), p.Version).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: the run due at %s was claimed already or the schedule changed",
				store.ErrConflict, p.DueAt.Format(time.RFC3339Nano))
		}
		if err != nil {
			return err
		}
		fired = p.Task != nil
		if fired && p.MaxActive > 0 {
			var active int
			if err := tx.QueryRowContext(ctx,
				`SELECT COUNT(*) FROM tasks
				 WHERE schedule_id = ? AND status IN ('queued', 'preparing', 'running')`,
				p.ScheduleID).Scan(&active); err != nil {
				return err
			}
			fired = active < p.MaxActive
		}
		now := micros(p.Now)
		if !fired {
			_, err := tx.ExecContext(ctx,
				`UPDATE schedules SET status = ?, next_start = ?, msg = ?, version = version + 1, updated_at = ?
				 WHERE id = ?`,
				p.Skipped.Status, nullMicros(p.Skipped.NextStart), p.Skipped.Msg, now, p.ScheduleID)
			return err
		}
		if err := insertTask(ctx, tx, *p.Task); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx,
			`UPDATE schedules SET status = ?, next_start = ?, msg = ?, run_count = run_count + 1,
				last_run_time = ?, version = version + 1, updated_at = ?
			 WHERE id = ?`,
			p.Fired.Status, nullMicros(p.Fired.NextStart), p.Fired.Msg, now, now, p.ScheduleID)
		return err
	})
	if err != nil {
		return false, fail(err, "fire schedule %s due at %s", p.ScheduleID, p.DueAt.Format(time.RFC3339))
	}
	return fired, nil
}

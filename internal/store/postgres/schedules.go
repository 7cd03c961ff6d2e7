package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/store"
)

const scheduleCols = `id, project_id, code_name, name, payload, status, start_at, end_at,
	run_every, cron, timezone, run_times, priority, timeout, delay, cluster, label,
	max_concurrency, run_count, last_run_time, next_start, msg, version, created_at, updated_at`

func scanSchedule(row rowScanner) (store.Schedule, error) {
	var (
		s                      store.Schedule
		start, end, last, next *int64
		priority               *int64
		created, updated       int64
		payload                []byte
	)
	err := row.Scan(&s.ID, &s.ProjectID, &s.CodeName, &s.Name, &payload, &s.Status, &start, &end,
		&s.RunEvery, &s.Cron, &s.Timezone, &s.RunTimes, &priority, &s.Timeout, &s.Delay, &s.Cluster, &s.Label,
		&s.MaxConcurrency, &s.RunCount, &last, &next, &s.Msg, &s.Version, &created, &updated)
	if err != nil {
		return store.Schedule{}, err
	}
	s.Payload = string(payload)
	s.StartAt, s.EndAt, s.LastRunTime, s.NextStart = ptrTime(start), ptrTime(end), ptrTime(last), ptrTime(next)
	if priority != nil {
		p := int(*priority)
		s.Priority = &p
	}
	s.CreatedAt, s.UpdatedAt = fromMicros(created), fromMicros(updated)
	return s, nil
}

func scanSchedules(rows pgx.Rows) ([]store.Schedule, error) {
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
	const insert = `INSERT INTO schedules (` + scheduleCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
		$9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)`
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		for _, sc := range schedules {
			if _, err := tx.Exec(ctx, insert,
				sc.ID, sc.ProjectID, sc.CodeName, sc.Name, []byte(sc.Payload), sc.Status, nullMicros(sc.StartAt), nullMicros(sc.EndAt),
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
	sc, err := scanSchedule(s.pool.QueryRow(ctx,
		`SELECT `+scheduleCols+` FROM schedules WHERE project_id = $1 AND id = $2`, projectID, scheduleID))
	if err != nil {
		return store.Schedule{}, fail(err, "get schedule %s in project %s", scheduleID, projectID)
	}
	return sc, nil
}

func (s *Store) ListSchedules(ctx context.Context, projectID string, page store.Page) ([]store.Schedule, error) {
	limit, offset := pageBounds(page)
	rows, err := s.pool.Query(ctx,
		`SELECT `+scheduleCols+` FROM schedules WHERE project_id = $1
		 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3`, projectID, limit, offset)
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
	out, err := scanSchedule(s.pool.QueryRow(ctx,
		`UPDATE schedules SET code_name = $1, name = $2, payload = $3, status = $4, start_at = $5, end_at = $6,
			run_every = $7, cron = $8, timezone = $9, run_times = $10, priority = $11, timeout = $12, delay = $13,
			cluster = $14, label = $15, max_concurrency = $16, next_start = $17, msg = $18,
			version = version + 1, updated_at = $19
		 WHERE project_id = $20 AND id = $21 AND version = $22
		 RETURNING `+scheduleCols,
		sc.CodeName, sc.Name, []byte(sc.Payload), sc.Status, nullMicros(sc.StartAt), nullMicros(sc.EndAt),
		sc.RunEvery, sc.Cron, sc.Timezone, sc.RunTimes, nullInt(sc.Priority), sc.Timeout, sc.Delay,
		sc.Cluster, sc.Label, sc.MaxConcurrency, nullMicros(sc.NextStart), sc.Msg,
		micros(sc.UpdatedAt), sc.ProjectID, sc.ID, sc.Version))
	if errors.Is(err, pgx.ErrNoRows) {
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
	err := s.pool.QueryRow(ctx,
		`SELECT 1 FROM schedules WHERE project_id = $1 AND id = $2`, projectID, scheduleID).Scan(&one)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: the schedule changed meanwhile", store.ErrConflict)
}

func (s *Store) CancelSchedule(ctx context.Context, projectID, scheduleID string, now time.Time) (store.Schedule, error) {
	var out store.Schedule
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		var status string
		if err := tx.QueryRow(ctx,
			`SELECT status FROM schedules WHERE project_id = $1 AND id = $2 FOR NO KEY UPDATE`,
			projectID, scheduleID).Scan(&status); err != nil {
			return err
		}
		if status != store.ScheduleScheduled {
			return fmt.Errorf("%w: schedule is already %s", store.ErrConflict, status)
		}
		var err error
		out, err = scanSchedule(tx.QueryRow(ctx,
			`UPDATE schedules SET status = 'cancelled', next_start = NULL, msg = 'Cancelled',
				version = version + 1, updated_at = $1
			 WHERE id = $2 RETURNING `+scheduleCols, micros(now), scheduleID))
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
	rows, err := s.pool.Query(ctx,
		`SELECT `+scheduleCols+` FROM schedules
		 WHERE status = 'scheduled' AND next_start IS NOT NULL AND next_start <= $1
		 ORDER BY next_start, id LIMIT $2`, micros(now), limit)
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
	var next *int64
	err := s.pool.QueryRow(ctx,
		`SELECT MIN(next_start) FROM schedules WHERE status = 'scheduled'`).Scan(&next)
	if err != nil {
		return time.Time{}, false, fail(err, "find the next schedule start")
	}
	if next == nil {
		return time.Time{}, false, nil
	}
	return fromMicros(*next), true, nil
}

func (s *Store) FireSchedule(ctx context.Context, p store.FireParams) (bool, error) {
	var fired bool
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		// The row lock makes the claim: a second server firing the same
		// run waits here, then finds version moved on.
		var one int
		err := tx.QueryRow(ctx,
			`SELECT 1 FROM schedules
			 WHERE project_id = $1 AND id = $2 AND status = 'scheduled' AND next_start = $3 AND version = $4
			 FOR NO KEY UPDATE`,
			p.ProjectID, p.ScheduleID, micros(p.DueAt), p.Version).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: the run due at %s was claimed already or the schedule changed",
				store.ErrConflict, p.DueAt.Format(time.RFC3339Nano))
		}
		if err != nil {
			return err
		}
		fired = p.Task != nil
		if fired && p.MaxActive > 0 {
			var active int
			if err := tx.QueryRow(ctx, scheduleActiveSQL, p.ScheduleID).Scan(&active); err != nil {
				return err
			}
			fired = active < p.MaxActive
		}
		now := micros(p.Now)
		if !fired {
			_, err := tx.Exec(ctx,
				`UPDATE schedules SET status = $1, next_start = $2, msg = $3, version = version + 1, updated_at = $4
				 WHERE id = $5`,
				p.Skipped.Status, nullMicros(p.Skipped.NextStart), p.Skipped.Msg, now, p.ScheduleID)
			return err
		}
		if err := insertTask(ctx, tx, *p.Task); err != nil {
			return err
		}
		_, err = tx.Exec(ctx,
			`UPDATE schedules SET status = $1, next_start = $2, msg = $3, run_count = run_count + 1,
				last_run_time = $4, version = version + 1, updated_at = $4
			 WHERE id = $5`,
			p.Fired.Status, nullMicros(p.Fired.NextStart), p.Fired.Msg, now, p.ScheduleID)
		return err
	})
	if err != nil {
		return false, fail(err, "fire schedule %s due at %s", p.ScheduleID, p.DueAt.Format(time.RFC3339))
	}
	return fired, nil
}

// scheduleActiveSQL counts a schedule's unfinished tasks; schedule_id <>
// ” lets tasks_schedule_active (which holds only scheduled tasks) serve
// it.
const scheduleActiveSQL = `SELECT COUNT(*) FROM tasks
	WHERE schedule_id = $1 AND schedule_id <> '' AND status IN ('queued', 'preparing', 'running')`

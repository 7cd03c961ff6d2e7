package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mayfly-run/mayfly/internal/store"
)

// A log read takes chunks in batches of at most logBatchRows rows and stops
// a batch once it holds logBatchBytes, so a reader holds about that much at
// a time however long the log, and its connection goes back to the pool
// between batches instead of waiting on a slow client.
const (
	logBatchRows  = 64
	logBatchBytes = 256 << 10
)

// AppendLog locks the task's row first: the lease check, the cap and the
// chunk's seq (the row's log_seq counter) then all see the appends before
// it, so concurrent appenders never reuse a seq nor together pass the cap.
func (s *Store) AppendLog(ctx context.Context, p store.AppendLogParams) error {
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		var (
			status, runnerID string
			attempt          int
			size             int64
		)
		if err := tx.QueryRow(ctx,
			`SELECT status, runner_id, attempt, log_size FROM tasks WHERE id = $1 FOR NO KEY UPDATE`,
			p.TaskID).Scan(&status, &runnerID, &attempt, &size); err != nil {
			return err
		}
		if st := store.Status(status); st != store.StatusPreparing && st != store.StatusRunning || runnerID != p.RunnerID || attempt != p.Attempt {
			return fmt.Errorf("%w: the task is %s, attempt %d by runner %q", store.ErrLeaseLost, status, attempt, runnerID)
		}
		data := store.CapLog(p.Data, size, p.MaxBytes)
		if len(data) == 0 {
			return nil
		}
		var seq int64
		if err := tx.QueryRow(ctx,
			`UPDATE tasks SET log_size = log_size + $1, log_seq = log_seq + 1 WHERE id = $2 RETURNING log_seq`,
			len(data), p.TaskID).Scan(&seq); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO task_logs (task_id, seq, data) VALUES ($1, $2, $3)`, p.TaskID, seq, data)
		return err
	})
	if err != nil {
		return fail(err, "append %d bytes to log of task %s for runner %s attempt %d", len(p.Data), p.TaskID, p.RunnerID, p.Attempt)
	}
	return nil
}

func (s *Store) GetLog(ctx context.Context, taskID string) ([]byte, error) {
	rows, err := s.pool.Query(ctx, `SELECT data FROM task_logs WHERE task_id = $1 ORDER BY seq`, taskID)
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

func (s *Store) ReadLog(ctx context.Context, taskID string, afterSeq int64, fn func(chunk []byte) error) (int64, error) {
	last := afterSeq
	for {
		seqs, chunks, more, err := s.logBatch(ctx, taskID, last)
		if err != nil {
			return last, fail(err, "read log of task %s after chunk %d", taskID, last)
		}
		if len(chunks) == 0 && last == 0 {
			return 0, fmt.Errorf("read log of task %s: %w", taskID, store.ErrNotFound)
		}
		for i, c := range chunks {
			if err := fn(c); err != nil {
				return last, fmt.Errorf("read log of task %s: %w", taskID, err)
			}
			last = seqs[i]
			chunks[i] = nil // let the written chunk go before the next is read
		}
		if !more {
			return last, nil
		}
	}
}

// logBatch reads the chunks after seq after; more says whether it stopped
// before the end of the log.
func (s *Store) logBatch(ctx context.Context, taskID string, after int64) (seqs []int64, chunks [][]byte, more bool, err error) {
	rows, err := s.pool.Query(ctx,
		`SELECT seq, data FROM task_logs WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
		taskID, after, logBatchRows)
	if err != nil {
		return nil, nil, false, err
	}
	defer rows.Close()
	size := 0
	for rows.Next() {
		var (
			seq  int64
			data []byte
		)
		if err := rows.Scan(&seq, &data); err != nil {
			return nil, nil, false, err
		}
		seqs, chunks = append(seqs, seq), append(chunks, data)
		size += len(data)
		if size >= logBatchBytes {
			return seqs, chunks, true, nil
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, false, err
	}
	return seqs, chunks, len(chunks) == logBatchRows, nil
}
